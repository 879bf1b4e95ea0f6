"""Live updates: /events streams a device's status moves and alert changes, as PostgreSQL
notifies them in the transaction that wrote them, to people who may see them; bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from hub.alerts import lifecycle
from hub.health import HEALTH
from hub.web.live import LIVE
from tests.conftest import Clients
from tests.support.broadcasts import eventually
from tests.support.brokers import PrivateBroker
from tests.support.hub import RunningHub
from tests.support.hub_processes import HubProcess, hub_env


class Events:
    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, wanted: str, within_s: float = 10.0) -> dict[str, Any]:
        """The data of the next event of this type (others are skipped)."""
        event = ""
        async with asyncio.timeout(within_s):
            async for line in self.lines:
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == wanted:
                    data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                    return data
        raise AssertionError("the stream ended")


@asynccontextmanager
async def events(client: httpx.AsyncClient) -> AsyncIterator[Events]:
    async with client.stream("GET", "/events", timeout=30) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Events(response)
        await stream.next("hello")
        yield stream


async def register(clients: Clients, db: asyncpg.Connection, uid: str, ward: str) -> int:
    made = await clients.admin.post(
        "/api/v1/devices", json={"uid": uid, "kind": "speaker", "ward": ward}
    )
    assert made.status_code == 201, made.text
    return int(await db.fetchval("SELECT id FROM device WHERE uid = $1", uid))


async def test_a_status_move_reaches_those_who_see_its_ward(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    a = await register(clients, db, "live-a", "ward-a")
    b = await register(clients, db, "live-b", "ward-b")
    monitor = hub.runtime.get(HEALTH)
    until = datetime.now(UTC) + timedelta(hours=1)
    async with events(clients.technician) as everyone, events(clients.staff_a) as ward_a:
        # ward-b's move first: ward-a's staff must skip it and hear ward-a's only.
        await monitor.set_maintenance(b, until, "test")
        await monitor.set_maintenance(a, until, "test")
        seen = [await everyone.next("device"), await everyone.next("device")]
        assert [(e["uid"], e["status"]) for e in seen] == [
            ("live-b", "maintenance"),
            ("live-a", "maintenance"),
        ]
        mine = await ward_a.next("device")
        assert mine["uid"] == "live-a" and mine["from"] == "unknown"
        assert "ward_id" not in mine  # only what the page needs

        rule = await clients.technician.post(
            "/api/v1/alert-rules",
            json={"name": "Offline", "kind": "offline", "severity": "major"},
        )
        assert rule.status_code == 201, rule.text
        alert_id = await lifecycle.fire(
            hub.runtime.database.pool,
            lifecycle.NewAlert(
                rule.json()["id"], "Offline", a, None, "major", None, None, "gone", until
            ),
        )
        # An alert with no ward is for those serving every ward only.
        opened = await everyone.next("alert")
        assert opened == {
            "id": alert_id,
            "change": "firing",
            "device": "live-a",
            "state": "firing",
            "severity": "major",
        }
        ack = await clients.technician.post(f"/api/v1/alerts/{alert_id}/acknowledge")
        assert ack.status_code == 200, ack.text
        assert (await everyone.next("alert"))["change"] == "acknowledged"


async def test_an_alert_of_the_ward_reaches_its_staff(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    a = await register(clients, db, "live-a", "ward-a")
    ward_id = await db.fetchval("SELECT ward_id FROM device WHERE id = $1", a)
    rule = await clients.technician.post(
        "/api/v1/alert-rules", json={"name": "Offline", "kind": "offline", "severity": "minor"}
    )
    async with events(clients.staff_a) as ward_a:
        alert_id = await lifecycle.fire(
            hub.runtime.database.pool,
            lifecycle.NewAlert(
                rule.json()["id"],
                "Offline",
                a,
                ward_id,
                "minor",
                None,
                None,
                "gone",
                datetime.now(UTC),
            ),
        )
        assert (await ward_a.next("alert"))["id"] == alert_id


async def test_streams_need_a_login_and_are_bounded(hub: RunningHub, clients: Clients) -> None:
    anonymous = await clients.anonymous.get("/events")
    assert anonymous.status_code == 401
    feed = hub.runtime.get(LIVE)
    assert feed.listening.is_set()
    limit = feed.max_streams_per_user
    feed.max_streams_per_user = 1
    try:
        async with events(clients.viewer):
            assert len(feed.subscribers) == 1
            second = await clients.viewer.get("/events")
            assert second.status_code == 429
            assert second.headers["content-type"].startswith("application/problem+json")
        # A closed stream gives its place back.
        await eventually(lambda: not feed.subscribers, within_s=5)
        async with events(clients.viewer):
            pass
    finally:
        feed.max_streams_per_user = limit


async def test_a_change_written_by_one_replica_reaches_another_replicas_streams(
    hub: RunningHub,
    clients: Clients,
    db: asyncpg.Connection,
    database_url: str,
    broker: PrivateBroker,
    tokens: dict[str, str],
    tmp_path: Path,
) -> None:
    a = await register(clients, db, "live-a", "ward-a")
    other = HubProcess(
        "iochub-live-replica",
        hub_env(database_url, broker.port, tmp_path),
        tmp_path / "replica.log",
    )
    await other.start()
    try:
        async with (
            httpx.AsyncClient(
                base_url=other.base_url, headers={"authorization": f"Bearer {tokens['staff_a']}"}
            ) as replica,
            events(replica) as ward_a,
        ):
            # Written by this process's health monitor; heard through the other's LISTEN.
            until = datetime.now(UTC) + timedelta(hours=1)
            await hub.runtime.get(HEALTH).set_maintenance(a, until, "test")
            moved = await ward_a.next("device", within_s=15)
            assert moved["uid"] == "live-a" and moved["status"] == "maintenance"
    finally:
        await other.stop()
