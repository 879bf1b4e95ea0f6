"""The telemetry slice's SQL: the time-series writer, the quarantine, time-series reads,
hourly rollups, retention and the maintenance jobs' records.

The writer: bounded queue -> batches by size or age -> COPY.

Producers await their readings' batch: a driver acknowledges to a device only after
the rows are committed, so nothing acknowledged is lost. A full queue blocks
producers (back-pressure) instead of growing memory. A failed write is retried with
back-off, holding the batch, until the database answers again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import msgspec

from hub.runtime.context import RuntimeKey
from hub.storage.migrations import Connection
from hub.telemetry import metrics

log = logging.getLogger("hub.telemetry.store")

Row = tuple[datetime, int, str, float]  # time, device_id, metric, value
# A string, boolean or data value: time, device_id, metric, text, boolean, bytes.
ValueRow = tuple[datetime, int, str, str | None, bool | None, bytes | None]
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


async def insert_values(pool: asyncpg.Pool, rows: Sequence[ValueRow]) -> None:
    """Strings, booleans and data: rare beside numbers, so one plain statement per call."""
    await pool.execute(
        "INSERT INTO reading_value (time, device_id, metric, text_value, bool_value, "
        "data_value) SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::text[], "
        "$4::text[], $5::boolean[], $6::bytea[]) ON CONFLICT DO NOTHING",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )


T = TypeVar("T")


def _as(row: asyncpg.Record, kind: type[T]) -> T:
    """Rows become the slice's structs here, where the columns are the fields' names."""
    return msgspec.convert(dict(row.items()), kind)


# ---- the quarantine ----


class QuarantineOut(msgspec.Struct):
    id: int
    received_at: datetime
    source: str
    device_uid: str | None
    reason: str
    size: int
    raw_text: str | None
    raw_base64: str


def _quarantined(row: asyncpg.Record) -> QuarantineOut:
    raw = bytes(row["raw"])
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return QuarantineOut(
        row["id"],
        row["received_at"],
        row["source"],
        row["device_uid"],
        row["reason"],
        row["size"],
        text,
        base64.b64encode(raw).decode(),
    )


async def quarantine(
    pool: asyncpg.Pool,
    *,
    sources: Sequence[str],
    device_uids: Sequence[str | None],
    reasons: Sequence[str],
    raws: Sequence[bytes],
    sizes: Sequence[int],
    received_at: Sequence[datetime | None],
) -> None:
    await pool.execute(
        "INSERT INTO quarantine (source, device_uid, reason, raw, size, received_at) "
        "SELECT source, device_uid, reason, raw, size, coalesce(received_at, now()) "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int[], "
        "$6::timestamptz[]) AS q (source, device_uid, reason, raw, size, received_at)",
        sources,
        device_uids,
        reasons,
        raws,
        sizes,
        received_at,
    )


async def quarantine_conflicts(
    conn: Connection, device_ids: Sequence[int], reasons: Sequence[str], raws: Sequence[bytes]
) -> None:
    await conn.execute(
        "INSERT INTO quarantine (source, device_uid, reason, raw, size) "
        "SELECT 'ingest', d.uid, c.reason, c.raw, length(c.raw) "
        "FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS c (device_id, reason, raw) "
        "LEFT JOIN device d ON d.id = c.device_id",
        device_ids,
        reasons,
        raws,
    )


async def quarantined(
    pool: asyncpg.Pool,
    *,
    device: str | None,
    before_id: int | None,
    device_uids: Sequence[str] | None,
    limit: int,
) -> list[QuarantineOut]:
    """Newest first; `device_uids` None: any device (and payloads of no known device)."""
    rows = await pool.fetch(
        "SELECT * FROM quarantine WHERE ($1::text IS NULL OR device_uid = $1) "
        "AND ($2::bigint IS NULL OR id < $2) "
        "AND ($3::text[] IS NULL OR device_uid = ANY($3)) ORDER BY id DESC LIMIT $4",
        device,
        before_id,
        device_uids,
        limit,
    )
    return [_quarantined(r) for r in rows]


async def quarantined_item(pool: asyncpg.Pool, item_id: int) -> QuarantineOut | None:
    row = await pool.fetchrow("SELECT * FROM quarantine WHERE id = $1", item_id)
    return None if row is None else _quarantined(row)


# ---- time-series reads ----


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    value: float | None
    count: int


@dataclass(frozen=True, slots=True)
class Latest:
    device: str
    metric: str
    time: datetime
    value: float


@dataclass(frozen=True, slots=True)
class MetricSummary:
    metric: str
    latest_avg: float | None
    today_min: float | None
    today_max: float | None
    devices: int


async def raw_points(
    pool: asyncpg.Pool, device_id: int, metric: str, start: datetime, end: datetime, limit: int
) -> list[Point]:
    rows = await pool.fetch(
        "SELECT time, value FROM reading WHERE device_id = $1 AND metric = $2 "
        "AND time >= $3 AND time < $4 ORDER BY time LIMIT $5",
        device_id,
        metric,
        start,
        end,
        limit,
    )
    return [Point(r["time"], r["value"], 1) for r in rows]


async def bucketed_points(
    pool: asyncpg.Pool,
    source: str,
    device_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    size: timedelta,
    origin: datetime,
    aggregate: str,
    fill: bool,
) -> list[Point]:
    """One point per bucket of `size` from `origin`: raw readings aggregated at query time,
    or a rollup (`source`, from the catalog of rollups) re-aggregated; with `fill`, empty
    buckets too."""
    if source == "reading":
        grouped = (
            "SELECT date_bin($5, time, $6) AS b, avg(value) AS avg, min(value) AS min, "
            "max(value) AS max, count(*) AS count, "
            "(array_agg(value ORDER BY time DESC))[1] AS last FROM reading "
            "WHERE device_id = $1 AND metric = $2 AND time >= $3 AND time < $4 GROUP BY 1"
        )
    else:
        grouped = (
            f"SELECT date_bin($5, bucket, $6) AS b, "
            "sum(avg * count) / sum(count) AS avg, min(min) AS min, max(max) AS max, "
            "sum(count)::bigint AS count, (array_agg(last ORDER BY bucket DESC))[1] AS last "
            f"FROM {source} WHERE device_id = $1 AND metric = $2 AND bucket >= $3 "
            "AND bucket < $4 GROUP BY 1"
        )
    if not fill:
        query = f"{grouped} ORDER BY 1"
    else:
        query = (
            f"WITH agg AS ({grouped}), slots AS (SELECT generate_series(date_bin($5, $3, $6), "
            "$4 - interval '1 microsecond', $5) AS b) "
            "SELECT slots.b, agg.avg, agg.min, agg.max, coalesce(agg.count, 0) AS count, "
            "agg.last FROM slots LEFT JOIN agg USING (b) ORDER BY 1"
        )
    rows = await pool.fetch(query, device_id, metric, start, end, size, origin)
    return [
        Point(
            r["b"],
            r[aggregate] if aggregate != "count" else float(r["count"] or 0),
            int(r["count"] or 0),
        )
        for r in rows
    ]


async def latest(
    pool: asyncpg.Pool, device_ids: Sequence[int] | None, metrics: Sequence[str]
) -> list[Latest]:
    rows = await pool.fetch(
        "SELECT d.uid AS device, l.metric, l.time, l.value FROM reading_latest l "
        "JOIN device d ON d.id = l.device_id "
        "WHERE ($1::bigint[] IS NULL OR l.device_id = ANY($1)) "
        "AND (cardinality($2::text[]) = 0 OR l.metric = ANY($2)) ORDER BY d.uid, l.metric",
        list(device_ids) if device_ids is not None else None,
        list(metrics),
    )
    return [_as(r, Latest) for r in rows]


async def ward_metric_summaries(
    pool: asyncpg.Pool, ward_id: int, now: datetime, local_midnight: datetime
) -> list[MetricSummary]:
    """Per metric of the ward's active sensors: the mean of the last hour's latest values
    and today's extremes."""
    rows = await pool.fetch(
        """
        WITH devices AS (SELECT id FROM device WHERE ward_id = $1 AND kind = 'sensor'
                         AND lifecycle = 'active'),
             fresh AS (SELECT metric, avg(value) AS latest_avg, count(*) AS devices
                       FROM reading_latest WHERE device_id IN (SELECT id FROM devices)
                       AND time > $2::timestamptz - interval '1 hour'
                       AND metric NOT LIKE 'raw/%' GROUP BY metric),
             today AS (SELECT metric, min(value) AS today_min, max(value) AS today_max
                       FROM reading WHERE device_id IN (SELECT id FROM devices)
                       AND time >= $3 AND time <= $2::timestamptz
                       AND metric NOT LIKE 'raw/%' GROUP BY metric)
        SELECT coalesce(f.metric, t.metric) AS metric, f.latest_avg, t.today_min, t.today_max,
               coalesce(f.devices, 0) AS devices
        FROM fresh f FULL JOIN today t ON t.metric = f.metric ORDER BY 1
        """,
        ward_id,
        now,
        local_midnight,
    )
    return [_as(r, MetricSummary) for r in rows]


