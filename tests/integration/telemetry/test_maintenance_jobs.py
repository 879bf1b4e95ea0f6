"""Maintenance jobs (retention, compression, rollup refresh) that fail are seen, shown in
/readyz and the metrics, and run by the hub itself; rollup freshness is a figure of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from hub.telemetry import jobs
from hub.telemetry.jobs import MAINTENANCE_JOBS, JobSettings, JobSupervisor, rollup_freshness
from hub.telemetry.policies import RetentionPolicy, apply_timescaledb
from tests.conftest import Clients
from tests.support.hub import RunningHub
from tests.support.pools import migrated_pool

START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)

REFUSE_ON = """
CREATE FUNCTION refuse_maintenance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the test''s trigger'; END $$;
CREATE TRIGGER refuse BEFORE {event} ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION refuse_maintenance();
"""
ALLOW = "DROP TRIGGER refuse ON {table}; DROP FUNCTION refuse_maintenance();"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def plain_pool() -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_pool("postgres") as opened:
        yield opened


async def add_sensor(conn: Any) -> int:
    await conn.execute("INSERT INTO ward (code, name) VALUES ('w', 'W') ON CONFLICT DO NOTHING")
    return int(
        await conn.fetchval(
            "INSERT INTO device (uid, kind, ward_id, name) SELECT 'aq-1', 'sensor', id, 'aq-1' "
            "FROM ward WHERE code = 'w' RETURNING id"
        )
    )


def warnings_about(caplog: pytest.LogCaptureFixture, job: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hub.telemetry.jobs" and r.levelno == logging.WARNING and job in r.getMessage()
    ]


async def test_plain_retention_failures_are_counted_shown_and_recover(
    plain_pool: tuple[str, asyncpg.Pool], caplog: pytest.LogCaptureFixture
) -> None:
    url, pool = plain_pool
    caplog.set_level(logging.INFO, logger="hub.telemetry.jobs")
    clock = Clock()
    device = await add_sensor(pool)
    old = datetime.now(UTC) - timedelta(days=40)
    await pool.execute(
        "INSERT INTO reading (device_id, metric, time, value) VALUES ($1, 'pm10', $2, 1.0)",
        device,
        old,
    )
    supervisor = JobSupervisor(
        pool, url, "postgres", RetentionPolicy(raw_days=30), JobSettings(), clock=clock
    )
    await supervisor.step()
    assert await pool.fetchval("SELECT count(*) FROM reading") == 0
    rows = {r["name"]: r for r in await pool.fetch("SELECT * FROM maintenance_job")}
    assert set(rows) == {"retention:reading", "refresh:reading_1h"}
    assert all(r["runner"] == "hub" and r["consecutive_failures"] == 0 for r in rows.values())
    assert rows["retention:reading"]["last_success_at"] == START
    # The hourly rollup, the hub's own on plain PostgreSQL, is as current as its refresh.
    freshness = {r.name: r for r in await rollup_freshness(pool, "postgres", START)}
    assert freshness["reading_1m"].live
    assert freshness["reading_1h"].as_of == START and not freshness["reading_1h"].live
    ready = await jobs.readiness(pool, clock(), 180)
    assert ready.status == "ok"

    await pool.execute(REFUSE_ON.format(event="DELETE", table="reading"))
    clock.advance(3600)
    await supervisor.step()
    ready = await jobs.readiness(pool, clock(), 180)
    assert ready.status == "degraded"
    assert "refused by the test's trigger" in ready.failing["retention:reading"]
    assert ready.failing["retention:reading"].startswith("1 failures in a row")
    assert len(warnings_about(caplog, "retention:reading")) == 1

    # Not due yet: nothing runs. Due again: two in a row, and still one warning for the state.
    await supervisor.step()
    assert supervisor.jobs["retention:reading"].consecutive_failures == 1
    clock.advance(3600)
    await supervisor.step()
    assert supervisor.jobs["retention:reading"].consecutive_failures == 2
    assert len(warnings_about(caplog, "retention:reading")) == 1

    await pool.execute(ALLOW.format(table="reading"))
    clock.advance(3600)
    await supervisor.step()
    assert (await jobs.readiness(pool, clock(), 180)).status == "ok"
    assert any("runs again" in r.getMessage() for r in caplog.records)
    # A record nobody refreshed for too long is not taken for good news.
    stale = await jobs.readiness(pool, clock() + timedelta(seconds=181), 180)
    assert stale.status == "unknown"


async def test_readyz_and_metrics_show_a_failing_job_of_the_running_hub(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    supervisor: JobSupervisor = hub.runtime.get(MAINTENANCE_JOBS)
    if supervisor.backend != "postgres":
        pytest.skip("the hub's own retention runs on plain PostgreSQL only")
    anonymous = httpx.AsyncClient(base_url=hub.base_url)

    async def readiness() -> dict[str, Any]:
        hub.runtime.readiness = None  # past the 2 s cache
        response = await anonymous.get("/readyz")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    await db.execute(REFUSE_ON.format(event="DELETE", table="reading"))
    try:
        supervisor.jobs.clear()
        await supervisor.step()
        body = await readiness()
        assert body["status"] == "degraded"
        failing = body["checks"]["maintenance_jobs"]["failing"]
        assert "refused by the test's trigger" in failing["retention:reading"]
        metrics = (await clients.admin.get("/metrics")).text
        assert 'iochub_maintenance_job_consecutive_failures{job="retention:reading"} 1.0' in metrics
    finally:
        await db.execute(ALLOW.format(table="reading"))
    supervisor.jobs.clear()
    await supervisor.step()
    body = await readiness()
    await anonymous.aclose()
    assert body["status"] == "ready" and body["checks"]["maintenance_jobs"] == "ok"
    wards = (await clients.viewer.get("/api/v1/telemetry/wards")).json()
    assert wards
    for ward in wards:
        rollups = {r["name"]: r for r in ward["rollups"]}
        assert rollups["reading_1m"]["live"] and not rollups["reading_1h"]["live"]
        assert rollups["reading_1h"]["as_of"] is not None
        assert 0 <= rollups["reading_1h"]["age_s"] < 60


# ------------------------------------------------------------------------------ TimescaleDB


@pytest.fixture
async def timescale_pool() -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_pool("timescaledb") as (url, pool):
        await apply_timescaledb(pool, RetentionPolicy())
        yield url, pool


async def materialization_table(pool: asyncpg.Pool, view: str) -> str:
    row = await pool.fetchrow(
        "SELECT materialization_hypertable_schema AS s, materialization_hypertable_name AS n "
        "FROM timescaledb_information.continuous_aggregates WHERE view_name = $1",
        view,
    )
    return f'"{row["s"]}"."{row["n"]}"'


async def wait_for_database_failure(pool: asyncpg.Pool, job_id: int) -> None:
    """Have TimescaleDB's own runner run the job now, and wait for its failure."""
    await pool.execute("SELECT alter_job($1, next_start => now())", job_id)
    for _ in range(300):
        if await pool.fetchval(
            "SELECT count(*) FROM timescaledb_information.job_errors WHERE job_id = $1", job_id
        ):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"TimescaleDB's job runner did not run job {job_id} within 30 s")


