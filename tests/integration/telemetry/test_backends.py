"""The same time-series answers on both backends, below HTTP: each backend gets its own
fresh database (TimescaleDB only where the extension is installed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hub.telemetry import aqi_history, queries
from hub.telemetry.policies import RetentionPolicy, apply_timescaledb, expire_plain
from hub.telemetry.rollups import refresh_hourly
from hub.telemetry.store import ReadingWriter
from tests.support.hub import migrated_database

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["postgres", "timescaledb"], scope="module")
async def backend_pool(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    backend = request.param
    async with migrated_database(backend) as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        await pool.execute("INSERT INTO ward (code, name) VALUES ('w', 'W')")
        await pool.execute(
            "INSERT INTO device (uid, kind, ward_id) VALUES "
            "('s1', 'sensor', 1), ('s2', 'sensor', 1)"
        )
        yield backend, pool
        await pool.close()


async def store(pool: asyncpg.Pool, rows: list[tuple[datetime, int, str, float]]) -> None:
    writer = ReadingWriter(pool, writers=1, batch_age_s=0.001)

    task = asyncio.create_task(writer.run())
    try:
        await writer.write(rows)
    finally:
        task.cancel()


async def test_minute_and_hour_buckets_agree_with_raw(
    backend_pool: tuple[str, asyncpg.Pool],
) -> None:
    backend, pool = backend_pool
    await pool.execute("TRUNCATE reading, reading_latest")
    rows = [(START + timedelta(minutes=m), 1, "pm10", float(m % 60)) for m in range(180)]
    await store(pool, rows)
    end = START + timedelta(hours=3)
    hourly = await queries.series(pool, backend, 1, "s1", "pm10", START, end, "1h", "avg")
    assert hourly.source == ("reading_1h" if backend == "timescaledb" else "reading")
    assert [(p.value, p.count) for p in hourly.points] == [(29.5, 60)] * 3
    fifteen = await queries.series(pool, backend, 1, "s1", "pm10", START, end, "15m", "max")
    assert [p.value for p in fifteen.points][:4] == [14.0, 29.0, 44.0, 59.0]
    assert fifteen.source == ("reading_1m" if backend == "timescaledb" else "reading")
    last = await queries.series(pool, backend, 1, "s1", "pm10", START, end, "1h", "last")
    assert [p.value for p in last.points] == [59.0, 59.0, 59.0]
    # Local-day buckets: 2026-03-01 00:00 UTC is 07:00 in Hà Nội, inside the local day
    # that started at 2026-02-28 17:00 UTC.
    daily = await queries.series(pool, backend, 1, "s1", "pm10", START, end, "1d", "count")
    assert [(p.time, p.value) for p in daily.points] == [(START - timedelta(hours=7), 180.0)]


async def test_gap_filling_on_both_backends(backend_pool: tuple[str, asyncpg.Pool]) -> None:
    backend, pool = backend_pool
    await pool.execute("TRUNCATE reading, reading_latest")
    await store(pool, [(START, 2, "noise", 50.0), (START + timedelta(hours=2), 2, "noise", 60.0)])
    end = START + timedelta(hours=3)
    series = await queries.series(
        pool, backend, 2, "s2", "noise", START, end, "1h", "avg", "previous"
    )
    assert [p.value for p in series.points] == [50.0, 50.0, 60.0]
    assert [p.count for p in series.points] == [1, 0, 1]


async def test_retention_is_applied(backend_pool: tuple[str, asyncpg.Pool]) -> None:
    backend, pool = backend_pool
    policy = RetentionPolicy(raw_days=30)
    if backend == "timescaledb":
        await apply_timescaledb(pool, policy)
        days = await pool.fetchval(
            "SELECT config->>'drop_after' FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'reading'"
        )
        assert days == "30 days"
        # Values that are not numbers live in a hypertable of their own, kept as long.
        kept = await pool.fetchval(
            "SELECT config->>'drop_after' FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'reading_value'"
        )
        assert kept == "30 days"
        return
    await pool.execute("TRUNCATE reading, reading_latest, reading_value")
    now = datetime.now(UTC)
    await store(pool, [(now - timedelta(days=40), 1, "pm10", 1.0), (now, 1, "pm10", 2.0)])
    await pool.execute(
        "INSERT INTO reading_value (time, device_id, metric, bool_value) VALUES "
        "($1, 1, 'door_open', true), ($2, 1, 'door_open', false)",
        now - timedelta(days=40),
        now,
    )
    assert await expire_plain(pool, policy) == 2
    assert await pool.fetchval("SELECT count(*) FROM reading") == 1
    assert await pool.fetchval("SELECT count(*) FROM reading_value") == 1


async def test_daily_aqi_outlives_raw_readings_on_both_backends(
    backend_pool: tuple[str, asyncpg.Pool],
) -> None:
    backend, pool = backend_pool
    await pool.execute("TRUNCATE reading, reading_latest")
    # The local day 2026-03-01 starts at 2026-02-28 17:00 UTC. PM2.5 40 µg/m³ all day:
    # Decision 1459 Table 2, band 25-50 (index 50-100): 50 + 50/25 × 15 = 80.
    day = START - timedelta(hours=7)
    await store(pool, [(day + timedelta(hours=h, minutes=30), 1, "pm2_5", 40.0) for h in range(24)])
    if backend == "timescaledb":
        await pool.execute(
            "CALL refresh_continuous_aggregate('reading_1h', $1::timestamptz, $2::timestamptz)",
            day,
            day + timedelta(days=1),
        )
    else:
        await refresh_hourly(pool, day, day + timedelta(days=1))
    await pool.execute("DELETE FROM reading")  # expired: only the hourly rollup is left
    months_later = day + timedelta(days=90)
    window = aqi_history.fetch_window("day", day, day + timedelta(days=1))
    means = await aqi_history.hourly_means(pool, backend, [1], *window, months_later)
    [point] = aqi_history.station_points("day", means[1], day, day + timedelta(days=1))
    assert point.local_date.isoformat() == "2026-03-01"
    assert point.rated.result is not None and point.rated.result.value == 80


def test_inconsistent_retention_is_refused() -> None:
    assert RetentionPolicy(raw_days=2, refresh_1h_days=3).problems()
    assert RetentionPolicy(raw_days=90, rollup_1m_days=30).problems()
    assert not RetentionPolicy().problems()