async def ward_hourly_means(
    pool: asyncpg.Pool, ward_id: int, metrics: Sequence[str], hour: datetime
) -> list[tuple[str, str, datetime, float]]:
    """(station, metric, hour, mean) of the ward's sensors, the 12 hours up to `hour`."""
    rows = await pool.fetch(
        """
        SELECT d.uid, r.metric, date_trunc('hour', r.time) AS hour, avg(r.value) AS mean
        FROM reading r JOIN device d ON d.id = r.device_id
        WHERE d.ward_id = $1 AND d.kind = 'sensor' AND r.metric = ANY($2::text[])
          AND r.time >= $3::timestamptz - interval '11 hours'
          AND r.time < $3::timestamptz + interval '1 hour'
        GROUP BY 1, 2, 3
        """,
        ward_id,
        list(metrics),
        hour,
    )
    return [(r["uid"], r["metric"], r["hour"], r["mean"]) for r in rows]


HOURLY_MEANS = """
SELECT device_id, metric, bucket, avg FROM reading_1h
WHERE device_id = ANY($1::bigint[]) AND metric = ANY($2::text[])
  AND bucket >= $3::timestamptz AND bucket < least($4::timestamptz, $5::timestamptz)
UNION ALL
SELECT device_id, metric, date_bin('1 hour', time, '2000-01-01 00:00+00'), avg(value)
FROM reading
WHERE device_id = ANY($1::bigint[]) AND metric = ANY($2::text[])
  AND time >= greatest($3::timestamptz, $5::timestamptz) AND time < $4::timestamptz
GROUP BY 1, 2, 3
"""


