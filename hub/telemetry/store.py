"""The time-series writer: bounded queue -> batches by size or age -> COPY.

Producers await their readings' batch: a driver acknowledges to a device only after
the rows are committed, so nothing acknowledged is lost. A full queue blocks
producers (back-pressure) instead of growing memory. A failed write is retried with
back-off, holding the batch, until the database answers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from hub.runtime.context import RuntimeKey
from hub.storage.migrations import Connection
from hub.telemetry import metrics

log = logging.getLogger("hub.telemetry.store")

Row = tuple[datetime, int, str, float]  # time, device_id, metric, value
COLUMNS = ("time", "device_id", "metric", "value")
StoredHook = Callable[[Sequence[Row]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A reading for a (device, metric, time) already stored with another value.

    The first value stays (the row a device was acknowledged for); the other one
    is quarantined with this reason instead of being dropped unseen.
    """

    row: Row
    stored: float

    @property
    def reason(self) -> str:
        time, _device_id, metric, offered = self.row
        return (
            f"conflicting value: {metric} at {time.isoformat()} is already stored as "
            f"{self.stored:g}; {offered:g} was not stored"
        )


ConflictHook = Callable[[Connection, Sequence[Conflict]], Awaitable[None]]


@dataclass
class _Pending:
    rows: Sequence[Row]
    done: asyncio.Future[list[Conflict]]


@dataclass
class ReadingWriter:
    pool: asyncpg.Pool
    batch_rows: int = 5000
    batch_age_s: float = 0.05
    max_queued_rows: int = 200_000
    writers: int = 2
    on_stored: list[StoredHook] = field(default_factory=list)
    # Quarantines conflicting values, in the write's transaction (hub.telemetry.ingest).
    on_conflict: ConflictHook | None = None

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._queued_rows = 0
        self._room_freed = asyncio.Condition()

    async def write(self, rows: Sequence[Row]) -> list[Conflict]:
        """Return once `rows` are committed, with those refused for a conflicting value.

        An exact redelivery (same device, metric, time and value) is a silent no-op.
        """
        if not rows:
            return []
        async with self._room_freed:
            # A batch larger than the whole queue still goes through, alone.
            await self._room_freed.wait_for(
                lambda: (
                    self._queued_rows == 0 or self._queued_rows + len(rows) <= self.max_queued_rows
                )
            )
            self._queued_rows += len(rows)
            metrics.QUEUE_DEPTH.set(self._queued_rows)
        done: asyncio.Future[list[Conflict]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, done))
        return await done

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(self.writers):
                group.create_task(self._writer_loop(), name=f"reading-writer-{n}")

    async def drain(self) -> None:
        """Wait until everything queued is written (at shutdown, after producers stopped)."""
        async with self._room_freed:
            await self._room_freed.wait_for(lambda: self._queued_rows == 0)

    async def _writer_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            size = len(first.rows)
            deadline = time.monotonic() + self.batch_age_s
            while size < self.batch_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                batch.append(item)
                size += len(item.rows)
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        rows = [row for item in batch for row in item.rows]
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                conflicts = await self._store(rows)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                metrics.WRITE_FAILURES.inc()
                log.warning(
                    "writing %d readings failed (%s); retrying in %.1f s", len(rows), exc, delay
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 10.0)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.STORED.inc(len(rows))
        async with self._room_freed:
            self._queued_rows -= len(rows)
            metrics.QUEUE_DEPTH.set(self._queued_rows)
            self._room_freed.notify_all()
        refused = {id(conflict.row) for conflict in conflicts}
        if refused:
            rows = [row for row in rows if id(row) not in refused]
        # Health and alert evaluation see the rows before producers are released, so when
        # a driver acknowledges a message its readings are stored and evaluated.
        for hook in self.on_stored:
            try:
                await hook(rows)
            except Exception:
                log.exception("a stored-readings hook failed")
        for item in batch:
            if not item.done.done():
                mine = [c for c in conflicts if any(c.row is row for row in item.rows)]
                item.done.set_result(mine)

    async def _store(self, rows: list[Row]) -> list[Conflict]:
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("reading", records=rows, columns=COLUMNS)
                    await upsert_latest(conn, rows)
                return []
            except asyncpg.UniqueViolationError:
                # A redelivery or a conflicting value: the slower path, which skips rows
                # already stored and tells a conflicting value from an exact repeat.
                async with conn.transaction():
                    return await self._store_past_collisions(conn, rows)

    async def _store_past_collisions(self, conn: Connection, rows: list[Row]) -> list[Conflict]:
        first: dict[tuple[int, str, datetime], Row] = {}
        conflicts: list[Conflict] = []
        for row in rows:
            key = (row[1], row[2], row[0])
            kept = first.setdefault(key, row)
            if kept is not row and kept[3] != row[3]:
                conflicts.append(Conflict(row, kept[3]))
        unique = list(first.values())
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS reading_staging (LIKE reading) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table("reading_staging", records=unique, columns=COLUMNS)
        stored = await conn.fetch(
            "SELECT s.device_id, s.metric, s.time, r.value FROM reading_staging s "
            "JOIN reading r USING (device_id, metric, time) WHERE r.value <> s.value"
        )
        accepted = unique
        if stored:
            previous = {(r["device_id"], r["metric"], r["time"]): r["value"] for r in stored}
            accepted = []
            for row in unique:
                value = previous.get((row[1], row[2], row[0]))
                if value is None:
                    accepted.append(row)
                else:
                    conflicts.append(Conflict(row, value))
        await conn.execute(
            "INSERT INTO reading SELECT * FROM reading_staging ON CONFLICT DO NOTHING"
        )
        await upsert_latest(conn, accepted)
        if conflicts:
            metrics.CONFLICTS.inc(len(conflicts))
            if self.on_conflict is not None:
                await self.on_conflict(conn, conflicts)
        return conflicts


async def upsert_latest(conn: Connection, rows: Sequence[Row]) -> None:
    newest: dict[tuple[int, str], Row] = {}
    for row in rows:
        key = (row[1], row[2])
        current = newest.get(key)
        if current is None or row[0] > current[0]:
            newest[key] = row
    # Sorted keys: concurrent writers lock rows in one order and cannot deadlock.
    values = [newest[key] for key in sorted(newest)]
    await conn.execute(
        """
        INSERT INTO reading_latest (device_id, metric, time, value)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::float8[])
        ON CONFLICT (device_id, metric) DO UPDATE
        SET time = excluded.time, value = excluded.value
        WHERE reading_latest.time < excluded.time
        """,
        [r[1] for r in values],
        [r[2] for r in values],
        [r[0] for r in values],
        [r[3] for r in values],
    )


WRITER: RuntimeKey[ReadingWriter] = RuntimeKey("the telemetry writer")