@pytest.mark.timescaledb
async def test_a_failing_policy_is_shown_and_run_by_the_hub_itself(
    timescale_pool: tuple[str, asyncpg.Pool],
) -> None:
    url, pool = timescale_pool
    clock = Clock()
    device = await add_sensor(pool)
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO reading (device_id, metric, time, value) VALUES ($1, 'pm10', $2, $3)",
        [(device, now - timedelta(minutes=m), float(m)) for m in range(5, 60, 5)],
    )
    materialized = await materialization_table(pool, "reading_1m")
    await pool.execute(REFUSE_ON.format(event="INSERT", table=materialized))
    supervisor = JobSupervisor(
        pool,
        url,
        "timescaledb",
        RetentionPolicy(),
        JobSettings(takeover_after_failures=1),
        clock=clock,
    )
    await supervisor.step()  # first look: which jobs exist, and is this pair known to break
    refresh = supervisor.jobs["refresh:reading_1m"]
    assert {"compression:reading", "retention:reading", "refresh:reading_1h"} <= set(
        supervisor.jobs
    )
    if supervisor.broken:
        # Every policy is the hub's from the start, and the pair is named as the reason.
        assert all(job.runner == "hub" for job in supervisor.jobs.values())
        assert "PostgreSQL 15." in (refresh.takeover_reason or "")
    else:
        assert refresh.job_id is not None
        await wait_for_database_failure(pool, refresh.job_id)
        await supervisor.step()
        assert refresh.runner == "hub"
        assert "failed job" in (refresh.takeover_reason or "")
    # The hub's own run meets the same refusal: counted and shown, with the database's error
    # (a trigger raising inside the policy surfaces as the policy's own error).
    clock.advance(refresh.schedule_s)
    await supervisor.step()
    ready = await jobs.readiness(pool, clock(), 180)
    assert ready.status == "degraded"
    assert refresh.consecutive_failures >= 1 and refresh.last_error
    assert ready.failing["refresh:reading_1m"].endswith(refresh.last_error)
    assert "refresh:reading_1m" in ready.run_by_hub

    [before] = [
        r for r in await rollup_freshness(pool, "timescaledb", now) if r.name == "reading_1m"
    ]
    await pool.execute(f"DROP TRIGGER refuse ON {materialized}; DROP FUNCTION refuse_maintenance()")
    clock.advance(refresh.schedule_s)
    await supervisor.step()
    assert refresh.consecutive_failures == 0 and refresh.last_success_at == clock()
    [after] = [
        r for r in await rollup_freshness(pool, "timescaledb", now) if r.name == "reading_1m"
    ]
    # The hub's refresh materialised the readings: the figure moved from nothing to minutes.
    assert before.as_of is None
    assert after.as_of is not None and after.age_s is not None and after.age_s < 10 * 60


@pytest.mark.timescaledb
async def test_rollup_freshness_advances_as_rollups_are_refreshed(
    timescale_pool: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = timescale_pool
    device = await add_sensor(pool)
    now = datetime.now(UTC).replace(second=0, microsecond=0)

    async def freshness() -> datetime | None:
        [one] = [
            r for r in await rollup_freshness(pool, "timescaledb", now) if r.name == "reading_1m"
        ]
        assert not one.live
        return one.as_of

    async def add_and_refresh(minutes_ago: int) -> None:
        await pool.execute(
            "INSERT INTO reading (device_id, metric, time, value) VALUES ($1, 'pm10', $2, 1)",
            device,
            now - timedelta(minutes=minutes_ago),
        )
        await pool.execute("CALL refresh_continuous_aggregate('reading_1m', NULL, NULL)")

    assert await freshness() is None
    await add_and_refresh(30)
    assert await freshness() == now - timedelta(minutes=29)
    await add_and_refresh(5)
    assert await freshness() == now - timedelta(minutes=4)
