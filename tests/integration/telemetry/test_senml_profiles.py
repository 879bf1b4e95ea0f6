"""SenML as real devices send it, through the running hub: MQTT and CoAP (OSCORE), profiles.

The packs are RFC 8428's own examples (section 5.1), resolved as the RFC resolves them.
Their base times are from 2010 and 2011; the hub refuses readings older than its age
limit, so each test moves ``bt`` to a few minutes ago and keeps every ``t`` as written.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiocoap
import aiomqtt
import asyncpg
import pytest

from drivers.contract import Topics
from drivers.sensors.oscore import OscoreKeyMaterial, device_context
from hub.devices import parse_profile, save_profile
from tests.conftest import Clients
from tests.integration.coap.conftest import Endpoint, post_as
from tests.support.brokers import PrivateBroker
from tests.support.hub import RunningHub
from tests.support.senml import MULTIPLE_MEASUREMENTS_SERIES, SERIES_SERIAL

SERIAL = "10e2073a01080063"
URN = f"urn:dev:ow:{SERIAL}"

# RFC 8428 section 5.1, "Single Datapoint".
SINGLE_DATAPOINT = [{"n": URN, "u": "Cel", "v": 23.1}]
# RFC 8428 section 5.1, "Multiple Datapoints".
MULTIPLE_DATAPOINTS = [
    {"bn": f"{URN}:", "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "u": "A", "v": 1.2},
]
# RFC 8428 section 5.1, "Multiple Measurements" (the second example, without names).
MULTIPLE_MEASUREMENTS = [
    {"bn": f"{URN}:", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
    {"u": "lon", "v": 24.30621},
    {"u": "lat", "v": 60.07965},
    {"t": 60, "v": 20.3},
    {"u": "lon", "t": 60, "v": 24.30622},
    {"u": "lat", "t": 60, "v": 60.07965},
    {"t": 120, "v": 20.7},
    {"u": "lon", "t": 120, "v": 24.30623},
    {"u": "lat", "t": 120, "v": 60.07966},
    {"u": "%EL", "t": 150, "v": 98},
    {"t": 180, "v": 21.2},
    {"u": "lon", "t": 180, "v": 24.30628},
    {"u": "lat", "t": 180, "v": 60.07967},
]
# RFC 8428 section 5.1: the data of "Multiple Measurements" (tests.support.senml) as
# "Resolved Data".
RESOLVED_DATA = [
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:voltage", "u": "V", "v": 120.1, "t": 1.276020076001e09},
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:current", "u": "A", "v": 1.2, "t": 1.276020071001e09},
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:current", "u": "A", "v": 1.3, "t": 1.276020072001e09},
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:current", "u": "A", "v": 1.4, "t": 1.276020073001e09},
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:current", "u": "A", "v": 1.5, "t": 1.276020074001e09},
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:current", "u": "A", "v": 1.6, "t": 1.276020075001e09},
    {"n": f"urn:dev:ow:{SERIES_SERIAL}:current", "u": "A", "v": 1.7, "t": 1.276020076001e09},
]
# RFC 8428 section 5.1, "Multiple Data Types".
MULTIPLE_DATA_TYPES = [
    {"bn": f"{URN}:", "n": "temperature", "u": "Cel", "v": 23.1},
    {"n": "label", "vs": "Machine Room"},
    {"n": "open", "vb": False},
    {"n": "nfc-reader", "vd": "aGkgCg"},
]


def recent(pack: list[dict[str, Any]], seconds_ago: float = 240) -> bytes:
    """The pack with its times moved to a few minutes ago (module docstring): ``bt``, or
    in a resolved pack every absolute ``t`` by the same amount."""
    moved = [dict(record) for record in pack]
    base = round(time.time() - seconds_ago, 3)
    shift = None
    for record in moved:
        if "bt" in record:
            record["bt"] = base
        elif record.get("t", 0) >= 2**28:
            shift = shift if shift is not None else base - record["t"]
            record["t"] = round(record["t"] + shift, 3)
    return json.dumps(moved).encode()


@pytest.fixture
async def devices(clients: Clients, hub: RunningHub) -> dict[str, str]:
    """A generic RFC 8428 sensor known by its serial, a demo station, a plain sensor."""
    for body in (
        {"uid": "gen-1", "model": "RFC 8428 sensor", "serial": SERIAL},
        {"uid": "gen-2", "model": "RFC 8428 sensor", "serial": SERIES_SERIAL},
        {"uid": "aqm-1", "model": "AQM-65", "serial": "0024befffe804ff1"},
        {"uid": "plain-1"},
    ):
        response = await clients.admin.post(
            "/api/v1/devices", json={"kind": "sensor", "ward": "ward-a", **body}
        )
        assert response.status_code == 201, response.text
    return {"generic": "gen-1", "series": "gen-2", "demo": "aqm-1", "plain": "plain-1"}


async def publish(broker: PrivateBroker, uid: str, *payloads: bytes) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as device:
        for payload in payloads:
            await device.publish(Topics.for_device(uid, Topics.TELEMETRY), payload, qos=1)


async def numbers(db: asyncpg.Connection, uid: str) -> list[tuple[str, float]]:
    rows = await db.fetch(
        "SELECT metric, value FROM reading r JOIN device d ON d.id = r.device_id "
        "WHERE d.uid = $1 ORDER BY time, metric",
        uid,
    )
    return [(r["metric"], round(r["value"], 5)) for r in rows]


async def values(db: asyncpg.Connection, uid: str) -> list[tuple[str, Any]]:
    rows = await db.fetch(
        "SELECT metric, coalesce(to_jsonb(text_value), to_jsonb(bool_value), "
        "to_jsonb(encode(data_value, 'escape'))) AS value FROM reading_value v "
        "JOIN device d ON d.id = v.device_id WHERE d.uid = $1 ORDER BY metric",
        uid,
    )
    return [(r["metric"], json.loads(r["value"])) for r in rows]


async def reasons(db: asyncpg.Connection, uid: str) -> list[str]:
    rows = await db.fetch("SELECT reason FROM quarantine WHERE device_uid = $1 ORDER BY id", uid)
    return [r["reason"] for r in rows]


async def until(check: Any, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_rfc_8428_examples_over_mqtt_are_stored_through_the_generic_profile(
    devices: dict[str, str], broker: PrivateBroker, db: asyncpg.Connection, clients: Clients
) -> None:
    uid = devices["generic"]
    await publish(broker, uid, json.dumps(SINGLE_DATAPOINT).encode())
    assert await until(lambda: numbers(db, uid)) == [("temperature", 23.1)]
    await db.execute("TRUNCATE reading, reading_latest")
    await publish(broker, uid, json.dumps(MULTIPLE_DATAPOINTS).encode())
    stored = await until(lambda: numbers(db, uid))
    assert sorted(stored) == [("current", 1.2), ("voltage", 120.1)]
    await db.execute("TRUNCATE reading, reading_latest")
    await publish(broker, uid, recent(MULTIPLE_MEASUREMENTS))

    async def all_thirteen() -> list[tuple[str, float]]:
        found = await numbers(db, uid)
        return found if len(found) == 13 else []

    stored = await until(all_thirteen)
    assert [value for metric, value in stored if metric == "humidity"] == [20, 20.3, 20.7, 21.2]
    assert [value for metric, value in stored if metric == "raw/lat"][:2] == [60.07965, 60.07965]
    assert ("battery", 98) in stored and ("raw/lon", 24.30628) in stored
    # Raw names are the device's own: stored, but no part of the ward's summary.
    summary = (await clients.viewer.get("/api/v1/telemetry/wards")).json()
    [ward_a] = [w for w in summary if w["ward"] == "ward-a"]
    assert {m["metric"] for m in ward_a["metrics"]} == {"humidity", "battery"}
    await publish(broker, uid, json.dumps(MULTIPLE_DATA_TYPES).encode())
    assert await until(lambda: values(db, uid)) == [
        ("door_open", False),
        ("raw/label", "Machine Room"),
        ("tag_data", "hi \n"),
    ]
    assert await reasons(db, uid) == []


async def timed(db: asyncpg.Connection, uid: str) -> list[tuple[str, float, float]]:
    rows = await db.fetch(
        "SELECT metric, value, extract(epoch FROM time)::float8 AS at FROM reading r "
        "JOIN device d ON d.id = r.device_id WHERE d.uid = $1 ORDER BY time, metric",
        uid,
    )
    return [(r["metric"], round(r["value"], 5), r["at"]) for r in rows]


@pytest.mark.parametrize(
    "pack", [MULTIPLE_MEASUREMENTS_SERIES, RESOLVED_DATA], ids=["base", "resolved"]
)
async def test_rfc_8428_series_and_its_resolved_form_store_the_same_readings(
    devices: dict[str, str], broker: PrivateBroker, db: asyncpg.Connection, pack: Any
) -> None:
    uid = devices["series"]
    await publish(broker, uid, recent(pack))

    async def seven() -> list[tuple[str, float, float]]:
        found = await timed(db, uid)
        return found if len(found) == 7 else []

    stored = await until(seven)
    assert [(metric, value) for metric, value, _ in stored] == [
        ("current", 1.2),
        ("current", 1.3),
        ("current", 1.4),
        ("current", 1.5),
        ("current", 1.6),
        ("current", 1.7),
        ("voltage", 120.1),
    ]
    # One second apart, the last current at the voltage's time (RFC 8428 section 4.6).
    times = [at for _, _, at in stored]
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [1.0] * 5 + [0.0]
    assert await reasons(db, uid) == []


async def test_rfc_8428_examples_over_coap_are_answered_2_04_once_stored(
    devices: dict[str, str], clients: Clients, hub: RunningHub, db: asyncpg.Connection
) -> None:
    uid = devices["generic"]
    response = await clients.admin.post(f"/api/v1/devices/{uid}/coap-credentials")
    assert response.status_code == 201, response.text
    security = device_context(OscoreKeyMaterial.from_json(response.json()), uid)
    endpoint = Endpoint(hub.settings.coap.port)
    context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    try:
        for pack in (SINGLE_DATAPOINT, MULTIPLE_DATAPOINTS, MULTIPLE_DATA_TYPES):
            answer = await post_as(context, endpoint, uid, security, recent(pack))
            assert str(answer.code) == "2.04 Changed", answer.payload
        # Not all stored: a name of another device's serial. 4.22, and the stored part stays.
        spoofed = [
            {"bn": f"{URN}:", "n": "humidity", "u": "%RH", "v": 71},
            {"bn": "urn:dev:ow:ffffffffffffffff:", "n": "humidity", "u": "%RH", "v": 72},
        ]
        answer = await post_as(context, endpoint, uid, security, json.dumps(spoofed).encode())
        assert str(answer.code) == "4.22 Unprocessable Entity"
        assert answer.payload.decode() == (
            "stored 1 of 2 readings; not stored: payload claims device "
            "'urn:dev:ow:ffffffffffffffff' on device 'gen-1''s resource"
        )
        # Not valid SenML at all (RFC 8428 section 4.2): 4.00, nothing stored.
        invalid = [{"bn": f"{URN}:", "n": "temperature", "u": "Cel", "v": 23.1, "vs": "23.1"}]
        answer = await post_as(context, endpoint, uid, security, json.dumps(invalid).encode())
        assert str(answer.code) == "4.00 Bad Request"
        assert "exactly one value field" in answer.payload.decode()
    finally:
        await context.shutdown()
    assert sorted(await numbers(db, uid)) == [
        ("current", 1.2),
        ("humidity", 71.0),
        ("temperature", 23.1),  # "Single Datapoint", told by its unit
        ("temperature", 23.1),  # "Multiple Data Types"
        ("voltage", 120.1),
    ]
    assert [metric for metric, _ in await values(db, uid)] == ["door_open", "raw/label", "tag_data"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # RFC 8428 section 4.2: one value field per record.
        (b'[{"n": "pm2_5", "u": "ug/m3", "v": 35.2, "vs": "35.2"}]', "carries v and vs"),
        (b'[{"n": "humidity", "vb": true, "v": 81}]', "carries v and vb"),
        # Section 4.4: one version per pack.
        (b'[{"bver": 10, "n": "pm2_5", "v": 35.2}, {"bver": 8, "n": "pm10", "v": 51}]', "differs"),
        # Section 5: lower-case exponents.
        (b'[{"n": "pm2_5", "u": "ug/m3", "v": 3.52E1}]', "upper-case exponent"),
    ],
)
async def test_rfc_must_reject_rules_hold_for_catalog_names_over_mqtt(
    devices: dict[str, str],
    broker: PrivateBroker,
    db: asyncpg.Connection,
    payload: bytes,
    reason: str,
) -> None:
    uid = devices["plain"]
    await publish(broker, uid, payload, json.dumps([{"n": "noise", "v": 55}]).encode())
    assert await until(lambda: numbers(db, uid)) == [("noise", 55.0)]
    [kept] = await until(lambda: reasons(db, uid))
    assert reason in kept


async def test_unmapped_names_are_quarantined_under_a_quarantine_profile(
    devices: dict[str, str], broker: PrivateBroker, db: asyncpg.Connection
) -> None:
    uid = devices["demo"]
    pack = [
        {"bn": "urn:dev:mac:0024befffe804ff1:", "n": "pm25", "v": 35.2},
        {"n": "rh", "v": 81},
        {"n": "firmwareBuild", "v": 12},
    ]
    await publish(broker, uid, json.dumps(pack).encode())
    assert await until(lambda: reasons(db, uid)) == [
        "SenML name 'firmwareBuild' (unit None) is not in the catalog nor profile 'AQM-65'"
    ]
    assert sorted(await until(lambda: numbers(db, uid))) == [("humidity", 81.0), ("pm2_5", 35.2)]


async def test_an_imported_profile_maps_a_new_models_names(
    devices: dict[str, str],
    clients: Clients,
    broker: PrivateBroker,
    db: asyncpg.Connection,
    hub: RunningHub,
) -> None:
    profile = parse_profile(
        json.dumps(
            {
                "model": "Acme TH-2",
                "identities": ["urn:dev:mac:{serial}:"],
                "names": {"tempF": {"metric": "temperature", "unit": "degF"}},
                "unmapped": "raw",
            }
        )
    )
    await save_profile(db, profile)
    ingest = hub.runtime.sink.telemetry
    await ingest.profiles.refresh(db)
    try:
        response = await clients.admin.post(
            "/api/v1/devices",
            json={
                "uid": "acme-1",
                "kind": "sensor",
                "ward": "ward-a",
                "model": "Acme TH-2",
                "serial": "00aa",
            },
        )
        assert response.status_code == 201, response.text
        pack = [{"bn": "urn:dev:mac:00aa:", "n": "tempF", "v": 86}, {"n": "uptime", "v": 7}]
        await publish(broker, "acme-1", json.dumps(pack).encode())

        async def both() -> list[tuple[str, float]]:
            found = await numbers(db, "acme-1")
            return found if len(found) == 2 else []

        assert sorted(await until(both)) == [("raw/uptime", 7.0), ("temperature", 30.0)]
    finally:
        await db.execute("TRUNCATE device_profile")
        await ingest.profiles.refresh(db)


async def test_backfill_beyond_the_age_limit_needs_the_devices_allowance(
    devices: dict[str, str], clients: Clients, broker: PrivateBroker, db: asyncpg.Connection
) -> None:
    uid = devices["plain"]
    week_ago = datetime.now(UTC) - timedelta(days=8)
    old = json.dumps({"ts": week_ago.isoformat(), "readings": {"pm2_5": 40.0}}).encode()
    await publish(broker, uid, old)
    [kept] = await until(lambda: reasons(db, uid))
    assert (
        "is 8.0 days old (at most 7 days allowed; the device is not configured for backfill)"
        in kept
    )
    response = await clients.admin.patch(f"/api/v1/devices/{uid}", json={"backfill_days": 10})
    assert response.status_code == 200, response.text
    assert response.json()["backfill_days"] == 10
    await publish(broker, uid, old)
    assert await until(lambda: numbers(db, uid)) == [("pm2_5", 40.0)], await reasons(db, uid)
