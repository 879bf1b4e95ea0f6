"""Overlaps between a new broadcast and those already planned, on the speakers they share.

Two occurrences conflict when they share a speaker and their times (plus a gap of
silence) overlap. What happens follows the priorities of Circular 39/2020/TT-BTTTT (an
emergency at once, a priority bulletin ahead of the normal schedule): the new broadcast
is placed after what it overlaps of the same or a higher priority (within ``max_shift``,
outside quiet hours), and pre-empts what it overlaps of a lower one, which gives way on
the shared speakers when it fires (programme.py); an emergency pre-empts everything.
With ``on_conflict="reject"`` any overlap refuses the broadcast instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from hub.broadcasts.targets import Speaker, resolve_stored
from hub.errors import Conflict as ConflictError
from hub.errors import FieldProblem

Resolution = Literal["placed_after", "preempts", "rejected"]
RANK = {"normal": 0, "priority": 1, "emergency": 2}
MAX_PLACEMENT_ROUNDS = 12
SAMPLE_SPEAKERS = 20


def gives_way(priority: str, other: str) -> bool:
    """Whether a broadcast of ``priority`` makes way for one of ``other`` it overlaps.
    An emergency makes way for nothing: the later emergency interrupts the earlier."""
    return priority != "emergency" and RANK[other] >= RANK[priority]


@dataclass(frozen=True, slots=True)
class Slot:
    starts_at: datetime
    ends_at: datetime
    shifted_from: datetime | None = None

    def moved_to(self, start: datetime) -> Slot:
        return Slot(
            start, start + (self.ends_at - self.starts_at), self.shifted_from or self.starts_at
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    occurrence_at: datetime
    other_broadcast_id: int
    other_title: str
    other_priority: str
    other_starts_at: datetime
    other_ends_at: datetime
    speakers: tuple[str, ...]
    resolution: Resolution
    placed_at: datetime | None = None

    def describe(self) -> str:
        return (
            f"the occurrence at {self.occurrence_at:%Y-%m-%d %H:%M:%S}Z overlaps "
            f"{self.other_priority} broadcast {self.other_broadcast_id} "
            f"({self.other_title!r}, {self.other_starts_at:%H:%M:%S}–"
            f"{self.other_ends_at:%H:%M:%S}Z) on {len(self.speakers)} speakers"
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """The broadcast being planned."""

    slots: Sequence[Slot]
    speakers: dict[int, Speaker]
    priority: str
    target_all: bool
    scope_ward_ids: frozenset[int]
    exclude_broadcast_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Overlap:
    index: int
    broadcast_id: int
    title: str
    priority: str
    starts_at: datetime
    ends_at: datetime
    shared: tuple[str, ...]


OVERLAPS = """
SELECT c.i::int AS i, s.broadcast_id, s.starts_at, s.ends_at, b.title, b.priority,
       b.target_all, b.target_wards, b.target_groups, b.target_speakers, b.ward_ids
FROM unnest($1::timestamptz[], $2::timestamptz[]) WITH ORDINALITY AS c(starts_at, ends_at, i)
JOIN broadcast_slot s
  ON s.starts_at < c.ends_at + make_interval(secs => $3)
 AND s.ends_at + make_interval(secs => $3) > c.starts_at
 AND s.starts_at > c.starts_at - make_interval(secs => $4)
JOIN broadcast b ON b.id = s.broadcast_id
WHERE b.state = 'active'
  AND ($5 OR b.target_all OR b.ward_ids && $6::int[])
  AND ($7::bigint IS NULL OR b.id <> $7)