async def hourly_means(
    pool: asyncpg.Pool,
    device_ids: Sequence[int],
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
    raw_from: datetime,
) -> list[tuple[int, str, datetime, float]]:
    """(device, metric, hour, mean) over [start, end): from the hourly rollup before
    `raw_from`, from raw readings after it."""
    rows = await pool.fetch(HOURLY_MEANS, list(device_ids), list(metrics), start, end, raw_from)
    return [(r["device_id"], r["metric"], r["bucket"], r["avg"]) for r in rows]


async def export_rows(
    pool: asyncpg.Pool,
    device_ids: Sequence[int],
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
) -> AsyncIterator[asyncpg.Record]:
    """Raw readings in time order, streamed through a server-side cursor."""
    async with pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor(
            "SELECT r.time, d.uid, r.metric, r.value FROM reading r JOIN device d "
            "ON d.id = r.device_id WHERE r.device_id = ANY($1::bigint[]) "
            "AND (cardinality($2::text[]) = 0 OR r.metric = ANY($2)) "
            "AND r.time >= $3 AND r.time < $4 ORDER BY r.time, d.uid, r.metric",
            list(device_ids),
            list(metrics),
            start,
            end,
            prefetch=2000,
        ):
            yield row


# ---- rollups, retention and the maintenance jobs ----

REFRESH_1H = """
INSERT INTO reading_1h (bucket, device_id, metric, avg, min, max, count, last)
SELECT date_bin('1 hour', time, '2000-01-01 00:00+00') AS bucket, device_id, metric,
       avg(value), min(value), max(value), count(*),
       (array_agg(value ORDER BY time DESC))[1]
FROM reading
WHERE time >= $1 AND time < $2
GROUP BY 1, 2, 3
ON CONFLICT (device_id, metric, bucket) DO UPDATE
SET avg = excluded.avg, min = excluded.min, max = excluded.max, count = excluded.count,
    last = excluded.last
"""


async def refresh_hourly(pool: asyncpg.Pool, start: datetime, end: datetime) -> None:
    """Recompute the plain-PostgreSQL hourly rollup of [start, end) (whole hours)."""
    await pool.execute(REFRESH_1H, start, end)


async def set_timescaledb_policies(
    pool: asyncpg.Pool,
    *,
    compress_after_days: int,
    retention_days: Sequence[tuple[str, int]],
    refresh_1m_hours: int,
    refresh_1h_days: int,
) -> None:
    """Replace TimescaleDB's compression, retention and rollup refresh policies, at once."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT remove_compression_policy('reading', if_exists => true)")
        await conn.execute(
            "SELECT add_compression_policy('reading', make_interval(days => $1))",
            compress_after_days,
        )
        for relation, days in retention_days:
            await conn.execute("SELECT remove_retention_policy($1, if_exists => true)", relation)
            await conn.execute(
                "SELECT add_retention_policy($1, make_interval(days => $2))", relation, days
            )
        await conn.execute(
            "SELECT remove_continuous_aggregate_policy('reading_1m', if_exists => true)"
        )
        await conn.execute(
            "SELECT add_continuous_aggregate_policy('reading_1m', "
            "start_offset => make_interval(hours => $1), end_offset => INTERVAL '1 minute', "
            "schedule_interval => INTERVAL '1 minute')",
            refresh_1m_hours,
        )
        await conn.execute(
            "SELECT remove_continuous_aggregate_policy('reading_1h', if_exists => true)"
        )
        await conn.execute(
            "SELECT add_continuous_aggregate_policy('reading_1h', "
            "start_offset => make_interval(days => $1), end_offset => INTERVAL '1 hour', "
            "schedule_interval => INTERVAL '30 minutes')",
            refresh_1h_days,
        )


async def delete_older(pool: asyncpg.Pool, table: str, column: str, days: int, limit: int) -> int:
    """Delete up to `limit` rows of `table` (a name from the code) older than `days`."""
    status = await pool.execute(
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
        f"WHERE {column} < now() - make_interval(days => $1) LIMIT $2))",
        days,
        limit,
    )
    return int(status.split()[-1])


async def server_versions(conn: Any) -> tuple[int, str | None]:
    """server_version_num, and the TimescaleDB extension's version if installed."""
    server = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    text = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    return server, text


