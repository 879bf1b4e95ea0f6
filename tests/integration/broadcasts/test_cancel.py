"""Cancelling a broadcast stops what it is playing, and what has not gone out stays quiet."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import Clients
from tests.support.broadcasts import (
    Speakers,
    eventually,
    first_occurrence,
    local_in,
    report_when,
    simulated,
    upload,
)
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

# These play broadcasts seconds from now: the wards must have no quiet hours then.
pytestmark = pytest.mark.usefixtures("awake_wards")


async def long_announcement(clients: Clients) -> dict[str, Any]:
    response = await upload(clients.admin, tone(40.0, rate=8_000), name="dài")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def schedule(
    clients: Clients, audio: dict[str, Any], in_s: float, targets: dict[str, Any]
) -> int:
    created = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json={
            "title": "Nhầm thông báo",
            "targets": targets,
            "starts_at": local_in(in_s),
            "audio_asset_id": audio["id"],
            "volume": 70,
        },
    )
    assert created.status_code == 201, created.text
    return created.json()["broadcast"]["id"]  # type: ignore[no-any-return]


async def test_cancelling_stops_every_speaker_that_plays_it(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, speakers: Speakers
) -> None:
    ward = speakers["ward-a"]
    audio = await long_announcement(clients)
    async with simulated(hub, ward, without_groups=ward[:1]) as fleet:
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) = 2 FROM speaker_group_follow WHERE 'ward-ward-a' = ANY(groups)"
            ),
            within_s=15,
        )
        broadcast_id = await schedule(clients, audio, 2.0, {"wards": ["ward-a"]})
        occurrence_id = await first_occurrence(clients.staff_a, broadcast_id)
        await report_when(
            clients.staff_a,
            occurrence_id,
            lambda r: bool(r["speakers"]) and all(s["state"] == "playing" for s in r["speakers"]),
        )
        assert all(fleet.speaker(uid).playing is not None for uid in ward)

        cancelled = await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast_id}")
        assert cancelled.status_code == 200, cancelled.text

        report = await report_when(
            clients.staff_a,
            occurrence_id,
            lambda r: bool(r["speakers"]) and all(s["state"] == "preempted" for s in r["speakers"]),
        )
        assert all(fleet.speaker(uid).playing is None for uid in ward)
    assert report["status"] == "cancelled"
    assert report["summary"]["preempted"] == 3
    stops = await db.fetchval(
        "SELECT stop_sent_at IS NOT NULL FROM broadcast_occurrence WHERE id = $1", occurrence_id
    )
    assert stops


async def test_cancelling_before_the_plays_go_out_sends_nothing(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, speakers: Speakers
) -> None:
    ward = speakers["ward-a"]
    audio = await long_announcement(clients)
    async with simulated(hub, ward) as fleet:
        # Claimed ahead (prepare_s) but not yet sent (send_ahead_s): then cancelled.
        broadcast_id = await schedule(clients, audio, 14.0, {"wards": ["ward-a"]})
        occurrence_id = await first_occurrence(clients.staff_a, broadcast_id, within_s=15)
        cancelled = await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast_id}")
        assert cancelled.status_code == 200, cancelled.text

        report = await report_when(
            clients.staff_a,
            occurrence_id,
            lambda r: bool(r["speakers"]) and all(s["state"] == "failed" for s in r["speakers"]),
            within_s=15,
        )
        assert {s["failure_reason"] for s in report["speakers"]} == {"cancelled"}
        assert all(s["send_count"] == 0 for s in report["speakers"])
        assert all(fleet.speaker(uid).acted_on == () for uid in ward)
    assert report["status"] == "cancelled"
