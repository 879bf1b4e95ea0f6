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

from hub.storage.migrations import Connection
from hub.telemetry import metrics

log = logging.getLogger("hub.telemetry.store")

Row = tuple[datetime, int, str, float]  # time, device_id, metric, value
COLUMNS = ("time", "device_id", "metric", "value")
StoredHook = Callable[[Sequence[Row]], Awaitable[None]]


@dataclass
class _Pending:
    rows: Sequence[Row]
    done: asyncio.Future[None]


@dataclass
class ReadingWriter:
    pool: asyncpg.Pool
    batch_rows: int = 5000
    batch_age_s: float = 0.05
    max_queued_rows: int = 200_000
    writers: int = 2
    on_stored: list[StoredHook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._queued_rows = 0
        self._room_freed = asyncio.Condition()

    async def write(self, rows: Sequence[Row]) -> None:
        """Return once `rows` are committed."""
        if not rows:
            return
        async with self._room_freed:
            # A batch larger than the whole queue still goes through, alone.
            await self._room_freed.wait_for(
                lambda: (
                    self._queued_rows == 0 or self._queued_rows + len(rows) <= self.max_queued_rows
                )
            )
            self._queued_rows += len(rows)
            metrics.QUEUE_DEPTH.set(self._queued_rows)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, done))
        await done

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
                await self._store(rows)
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
        # Health and alert evaluation see the rows before producers are released, so when
        # a driver acknowledges a message its readings are stored and evaluated.
        for hook in self.on_stored:
            try:
                await hook(rows)
            except Exception:
                log.exception("a stored-readings hook failed")
        for item in batch:
            if not item.done.done():
                item.done.set_result(None)

    async def _store(self, rows: list[Row]) -> None:
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("reading", records=rows, columns=COLUMNS)
                    await upsert_latest(conn, rows)
            except asyncpg.UniqueViolationError:
                # A redelivered message: take the slower path that skips rows already stored.
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS reading_staging "
                        "(LIKE reading) ON COMMIT DELETE ROWS"
                    )
                    await conn.copy_records_to_table(
                        "reading_staging", records=rows, columns=COLUMNS
                    )
                    await conn.execute(
                        "INSERT INTO reading SELECT * FROM reading_staging ON CONFLICT DO NOTHING"
                    )
                    await upsert_latest(conn, rows)


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
