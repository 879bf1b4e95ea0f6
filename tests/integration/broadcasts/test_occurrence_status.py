"""An occurrence's status tells the truth: it follows what each speaker reported, through
simulated speakers on the real broker; a finished broadcast cannot be cancelled."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem
from tests.support.broadcasts import (
    Speakers,
    first_occurrence,
    local_in,
    report_when,
    simulated,
    upload,
)
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

# Broadcasts seconds from now: the wards must have no quiet hours then, at any hour.
pytestmark = pytest.mark.usefixtures("awake_wards")

ORDER = ["planned", "dispatching", "playing", "completed"]


async def schedule(
    clients: Clients, audio: dict[str, Any], in_s: float, **extra: Any
) -> dict[str, Any]:
    created = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json={
            "title": "Bản tin sáng",
            "targets": {"wards": ["ward-a"]},
            "starts_at": local_in(in_s),
            "audio_asset_id": audio["id"],
            "volume": 70,
        }
        | extra,
    )
    assert created.status_code == 201, created.text
    return created.json()["broadcast"]  # type: ignore[no-any-return]


async def test_the_status_follows_the_speakers_from_planned_to_completed(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
) -> None:
    ward = speakers["ward-a"]
    async with simulated(hub, ward):
        # Sent at once (send_ahead_s is 10 s), starting 8 s later: every speaker has
        # received and downloaded it long before it plays.
        broadcast = await schedule(clients, jingle, 8.0)
        occurrence_id = await first_occurrence(clients.staff_a, broadcast["id"])
        seen: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            report = (
                await clients.staff_a.get(f"/api/v1/broadcasts/occurrences/{occurrence_id}")
            ).json()
            seen.append((time.time(), report))
            if report["status"] not in ("planned", "dispatching", "playing"):
                break
            await asyncio.sleep(0.1)
    start = datetime.fromisoformat(seen[-1][1]["start_at"]).timestamp()
    before_start = [r for at, r in seen if at < start - 0.2]
    # Everyone had answered well before the start, and still it was not over.
    assert any(r["summary"]["delivered"] == 3 for r in before_start)
    assert {r["status"] for r in before_start} <= {"planned", "dispatching"}
    assert all(r["summary"]["played"] == 0 for r in before_start)
    statuses = [r["status"] for _, r in seen]
    assert statuses[-1] == "completed", statuses
    assert "playing" in statuses
    order = [ORDER.index(s) for s in statuses]
    assert order == sorted(order)
    final = seen[-1][1]
    assert final["summary"]["finished"] == 3 and final["note"] == "3 of 3 speakers finished"


async def test_a_normal_broadcast_interrupted_by_an_emergency_reads_preempted(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, speakers: Speakers
) -> None:
    ward = speakers["ward-a"]
    long = await upload(clients.admin, tone(40.0, rate=8_000), name="dài")
    alarm = await upload(clients.admin, tone(2.0), name="báo động")
    async with simulated(hub, ward):
        broadcast = await schedule(clients, long.json(), 2.0)
        occurrence_id = await first_occurrence(clients.staff_a, broadcast["id"])
        await report_when(clients.staff_a, occurrence_id, lambda r: r["status"] == "playing")
        emergency = await clients.staff_a.post(
            "/api/v1/broadcasts/emergency",
            json={"title": "Báo cháy", "wards": ["ward-a"], "audio_asset_id": alarm.json()["id"]},
        )
        assert emergency.status_code == 201, emergency.text
        report = await report_when(
            clients.staff_a,
            occurrence_id,
            lambda r: r["status"] not in ("dispatching", "playing"),
            within_s=20,
        )
    assert report["status"] == "preempted", report
    assert report["summary"]["preempted"] == 3 and report["summary"]["finished"] == 0


async def test_cancelling_a_finished_broadcast_is_refused_and_changes_nothing(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
) -> None:
    ward = speakers["ward-a"]
    async with simulated(hub, ward):
        broadcast = await schedule(clients, jingle, 2.0)
        occurrence_id = await first_occurrence(clients.staff_a, broadcast["id"])
        await report_when(
            clients.staff_a, occurrence_id, lambda r: r["status"] == "completed", within_s=20
        )
    audited = await db.fetchval("SELECT count(*) FROM audit_log")
    refused = await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast['id']}")
    assert_problem(refused, 409)
    assert "has finished" in refused.json()["detail"]
    assert "ended completed" in refused.json()["detail"]
    after = (await clients.staff_a.get(f"/api/v1/broadcasts/{broadcast['id']}")).json()
    assert after["state"] == "active"
    report = (await clients.staff_a.get(f"/api/v1/broadcasts/occurrences/{occurrence_id}")).json()
    assert report["status"] == "completed"
    assert await db.fetchval("SELECT count(*) FROM audit_log") == audited


async def test_cancelling_twice_is_refused_the_second_time(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    broadcast = await schedule(clients, jingle, 3600.0)
    assert (await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast['id']}")).is_success
    audited = await db.fetchval("SELECT count(*) FROM audit_log")
    again = await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast['id']}")
    assert_problem(again, 409)
    assert "cancelled already, by staff-a" in again.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM audit_log") == audited
