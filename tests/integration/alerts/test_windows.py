"""Rules with an active window, through the running hub: readings published over MQTT by a
device (the real ingest path), the hub's clock moved to the instants each test is about, the
window's alerts written with their outbox rows; and the rules API that stores the window.

The limits are QCVN 26:2010/BTNMT's for ordinary areas (70 dBA 06:00-21:00, 55 dBA
21:00-06:00). Each test picks its local instants on tomorrow's date, so it holds whatever
the hour of the run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiomqtt
import asyncpg
import pytest
import time_machine

from drivers.contract import Topics
from hub.alerts.engine import ALERT_ENGINE
from hub.health import HEALTH
from hub.telemetry import WRITER, Row
from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem
from tests.support.brokers import PrivateBroker
from tests.support.clock import LOCAL, clock_at
from tests.support.hub import RunningHub

UID = "noise-1"
NIGHT = {
    "name": "Tiếng ồn ban đêm vượt 55 dBA",
    "kind": "threshold",
    "severity": "warning",
    "scope": {"type": "device", "value": UID},
    "metric": "noise",
    "comparison": ">",
    "threshold": 55,
    "clear_threshold": 52,
    "window": {"start": "21:00", "end": "06:00"},
}
DAY = NIGHT | {
    "name": "Tiếng ồn ban ngày vượt 70 dBA",
    "threshold": 70,
    "clear_threshold": 67,
    "window": {"start": "06:00", "end": "21:00"},
}


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=LOCAL)


@pytest.fixture
def day() -> date:
    """Tomorrow's local date, taken before the clock moves."""
    return (datetime.now(LOCAL) + timedelta(days=1)).date()


@pytest.fixture
def traveller(day: date) -> Iterator[time_machine.Coordinates]:
    """The process clock, hub's and device's alike, ticking from where a test moves it."""
    with clock_at(local(day, 12, 0)) as moved:
        assert moved is not None
        yield moved


class Evaluated:
    """Readings whose batch the alert engine has been through: a hook after the engine's."""

    def __init__(self) -> None:
        self.times: set[datetime] = set()

    async def __call__(self, rows: Sequence[Row]) -> None:
        self.times.update(row[0] for row in rows)


@pytest.fixture
async def evaluated(hub: RunningHub) -> AsyncIterator[Evaluated]:
    hooks = hub.runtime.get(WRITER).on_stored
    recorder = Evaluated()
    hooks.append(recorder)
    yield recorder
    hooks.remove(recorder)


@pytest.fixture
async def noise_meter(
    clients: Clients, hub: RunningHub, broker: PrivateBroker, evaluated: Evaluated
) -> Callable[[float, datetime], Awaitable[None]]:
    made = await clients.admin.post(
        "/api/v1/devices", json={"uid": UID, "kind": "sensor", "ward": "ward-a"}
    )
    assert made.status_code == 201, made.text
    await hub.runtime.get(ALERT_ENGINE).refresh()

    async def publish(level: float, measured: datetime) -> None:
        """One reading as the sensor sends it, returned once the hub has evaluated it."""
        payload = {"ts": measured.astimezone(UTC).isoformat(), "readings": {"noise": level}}
        async with aiomqtt.Client(broker.host, broker.port) as device:
            await device.publish(
                Topics.for_device(UID, Topics.TELEMETRY), json.dumps(payload).encode(), qos=1
            )
        deadline = time.monotonic() + 10
        while measured.astimezone(UTC) not in evaluated.times:
            assert time.monotonic() < deadline, f"the reading of {measured} was not evaluated"
            await asyncio.sleep(0.02)

    return publish


async def alerts(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT rule_name, state, started_at, resolved_at, resolved_by, resolved_reason "
        "FROM alert ORDER BY id"
    )
    return [dict(r) for r in rows]


async def outbox(db: asyncpg.Connection) -> list[tuple[str, str, str | None]]:
    rows = await db.fetch("SELECT event_type, data FROM outbox ORDER BY id")
    return [
        (
            r["event_type"].rsplit(".", 1)[1],
            json.loads(r["data"])["rule"],
            json.loads(r["data"])["resolved_reason"],
        )
        for r in rows
    ]


