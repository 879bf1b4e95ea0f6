"""The state machine of one occurrence, and the only code that writes its status.

    planned ─► dispatching ─► playing ─► completed | partially_failed | failed | preempted
       │            │            │
       ├────────────┴────────────┴──► cancelled
       └──► missed | skipped | preempted (given way before anything went out)

``planned``: claimed by the scheduler, its speakers resolved, the plays not yet sent.
``dispatching``: the plays are going or have gone out; no speaker has started yet.
``playing``: at least one speaker reports it started. The outcome is decided only when
every speaker has a final word (finished, pre-empted, failed, or the hub's "no answer"
once the retry window closed), from those words alone:

- ``completed``: every speaker meant to play it finished;
- ``preempted``: none finished, at least one was pre-empted (a higher priority took the
  ward, Circular 39/2020/TT-BTTTT; an operator's stop);
- ``failed``: none finished and none was pre-empted;
- ``partially_failed``: some finished, others did not.

A late word from a speaker the hub had given up on can still move one outcome to another.
Speakers left out for quiet hours were never meant to play and do not count.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# A speaker left out because its ward was in quiet hours: never meant to play.
QUIET_HOURS = "quiet_hours"
# A speaker a higher priority occurrence took (programme.py): written pre-empted.
HIGHER_PRIORITY = "higher_priority"


class Status(enum.StrEnum):
    PLANNED = "planned"
    DISPATCHING = "dispatching"
    PLAYING = "playing"
    COMPLETED = "completed"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    MISSED = "missed"
    SKIPPED = "skipped"


OPEN = (Status.PLANNED, Status.DISPATCHING, Status.PLAYING)
OUTCOMES = frozenset({Status.COMPLETED, Status.PARTIALLY_FAILED, Status.FAILED, Status.PREEMPTED})
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PLANNED: frozenset(
        {Status.DISPATCHING, Status.CANCELLED, Status.MISSED, Status.SKIPPED, Status.PREEMPTED}
    ),
    Status.DISPATCHING: frozenset({Status.PLAYING, Status.CANCELLED} | OUTCOMES),
    Status.PLAYING: frozenset({Status.CANCELLED} | OUTCOMES),
    # Only a speaker's late report changes an outcome, into another outcome.
    **{outcome: OUTCOMES - {outcome} for outcome in OUTCOMES},
    Status.CANCELLED: frozenset(),
    Status.MISSED: frozenset(),
    Status.SKIPPED: frozenset(),
}
OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN) + ")"


class IllegalTransition(ValueError):
    pass


def check(current: Status, to: Status) -> None:
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(f"an occurrence does not go from {current} to {to}")


@dataclass(frozen=True, slots=True)
class Facts:
    """What an occurrence's speakers have said, counted (quiet-hours ones left out)."""

    speakers: int
    started: int
    finished: int
    preempted: int
    failed: int
    gave_way: int = 0
    """Of the pre-empted: taken by a higher priority occurrence (programme.py)."""

    @property
    def pending(self) -> int:
        return self.speakers - self.finished - self.preempted - self.failed


def follow(current: Status, facts: Facts) -> Status:
    """The status the speakers' facts give an occurrence that went out."""
    if current not in (Status.DISPATCHING, Status.PLAYING) and current not in OUTCOMES:
        return current
    if facts.pending > 0:
        if current in OUTCOMES:
            return current  # never back to open: the hub has given up waiting
        return Status.PLAYING if facts.started or current is Status.PLAYING else current
    if facts.finished == facts.speakers:
        return Status.COMPLETED
    if facts.finished == 0:
        return Status.PREEMPTED if facts.preempted else Status.FAILED
    return Status.PARTIALLY_FAILED


def describe(status: Status, facts: Facts) -> str:
    if status not in OUTCOMES and status is not Status.PLAYING:
        return ""
    parts = [f"{facts.finished} of {facts.speakers} speakers finished"]
    if facts.gave_way:
        parts.append(f"{facts.gave_way} gave way to a higher priority broadcast")
    if facts.preempted > facts.gave_way:
        parts.append(f"{facts.preempted - facts.gave_way} pre-empted")
    if facts.failed:
        parts.append(f"{facts.failed} failed")
    if facts.pending:
        parts.append(f"{facts.pending} still to report")
    return ", ".join(parts)


# --------------------------------------------------------------------------- writing

CLAIM = """
INSERT INTO broadcast_occurrence (broadcast_id, scheduled_at, status, claimed_by)
VALUES ($1, $2, 'planned', $3)
ON CONFLICT (broadcast_id, scheduled_at) DO NOTHING
RETURNING id
"""
MARK_MISSED = """
INSERT INTO broadcast_occurrence (broadcast_id, scheduled_at, status, claimed_by, note)
SELECT s.broadcast_id, s.starts_at, 'missed', $2, 'no hub was scheduling at its time'
FROM broadcast_slot s JOIN broadcast b ON b.id = s.broadcast_id
WHERE b.state = 'active' AND s.starts_at > $3
  AND s.starts_at + make_interval(secs => GREATEST(b.retry_window_s, $4)) < $1
ON CONFLICT (broadcast_id, scheduled_at) DO NOTHING
"""
FACTS = f"""
SELECT o.id, o.status,
       count(d.device_id) FILTER (WHERE d.failure_reason IS DISTINCT FROM '{QUIET_HOURS}')::int
           AS speakers,
       count(*) FILTER (WHERE d.started_at IS NOT NULL OR d.finished_at IS NOT NULL)::int
           AS started,
       count(*) FILTER (WHERE d.finished_at IS NOT NULL)::int AS finished,
       count(*) FILTER (WHERE d.preempted_at IS NOT NULL AND d.finished_at IS NULL)::int
           AS preempted,
       count(*) FILTER (WHERE d.failed_at IS NOT NULL AND d.finished_at IS NULL
                        AND d.preempted_at IS NULL
                        AND d.failure_reason IS DISTINCT FROM '{QUIET_HOURS}')::int AS failed,
       count(*) FILTER (WHERE d.preempted_at IS NOT NULL AND d.finished_at IS NULL
                        AND d.failure_reason = '{HIGHER_PRIORITY}')::int AS gave_way
FROM broadcast_occurrence o LEFT JOIN broadcast_delivery d ON d.occurrence_id = o.id
WHERE o.id = ANY($1::bigint[])
GROUP BY o.id
"""


