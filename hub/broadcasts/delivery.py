"""What each speaker did with each broadcast: acknowledgements recorded, reports read.

Acks arrive in bursts (a few per speaker within a second of an occurrence, for hundreds
or thousands of speakers), so the recorder queues them and writes them in batches, one
statement per batch. Each stage keeps the time of its first ack. Repeats are counted,
stages arriving out of order are counted and still land in their own column, and acks
for command ids the hub does not know are counted and logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from drivers.contract import Ack, AckStage
from hub.broadcasts import metrics, occurrences
from hub.broadcasts.occurrences import QUIET_HOURS

log = logging.getLogger("hub.broadcasts")

COMMAND_ID = re.compile(r"^o(\d+)-[dg](\d+)$")
STAGE_RANK = {
    AckStage.RECEIVED: 1,
    AckStage.DOWNLOADING: 2,
    AckStage.STARTED: 3,
    AckStage.FINISHED: 4,
    AckStage.PREEMPTED: 4,
    AckStage.FAILED: 4,
}
# The hub's own verdict on a speaker that never answered; any word from the speaker wins.
NO_ANSWER = "no_answer"
# It answered, then never said how the play ended, before the hub stopped waiting.
NO_FINAL_REPORT = "no_final_report"
CANCELLED = "cancelled"
INVALID_COMMAND = "invalid_command"


def command_id(occurrence_id: int, device_id: int) -> str:
    return f"o{occurrence_id}-d{device_id}"


def group_command_id(occurrence_id: int, ward_id: int) -> str:
    """Shared by every speaker reached through its ward's group in one occurrence."""
    return f"o{occurrence_id}-g{ward_id}"


@dataclass(slots=True)
class _Merged:
    """The acks of one command within one batch."""

    device_uid: str
    times: dict[AckStage, datetime] = field(default_factory=dict)
    reason: str | None = None
    count: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    lowest_rank: int = 99
    highest_rank: int = 0

    def add(self, ack: Ack) -> None:
        rank = STAGE_RANK[ack.stage]
        self.count += 1
        if ack.stage in self.times:
            self.duplicates += 1
            self.times[ack.stage] = min(self.times[ack.stage], ack.time)
        else:
            self.times[ack.stage] = ack.time
        if rank < self.highest_rank:
            self.out_of_order += 1
        self.highest_rank = max(self.highest_rank, rank)
        self.lowest_rank = min(self.lowest_rank, rank)
        if ack.stage is AckStage.FAILED and self.reason is None:
            self.reason = ack.reason


_ANY_ACK = (
    "(d.received_at IS NOT NULL OR d.downloading_at IS NOT NULL OR d.started_at IS NOT NULL "
    "OR d.finished_at IS NOT NULL OR d.preempted_at IS NOT NULL)"
)
_HIGHEST_RANK = (
    "GREATEST(CASE WHEN d.received_at IS NOT NULL THEN 1 ELSE 0 END, "
    "CASE WHEN d.downloading_at IS NOT NULL THEN 2 ELSE 0 END, "
    "CASE WHEN d.started_at IS NOT NULL THEN 3 ELSE 0 END, "
    "CASE WHEN d.finished_at IS NOT NULL OR d.preempted_at IS NOT NULL "
    f"OR (d.failed_at IS NOT NULL AND d.failure_reason <> '{NO_ANSWER}') THEN 4 ELSE 0 END)"
)
_STAGE_COLUMNS = ("received", "downloading", "started", "finished", "preempted", "failed")
# A hub "no answer" verdict is replaced by whatever the speaker reports after all.
_HUB_VERDICT = f"(d.failure_reason IN ('{NO_ANSWER}', '{NO_FINAL_REPORT}'))"
RECORD_ACKS = f"""
UPDATE broadcast_delivery d SET
    received_at = COALESCE(d.received_at, a.received_at),
    downloading_at = COALESCE(d.downloading_at, a.downloading_at),
    started_at = COALESCE(d.started_at, a.started_at),
    finished_at = COALESCE(d.finished_at, a.finished_at),
    preempted_at = COALESCE(d.preempted_at, a.preempted_at),
    failed_at = CASE WHEN {_HUB_VERDICT} THEN a.failed_at ELSE COALESCE(d.failed_at, a.failed_at) END,
    failure_reason = CASE WHEN {_HUB_VERDICT} THEN a.reason
                          ELSE COALESCE(d.failure_reason, a.reason) END,
    duplicate_acks = d.duplicate_acks + a.duplicates
        + (d.received_at IS NOT NULL AND a.received_at IS NOT NULL)::int
        + (d.downloading_at IS NOT NULL AND a.downloading_at IS NOT NULL)::int
        + (d.started_at IS NOT NULL AND a.started_at IS NOT NULL)::int
        + (d.finished_at IS NOT NULL AND a.finished_at IS NOT NULL)::int
        + (d.preempted_at IS NOT NULL AND a.preempted_at IS NOT NULL)::int
        + (d.failed_at IS NOT NULL AND NOT {_HUB_VERDICT} AND a.failed_at IS NOT NULL)::int,
    out_of_order_acks = d.out_of_order_acks + a.out_of_order
        + (a.lowest_rank < {_HIGHEST_RANK})::int
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[],
            $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::int[],
            $11::int[], $12::int[])
     AS a(command_id, device_uid, received_at, downloading_at, started_at, finished_at,
          preempted_at, failed_at, reason, duplicates, out_of_order, lowest_rank)
WHERE d.command_id = a.command_id AND d.device_uid = a.device_uid
RETURNING d.command_id, d.device_uid, d.occurrence_id
"""


