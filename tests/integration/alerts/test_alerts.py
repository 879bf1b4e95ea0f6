"""Alerts end to end below the transport: rules through HTTP, readings through the sink,
alert changes written with their outbox rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from drivers.contract import Heartbeat, Reading
from hub.alerts.engine import ALERT_ENGINE
from hub.health import HEALTH
from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem

PM_RULE = {
    "name": "PM2.5 high",
    "kind": "threshold",
    "severity": "minor",
    "metric": "pm2_5",
    "comparison": ">",
    "threshold": 50,
    "clear_threshold": 40,
    "for_seconds": 60,
    "escalations": [{"threshold": 150, "severity": "critical"}],
    "message": "PM2.5 {value:.0f} at {device}",
}


@pytest.fixture
def state(hub: Any) -> Any:
    return hub.runtime


@pytest.fixture
async def fleet(clients: Clients, db: asyncpg.Connection, state: Any) -> None:
    await db.execute(
        "TRUNCATE alert, alert_rule, alert_rule_state, health_event, outbox "
        "RESTART IDENTITY CASCADE"
    )
    for uid, ward in (("aq-1", "ward-a"), ("aq-2", "ward-b")):
        assert (
            await clients.admin.post(
                "/api/v1/devices", json={"uid": uid, "kind": "sensor", "ward": ward}
            )
        ).status_code == 201
    await state.get(ALERT_ENGINE).refresh()


async def outbox(db: asyncpg.Connection) -> list[tuple[str, dict[str, Any]]]:
    rows = await db.fetch("SELECT event_type, data FROM outbox ORDER BY id")
    return [(r["event_type"].rsplit(".", 1)[1], json.loads(r["data"])) for r in rows]


async def feed(state: Any, uid: str, values: list[tuple[int, float]], start: datetime) -> None:
    for seconds, value in values:
        await state.sink.readings(
            [Reading(uid, "pm2_5", value, start + timedelta(seconds=seconds))], "test"
        )


async def test_threshold_alert_lifecycle(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    created = await clients.technician.post("/api/v1/alert-rules", json=PM_RULE)
    assert created.status_code == 201, created.text
    start = datetime.now(UTC) - timedelta(minutes=10)
    await feed(state, "aq-1", [(0, 60), (30, 70)], start)
    assert await db.fetchval("SELECT count(*) FROM alert") == 0  # pending, not yet 60 s
    await feed(state, "aq-1", [(61, 65)], start)
    alert = (await clients.viewer.get("/api/v1/alerts")).json()["items"][0]
    assert alert["state"] == "firing" and alert["severity"] == "minor"
    assert alert["message"] == "PM2.5 65 at aq-1" and alert["ward"] == "ward-a"
    assert alert["started_at"].startswith(start.isoformat()[:16])
    await feed(state, "aq-1", [(90, 45), (120, 200)], start)  # inside hysteresis, then worse
    assert (await clients.viewer.get(f"/api/v1/alerts/{alert['id']}")).json()[
        "severity"
    ] == "critical"
    ack = await clients.staff_a.post(f"/api/v1/alerts/{alert['id']}/acknowledge")
    assert ack.json()["state"] == "acknowledged" and ack.json()["acknowledged_by"] == "staff-a"
    assert_problem(await clients.staff_a.post(f"/api/v1/alerts/{alert['id']}/acknowledge"), 409)
    comment = await clients.technician.post(
        f"/api/v1/alerts/{alert['id']}/comments", json={"text": "crew sent"}
    )
    assert comment.status_code == 201
    assign = await clients.technician.post(
        f"/api/v1/alerts/{alert['id']}/assign", json={"assignee": "technician"}
    )
    assert assign.json()["assignee"] == "technician"
    await feed(state, "aq-1", [(150, 39)], start)
    resolved = (await clients.viewer.get(f"/api/v1/alerts/{alert['id']}")).json()
    assert resolved["state"] == "resolved" and resolved["resolved_by"] == "auto"
    changes = [kind for kind, _ in await outbox(db)]
    assert changes == [
        "firing",
        "severity_raised",
        "acknowledged",
        "commented",
        "assigned",
        "resolved",
    ]
    _, first = (await outbox(db))[0]
    assert (
        first["device_uid"] == "aq-1" and first["severity"] == "minor" and first["ward"] == "ward-a"
    )


async def test_one_alert_per_fingerprint_and_ward_scope(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post("/api/v1/alert-rules", json=PM_RULE | {"for_seconds": 0})
    start = datetime.now(UTC) - timedelta(minutes=5)
    await feed(state, "aq-1", [(0, 60), (1, 70), (2, 80)], start)
    await feed(state, "aq-2", [(0, 60)], start)
    assert await db.fetchval("SELECT count(*) FROM alert") == 2
    mine = (await clients.staff_a.get("/api/v1/alerts")).json()["items"]
    assert [a["device"] for a in mine] == ["aq-1"]
    other = await db.fetchval(
        "SELECT a.id FROM alert a JOIN device d ON d.id = a.device_id WHERE d.uid = 'aq-2'"
    )
    assert_problem(await clients.staff_a.get(f"/api/v1/alerts/{other}"), 404)
    assert_problem(await clients.staff_a.post(f"/api/v1/alerts/{other}/acknowledge"), 404)
    assert_problem(await clients.viewer.post(f"/api/v1/alerts/{other}/acknowledge"), 403)


async def test_ward_staff_read_only_the_rules_of_their_wards(
    fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    group = await clients.admin.post("/api/v1/groups", json={"name": "b-sensors", "ward": "ward-b"})
    assert group.status_code == 201, group.text
    scopes = {
        "everywhere": {"type": "all", "value": ""},
        "sensors": {"type": "kind", "value": "sensor"},
        "ward a": {"type": "ward", "value": "ward-a"},
        "ward b": {"type": "ward", "value": "ward-b"},
        "device b": {"type": "device", "value": "aq-2"},
        "group b": {"type": "group", "value": str(group.json()["id"])},
        "device a": {"type": "device", "value": "aq-1"},
    }
    ids = {}
    for name, scope in scopes.items():
        made = await clients.admin.post(
            "/api/v1/alert-rules", json=PM_RULE | {"name": name, "scope": scope}
        )
        assert made.status_code == 201, made.text
        ids[name] = made.json()["id"]
    listed = (await clients.staff_a.get("/api/v1/alert-rules")).json()
    assert [r["name"] for r in listed] == ["everywhere", "sensors", "ward a", "device a"]
    assert len((await clients.technician.get("/api/v1/alert-rules")).json()) == len(scopes)
    for name in ("ward b", "device b", "group b"):
        assert_problem(await clients.staff_a.get(f"/api/v1/alert-rules/{ids[name]}"), 404)
        assert (await clients.viewer.get(f"/api/v1/alert-rules/{ids[name]}")).status_code == 200
    assert (await clients.staff_a.get(f"/api/v1/alert-rules/{ids['ward a']}")).status_code == 200


async def test_patch_is_a_merge_patch(
    fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    made = await clients.technician.post(
        "/api/v1/alert-rules", json=PM_RULE | {"scope": {"type": "ward", "value": "ward-a"}}
    )
    rule = made.json()
    url = f"/api/v1/alert-rules/{rule['id']}"
    escalations = [
        {"threshold": 100, "severity": "major"},
        {"threshold": 200, "severity": "critical"},
    ]
    # RFC 7396: only what changes, sent as application/merge-patch+json.
    patched = await clients.technician.patch(
        url,
        content=json.dumps({"escalations": escalations}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["escalations"] == escalations
    unchanged = ("name", "kind", "severity", "metric", "threshold", "clear_threshold", "message")
    assert {k: body[k] for k in unchanged} == {k: rule[k] for k in unchanged}
    # Nested objects merge member by member; null resets a field to its default.
    patched = await clients.technician.patch(
        url, json={"scope": {"value": "ward-b"}, "message": None, "for_seconds": 5}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["scope"] == {"type": "ward", "value": "ward-b"}
    assert body["message"] == "" and body["for_seconds"] == 5 and body["escalations"] == escalations
    # The merged rule is checked as a whole: a clear threshold above the threshold is refused.
    refused = await clients.technician.patch(url, json={"clear_threshold": 60})
    assert assert_problem(refused, 422)
    assert_problem(await clients.technician.patch(url, json={"name": None}), 400)
    assert_problem(await clients.technician.patch(url, json={"bogus": 1}), 400)
    assert_problem(await clients.technician.patch("/api/v1/alert-rules/999999", json={}), 404)
    assert_problem(await clients.viewer.patch(url, json={"enabled": False}), 403)
    stored = await db.fetchrow("SELECT * FROM alert_rule WHERE id = $1", rule["id"])
    assert stored["clear_threshold"] == 40 and stored["scope_value"] == "ward-b"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'rule.update' AND object_id = $1",
            str(rule["id"]),
        )
        == 2
    )


async def test_pending_duration_survives_a_restart(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post("/api/v1/alert-rules", json=PM_RULE)
    start = datetime.now(UTC) - timedelta(minutes=10)
    await feed(state, "aq-1", [(0, 60)], start)
    assert await db.fetchval("SELECT count(*) FROM alert_rule_state") == 1
    state.get(ALERT_ENGINE).tracks.clear()  # what a restart loses from memory
    await state.get(ALERT_ENGINE).refresh()  # and reloads from the database
    await feed(state, "aq-1", [(70, 61)], start)
    assert await db.fetchval("SELECT count(*) FROM alert WHERE state = 'firing'") == 1


async def test_maintenance_silences_alerts(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post("/api/v1/alert-rules", json=PM_RULE | {"for_seconds": 0})
    await clients.technician.put(
        "/api/v1/devices/aq-1/maintenance",
        json={
            "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "reason": "calibration",
        },
    )
    await feed(state, "aq-1", [(0, 500)], datetime.now(UTC))
    assert await db.fetchval("SELECT count(*) FROM alert") == 0


async def test_offline_rule_fires_once_for_a_flapping_device(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post(
        "/api/v1/alert-rules",
        json={"name": "offline 2 min", "kind": "offline", "severity": "major", "for_seconds": 120},
    )
    monitor, engine = state.get(HEALTH), state.get(ALERT_ENGINE)
    real_clock = monitor.clock
    offset = timedelta(0)
    monitor.clock = lambda: real_clock() + offset
    try:
        for _ in range(4):
            now = monitor.clock()
            await state.sink.heartbeat(Heartbeat("aq-1", now, True, "mqtt-status"))
            await state.sink.heartbeat(Heartbeat("aq-1", now, False, "mqtt-lwt"))
            offset += timedelta(minutes=3)  # offline for three minutes
            await monitor.tick()
            await state.sink.heartbeat(Heartbeat("aq-1", monitor.clock(), True, "mqtt-status"))
            offset += timedelta(minutes=1)  # back for one minute only
            await monitor.tick()
        assert await db.fetchval("SELECT count(*) FROM alert") == 1
        assert await db.fetchval("SELECT state FROM alert") == "firing"
        offset += timedelta(minutes=5)
        await state.sink.heartbeat(Heartbeat("aq-1", monitor.clock(), True, "mqtt-status"))
        await monitor.tick()
        assert await db.fetchval("SELECT state FROM alert") == "resolved"
    finally:
        monitor.clock = real_clock
        engine.tracks.clear()


async def test_rule_validation_and_dry_run(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    before = await db.fetchval("SELECT count(*) FROM alert_rule")
    assert_problem(
        await clients.technician.post(
            "/api/v1/alert-rules", json=PM_RULE | {"clear_threshold": 60}
        ),
        422,
        "clear_threshold",
    )
    assert_problem(
        await clients.technician.post(
            "/api/v1/alert-rules", json=PM_RULE | {"scope": {"type": "ward", "value": "nowhere"}}
        ),
        422,
        "scope.value",
    )
    assert_problem(await clients.viewer.post("/api/v1/alert-rules", json=PM_RULE), 403)
    assert_problem(await clients.staff_a.post("/api/v1/alert-rules", json=PM_RULE), 403)
    assert await db.fetchval("SELECT count(*) FROM alert_rule") == before
    start = datetime.now(UTC) - timedelta(hours=2)
    await feed(
        state, "aq-1", [(0, 30), (60, 70), (200, 80), (400, 20), (500, 160), (700, 170)], start
    )
    run = await clients.viewer.post(
        "/api/v1/alert-rules/dry-run", json={"rule": PM_RULE, "hours": 3}
    )
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["readings"] == 6
    assert [(e["severity"], e["resolved_at"] is not None, e["peak"]) for e in body["events"]] == [
        ("minor", True, 80.0),
        ("critical", False, 170.0),
    ]
    assert await db.fetchval("SELECT count(*) FROM alert") == 0


async def test_every_lifecycle_action_is_audited_with_who_and_when(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post("/api/v1/alert-rules", json=PM_RULE | {"for_seconds": 0})
    await feed(state, "aq-1", [(0, 80)], datetime.now(UTC) - timedelta(minutes=1))
    alert_id = await db.fetchval("SELECT id FROM alert")
    before = datetime.now(UTC)
    assert (await clients.staff_a.post(f"/api/v1/alerts/{alert_id}/acknowledge")).is_success
    comment = await clients.technician.post(
        f"/api/v1/alerts/{alert_id}/comments", json={"text": "đội đã đến"}
    )
    assert comment.status_code == 201, comment.text
    assert (
        await clients.technician.post(
            f"/api/v1/alerts/{alert_id}/assign", json={"assignee": "technician"}
        )
    ).is_success
    assert (await clients.technician.post(f"/api/v1/alerts/{alert_id}/resolve")).is_success
    entries = await db.fetch(
        "SELECT action, actor, at, ward_id, after FROM audit_log "
        "WHERE object_type = 'alert' AND object_id = $1 ORDER BY id",
        str(alert_id),
    )
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("alert.acknowledge", "staff-a"),
        ("alert.comment", "technician"),
        ("alert.assign", "technician"),
        ("alert.resolve", "technician"),
    ]
    assert all(e["at"] >= before - timedelta(seconds=1) for e in entries)
    ward_a = await db.fetchval("SELECT id FROM ward WHERE code = 'ward-a'")
    assert {e["ward_id"] for e in entries} == {ward_a}
    said = json.loads(entries[1]["after"])
    assert said["text"] == "đội đã đến" and said["comment_id"] == comment.json()["id"]


async def test_a_breach_that_persists_after_a_manual_resolve_opens_a_new_alert(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post("/api/v1/alert-rules", json=PM_RULE | {"for_seconds": 20})
    start = datetime.now(UTC) - timedelta(minutes=5)
    await feed(state, "aq-1", [(0, 80), (21, 80)], start)
    first = await db.fetchval("SELECT id FROM alert WHERE state = 'firing'")
    resolved = await clients.technician.post(f"/api/v1/alerts/{first}/resolve")
    assert resolved.json()["state"] == "resolved", resolved.text
    at = datetime.fromisoformat(resolved.json()["resolved_at"])
    # Still 80 against 50: pending again from the resolve, for the rule's 20 s.
    await feed(state, "aq-1", [(1, 80), (15, 80)], at)
    assert await db.fetchval("SELECT count(*) FROM alert WHERE state <> 'resolved'") == 0
    assert await db.fetchval("SELECT pending_since FROM alert_rule_state") == at
    await feed(state, "aq-1", [(20, 80)], at)
    again = await db.fetch("SELECT id, started_at FROM alert WHERE state = 'firing'")
    assert len(again) == 1 and again[0]["id"] != first
    assert again[0]["started_at"] == at


async def test_a_manual_resolve_of_a_cleared_breach_raises_nothing_new(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post("/api/v1/alert-rules", json=PM_RULE | {"for_seconds": 20})
    start = datetime.now(UTC) - timedelta(minutes=5)
    await feed(state, "aq-1", [(0, 80), (21, 80)], start)
    first = await db.fetchval("SELECT id FROM alert WHERE state = 'firing'")
    at = datetime.fromisoformat(
        (await clients.technician.post(f"/api/v1/alerts/{first}/resolve")).json()["resolved_at"]
    )
    await feed(state, "aq-1", [(5, 30), (40, 30)], at)
    assert await db.fetchval("SELECT count(*) FROM alert") == 1
    assert await db.fetchval("SELECT count(*) FROM alert_rule_state") == 0


async def test_an_offline_alert_resolved_by_hand_returns_after_the_rule_duration(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post(
        "/api/v1/alert-rules",
        json={"name": "offline 2 min", "kind": "offline", "severity": "major", "for_seconds": 120},
    )
    monitor, engine = state.get(HEALTH), state.get(ALERT_ENGINE)
    real_clock = monitor.clock
    # Offline since three minutes ago; the resolve happens now, on the database's clock.
    offset = -timedelta(minutes=3)
    monitor.clock = lambda: real_clock() + offset
    try:
        await state.sink.heartbeat(Heartbeat("aq-1", monitor.clock(), True, "mqtt-status"))
        await state.sink.heartbeat(Heartbeat("aq-1", monitor.clock(), False, "mqtt-lwt"))
        offset = timedelta(0)
        await monitor.tick()
        first = await db.fetchval("SELECT id FROM alert WHERE state = 'firing'")
        assert first is not None
        assert (await clients.technician.post(f"/api/v1/alerts/{first}/resolve")).is_success
        await monitor.tick()  # still offline, but the 2 min count from the resolve
        assert await db.fetchval("SELECT count(*) FROM alert WHERE state <> 'resolved'") == 0
        offset += timedelta(minutes=2, seconds=1)
        await monitor.tick()
        again = await db.fetchval("SELECT id FROM alert WHERE state = 'firing'")
        assert again is not None and again != first
    finally:
        monitor.clock = real_clock
        engine.tracks.clear()


async def test_a_flapping_device_raises_one_flapping_alert_instead_of_one_per_transition(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.technician.post(
        "/api/v1/alert-rules",
        json={"name": "offline now", "kind": "offline", "severity": "major", "for_seconds": 0},
    )
    monitor, engine = state.get(HEALTH), state.get(ALERT_ENGINE)
    real_clock, real_settings, real_hold = (
        monitor.clock,
        monitor.settings,
        engine.health_resolve_hold,
    )
    monitor.settings = real_settings.model_copy(
        update={"flap_window_s": 60, "flap_enter_changes": 6, "flap_leave_changes": 2}
    )
    engine.health_resolve_hold = timedelta(0)  # every transition would be an alert change
    offset = timedelta(0)
    monitor.clock = lambda: real_clock() + offset
    try:
        # Connected and disconnected every 3 s for 60 s: 20 transitions.
        for n in range(20):
            await state.sink.heartbeat(Heartbeat("aq-1", monitor.clock(), n % 2 == 1, "mqtt"))
            await monitor.tick()
            offset += timedelta(seconds=3)
        health = (await clients.technician.get("/api/v1/devices/aq-1/health")).json()
        assert health["status"] == "flapping", health
        assert health["reason"] == "20 state changes in 60 s; now online", health["reason"]
        assert health["assessed_status"] == "online" and health["flapping_since"]
        offline_alerts = await db.fetchval("SELECT count(*) FROM alert WHERE rule_id IS NOT NULL")
        # Only the transitions before flapping was seen (6 changes: 3 disconnects).
        assert offline_alerts == 3
        flapping = await db.fetch("SELECT * FROM alert WHERE rule_name = 'flapping'")
        assert len(flapping) == 1 and flapping[0]["state"] == "firing"
        assert "flapping" in flapping[0]["message"]
        # Quiet for longer than the window: it stops flapping, its alert resolves.
        offset += timedelta(seconds=61)
        await state.sink.heartbeat(Heartbeat("aq-1", monitor.clock(), True, "mqtt"))
        await monitor.tick()
        health = (await clients.technician.get("/api/v1/devices/aq-1/health")).json()
        assert health["status"] == "online" and health["flapping_since"] is None
        assert await db.fetchval("SELECT state FROM alert WHERE rule_name = 'flapping'") == (
            "resolved"
        )
        changes = [kind for kind, data in await outbox(db) if data["rule"] == "flapping"]
        assert changes == ["firing", "resolved"]
    finally:
        monitor.clock, monitor.settings = real_clock, real_settings
        engine.health_resolve_hold = real_hold
        engine.tracks.clear()
