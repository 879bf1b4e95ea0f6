"""Device health through the hub: heartbeats, silence, faults, maintenance, availability."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from drivers.contract import DeviceEvent, Heartbeat, Reading, UnknownDevice
from hub.health import HEALTH
from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem


@pytest.fixture
def state(hub: Any) -> Any:
    return hub.runtime


@pytest.fixture
async def fleet(clients: Clients, db: asyncpg.Connection) -> None:
    await db.execute(
        "TRUNCATE health_event, device_event, alert, alert_rule RESTART IDENTITY CASCADE"
    )
    for uid, kind, ward in (
        ("spk-1", "speaker", "ward-a"),
        ("aq-1", "sensor", "ward-a"),
        ("aq-2", "sensor", "ward-b"),
    ):
        response = await clients.admin.post(
            "/api/v1/devices", json={"uid": uid, "kind": kind, "ward": ward}
        )
        assert response.status_code == 201


async def status_of(db: asyncpg.Connection, uid: str) -> tuple[str, str]:
    row = await db.fetchrow("SELECT status, status_reason FROM device WHERE uid = $1", uid)
    return row["status"], row["status_reason"]


async def test_heartbeat_online_and_last_will_offline(
    state: Any, fleet: None, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await state.sink.heartbeat(Heartbeat("spk-1", now, True, "mqtt-status"))
    assert (await status_of(db, "spk-1"))[0] == "online"
    last_seen = await db.fetchval("SELECT last_seen FROM device WHERE uid = 'spk-1'")
    await state.sink.heartbeat(Heartbeat("spk-1", now + timedelta(seconds=5), False, "mqtt-lwt"))
    assert await status_of(db, "spk-1") == ("offline", "disconnected")
    # The Last Will is no activity: last_seen stays where the device last spoke.
    assert await db.fetchval("SELECT last_seen FROM device WHERE uid = 'spk-1'") == last_seen
    history = await db.fetch("SELECT from_status, to_status FROM health_event ORDER BY id")
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("unknown", "online"),
        ("online", "offline"),
    ]


async def test_a_fleet_of_heartbeats_is_taken_at_once_and_the_last_word_wins(
    state: Any, fleet: None, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    unknown = await state.sink.heartbeats(
        [
            Heartbeat("aq-1", now, True, "mqtt-status"),
            Heartbeat("nobody", now, True, "mqtt-status"),
            Heartbeat("spk-1", now, True, "mqtt-status"),
            Heartbeat("aq-2", now, True, "mqtt-status"),
            Heartbeat("aq-2", now + timedelta(seconds=1), False, "mqtt-status"),
        ]
    )
    assert unknown == ["nobody"]
    assert (await status_of(db, "aq-1"))[0] == "online"
    assert (await status_of(db, "spk-1"))[0] == "online"
    assert await status_of(db, "aq-2") == ("offline", "disconnected")
    history = await db.fetch(
        "SELECT d.uid, e.from_status, e.to_status FROM health_event e "
        "JOIN device d ON d.id = e.device_id ORDER BY d.uid"
    )
    assert [(h["uid"], h["from_status"], h["to_status"]) for h in history] == [
        ("aq-1", "unknown", "online"),
        ("aq-2", "unknown", "offline"),
        ("spk-1", "unknown", "online"),
    ]
    # Nothing new to say: no write, no event.
    assert await state.sink.heartbeats([Heartbeat("aq-1", now, True, "mqtt-status")]) == []
    assert await db.fetchval("SELECT count(*) FROM health_event") == 3


async def test_a_batch_of_events_is_kept_in_order_and_each_fault_takes_its_last_word(
    state: Any, fleet: None, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await state.sink.heartbeats(
        [Heartbeat("spk-1", now, True, "mqtt-status"), Heartbeat("aq-1", now, True, "x")]
    )
    unknown = await state.sink.events(
        [
            DeviceEvent("spk-1", now, "amplifier_fault", True),
            DeviceEvent("spk-1", now, "speaker_fault", True),
            DeviceEvent("nobody", now, "amplifier_fault", True),
            DeviceEvent("spk-1", now + timedelta(seconds=1), "amplifier_fault", False),
            DeviceEvent("aq-1", now, "tamper", True, {"source": "status"}),
            DeviceEvent("aq-1", now, "door_opened", True),
        ]
    )
    assert unknown == ["nobody"]
    faults = dict(await db.fetch("SELECT uid, faults FROM device WHERE uid IN ('spk-1', 'aq-1')"))
    assert faults == {"spk-1": ["speaker_fault"], "aq-1": ["tamper"]}
    assert await status_of(db, "spk-1") == ("degraded", "speaker_fault")
    kept = await db.fetch("SELECT kind, active, data FROM device_event ORDER BY id")
    assert [(r["kind"], r["active"]) for r in kept] == [
        ("amplifier_fault", True),
        ("speaker_fault", True),
        ("amplifier_fault", False),
        ("tamper", True),
        ("door_opened", True),
    ]
    # Clearing what is not set changes nothing.
    await state.sink.events([DeviceEvent("aq-1", now, "low_battery", False)])
    assert await db.fetchval("SELECT faults FROM device WHERE uid = 'aq-1'") == ["tamper"]


async def test_silence_makes_a_device_late_then_offline(
    state: Any, fleet: None, db: asyncpg.Connection
) -> None:
    monitor = state.get(HEALTH)
    await state.sink.readings([Reading("aq-1", "pm10", 20.0, datetime.now(UTC))], "test")
    assert (await status_of(db, "aq-1"))[0] == "online"
    assert await db.fetchval("SELECT last_data_at IS NOT NULL FROM device WHERE uid='aq-1'")
    real_clock = monitor.clock
    try:
        monitor.clock = lambda: real_clock() + timedelta(seconds=100)
        await monitor.tick()
        assert (await status_of(db, "aq-1"))[0] == "late"
        monitor.clock = lambda: real_clock() + timedelta(seconds=400)
        await monitor.tick()
        status, reason = await status_of(db, "aq-1")
        assert status == "offline" and reason.startswith("silent for")
    finally:
        monitor.clock = real_clock


async def test_two_assessments_at_once_record_one_transition(
    state: Any, fleet: None, db: asyncpg.Connection
) -> None:
    """The periodic tick beside a heartbeat's assessment (or two hub replicas) both see the
    device silent: only one of them moves it, and one health_event is written."""
    monitor = state.get(HEALTH)
    await state.sink.readings([Reading("aq-1", "pm10", 20.0, datetime.now(UTC))], "test")
    assert (await status_of(db, "aq-1"))[0] == "online"
    device_id = await db.fetchval("SELECT id FROM device WHERE uid = 'aq-1'")
    real_clock = monitor.clock
    try:
        monitor.clock = lambda: real_clock() + timedelta(seconds=400)
        await asyncio.gather(*(monitor.reassess([device_id]) for _ in range(4)))
        assert (await status_of(db, "aq-1"))[0] == "offline"
        moves = await db.fetch(
            "SELECT from_status, to_status FROM health_event "
            "WHERE device_id = $1 AND to_status = 'offline'",
            device_id,
        )
        assert [(m["from_status"], m["to_status"]) for m in moves] == [("online", "offline")]
    finally:
        monitor.clock = real_clock


async def test_faults_degrade_and_clear(state: Any, fleet: None, db: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    await state.sink.heartbeat(Heartbeat("spk-1", now, True, "mqtt-status"))
    await state.sink.event(
        DeviceEvent("spk-1", now, "amplifier_fault", True, {"detail": "no load"})
    )
    assert await status_of(db, "spk-1") == ("degraded", "amplifier_fault")
    await state.sink.event(DeviceEvent("spk-1", now, "amplifier_fault", False))
    assert (await status_of(db, "spk-1"))[0] == "online"
    await state.sink.readings([Reading("aq-1", "battery", 9.0, now)], "test")
    assert await status_of(db, "aq-1") == ("degraded", "low_battery")
    await state.sink.readings(
        [Reading("aq-1", "battery", 20.0, now + timedelta(seconds=1))], "test"
    )
    assert (await status_of(db, "aq-1"))[0] == "degraded"  # hysteresis: not yet recovered
    await state.sink.readings(
        [Reading("aq-1", "battery", 80.0, now + timedelta(seconds=2))], "test"
    )
    assert (await status_of(db, "aq-1"))[0] == "online"


async def test_unknown_devices_give_no_health(state: Any, fleet: None) -> None:
    with pytest.raises(UnknownDevice):
        await state.sink.heartbeat(Heartbeat("ghost", datetime.now(UTC), True, "mqtt-status"))


async def test_maintenance_through_the_api(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = await clients.technician.put(
        "/api/v1/devices/spk-1/maintenance", json={"until": until, "reason": "replacing horn"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "maintenance"
    assert_problem(
        await clients.viewer.put("/api/v1/devices/spk-1/maintenance", json={"until": until}), 403
    )
    assert_problem(
        await clients.technician.put(
            "/api/v1/devices/spk-1/maintenance", json={"until": "2020-01-01T00:00:00Z"}
        ),
        422,
        "until",
    )
    ended = await clients.technician.delete("/api/v1/devices/spk-1/maintenance")
    assert ended.json()["status"] == "unknown"
    health = (await clients.viewer.get("/api/v1/devices/spk-1/health")).json()
    assert [h["to_status"] for h in health["history"]] == ["unknown", "maintenance"]
    assert_problem(await clients.staff_a.get("/api/v1/devices/aq-2/health"), 404)


@pytest.mark.any_hour
async def test_ward_availability(
    state: Any, fleet: None, clients: Clients, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    ids = {r["uid"]: r["id"] for r in await db.fetch("SELECT uid, id FROM device")}
    await db.execute("UPDATE device SET created_at = $1", now - timedelta(hours=10))
    # spk-1 online the whole window; aq-1 online for 2 of the last 4 hours.
    await db.execute("UPDATE device SET status = 'online' WHERE uid IN ('spk-1', 'aq-1')")
    await db.executemany(
        "INSERT INTO health_event (device_id, at, from_status, to_status) VALUES ($1, $2, $3, $4)",
        [
            (ids["aq-1"], now - timedelta(hours=4), "unknown", "online"),
            (ids["aq-1"], now - timedelta(hours=2), "online", "offline"),
            (ids["spk-1"], now - timedelta(hours=6), "unknown", "online"),
        ],
    )
    await db.execute("UPDATE device SET status = 'offline' WHERE uid = 'aq-1'")
    rows = (await clients.viewer.get("/api/v1/health/availability", params={"hours": 4})).json()
    by_ward = {r["ward"]: r for r in rows}
    assert by_ward["ward-a"]["devices"] == 2
    assert by_ward["ward-a"]["percent"] == pytest.approx(75.0, abs=0.1)
    mine = (await clients.staff_a.get("/api/v1/health/availability")).json()
    assert [r["ward"] for r in mine] == ["ward-a"]
