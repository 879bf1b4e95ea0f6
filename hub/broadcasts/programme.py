"""One programme per ward: a speaker plays one broadcast at a time, the highest priority.

Circular 39/2020/TT-BTTTT orders what a grassroots loudspeaker plays: an emergency at
once, a priority bulletin ahead of the normal schedule, the normal programme otherwise.
The hub, not each speaker, decides who wins, and for every shared speaker at once, so a
ward never splits between two programmes:

- when saved (``conflicts.settle``), a broadcast is placed after what it overlaps of the
  same or a higher priority, and *pre-empts* what it overlaps of a lower one;
- when an occurrence goes out (``Dispatcher``), under the ward's lock, it first gives way
  on every speaker a higher priority occurrence overlapping it also reaches, then takes
  from every lower one still open the speakers they share (those are written
  ``preempted`` with reason ``higher_priority`` and sent a stop).

The ward locks (transaction-level advisory locks, one per ward, taken in ward order) make
the two decisions of a pair of occurrences one after the other, whatever their timing:
the later sees what the earlier decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hub.broadcasts.conflicts import RANK, Candidate, ConflictFinder, Slot
from hub.broadcasts.occurrences import HIGHER_PRIORITY, OPEN_SQL
from hub.broadcasts.targets import Speaker

# Two-key advisory locks: (class, ward id). Saving and dispatching lock apart, so a save
# never holds up an emergency going out.
SAVING_LOCK_CLASS = 0x10CB
PLAYING_LOCK_CLASS = 0x10CC
ALL_WARDS = 0


def lower_priorities(priority: str) -> list[str]:
    return [p for p, rank in RANK.items() if rank < RANK[priority]]


async def lock_wards(conn: Any, lock_class: int, ward_ids: Iterable[int | None]) -> None:
    """Take the wards' locks for this transaction, in one order so two takers never
    deadlock; speakers without a ward share one lock."""
    for ward_id in sorted({w or ALL_WARDS for w in ward_ids}):
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", lock_class, ward_id)


@dataclass(frozen=True, slots=True)
class Higher:
    broadcast_id: int
    title: str
    priority: str
    speakers: frozenset[str]


async def higher_overlapping(
    conn: Any,
    finder: ConflictFinder,
    *,
    broadcast_id: int,
    priority: str,
    starts_at: datetime,
    duration_s: float,
    speakers: dict[int, Speaker],
    ward_ids: frozenset[int],
) -> list[Higher]:
    """Broadcasts of a higher priority planned to play on some of these speakers while
    this occurrence would."""
    if priority == "emergency":
        return []
    candidate = Candidate(
        slots=[Slot(starts_at, starts_at + timedelta(seconds=duration_s))],
        speakers=speakers,
        priority=priority,
        target_all=False,
        scope_ward_ids=ward_ids,
        exclude_broadcast_id=broadcast_id,
    )
    found: dict[int, Higher] = {}
    for overlap in await finder.overlaps(candidate, candidate.slots):
        if RANK[overlap.priority] <= RANK[priority]:
            continue
        known = found.get(overlap.broadcast_id)
        shared = frozenset(overlap.shared) | (known.speakers if known else frozenset())
        found[overlap.broadcast_id] = Higher(
            overlap.broadcast_id, overlap.title, overlap.priority, shared
        )
    return list(found.values())


TAKE_FROM_LOWER = f"""
WITH taken AS (
    SELECT d.occurrence_id, d.device_id
    FROM broadcast_occurrence o
    JOIN broadcast b ON b.id = o.broadcast_id
    JOIN broadcast_delivery d ON d.occurrence_id = o.id
    WHERE o.status IN {OPEN_SQL} AND o.broadcast_id <> $1
      AND b.priority = ANY($2::text[])
      AND COALESCE(o.start_at, o.scheduled_at)
          < $4::timestamptz + make_interval(secs => $6::float8)
      AND COALESCE(o.start_at, o.scheduled_at)
          + make_interval(secs => b.duration_s + $6::float8) > $3::timestamptz
      AND d.device_id = ANY($5::bigint[])
      AND d.finished_at IS NULL AND d.preempted_at IS NULL AND d.failed_at IS NULL
    FOR UPDATE OF d
)
UPDATE broadcast_delivery d
SET preempted_at = $7::timestamptz, failure_reason = '{HIGHER_PRIORITY}'
FROM taken t, broadcast_occurrence o
WHERE d.occurrence_id = t.occurrence_id AND d.device_id = t.device_id AND o.id = d.occurrence_id
RETURNING d.occurrence_id, o.status, d.device_uid, d.command_id, d.via_group, d.send_count
"""


@dataclass(frozen=True, slots=True)
class Taken:
    occurrence_id: int
    status: str
    device_uid: str
    command_id: str
    via_group: str | None
    send_count: int


async def take_from_lower(
    conn: Any,
    *,
    broadcast_id: int,
    priority: str,
    starts_at: datetime,
    ends_at: datetime,
    speakers: Iterable[Speaker],
    gap_s: float,
    now: datetime,
) -> list[Taken]:
    """The speakers lower priority occurrences still open would play on while this one
    does: written pre-empted (reason ``higher_priority``); the caller stops them."""
    lower = lower_priorities(priority)
    if not lower:
        return []
    rows = await conn.fetch(
        TAKE_FROM_LOWER,
        broadcast_id,
        lower,
        starts_at,
        ends_at,
        sorted(s.device_id for s in speakers),
        gap_s,
        now,
    )
    return [
        Taken(
            r["occurrence_id"],
            r["status"],
            r["device_uid"],
            r["command_id"],
            r["via_group"],
            r["send_count"],
        )
        for r in rows
    ]


async def give_way(conn: Any, occurrence_id: int, device_ids: Iterable[int], now: datetime) -> None:
    """This occurrence's deliveries to these speakers: pre-empted before they went out."""
    await conn.execute(
        "UPDATE broadcast_delivery SET preempted_at = $3, "
        f"failure_reason = '{HIGHER_PRIORITY}' "
        "WHERE occurrence_id = $1 AND device_id = ANY($2::bigint[]) "
        "AND finished_at IS NULL AND preempted_at IS NULL AND failed_at IS NULL",
        occurrence_id,
        sorted(device_ids),
        now,
    )


async def taken_away(conn: Any, occurrence_id: int) -> set[int]:
    """Speakers a higher priority occurrence has taken from this one already."""
    rows = await conn.fetch(
        "SELECT device_id FROM broadcast_delivery WHERE occurrence_id = $1 "
        f"AND preempted_at IS NOT NULL AND failure_reason = '{HIGHER_PRIORITY}'",
        occurrence_id,
    )
    return {r["device_id"] for r in rows}
