"""The outbox workers: fan events out to deliveries, send what is due, retry, dead-letter.

PostgreSQL notifications wake the workers the moment an event or a delivery commits; a
slow poll covers a lost listener connection. Several hub processes may run the workers
against one database: fan-out takes turns, deliveries are claimed with SKIP LOCKED.

The workers have a small pool of their own: requests to the API cannot starve delivery of
connections, nor delivery the API. Its statements touch several tables at once; should one
wait on a table lock (a migration, an operator's TRUNCATE), it gives up (lock_timeout) well
before the deadlock detector would pick a victim, and the worker retries shortly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from hub.integrations import metrics, store
from hub.integrations.events import DELIVERY_CHANNEL, OUTBOX_CHANNEL
from hub.integrations.grafana import GrafanaSender
from hub.integrations.settings import DeliverySettings
from hub.integrations.store import Job, Outcome, Status
from hub.integrations.webhooks import WebhookSender
from hub.storage.crypto import SecretBox

log = logging.getLogger("hub.integrations")

FAN_OUT_BATCH = 500
HOUSEKEEPING_INTERVAL_S = 15.0
RETENTION_INTERVAL_S = 3600.0
# A claim outlives the request it covers, so a slow database write does not end it early.
LEASE_MARGIN_S = 30.0
LOCK_TIMEOUT = "300ms"


class Sender(Protocol):
    async def send(self, job: Job) -> Outcome: ...
    async def aclose(self) -> None: ...


def retry_delay(settings: DeliverySettings, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
    delays = settings.retry_delays_s
    ceiling = delays[min(attempts, len(delays)) - 1]
    return random.uniform(0, ceiling) if settings.retry_jitter == "full" else ceiling


class DeliveryEngine:
    def __init__(
        self,
        dsn: str,
        *,
        settings: DeliverySettings,
        box: SecretBox,
        statement_timeout_ms: int = 30_000,
    ) -> None:
        self.settings = settings
        self._dsn = dsn
        self._box = box
        self._statement_timeout_ms = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._outbox_wake = asyncio.Event()
        self._send_wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self._in_flight: dict[asyncio.Task[None], Job] = {}
        self._senders: dict[str, Sender] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the engine is not running"
        return self._pool

    @property
    def grafana_enabled(self) -> bool:
        return self.settings.grafana.url is not None

    def wake(self) -> None:
        self._outbox_wake.set()
        self._send_wake.set()

    async def run(self) -> None:
        if self._stopping.is_set():
            return
        self._running = True
        self._finished.clear()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=min(10, 3 + self.settings.concurrency // 4),
                server_settings={
                    "application_name": "iochub-delivery",
                    "timezone": "UTC",
                    "lock_timeout": LOCK_TIMEOUT,
                    "statement_timeout": str(self._statement_timeout_ms),
                },
            )
            self._senders["webhook"] = WebhookSender(
                source=self.settings.source,
                box=self._box,
                timeout_s=self.settings.request_timeout_s,
                concurrency=self.settings.concurrency,
            )
            if self.settings.grafana.url is not None:
                self._senders["grafana"] = GrafanaSender(self.settings.grafana)
            log.info(
                "delivering alerts to IOC webhooks%s",
                " and Grafana annotations" if self.grafana_enabled else "",
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._listen())
                tasks.create_task(self._fan_out_loop())
                tasks.create_task(self._send_loop())
                tasks.create_task(self._housekeeping_loop())
                await self._stopping.wait()
                raise _Stopping
        except* _Stopping:
            pass
        finally:
            try:
                await self._finish_in_flight()
                for sender in self._senders.values():
                    await sender.aclose()
                self._senders.clear()
                if self._pool is not None:
                    await self._pool.close()
                    self._pool = None
            finally:
                self._running = False
                self._finished.set()

    async def stop(self) -> None:
        """Stop claiming; let deliveries in flight finish briefly, hand back the rest."""
        self._stopping.set()
        if self._running:
            await self._finished.wait()

    async def _finish_in_flight(self) -> None:
        if not self._in_flight:
            return
        _, unfinished = await asyncio.wait(
            list(self._in_flight), timeout=self.settings.shutdown_grace_s
        )
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    # ---- wake-ups ----

    async def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting with back-off when it drops."""
        delay = 1.0
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": "iochub-delivery"}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot listen for outbox events (%s); polling meanwhile", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            delay = 1.0
            try:
                await self._listen_on(conn)
                log.warning("the outbox listener connection dropped; reconnecting")
            finally:
                # Best effort: the listener connection is usually the one that dropped.
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def _listen_on(self, conn: asyncpg.Connection[Any]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(OUTBOX_CHANNEL, self._on_outbox)
        await conn.add_listener(DELIVERY_CHANNEL, self._on_delivery)
        # Whatever committed while nobody listened is picked up now.
        self.wake()
        await lost.wait()

    def _on_outbox(self, *_: Any) -> None:
        self._outbox_wake.set()

    def _on_delivery(self, *_: Any) -> None:
        self._send_wake.set()

    async def _sleep_until(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    # ---- fan-out ----

    async def _fan_out_loop(self) -> None:
        while True:
            self._outbox_wake.clear()
            try:
                done = await store.fan_out(
                    self.pool,
                    batch=FAN_OUT_BATCH,
                    grafana=self.grafana_enabled,
                    give_up_after_s=self.settings.give_up_after_s,
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("fan-out failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if done is not None and done.deliveries:
                self._send_wake.set()
            if done is not None and done.events == FAN_OUT_BATCH:
                continue
            await self._sleep_until(self._outbox_wake, self.settings.poll_interval_s)

    # ---- sending ----

    async def _send_loop(self) -> None:
        lease_s = self.settings.request_timeout_s * 2 + LEASE_MARGIN_S
        while True:
            self._send_wake.clear()
            room = self.settings.concurrency - len(self._in_flight)
            jobs: list[Job] = []
            if room > 0:
                try:
                    jobs = await store.claim_due(
                        self.pool, limit=room, lease_s=lease_s, grafana=self.grafana_enabled
                    )
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("cannot claim deliveries (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
            for job in jobs:
                task = asyncio.create_task(self._deliver(job), name=f"delivery-{job.delivery_id}")
                self._in_flight[task] = job
                task.add_done_callback(self._delivered)
            if jobs and len(jobs) == room:
                continue
            await self._sleep_until(self._send_wake, await self._idle_wait())

    async def _idle_wait(self) -> float:
        poll = self.settings.poll_interval_s
        if len(self._in_flight) >= self.settings.concurrency:
            return poll
        try:
            due_in = await store.seconds_until_next_due(self.pool)
        except (OSError, asyncpg.PostgresError):
            return poll
        return poll if due_in is None else max(0.0, min(poll, due_in))

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        # A finished head of a lane lets the next delivery in that lane go.
        self._send_wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery task failed", exc_info=task.exception())

    async def _deliver(self, job: Job) -> None:
        destination = job.destination
        metrics.ATTEMPTED.labels(destination).inc()
        try:
            outcome = await self._senders[destination].send(job)
        except asyncio.CancelledError:
            cut_short = Outcome(
                delivered=False,
                started_at=datetime.now(UTC),
                latency_ms=0,
                error="interrupted: the hub stopped during the attempt",
            )
            await asyncio.shield(store.release(self.pool, job, cut_short))
            raise
        metrics.ATTEMPT_SECONDS.labels(destination).observe(outcome.latency_ms / 1000)
        status = await self._record(job, outcome)
        if status == "delivered":
            metrics.SUCCEEDED.labels(destination).inc()
            lag = (datetime.now(UTC) - job.enqueued_at).total_seconds()
            metrics.END_TO_END_SECONDS.labels(destination).observe(max(lag, 0.0))
            return
        if status is None:
            return
        metrics.FAILED.labels(destination).inc()
        if status == "dead":
            metrics.DEAD.labels(destination).inc()
            log.warning(
                "dead-lettered %s delivery %d (%s) after %d attempts: %s",
                destination,
                job.delivery_id,
                job.event_type,
                job.attempt,
                outcome.error,
            )

    async def _record(self, job: Job, outcome: Outcome) -> Status | None:
        delay = retry_delay(self.settings, job.attempt)
        # The outcome must not be lost to a database hiccup: the claim would expire and the
        # event go out again, which receivers tolerate, but the log would miss an attempt.
        for pause in (0.5, 1.0, 2.0, 4.0):
            try:
                return await store.record(self.pool, job, outcome, delay)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot record delivery %d (%s); retrying", job.delivery_id, exc)
                await asyncio.sleep(pause)
        return None

    # ---- housekeeping ----

    async def _housekeeping_loop(self) -> None:
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                metrics.OUTBOX_LAG.set(await store.outbox_lag_s(self.pool))
                counts = await store.pending_counts(self.pool)
                for destination in ("webhook", "grafana"):
                    metrics.PENDING.labels(destination).set(counts.get(destination, 0))
                if loop.time() - last_prune >= RETENTION_INTERVAL_S:
                    last_prune = loop.time()
                    pruned = await store.prune(
                        self.pool, retention_days=self.settings.retention_days
                    )
                    if pruned:
                        log.info("pruned %d delivered events past retention", pruned)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("delivery housekeeping failed: %s", exc)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)


class _Stopping(Exception):
    """Raised inside the task group to end it when the engine is asked to stop."""
