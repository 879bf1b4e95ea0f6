"""One leader across hub processes for work that must run once: a PostgreSQL session-level
advisory lock held on a dedicated connection.

Whoever holds the lock runs the work; the others try again every ``retry_s``. When the lock
connection dies the server releases the lock, a follower takes over within about
``retry_s + check_s``, and the old leader's work is cancelled as soon as it notices (the
connection is watched every ``check_s``). The work itself must still be safe to run twice
for a moment (claims, idempotent statements): the lock elects, it does not fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from hub.storage.database import connect_writable

log = logging.getLogger("hub.storage.leadership")

# The work uses its own connections (a pool): the lock connection is only watched.
LeaderWork = Callable[[], Coroutine[Any, Any, None]]


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a leadership name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def led(dsn: str, name: str, work: LeaderWork) -> LeaderWork:
    """``work`` as a singleton across hub processes: run only while leading ``name``."""
    return lambda: Leadership(dsn, name).run(work)


class Leadership:
    def __init__(self, dsn: str, name: str, *, retry_s: float = 5.0, check_s: float = 5.0) -> None:
        self.name = name
        self.key = lock_key(f"iochub.{name}")
        self.retry_s = retry_s
        self.check_s = check_s
        self._dsn = dsn
        self._leading = asyncio.Event()

    @property
    def application_name(self) -> str:
        """The lock connection's name in pg_stat_activity: which process leads what."""
        return f"iochub-{self.name} pid {os.getpid()}"[:63]

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def run(self, work: LeaderWork) -> None:
        """Compete for the lock until cancelled; run ``work`` while holding it. Work that
        returns ends the leadership term (the lock is released and competed for again)."""
        while True:
            try:
                conn = await connect_writable(
                    self._dsn, server_settings={"application_name": self.application_name}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("%s cannot reach the database (%s); retrying", self.name, exc)
                await asyncio.sleep(self.retry_s)
                continue
            try:
                await self._elect_and_lead(conn, work)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("%s lost its lock connection (%s)", self.name, exc)
            finally:
                self._leading.clear()
                # Best effort: the connection is usually the one that just failed.
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self.retry_s)

    async def _elect_and_lead(self, conn: asyncpg.Connection[Any], work: LeaderWork) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.retry_s):
                    await lost.wait()
            if lost.is_set():
                return
        self._leading.set()
        log.info("%s leads %s", node_name(), self.name)
        lead = asyncio.create_task(work(), name=f"{self.name}-lead")
        watch = asyncio.create_task(self._watch(conn, lost), name=f"{self.name}-watch")
        try:
            done, _ = await asyncio.wait({lead, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (lead, watch):
                task.cancel()
            await asyncio.gather(lead, watch, return_exceptions=True)
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1)", self.key)
        log.warning("%s no longer leads %s", node_name(), self.name)

    async def _watch(self, conn: asyncpg.Connection[Any], lost: asyncio.Event) -> None:
        """Return when the lock connection is gone (then the lock is gone too)."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_s):
                    await lost.wait()
            if lost.is_set() or conn.is_closed():
                return
            try:
                async with asyncio.timeout(self.check_s):
                    await conn.fetchval("SELECT 1")
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return
