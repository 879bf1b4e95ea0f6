"""One leader among schedulers, each occurrence fired once and on time, across restarts.

These schedulers run against a database of their own: the session hub runs a scheduler
of its own on the shared one, and would take part in the election.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hub.broadcasts.scheduler import BroadcastScheduler, claim
from hub.broadcasts.settings import BroadcastSettings
from hub.storage.database import run_migrations
from tests.support.broadcasts import eventually
from tests.support.hub import create_database, drop_database

FAST = BroadcastSettings(
    prepare_s=0.5, send_ahead_s=0.3, leader_retry_s=0.1, leader_check_s=0.3, idle_poll_s=5.0
)


@dataclass
class Runner:
    """Stands for the dispatcher: notes each occurrence it is handed, then completes it."""

    pool: asyncpg.Pool
    complete: bool = True
    calls: list[tuple[int, datetime]] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)

    async def run_occurrence(self, occurrence_id: int) -> None:
        called_at = datetime.now(UTC)
        if self.complete:
            await self.pool.execute(
                "UPDATE broadcast_occurrence SET status = 'completed' WHERE id = $1",
                occurrence_id,
            )
        self.calls.append((occurrence_id, called_at))
        if not self.complete:
            await asyncio.Future()  # a dispatch still under way when its process dies

    def broadcast_changed(self, broadcast_id: int) -> None:
        self.changed.append(broadcast_id)


@pytest.fixture(scope="module")
async def scheduler_db() -> AsyncIterator[str]:
    url = await create_database()
    await run_migrations(url)
    yield url
    await drop_database(url)


@pytest.fixture
async def pool(scheduler_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(scheduler_db, min_size=2, max_size=8)
    await pool.execute(
        "TRUNCATE broadcast, broadcast_slot, broadcast_occurrence, audio_asset, ward "
        "RESTART IDENTITY CASCADE"
    )
    await pool.execute("INSERT INTO ward (code, name) VALUES ('ward-a', 'Phường A')")
    digest = hashlib.sha256(b"tone").hexdigest()
    await pool.execute(
        "INSERT INTO audio_asset (name, source, original_format, original_sha256, "
        "original_bytes, sha256, size_bytes, duration_s, sample_rate, created_by) "
        "VALUES ('tone', 'upload', 'WAV', $1, 4, $1, 4, 1.0, 22050, 'test')",
        digest,
    )
    yield pool
    await pool.close()


async def add_broadcast(pool: asyncpg.Pool, starts_at: datetime, retry_window_s: int = 60) -> int:
    """A one-off broadcast and its slot, as the API saves them (the NOTIFY included)."""
    async with pool.acquire() as conn, conn.transaction():
        broadcast_id: int = await conn.fetchval(
            "INSERT INTO broadcast (title, priority, volume, audio_asset_id, duration_s, "
            "target_wards, ward_ids, starts_at, timezone, retry_window_s, created_by) "
            "VALUES ('t', 'normal', 50, 1, 1.0, '{1}', '{1}', $1, 'Asia/Ho_Chi_Minh', $2, "
            "'test') RETURNING id",
            starts_at,
            retry_window_s,
        )
        await conn.execute(
            "INSERT INTO broadcast_slot (broadcast_id, starts_at, ends_at) VALUES ($1, $2, $3)",
            broadcast_id,
            starts_at,
            starts_at + timedelta(seconds=1),
        )
    return broadcast_id


@contextlib.asynccontextmanager
async def running(
    scheduler_db: str, pool: asyncpg.Pool, runner: Runner, node: str
) -> AsyncIterator[BroadcastScheduler]:
    scheduler = BroadcastScheduler(pool, scheduler_db, FAST, runner, node=node)
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def occurrences(pool: asyncpg.Pool, broadcast_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM broadcast_occurrence WHERE broadcast_id = $1", broadcast_id
    )


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_two_schedulers_elect_one_leader_that_fires_each_occurrence_once_on_time(
    scheduler_db: str, pool: asyncpg.Pool
) -> None:
    first, second = Runner(pool), Runner(pool)
    async with (
        running(scheduler_db, pool, first, "hub-1") as a,
        running(scheduler_db, pool, second, "hub-2") as b,
    ):
        await eventually(lambda: a.is_leader or b.is_leader, 5)
        await asyncio.sleep(0.3)  # several election rounds: the follower stays a follower
        assert [a.is_leader, b.is_leader].count(True) == 1
        starts_at = soon(1.0)
        broadcast_id = await add_broadcast(pool, starts_at)
        await eventually(lambda: first.calls + second.calls, 5)
        await asyncio.sleep(0.7)
        calls = first.calls + second.calls
        assert len(calls) == 1
        [row] = await occurrences(pool, broadcast_id)
        assert row["claimed_by"] == ("hub-1" if a.is_leader else "hub-2")
        # Fired when due (prepare_s before the start), not late.
        lateness = calls[0][1] - (starts_at - timedelta(seconds=FAST.prepare_s))
        assert timedelta(0) <= lateness < timedelta(milliseconds=200)

        # The leader's lock connection dies: the lock is freed and someone leads again.
        leader = a if a.is_leader else b
        lost_pid = leader.lock_backend_pid
        await pool.execute("SELECT pg_terminate_backend($1)", lost_pid)
        await eventually(
            lambda: any(s.is_leader and s.lock_backend_pid != lost_pid for s in (a, b)), 5
        )
        assert [a.is_leader, b.is_leader].count(True) == 1
        later = await add_broadcast(pool, soon(0.8))
        await eventually(lambda: len(first.calls + second.calls) == 2, 5)
        await asyncio.sleep(0.5)
        assert len(first.calls + second.calls) == 2
        assert len(await occurrences(pool, later)) == 1


async def test_a_lone_scheduler_wins_its_lock_back_after_losing_the_connection(
    scheduler_db: str, pool: asyncpg.Pool
) -> None:
    runner = Runner(pool)
    async with running(scheduler_db, pool, runner, "hub-1") as scheduler:
        await asyncio.wait_for(scheduler.wait_leading(), 5)
        lost_pid = scheduler.lock_backend_pid
        await pool.execute("SELECT pg_terminate_backend($1)", lost_pid)
        await eventually(
            lambda: scheduler.is_leader and scheduler.lock_backend_pid not in (None, lost_pid),
            5,
        )
        broadcast_id = await add_broadcast(pool, soon(1.0))
        await eventually(lambda: runner.calls, 5)
        assert len(await occurrences(pool, broadcast_id)) == 1


async def test_an_occurrence_fires_once_across_a_restart(
    scheduler_db: str, pool: asyncpg.Pool
) -> None:
    before, after = Runner(pool), Runner(pool)
    fired = await add_broadcast(pool, soon(1.0))
    async with running(scheduler_db, pool, before, "hub-old"):
        await eventually(lambda: before.calls, 5)
    # Restarted just before the next one is due: it is fired late, once.
    due_while_down = await add_broadcast(pool, soon(0.1))
    await asyncio.sleep(0.2)
    async with running(scheduler_db, pool, after, "hub-new") as scheduler:
        await asyncio.wait_for(scheduler.wait_leading(), 5)
        await eventually(lambda: after.calls, 5)
        await asyncio.sleep(0.3)
    assert len(before.calls) == 1 and len(after.calls) == 1
    [old] = await occurrences(pool, fired)
    [new] = await occurrences(pool, due_while_down)
    assert (old["claimed_by"], new["claimed_by"]) == ("hub-old", "hub-new")
    assert after.calls[0][0] == new["id"]


async def test_a_new_leader_resumes_an_unfinished_occurrence_instead_of_firing_it_again(
    scheduler_db: str, pool: asyncpg.Pool
) -> None:
    stuck, successor = Runner(pool, complete=False), Runner(pool)
    broadcast_id = await add_broadcast(pool, soon(0.8))
    async with running(scheduler_db, pool, stuck, "hub-old"):
        await eventually(lambda: stuck.calls, 5)
    async with running(scheduler_db, pool, successor, "hub-new"):
        await eventually(lambda: successor.calls, 5)
    [row] = await occurrences(pool, broadcast_id)
    assert stuck.calls[0][0] == successor.calls[0][0] == row["id"]
    assert row["claimed_by"] == "hub-old"


async def test_slots_long_past_their_window_are_recorded_as_missed(
    scheduler_db: str, pool: asyncpg.Pool
) -> None:
    runner = Runner(pool)
    missed = await add_broadcast(pool, datetime.now(UTC) - timedelta(minutes=5), 60)
    async with running(scheduler_db, pool, runner, "hub-1") as scheduler:
        await asyncio.wait_for(scheduler.wait_leading(), 5)
        [row] = await eventually(lambda: occurrences(pool, missed), 5)
    assert row["status"] == "missed"
    assert runner.calls == []


async def test_only_one_of_many_concurrent_claims_wins(pool: asyncpg.Pool) -> None:
    starts_at = soon(60)
    broadcast_id = await add_broadcast(pool, starts_at)
    results = await asyncio.gather(
        *(claim(pool, broadcast_id, starts_at, f"hub-{n}") for n in range(8))
    )
    assert len([r for r in results if r is not None]) == 1