JOB_QUERY = """
SELECT j.job_id, j.proc_name, coalesce(ca.view_name::text, j.hypertable_name::text) AS relation,
       extract(epoch FROM j.schedule_interval)::float8 AS schedule_s,
       s.last_successful_finish, s.last_run_status,
       (SELECT count(*) FROM timescaledb_information.job_errors e
        WHERE e.job_id = j.job_id
          AND e.start_time > coalesce(s.last_successful_finish, '-infinity'))::int AS failures,
       (SELECT e.err_message FROM timescaledb_information.job_errors e
        WHERE e.job_id = j.job_id ORDER BY e.start_time DESC LIMIT 1) AS last_error
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN timescaledb_information.continuous_aggregates ca
       ON ca.materialization_hypertable_schema = j.hypertable_schema
      AND ca.materialization_hypertable_name = j.hypertable_name
WHERE j.proc_name = ANY($1::text[])
ORDER BY j.job_id
"""


async def timescaledb_jobs(conn: Any, procedures: Sequence[str]) -> list[asyncpg.Record]:
    """TimescaleDB's jobs of these procedures with their stats and latest error."""
    rows: list[asyncpg.Record] = await conn.fetch(JOB_QUERY, list(procedures))
    return rows


async def run_job(pool: asyncpg.Pool, job_id: int) -> None:
    async with pool.acquire() as conn:
        # The simple protocol, as a session would: policies commit inside.
        await conn.execute(f"CALL run_job({int(job_id)})")


RECORD = """
INSERT INTO maintenance_job (name, job_id, runner, schedule_s, last_success_at,
                             consecutive_failures, last_error, takeover_reason, checked_at)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[], $5::timestamptz[],
                     $6::int[], $7::text[], $8::text[], $9::timestamptz[])
ON CONFLICT (name) DO UPDATE SET
    job_id = EXCLUDED.job_id, runner = EXCLUDED.runner, schedule_s = EXCLUDED.schedule_s,
    last_success_at = EXCLUDED.last_success_at,
    consecutive_failures = EXCLUDED.consecutive_failures, last_error = EXCLUDED.last_error,
    takeover_reason = EXCLUDED.takeover_reason, checked_at = EXCLUDED.checked_at
"""

# name, job_id, runner, schedule_s, last_success_at, consecutive_failures, last_error,
# takeover_reason
JobRecord = tuple[str, int | None, str, float, datetime | None, int, str | None, str | None]


async def record_jobs(pool: asyncpg.Pool, jobs: Sequence[JobRecord], checked_at: datetime) -> None:
    """The jobs as now known, in place of every earlier record."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM maintenance_job WHERE NOT name = ANY($1::text[])",
            [j[0] for j in jobs],
        )
        if jobs:
            columns = [list(column) for column in zip(*jobs, strict=True)]
            await conn.execute(RECORD, *columns, [checked_at] * len(jobs))


async def job_records(conn: Any) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch("SELECT * FROM maintenance_job ORDER BY name")
    return rows


async def last_success(pool: asyncpg.Pool, job: str) -> datetime | None:
    when: datetime | None = await pool.fetchval(
        "SELECT last_success_at FROM maintenance_job WHERE name = $1", job
    )
    return when


async def rollup_tables(conn: Any, views: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The materialisation hypertable (schema, name) of each continuous aggregate."""
    return {
        r["view_name"]: (r["schema"], r["name"])
        for r in await conn.fetch(
            "SELECT view_name::text, materialization_hypertable_schema::text AS schema, "
            "materialization_hypertable_name::text AS name "
            "FROM timescaledb_information.continuous_aggregates WHERE view_name = ANY($1)",
            list(views),
        )
    }


async def newest_bucket(conn: Any, schema: str, table: str) -> datetime | None:
    newest: datetime | None = await conn.fetchval(
        f'SELECT max(bucket) FROM "{schema}"."{table}"'  # names from the catalog
    )
    return newest


WRITER: RuntimeKey[ReadingWriter] = RuntimeKey("the telemetry writer")
