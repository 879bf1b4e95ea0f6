"""One scheduler across all hub processes, firing each planned occurrence once, on time.

Leadership is a PostgreSQL session-level advisory lock held on a dedicated connection:
whoever holds it schedules, the others retry now and then. If the connection dies the
server releases the lock, a follower takes over, and the old leader stops scheduling as
soon as it notices (connection watch) and tries to win the lock back.

The leader sleeps until the next slot is due (less ``prepare_s``) and wakes early on
``NOTIFY iochub_broadcasts`` (any broadcast saved, changed or cancelled). Each due slot
is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (broadcast, start):
the claim, not the lock, is what makes an occurrence fire once, even across a restart
or during the moment two processes both believe they lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from hub.broadcasts import metrics, occurrences, planning
from hub.broadcasts.dispatch import PLAY_GRACE
from hub.broadcasts.settings import BroadcastSettings
from hub.storage.database import connect_writable

log = logging.getLogger("hub.broadcasts")

# pg_advisory_lock key of the scheduler leader: "iochub.broadcasts" in a 64-bit integer.
LEADER_LOCK_KEY = 0x10C_B0AD_CA57
NOTIFY_CHANNEL = "iochub_broadcasts"
MISSED_LOOKBACK = timedelta(days=7)
EXTEND_INTERVAL_S = 3600.0
MISSED_CHECK_INTERVAL_S = 10.0
DUE_BATCH = 200


class OccurrenceRunner(Protocol):
    async def run_occurrence(self, occurrence_id: int) -> None:
        """Fire a claimed occurrence, or carry on with one left unfinished."""
        ...

    def broadcast_changed(self, broadcast_id: int) -> None:
        """A broadcast was changed or cancelled: look again at what of it is in flight."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


DUE = """
SELECT s.broadcast_id, s.starts_at
FROM broadcast_slot s JOIN broadcast b ON b.id = s.broadcast_id
WHERE b.state = 'active' AND s.starts_at <= $1
  AND s.starts_at + make_interval(secs => GREATEST(b.retry_window_s, $3)) >= $2
  AND NOT EXISTS (SELECT 1 FROM broadcast_occurrence o
                  WHERE o.broadcast_id = s.broadcast_id AND o.scheduled_at = s.starts_at)
ORDER BY s.starts_at
LIMIT $4
"""
NEXT_SLOT = """
SELECT min(s.starts_at)
FROM broadcast_slot s JOIN broadcast b ON b.id = s.broadcast_id
WHERE b.state = 'active' AND s.starts_at > $1
  AND NOT EXISTS (SELECT 1 FROM broadcast_occurrence o
                  WHERE o.broadcast_id = s.broadcast_id AND o.scheduled_at = s.starts_at)
"""
UNFINISHED = f"""
SELECT id, broadcast_id, scheduled_at FROM broadcast_occurrence
WHERE status IN {occurrences.OPEN_SQL} ORDER BY scheduled_at
"""
claim = occurrences.claim


class BroadcastScheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        settings: BroadcastSettings,
        runner: OccurrenceRunner,
        *,
        node: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.runner = runner
        self.node = node or node_name()
        self._dsn = dsn
        self._clock = clock
        self._wake = asyncio.Event()
        self._leading = asyncio.Event()
        # Keyed by the claim itself: an id alone could be reused by a rebuilt database.
        self._occurrences: dict[tuple[int, int, datetime], asyncio.Task[None]] = {}
        self.lock_backend_pid: int | None = None
        """The server process holding the lock for us, while we lead."""

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ election

    async def run(self) -> None:
        """Compete for leadership until cancelled; lead while holding the lock."""
        while True:
            try:
                conn = await connect_writable(
                    self._dsn, server_settings={"application_name": "iochub-broadcast-scheduler"}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("scheduler cannot reach the database (%s); retrying", exc)
                await asyncio.sleep(self.settings.leader_retry_s)
                continue
            try:
                await self._elect_and_lead(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("scheduler lost its lock connection (%s)", exc)
            finally:
                self._step_down()
                # Best effort: the connection is usually the one that just failed.
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self.settings.leader_retry_s)

    async def _elect_and_lead(self, conn: asyncpg.Connection[Any]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.leader_retry_s):
                    await lost.wait()
            if lost.is_set():
                return
        self.lock_backend_pid = conn.get_server_pid()
        await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        self._leading.set()
        metrics.LEADER.set(1)
        log.info("%s is the broadcast scheduler leader", self.node)
        lead = asyncio.create_task(self._lead(), name="broadcast-scheduler-lead")
        watch = asyncio.create_task(self._watch(conn, lost), name="broadcast-scheduler-watch")
        try:
            done, _ = await asyncio.wait({lead, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (lead, watch):
                task.cancel()
            await asyncio.gather(lead, watch, return_exceptions=True)
        log.warning("%s is no longer the broadcast scheduler leader", self.node)

    async def _watch(self, conn: asyncpg.Connection[Any], lost: asyncio.Event) -> None:
        """Return when the lock connection is gone (then the lock is gone too)."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.leader_check_s):
                    await lost.wait()
            if lost.is_set() or conn.is_closed():
                return
            try:
                async with asyncio.timeout(self.settings.leader_check_s):
                    await conn.fetchval("SELECT 1")
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if isinstance(payload, str) and payload.isdigit():
            self.runner.broadcast_changed(int(payload))
        self._wake.set()

    def _step_down(self) -> None:
        self._leading.clear()
        self.lock_backend_pid = None
        metrics.LEADER.set(0)
        # The next leader resumes these from the database.
        for task in self._occurrences.values():
            task.cancel()
        self._occurrences.clear()

    # ------------------------------------------------------------------ leading

    async def _lead(self) -> None:
        for row in await self.pool.fetch(UNFINISHED):
            self._start((row["id"], row["broadcast_id"], row["scheduled_at"]))
        next_extension = next_missed_check = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                delay = await self._fire_due()
                # Bookkeeping after the firing, which is what a wake-up is usually for.
                if loop.time() >= next_missed_check:
                    await self._mark_missed()
                    next_missed_check = loop.time() + MISSED_CHECK_INTERVAL_S
                if loop.time() >= next_extension:
                    await planning.extend_series(self.pool, self.settings, self._clock())
                    next_extension = loop.time() + EXTEND_INTERVAL_S
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("scheduler round failed (%s); retrying", exc)
                delay = self.settings.leader_retry_s
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _fire_due(self) -> float:
        """Claim and start what is due; return how long to sleep until the next slot."""
        prepare = timedelta(seconds=self.settings.prepare_s)
        grace = PLAY_GRACE.total_seconds()
        now = self._clock()
        due = await self.pool.fetch(DUE, now + prepare, now, grace, DUE_BATCH)
        for slot in due:
            occurrence_id = await claim(
                self.pool, slot["broadcast_id"], slot["starts_at"], self.node
            )
            if occurrence_id is not None:
                self._start((occurrence_id, slot["broadcast_id"], slot["starts_at"]))
        if len(due) == DUE_BATCH:
            return 0.0
        upcoming: datetime | None = await self.pool.fetchval(NEXT_SLOT, now + prepare)
        if upcoming is None:
            return self.settings.idle_poll_s
        delay = (upcoming - prepare - self._clock()).total_seconds()
        return min(max(delay, 0.0), self.settings.idle_poll_s)

    async def _mark_missed(self) -> None:
        now = self._clock()
        await occurrences.mark_missed(
            self.pool, now, self.node, now - MISSED_LOOKBACK, PLAY_GRACE.total_seconds()
        )

    def _start(self, key: tuple[int, int, datetime]) -> None:
        if key in self._occurrences:
            return
        self._occurrences[key] = asyncio.create_task(
            self._run_occurrence(key), name=f"broadcast-occurrence-{key[0]}"
        )

    async def _run_occurrence(self, key: tuple[int, int, datetime]) -> None:
        try:
            await self.runner.run_occurrence(key[0])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("occurrence %d failed", key[0])
        finally:
            self._occurrences.pop(key, None)