ORDER BY c.i, s.starts_at
"""


class ConflictFinder:
    def __init__(self, conn: Any, gap_s: float, longest_s: float) -> None:
        self._conn = conn
        self._gap_s = gap_s
        self._longest_s = longest_s
        self._speakers: dict[int, dict[int, Speaker]] = {}

    async def _speakers_of(self, row: Any) -> dict[int, Speaker]:
        broadcast_id: int = row["broadcast_id"]
        if broadcast_id not in self._speakers:
            self._speakers[broadcast_id] = await resolve_stored(row)
        return self._speakers[broadcast_id]

    async def overlaps(self, candidate: Candidate, slots: Sequence[Slot]) -> list[_Overlap]:
        if not slots:
            return []
        rows = await self._conn.fetch(
            OVERLAPS,
            [s.starts_at for s in slots],
            [s.ends_at for s in slots],
            self._gap_s,
            self._longest_s + self._gap_s,
            candidate.target_all,
            sorted(candidate.scope_ward_ids),
            candidate.exclude_broadcast_id,
        )
        found = []
        for row in rows:
            others = await self._speakers_of(row)
            shared = sorted(
                s.uid for device_id, s in candidate.speakers.items() if device_id in others
            )
            if shared:
                found.append(
                    _Overlap(
                        index=row["i"] - 1,
                        broadcast_id=row["broadcast_id"],
                        title=row["title"],
                        priority=row["priority"],
                        starts_at=row["starts_at"],
                        ends_at=row["ends_at"],
                        shared=tuple(shared),
                    )
                )
        return found


def _conflict(
    slot: Slot, overlap: _Overlap, resolution: Resolution, placed_at: datetime | None = None
) -> Conflict:
    return Conflict(
        occurrence_at=slot.shifted_from or slot.starts_at,
        other_broadcast_id=overlap.broadcast_id,
        other_title=overlap.title,
        other_priority=overlap.priority,
        other_starts_at=overlap.starts_at,
        other_ends_at=overlap.ends_at,
        speakers=overlap.shared,
        resolution=resolution,
        placed_at=placed_at,
    )


def _refuse(conflicts: Sequence[Conflict], why: str) -> ConflictError:
    return ConflictError(why, [FieldProblem("starts_at", c.describe()) for c in conflicts[:50]])


async def settle(
    finder: ConflictFinder,
    candidate: Candidate,
    *,
    on_conflict: Literal["auto", "reject"],
    gap: timedelta,
    max_shift: timedelta,
    placeable: Callable[[Slot], str | None],
) -> tuple[list[Slot], list[Conflict]]:
    """The slots to save and the conflicts found; raises Conflict (409) when refused.

    ``placeable`` says why a moved slot may not go where it was moved (quiet hours),
    or None.
    """
    slots = list(candidate.slots)
    overlaps = await finder.overlaps(candidate, slots)
    if not overlaps:
        return slots, []
    if on_conflict == "reject":
        raise _refuse(
            [_conflict(slots[o.index], o, "rejected") for o in overlaps],
            "the broadcast overlaps others on the same speakers",
        )
    conflicts: list[Conflict] = []
    seen: set[tuple[int, int, datetime]] = set()
    for _ in range(MAX_PLACEMENT_ROUNDS):
        blocking = [o for o in overlaps if gives_way(candidate.priority, o.priority)]
        if not blocking:
            final = {s.shifted_from: s.starts_at for s in slots if s.shifted_from is not None}
            placed = [replace(c, placed_at=final.get(c.occurrence_at)) for c in conflicts]
            # Where it finally plays, what it overlaps of a lower priority gives way to it.
            return slots, placed + [_conflict(slots[o.index], o, "preempts") for o in overlaps]
        latest_end: dict[int, datetime] = {}
        for overlap in blocking:
            latest_end[overlap.index] = max(
                latest_end.get(overlap.index, overlap.ends_at), overlap.ends_at
            )
            key = (overlap.index, overlap.broadcast_id, overlap.starts_at)
            if key not in seen:
                seen.add(key)
                conflicts.append(_conflict(slots[overlap.index], overlap, "placed_after"))
        for index, end in latest_end.items():
            moved = slots[index].moved_to(end + gap)
            origin = moved.shifted_from or moved.starts_at
            following = slots[index + 1] if index + 1 < len(slots) else None
            if moved.starts_at - origin > max_shift:
                reason: str | None = f"it would move more than {max_shift} from its time"
            elif following is not None and moved.ends_at + gap > following.starts_at:
                reason = "it would run into the broadcast's own next occurrence"
            else:
                reason = placeable(moved)
            if reason is not None:
                raise _refuse(
                    [
                        replace(c, resolution="rejected")
                        for c in conflicts
                        if c.occurrence_at == origin
                    ],
                    f"the occurrence at {origin:%Y-%m-%d %H:%M}Z cannot be placed after what "
                    f"it overlaps: {reason}",
                )
            slots[index] = moved
        overlaps = await finder.overlaps(candidate, slots)
    raise _refuse(conflicts, "the broadcast could not be placed between the others")