async def test_the_night_rule_opens_at_night_and_not_by_day(
    traveller: time_machine.Coordinates,
    day: date,
    clients: Clients,
    db: asyncpg.Connection,
    noise_meter: Callable[[float, datetime], Awaitable[None]],
    hub: RunningHub,
) -> None:
    for rule in (NIGHT, DAY):
        made = await clients.technician.post("/api/v1/alert-rules", json=rule)
        assert made.status_code == 201, made.text
    # Noon: 62 dBA is within the day's 70, above the night's 55; the night rule is asleep.
    await noise_meter(62, local(day, 12, 0))
    assert await alerts(db) == []
    await noise_meter(75, local(day, 12, 1))
    [by_day] = await alerts(db)
    assert (by_day["rule_name"], by_day["state"]) == (DAY["name"], "firing")
    # 22:00: the day's window has closed (the periodic evaluation resolves its alert) and
    # the same 62 dBA now breaches the night's limit.
    traveller.move_to(local(day, 22, 0))
    await hub.runtime.get(HEALTH).tick()
    await noise_meter(62, local(day, 22, 0))
    by_day, at_night = await alerts(db)
    assert (by_day["state"], by_day["resolved_reason"]) == (
        "resolved",
        "active window 06:00-21:00 closed",
    )
    assert local(day, 22, 0) <= by_day["resolved_at"] < local(day, 22, 1)
    assert (at_night["rule_name"], at_night["state"]) == (NIGHT["name"], "firing")
    assert at_night["started_at"] == local(day, 22, 0)
    assert await outbox(db) == [
        ("firing", DAY["name"], None),
        ("resolved", DAY["name"], "active window 06:00-21:00 closed"),
        ("firing", NIGHT["name"], None),
    ]


async def test_for_seconds_counts_only_time_inside_the_window(
    traveller: time_machine.Coordinates,
    day: date,
    clients: Clients,
    db: asyncpg.Connection,
    noise_meter: Callable[[float, datetime], Awaitable[None]],
) -> None:
    made = await clients.technician.post("/api/v1/alert-rules", json=NIGHT | {"for_seconds": 300})
    assert made.status_code == 201, made.text
    traveller.move_to(local(day, 21, 4))
    # Loud since 20:58, but the five minutes count from the first reading inside the night.
    for measured in (local(day, 20, 58), local(day, 20, 59, 30), local(day, 21, 0, 30)):
        await noise_meter(61, measured)
    await noise_meter(61, local(day, 21, 4))  # six minutes loud, three and a half at night
    assert await alerts(db) == []
    pending = await db.fetchval("SELECT pending_since FROM alert_rule_state")
    assert pending == local(day, 21, 0, 30)
    traveller.move_to(local(day, 21, 6))
    await noise_meter(61, local(day, 21, 5, 40))
    [alert] = await alerts(db)
    assert alert["state"] == "firing" and alert["started_at"] == local(day, 21, 0, 30)


async def test_an_open_night_alert_resolves_when_the_window_closes(
    traveller: time_machine.Coordinates,
    day: date,
    clients: Clients,
    db: asyncpg.Connection,
    noise_meter: Callable[[float, datetime], Awaitable[None]],
    hub: RunningHub,
) -> None:
    made = await clients.technician.post("/api/v1/alert-rules", json=NIGHT)
    assert made.status_code == 201, made.text
    monitor = hub.runtime.get(HEALTH)
    morning = day + timedelta(days=1)
    traveller.move_to(local(morning, 5, 55))
    await noise_meter(62, local(morning, 5, 55))
    await noise_meter(53, local(morning, 5, 57))  # within the hysteresis: still open
    alert_id = await db.fetchval("SELECT id FROM alert WHERE state = 'firing'")
    assert alert_id is not None
    traveller.move_to(local(morning, 5, 59, 50))
    await monitor.tick()
    assert [a["state"] for a in await alerts(db)] == ["firing"]
    # 06:00: the night is over and so is its alert, with no reading needed to say so.
    traveller.move_to(local(morning, 6, 0, 5))
    await monitor.tick()
    shown = (await clients.viewer.get(f"/api/v1/alerts/{alert_id}")).json()
    assert shown["state"] == "resolved" and shown["resolved_by"] == "auto"
    assert shown["resolved_reason"] == "active window 21:00-06:00 closed"
    assert local(morning, 6, 0) <= datetime.fromisoformat(shown["resolved_at"])
    # The page in English, to read the words it says.
    page = await clients.viewer.get(f"/alerts/{alert_id}", headers={"cookie": "iochub_lang=en"})
    assert page.status_code == 200, page.text
    assert "by auto: active window 21:00-06:00 closed" in page.text
    # By day the same noise opens nothing.
    await noise_meter(62, local(morning, 6, 1))
    assert [a["state"] for a in await alerts(db)] == ["resolved"]
    assert await outbox(db) == [
        ("firing", NIGHT["name"], None),
        ("resolved", NIGHT["name"], "active window 21:00-06:00 closed"),
    ]
    # The next night it opens a new one.
    traveller.move_to(local(morning, 21, 0, 10))
    await noise_meter(62, local(morning, 21, 0, 10))
    assert [a["state"] for a in await alerts(db)] == ["resolved", "firing"]