class DeliveryRecorder:
    """Takes every speaker ack (``record``, the hub sink's ack handler) and stores it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch_max: int = 5000,
        batch_wait_s: float = 0.02,
        max_queued: int = 200_000,
    ) -> None:
        self.pool = pool
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.max_queued = max_queued
        self._queue: list[Ack] = []
        self._ready = asyncio.Event()
        self._stopping = False

    async def record(self, ack: Ack) -> None:
        """Queue one ack; never waits for the database."""
        if not COMMAND_ID.match(ack.command_id):
            # Commands the broadcast slice did not send (a technician's ping, say).
            metrics.ACKS.labels("foreign").inc()
            return
        if len(self._queue) >= self.max_queued:
            metrics.ACKS.labels("dropped").inc()
            return
        self._queue.append(ack)
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            if not self._stopping:
                # Gather the rest of a burst into the same statement.
                await asyncio.sleep(self.batch_wait_s)
            await self.flush()

    async def flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.batch_max], self._queue[self.batch_max :]
            await self._write(batch)
        self._ready.clear()

    async def drain(self) -> None:
        """Write what is queued (called before the service stops)."""
        self._stopping = True
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await self.flush()

    async def _follow(self, occurrence_ids: set[int]) -> None:
        """The occurrences these acks belong to move on as their speakers' facts say."""
        if not occurrence_ids:
            return
        try:
            async with self.pool.acquire() as conn:
                await occurrences.follow_facts(conn, sorted(occurrence_ids))
        except (asyncpg.PostgresError, OSError) as exc:
            # The dispatcher follows the facts again on its next round.
            log.warning("occurrence statuses not brought up to date (%s)", exc)

    async def _write(self, batch: Sequence[Ack]) -> None:
        # A group command's id is shared by every member: an ack is its id and its speaker.
        merged: dict[tuple[str, str], _Merged] = {}
        for ack in batch:
            key = (ack.command_id, ack.device_uid)
            entry = merged.get(key)
            if entry is None:
                entry = merged[key] = _Merged(ack.device_uid)
            entry.add(ack)
        ids = list(merged)
        columns: list[list[Any]] = [[key[0] for key in ids], [key[1] for key in ids]]
        for stage in _STAGE_COLUMNS:
            columns.append([m.times.get(AckStage(stage)) for m in merged.values()])
        columns += [
            [m.reason for m in merged.values()],
            [m.duplicates for m in merged.values()],
            [m.out_of_order for m in merged.values()],
            [m.lowest_rank for m in merged.values()],
        ]
        for attempt in range(3):
            try:
                rows = await self.pool.fetch(RECORD_ACKS, *columns)
                break
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("acks could not be recorded (%s); attempt %d of 3", exc, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            metrics.ACKS.labels("dropped").inc(len(batch))
            return
        known = {(r["command_id"], r["device_uid"]) for r in rows}
        await self._follow({r["occurrence_id"] for r in rows})
        unknown = [command for command in ids if command not in known]
        metrics.ACKS.labels("recorded").inc(sum(merged[c].count for c in known))
        metrics.ACKS.labels("duplicate").inc(sum(merged[c].duplicates for c in known))
        metrics.ACKS.labels("out_of_order").inc(sum(merged[c].out_of_order for c in known))
        if unknown:
            metrics.ACKS.labels("unknown").inc(sum(merged[c].count for c in unknown))
            log.info(
                "%d acks for commands the hub does not know, e.g. %s from %s",
                len(unknown),
                *unknown[0],
            )


# --------------------------------------------------------------------------- reports


def delivery_state(row: Any) -> str:
    if row["finished_at"] is not None:
        return "finished"
    if row["preempted_at"] is not None:
        return "preempted"
    if row["failed_at"] is not None:
        return "failed"
    if row["started_at"] is not None:
        return "playing"
    if row["downloading_at"] is not None:
        return "downloading"
    if row["received_at"] is not None:
        return "received"
    return "sent" if row["send_count"] > 0 else "not_sent"


SUMMARY = f"""
SELECT count(*)::int AS speakers,
       count(*) FILTER (WHERE {_ANY_ACK} OR (d.failed_at IS NOT NULL
                        AND d.failure_reason NOT IN ('{NO_ANSWER}', '{QUIET_HOURS}', '{INVALID_COMMAND}',
                                                     '{CANCELLED}')))::int
           AS delivered,
       count(*) FILTER (WHERE d.started_at IS NOT NULL OR d.finished_at IS NOT NULL)::int AS played,
       count(*) FILTER (WHERE d.finished_at IS NOT NULL)::int AS finished,
       count(*) FILTER (WHERE d.preempted_at IS NOT NULL AND d.finished_at IS NULL)::int AS preempted,
       count(*) FILTER (WHERE d.failed_at IS NOT NULL AND d.finished_at IS NULL
                        AND d.preempted_at IS NULL)::int AS failed,
       count(*) FILTER (WHERE d.finished_at IS NULL AND d.preempted_at IS NULL
                        AND d.failed_at IS NULL)::int AS pending
FROM broadcast_delivery d WHERE d.occurrence_id = $1
"""
FAILURES = """
SELECT failure_reason, count(*)::int AS n FROM broadcast_delivery
WHERE occurrence_id = $1 AND failed_at IS NOT NULL AND finished_at IS NULL AND preempted_at IS NULL
GROUP BY failure_reason ORDER BY failure_reason
"""