async def claim(conn: Any, broadcast_id: int, scheduled_at: datetime, node: str) -> int | None:
    """The occurrence id if this caller won the occurrence, None if someone else had it."""
    occurrence_id: int | None = await conn.fetchval(CLAIM, broadcast_id, scheduled_at, node)
    return occurrence_id


async def mark_missed(conn: Any, now: datetime, node: str, since: datetime, grace_s: float) -> None:
    """Occurrences whose time passed with no hub scheduling are written as missed."""
    await conn.execute(MARK_MISSED, now, node, since, grace_s)


async def begin_dispatch(
    conn: Any,
    occurrence_id: int,
    *,
    send_due_at: datetime,
    send_started_at: datetime,
    start_at: datetime,
    expires_at: datetime,
    speaker_count: int,
) -> bool:
    """planned → dispatching; False if it is no longer planned (cancelled meanwhile)."""
    check(Status.PLANNED, Status.DISPATCHING)
    moved = await conn.fetchval(
        "UPDATE broadcast_occurrence SET status = 'dispatching', send_due_at = $2, "
        "send_started_at = $3, start_at = $4, expires_at = $5, speaker_count = $6 "
        "WHERE id = $1 AND status = 'planned' RETURNING id",
        occurrence_id,
        send_due_at,
        send_started_at,
        start_at,
        expires_at,
        speaker_count,
    )
    return moved is not None


async def note_send_due(conn: Any, occurrence_id: int, send_due_at: datetime) -> None:
    await conn.execute(
        "UPDATE broadcast_occurrence SET send_due_at = $2 WHERE id = $1",
        occurrence_id,
        send_due_at,
    )


async def note_sent(conn: Any, occurrence_id: int, at: datetime) -> None:
    """Every play has gone out (the status is the speakers' to move on)."""
    await conn.execute(
        "UPDATE broadcast_occurrence SET sent_at = $2 WHERE id = $1", occurrence_id, at
    )


async def end_unsent(conn: Any, occurrence_id: int, to: Status, note: str) -> bool:
    """planned → missed, skipped or preempted: nothing of it went out."""
    check(Status.PLANNED, to)
    moved = await conn.fetchval(
        "UPDATE broadcast_occurrence SET status = $2, note = $3 "
        "WHERE id = $1 AND status = 'planned' RETURNING id",
        occurrence_id,
        to.value,
        note,
    )
    return moved is not None


async def cancel_open(conn: Any, broadcast_id: int, note: str) -> list[int]:
    """Every open occurrence of the broadcast → cancelled; their ids."""
    rows = await conn.fetch(
        "UPDATE broadcast_occurrence SET status = 'cancelled', note = $2 "
        f"WHERE broadcast_id = $1 AND status IN {OPEN_SQL} RETURNING id",
        broadcast_id,
        note,
    )
    return [r["id"] for r in rows]


async def follow_facts(conn: Any, occurrence_ids: Sequence[int]) -> dict[int, Status]:
    """Move each occurrence to the status its speakers' facts give it; the new statuses.

    The rows are locked first, so two callers (the ack recorder, the dispatcher) never
    decide from facts older than those the other wrote."""
    if not occurrence_ids:
        return {}
    ids = sorted(set(occurrence_ids))
    async with conn.transaction():
        await conn.execute(
            "SELECT 1 FROM broadcast_occurrence WHERE id = ANY($1::bigint[]) "
            "ORDER BY id FOR UPDATE",
            ids,
        )
        rows = await conn.fetch(FACTS, ids)
        moves: list[tuple[int, str, str]] = []
        result: dict[int, Status] = {}
        for row in rows:
            current = Status(row["status"])
            facts = Facts(
                row["speakers"],
                row["started"],
                row["finished"],
                row["preempted"],
                row["failed"],
                row["gave_way"],
            )
            to = follow(current, facts)
            result[row["id"]] = to
            if to is not current:
                check(current, to)
                moves.append((row["id"], to.value, describe(to, facts)))
            elif to in OUTCOMES:
                moves.append((row["id"], to.value, describe(to, facts)))
        if moves:
            await conn.execute(
                "UPDATE broadcast_occurrence o SET status = m.status, "
                "note = CASE WHEN m.note = '' THEN o.note ELSE m.note END "
                "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS m(id, status, note) "
                "WHERE o.id = m.id AND (o.status <> m.status OR o.note <> m.note)",
                [m[0] for m in moves],
                [m[1] for m in moves],
                [m[2] for m in moves],
            )
    return result