async def test_a_window_is_created_read_patched_and_removed(
    clients: Clients, db: asyncpg.Connection
) -> None:
    made = await clients.technician.post(
        "/api/v1/alert-rules", json=NIGHT | {"scope": {"type": "all", "value": ""}}
    )
    assert made.status_code == 201, made.text
    rule = made.json()
    assert rule["window"] == {"start": "21:00", "end": "06:00", "days": []}
    url = f"/api/v1/alert-rules/{rule['id']}"
    assert (await clients.viewer.get(url)).json()["window"] == rule["window"]
    # RFC 7396: the window merges member by member.
    patched = await clients.technician.patch(
        url,
        content=json.dumps({"window": {"end": "05:00", "days": ["fri", "sat"]}}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["window"] == {"start": "21:00", "end": "05:00", "days": ["fri", "sat"]}
    stored = await db.fetchrow(
        "SELECT window_start::text, window_end::text, window_days FROM alert_rule WHERE id = $1",
        rule["id"],
    )
    assert tuple(stored) == ("21:00:00", "05:00:00", ["fri", "sat"])
    patched = await clients.technician.patch(url, json={"window": {"days": None}})
    assert patched.json()["window"] == {"start": "21:00", "end": "05:00", "days": []}
    # The merged rule is checked as a whole: the window the patch leaves must be valid.
    refused = assert_problem(
        await clients.technician.patch(url, json={"window": {"start": "05:00"}}), 422, "window.end"
    )
    assert "empty" in refused["errors"][0]["message"]
    assert_problem(
        await clients.technician.patch(url, json={"for_seconds": 8 * 3600}), 422, "for_seconds"
    )
    # null removes the window: the rule watches at every hour again.
    patched = await clients.technician.patch(url, json={"window": None})
    assert patched.status_code == 200 and patched.json()["window"] is None
    assert await db.fetchval(
        "SELECT window_start IS NULL AND window_days = '{}' FROM alert_rule WHERE id = $1",
        rule["id"],
    )
    # A patch that gives half a window to a rule without one is told what is missing.
    assert_problem(
        await clients.technician.patch(url, json={"window": {"end": "06:00"}}), 422, "window"
    )
    audits = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'rule.update' AND object_id = $1",
        str(rule["id"]),
    )
    assert audits == 3


@pytest.mark.parametrize(
    ("window", "field", "says"),
    [
        ({"start": "21:00", "end": "21:00"}, "window.end", "give an end other than its start"),
        ({"start": "9pm", "end": "06:00"}, "window.start", "write HH:MM"),
        ({"start": "21:00", "end": "25:00"}, "window.end", "from 00:00 to 23:59"),
        ({"start": "21:00", "end": "06:00", "days": ["mon", "funday"]}, "window.days[1]", "sun"),
    ],
)
async def test_a_bad_window_is_refused_with_what_to_fix(
    clients: Clients, db: asyncpg.Connection, window: dict[str, Any], field: str, says: str
) -> None:
    refused = await clients.technician.post(
        "/api/v1/alert-rules",
        json=NIGHT | {"scope": {"type": "all", "value": ""}, "window": window},
    )
    body = assert_problem(refused, 422, field)
    assert any(says in e["message"] for e in body["errors"] if e["field"] == field), body
    assert await db.fetchval("SELECT count(*) FROM alert_rule") == 0


async def test_a_window_of_the_wrong_shape_or_rule_is_refused(clients: Clients) -> None:
    everywhere = NIGHT | {"scope": {"type": "all", "value": ""}}
    missing = assert_problem(
        await clients.technician.post(
            "/api/v1/alert-rules", json=everywhere | {"window": {"start": "21:00"}}
        ),
        400,
        "window",
    )
    assert "missing required field `end`" in missing["detail"]
    # The window is in the hub's time zone (IOCHUB_ALERTS__TIMEZONE), not one per rule.
    unknown = assert_problem(
        await clients.technician.post(
            "/api/v1/alert-rules",
            json=everywhere | {"window": {"start": "21:00", "end": "06:00", "tz": "UTC"}},
        ),
        400,
        "window",
    )
    assert "unknown field `tz`" in unknown["detail"]
    offline = {
        "name": "offline at night",
        "kind": "offline",
        "severity": "major",
        "window": {"start": "21:00", "end": "06:00"},
    }
    assert_problem(
        await clients.technician.post("/api/v1/alert-rules", json=offline), 422, "window"
    )


async def test_a_dry_run_replays_the_window(
    traveller: time_machine.Coordinates,
    day: date,
    clients: Clients,
    noise_meter: Callable[[float, datetime], Awaitable[None]],
) -> None:
    traveller.move_to(local(day, 23, 0))
    # Loud from 20:50 to 21:20, quiet, then loud again at 22:30.
    for minute, level in ((50, 60), (55, 60), (60, 60), (65, 60), (80, 50), (150, 60)):
        await noise_meter(level, local(day, 20, 0) + timedelta(minutes=minute))
    run = await clients.viewer.post(
        "/api/v1/alert-rules/dry-run", json={"rule": NIGHT | {"for_seconds": 240}, "hours": 4}
    )
    assert run.status_code == 200, run.text
    events = [
        (datetime.fromisoformat(e["fired_at"]), datetime.fromisoformat(e["resolved_at"]))
        for e in run.json()["events"]
    ]
    # Not from 20:50: pending from 21:00, firing at 21:05, cleared at 21:20; 22:30 still pending.
    assert events == [(local(day, 21, 0), local(day, 21, 20))]
