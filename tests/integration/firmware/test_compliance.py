"""Compliance per device through the API, ward scope, gauges and degraded health."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from drivers.contract import Heartbeat
from firmware_meta import Severity
from hub.firmware.catalog import import_catalog
from hub.firmware.service import FIRMWARE
from tests.conftest import Clients
from tests.integration.dashboards.grafana_sql import expand
from tests.integration.dashboards.panels import find_target, resolve_variables
from tests.support.broadcasts import eventually
from tests.support.hub import RunningHub

S30 = ("VNPT Technology", "IP Speaker S30")
FLEET = [
    # uid, ward, kind, vendor, model, version
    ("spk-a-current", "ward-a", "speaker", *S30, "2.10.0"),
    ("spk-a-outdated", "ward-a", "speaker", *S30, "2.4.1"),
    ("spk-a-vulnerable", "ward-a", "speaker", *S30, "2.3.1"),
    ("spk-b-eos", "ward-b", "speaker", *S30, "2.2.7"),
    ("spk-b-rc", "ward-b", "speaker", *S30, "2.11.0-rc1"),
    ("spk-b-unknown-version", "ward-b", "speaker", *S30, "2.5.0"),
    ("spk-b-no-version", "ward-b", "speaker", *S30, ""),
    ("aq-a-outdated", "ward-a", "sensor", "Envitech", "AQM-65", "1.9.2"),
    ("cam-a-build", "ward-a", "camera", "Hikvision", "DS-2CD2T47G2-L", "V5.7.3 build 240115"),
    ("cam-b-unknown-model", "ward-b", "camera", "Acme", "Cam 1", "1.0"),
]


async def seed(db: asyncpg.Connection, hub: RunningHub) -> None:
    pool = hub.runtime.database.pool
    await import_catalog(pool)
    await db.executemany(
        "INSERT INTO device (uid, kind, ward_id, name, vendor, model, firmware_version) "
        "SELECT $1, $3, id, $1, $4, $5, $6 FROM ward WHERE code = $2",
        FLEET,
    )


@pytest.fixture
async def fleet(clients: Clients, db: asyncpg.Connection, hub: RunningHub) -> Clients:
    await seed(db, hub)
    return clients


async def test_each_device_gets_its_state_with_the_why(fleet: Clients) -> None:
    response = await fleet.technician.get("/api/v1/firmware/devices")
    assert response.status_code == 200, response.text
    page = response.json()
    states = {d["uid"]: d for d in page["items"]}
    assert {uid: d["state"] for uid, d in states.items()} == {
        "spk-a-current": "current",
        "spk-a-outdated": "outdated",
        "spk-a-vulnerable": "vulnerable",
        "spk-b-eos": "vulnerable",  # its CVE outranks its end of support
        "spk-b-rc": "current",
        "spk-b-unknown-version": "unknown_version",
        "spk-b-no-version": "unknown_version",
        "aq-a-outdated": "outdated",
        "cam-a-build": "outdated",
        "cam-b-unknown-model": "unknown_model",
    }
    outdated = states["spk-a-outdated"]
    assert (outdated["latest_version"], outdated["versions_behind"]) == ("2.10.0", 2)
    assert outdated["days_behind"] == (datetime(2025, 11, 3) - datetime(2025, 3, 18)).days
    vulnerable = states["spk-a-vulnerable"]
    assert vulnerable["worst_severity"] == "high"
    assert [c["id"] for c in vulnerable["vulnerabilities"]] == ["CVE-2024-900214"]
    assert states["spk-b-eos"]["end_of_support"] == "2025-06-30"
    assert states["cam-a-build"]["latest_version"] == "V5.7.15 build 241008"
    assert page["counts"]["unknown_version"] == 2
    filtered = await fleet.technician.get(
        "/api/v1/firmware/devices", params={"state": "vulnerable", "kind": "speaker"}
    )
    assert {d["uid"] for d in filtered.json()["items"]} == {"spk-a-vulnerable", "spk-b-eos"}


async def test_end_of_support_without_cves_and_an_advisory_that_makes_a_device_vulnerable(
    fleet: Clients, db: asyncpg.Connection
) -> None:
    await db.execute(
        "DELETE FROM firmware_vulnerability v USING firmware_release r "
        "WHERE r.id = v.release_id AND r.version = '2.2.7'"
    )
    response = await fleet.technician.get("/api/v1/firmware/devices/spk-b-eos")
    assert response.json()["state"] == "end_of_support"
    assert response.json()["reason"] == "support ended 2025-06-30"
    await db.execute(
        "INSERT INTO firmware_vulnerability (release_id, cve, cvss, summary, source) "
        "SELECT id, 'CVE-2025-900999', 4.3, 'demo', 'OSV-1' FROM firmware_release "
        "WHERE version = '2.10.0'"
    )
    response = await fleet.technician.get("/api/v1/firmware/devices/spk-a-current")
    assert response.json()["state"] == "vulnerable"
    assert response.json()["vulnerabilities"][0]["source"] == "OSV-1"


async def test_ward_staff_see_only_their_ward(fleet: Clients) -> None:
    mine = await fleet.staff_a.get("/api/v1/firmware/devices")
    assert {d["ward"] for d in mine.json()["items"]} == {"ward-a"}
    other = await fleet.staff_a.get("/api/v1/firmware/devices", params={"ward": "ward-b"})
    assert other.status_code == 403
    hidden = await fleet.staff_a.get("/api/v1/firmware/devices/spk-b-eos")
    assert hidden.status_code == 404
    summary = await fleet.staff_a.get("/api/v1/firmware/summary")
    assert {row["ward"] for row in summary.json()} == {"ward-a"}
    speakers = next(r for r in summary.json() if r["kind"] == "speaker")
    assert speakers["counts"] | {} == {
        "current": 1,
        "outdated": 1,
        "vulnerable": 1,
        "end_of_support": 0,
        "unknown_model": 0,
        "unknown_version": 0,
    }
    assert (await fleet.anonymous.get("/api/v1/firmware/summary")).status_code == 401
    window = await fleet.staff_a.put(
        "/api/v1/firmware/windows/ward-a", json={"starts": "01:00", "ends": "04:00"}
    )
    assert window.status_code == 403


async def test_catalog_lists_releases_newest_first_with_cves(fleet: Clients) -> None:
    response = await fleet.viewer.get("/api/v1/firmware/catalog", params={"kind": "speaker"})
    versions = [r["version"] for r in response.json()]
    assert versions == ["2.11.0-rc1", "2.10.0", "2.9.3", "2.4.1", "2.4.0", "2.3.1", "2.2.7"]
    assert response.json()[0]["prerelease"] is True


async def test_windows_are_set_and_refused_with_the_field(fleet: Clients) -> None:
    bad = await fleet.technician.put(
        "/api/v1/firmware/windows/ward-a", json={"starts": "25:00", "ends": "04:00"}
    )
    assert bad.status_code == 400 and "starts" in bad.text
    ok = await fleet.technician.put(
        "/api/v1/firmware/windows/ward-a", json={"starts": "22:30", "ends": "04:00"}
    )
    assert ok.status_code == 200
    listed = await fleet.technician.get("/api/v1/firmware/windows")
    assert listed.json() == [{"ward": "ward-a", "starts": "22:30", "ends": "04:00"}]
    assert (await fleet.technician.delete("/api/v1/firmware/windows/ward-a")).status_code == 204


async def test_gauges_table_and_degraded_health_follow_the_refresh(
    fleet: Clients, hub: RunningHub, db: asyncpg.Connection
) -> None:
    service = hub.runtime.get(FIRMWARE)
    await db.execute("UPDATE device SET last_seen = now(), connected = true")
    service.settings = service.settings.model_copy(update={"degrade_vulnerable": Severity.HIGH})
    try:
        await service.refresh()
        gauge = REGISTRY.get_sample_value(
            "iochub_firmware_devices", {"ward": "ward-a", "kind": "speaker", "state": "vulnerable"}
        )
        assert gauge == 1
        assert (
            REGISTRY.get_sample_value(
                "iochub_firmware_vulnerable_devices", {"severity": "critical"}
            )
            == 1
        )
        table = await db.fetchval(
            "SELECT state FROM firmware_device_compliance c JOIN device d ON d.id = c.device_id "
            "WHERE d.uid = 'spk-a-vulnerable'"
        )
        assert table == "vulnerable"
        health = await fleet.technician.get("/api/v1/devices/spk-a-vulnerable")
        assert health.json()["status"] == "degraded"
        assert "firmware vulnerable: CVE-2024-900214 (high 7.5)" in health.json()["status_reason"]
        # The fix is installed: the fault goes, health is online again.
        await db.execute(
            "UPDATE device SET firmware_version = '2.10.0' WHERE uid = 'spk-a-vulnerable'"
        )
        await service.refresh()
        health = await fleet.technician.get("/api/v1/devices/spk-a-vulnerable")
        assert health.json()["status"] == "online"
    finally:
        service.settings = service.settings.model_copy(update={"degrade_vulnerable": None})
        await service.refresh()


async def test_a_reported_version_lands_on_the_device(fleet: Clients, hub: RunningHub) -> None:
    sink = hub.runtime.sink
    await sink.heartbeat(
        Heartbeat("aq-a-outdated", datetime.now(UTC), True, "test", {"firmware": "1.10.0"})
    )

    async def state() -> str | None:
        response = await fleet.technician.get("/api/v1/firmware/devices/aq-a-outdated")
        body = response.json()
        return body["state"] if body["version"] == "1.10.0" else None

    assert await eventually(state) == "current"


async def test_grafana_firmware_panel_says_what_the_api_says(
    fleet: Clients, hub: RunningHub, db: asyncpg.Connection
) -> None:
    """The device health dashboard's firmware panel, run as Grafana's read-only role after
    the hub's refresh, counts the same states per model and version as the API."""
    await hub.runtime.get(FIRMWARE).refresh()
    target = find_target("Firmware compliance by model")

    async def as_grafana(sql: str) -> list[asyncpg.Record]:
        async with db.transaction(readonly=True):
            await db.execute('SET LOCAL ROLE "iochub_grafana"')
            return await db.fetch(sql)

    variables = await resolve_variables(target.dashboard, as_grafana, {})
    request = target.request(variables, timedelta(minutes=10), timescaledb=False)
    rows = await as_grafana(expand(target.sql, request))
    panel = Counter(
        {(r["Model"], r["Firmware"], r["Compliance"], r["Severity"]): r["Devices"] for r in rows}
    )
    response = await fleet.admin.get("/api/v1/firmware/devices", params={"limit": 500})
    assert response.status_code == 200, response.text
    api = Counter(
        (d["model"], d["version"], d["state"], d["worst_severity"])
        for d in response.json()["items"]
    )
    assert panel == api
    assert panel[("IP Speaker S30", "2.3.1", "vulnerable", "high")] == 1
    # A device the refresh has not judged yet is said to be so, not left out.
    await db.execute(
        "INSERT INTO device (uid, kind, ward_id, name, vendor, model, firmware_version) "
        "SELECT 'spk-a-new', 'speaker', id, 'new', $1, $2, '2.4.1' FROM ward WHERE code = 'ward-a'",
        *S30,
    )
    rows = await as_grafana(expand(target.sql, request))
    assert [r["Devices"] for r in rows if r["Compliance"] == "not_assessed"] == [1]
