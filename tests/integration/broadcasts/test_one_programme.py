"""One programme per ward (Circular 39/2020/TT-BTTTT): a higher priority wins on every
speaker at once, the lower one gives way as the preview said; tested with a fleet of
simulated speakers on the real broker, at the same instant, and with two racing requests."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import Clients
from tests.support.broadcasts import (
    by_speaker,
    first_occurrence,
    register_speakers,
    report_when,
    simulated,
    upload,
)
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

# Broadcasts seconds from now: the wards must have no quiet hours then, at any hour.
pytestmark = pytest.mark.usefixtures("awake_wards")

WARD_SIZE = 34
OVER = ("completed", "partially_failed", "failed", "preempted", "cancelled", "missed", "skipped")


def body(audio: dict[str, Any], at: datetime, priority: str, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "targets": {"wards": ["ward-a"]},
        "starts_at": at.isoformat(),
        "audio_asset_id": audio["id"],
        "volume": 70,
        "priority": priority,
    }


async def outcome(client: Any, broadcast_id: int, within_s: float = 30) -> dict[str, Any]:
    occurrence_id = await first_occurrence(client, broadcast_id, within_s=within_s)
    return await report_when(client, occurrence_id, lambda r: r["status"] in OVER, within_s)


def assert_won_everywhere(report: dict[str, Any], uids: list[str]) -> None:
    assert report["status"] == "completed", report["note"]
    assert sorted(by_speaker(report)) == sorted(uids)
    assert report["summary"]["finished"] == len(uids)
    assert report["summary"]["failures"] == {}


def assert_gave_way_everywhere(report: dict[str, Any], uids: list[str]) -> None:
    assert report["status"] == "preempted", report["note"]
    speakers = by_speaker(report)
    assert sorted(speakers) == sorted(uids)
    assert {s["state"] for s in speakers.values()} == {"preempted"}
    assert all(s["started_at"] is None for s in speakers.values())


async def test_a_priority_bulletin_takes_the_whole_ward_from_a_normal_one_at_its_time(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, jingle: dict[str, Any]
) -> None:
    uids = (await register_speakers(db, {"ward-a": WARD_SIZE}))["ward-a"]
    # Both claimed at once (prepare_s 15 s) and sent at the same instant (send_ahead_s
    # 10 s before the start): the two dispatch decisions race for the ward.
    at = datetime.now().astimezone() + timedelta(seconds=13)
    async with simulated(hub, uids):
        normal = await clients.staff_a.post(
            "/api/v1/broadcasts", json=body(jingle, at, "normal", "Chương trình thường")
        )
        assert normal.status_code == 201, normal.text
        ahead = body(jingle, at, "priority", "Bản tin ưu tiên")
        preview = await clients.staff_a.post("/api/v1/broadcasts/conflicts", json=ahead)
        [foreseen] = preview.json()["conflicts"]
        assert foreseen["resolution"] == "preempts"
        assert foreseen["speaker_count"] == WARD_SIZE
        priority = await clients.staff_a.post("/api/v1/broadcasts", json=ahead)
        assert priority.status_code == 201, priority.text
        assert [c["resolution"] for c in priority.json()["plan"]["conflicts"]] == ["preempts"]
        won = await outcome(clients.staff_a, priority.json()["broadcast"]["id"])
        gave_way = await outcome(clients.staff_a, normal.json()["broadcast"]["id"])
    assert_won_everywhere(won, uids)
    assert_gave_way_everywhere(gave_way, uids)
    assert "gave way" in gave_way["note"] and "higher priority" in gave_way["note"]


async def test_a_priority_bulletin_stops_a_normal_programme_already_playing(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, jingle: dict[str, Any]
) -> None:
    uids = (await register_speakers(db, {"ward-a": WARD_SIZE}))["ward-a"]
    long = (await upload(clients.admin, tone(40.0, rate=8_000), name="dài")).json()
    async with simulated(hub, uids) as fleet:
        normal = await clients.staff_a.post(
            "/api/v1/broadcasts",
            json=body(long, datetime.now().astimezone() + timedelta(seconds=2), "normal", "A"),
        )
        assert normal.status_code == 201, normal.text
        normal_id = await first_occurrence(clients.staff_a, normal.json()["broadcast"]["id"])
        await report_when(clients.staff_a, normal_id, lambda r: r["summary"]["played"] == WARD_SIZE)
        priority = await clients.staff_a.post(
            "/api/v1/broadcasts",
            json=body(jingle, datetime.now().astimezone() + timedelta(seconds=1), "priority", "B"),
        )
        assert priority.status_code == 201, priority.text
        won = await outcome(clients.staff_a, priority.json()["broadcast"]["id"])
        gave_way = await report_when(
            clients.staff_a, normal_id, lambda r: r["status"] in OVER, within_s=20
        )
        assert all(fleet.speaker(uid).playing is None for uid in uids)
    assert_won_everywhere(won, uids)
    assert gave_way["status"] == "preempted", gave_way["note"]
    assert {s["state"] for s in gave_way["speakers"]} == {"preempted"}
    # Every speaker stopped the normal programme before the priority one started.
    bulletin = by_speaker(won)
    for uid, row in by_speaker(gave_way).items():
        assert row["preempted_at"] <= bulletin[uid]["started_at"]


async def test_two_requests_racing_for_one_ward_never_split_it(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, jingle: dict[str, Any]
) -> None:
    uids = (await register_speakers(db, {"ward-a": WARD_SIZE}))["ward-a"]
    at = datetime.now().astimezone() + timedelta(seconds=6)
    async with simulated(hub, uids):
        normal, priority = await asyncio.gather(
            clients.staff_a.post("/api/v1/broadcasts", json=body(jingle, at, "normal", "A")),
            clients.admin.post("/api/v1/broadcasts", json=body(jingle, at, "priority", "B")),
        )
        assert normal.status_code == priority.status_code == 201, (normal.text, priority.text)
        # Whichever was saved second saw the first: never both at their time.
        normal_plan = normal.json()["plan"]
        priority_plan = priority.json()["plan"]
        shifted = normal_plan["occurrences"][0]["shifted_from"] is not None
        if shifted:
            assert [c["resolution"] for c in normal_plan["conflicts"]] == ["placed_after"]
            assert priority_plan["conflicts"] == []
        else:
            assert normal_plan["conflicts"] == []
            assert [c["resolution"] for c in priority_plan["conflicts"]] == ["preempts"]
        won = await outcome(clients.staff_a, priority.json()["broadcast"]["id"])
        other = await outcome(clients.staff_a, normal.json()["broadcast"]["id"])
    assert_won_everywhere(won, uids)
    if shifted:
        assert_won_everywhere(other, uids)
        bulletin = by_speaker(won)
        for uid, row in by_speaker(other).items():
            assert row["started_at"] > bulletin[uid]["finished_at"]
    else:
        assert_gave_way_everywhere(other, uids)
