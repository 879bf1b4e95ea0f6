"""One speaker's side of the broadcasts: its latest plays and failures, and the volume it
was last set to (a volume or stop control it acknowledged), for the speaker's own page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hub.auth import Principal
from hub.broadcasts.delivery import delivery_state
from hub.devices import registry

PLAYS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class SpeakerPlay:
    broadcast_id: int
    occurrence_id: int
    title: str
    scheduled_at: datetime
    state: str
    """As the occurrence report says it: finished, preempted, failed, playing, … not_sent."""
    volume: int
    finished_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class SpeakerHistory:
    volume: int | None
    """The volume of the last set_volume the speaker acknowledged; None if never set."""
    volume_set_at: datetime | None
    plays: list[SpeakerPlay]
    last_played: SpeakerPlay | None
    failures: int
    """Deliveries to this speaker that failed, over every occurrence kept."""


_PLAYS = (
    "SELECT o.broadcast_id, o.id AS occurrence_id, b.title, o.scheduled_at, b.volume, d.* "
    "FROM broadcast_delivery d JOIN broadcast_occurrence o ON o.id = d.occurrence_id "
    "JOIN broadcast b ON b.id = o.broadcast_id WHERE d.device_id = $1 "
)


def _play(row: asyncpg.Record) -> SpeakerPlay:
    return SpeakerPlay(
        broadcast_id=row["broadcast_id"],
        occurrence_id=row["occurrence_id"],
        title=row["title"],
        scheduled_at=row["scheduled_at"],
        state=delivery_state(row),
        volume=row["volume"],
        finished_at=row["finished_at"],
        failed_at=row["failed_at"],
        failure_reason=row["failure_reason"],
    )


async def speaker_history(
    pool: asyncpg.Pool, principal: Principal, uid: str, limit: int = PLAYS_SHOWN
) -> SpeakerHistory:
    device = await registry.get_scoped(principal, uid)
    rows = await pool.fetch(_PLAYS + "ORDER BY o.scheduled_at DESC LIMIT $2", device.id, limit)
    last_played = await pool.fetchrow(
        _PLAYS + "AND d.finished_at IS NOT NULL ORDER BY d.finished_at DESC LIMIT 1", device.id
    )
    failures = await pool.fetchval(
        "SELECT count(*) FROM broadcast_delivery WHERE device_id = $1 AND failed_at IS NOT NULL",
        device.id,
    )
    volume = await pool.fetchrow(
        "SELECT volume, finished_at FROM speaker_control WHERE device_id = $1 "
        "AND action = 'set_volume' AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
        device.id,
    )
    return SpeakerHistory(
        volume=volume["volume"] if volume else None,
        volume_set_at=volume["finished_at"] if volume else None,
        plays=[_play(r) for r in rows],
        last_played=_play(last_played) if last_played else None,
        failures=int(failures or 0),
    )
