"""The rollout driver: one across all hub processes, moving every open campaign along.

Leadership is the broadcast scheduler's mechanism: a PostgreSQL session advisory lock
held on a dedicated connection (its own key), lost with that connection. The leader
alone holds the firmware MQTT link; on taking over it subscribes to the retained
``fwstate`` topics and so hears each device's last report, then carries on from the
rows. A command is published only after the row that says it was sent is committed
(`store.claim_sends`), so a restart, or two leaders for a moment, never send twice; a
device whose command was lost in a crash between the two fails at its deadline and can
be retried.

Each round, per campaign: fail what passed its deadline; stop the campaign when the
current wave's failures pass the error threshold (before anything else is started); when
the wave is done, start the next (or wait for approval, or stop if too few updated);
otherwise start pending devices, but never more than ``max_ward_percent`` of a ward's
devices of that kind at once, never a speaker with a broadcast playing or due within the
guard, and only inside the ward's maintenance window. Emergency broadcasts take back
speakers that have not begun installing.

Rounds react to events, the tick is only a backstop: a report that ends a device's update
(updated, failed, or back to pending) and every NOTIFY wake a round at once; reports that
only say how far a device got do not, as no rule looks at them. A failure that puts the
wave past its error threshold stops the campaign in the very transaction that records it.
A round works on one pooled connection, and the broker's acknowledgements of its commands
are awaited beside the next rounds, not inside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol, TypeAlias
from zoneinfo import ZoneInfo

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from drivers.firmware.link import FirmwareLinkDown, Received, ReportHandler
from drivers.firmware.protocol import (
    CancelCommand,
    FirmwareCommand,
    UpdateCommand,
    UpdateFailure,
    UpdateState,
)
from firmware_meta import InvalidFirmwareVersion, parse_version
from hub.firmware import metrics, store
from hub.firmware.artifacts import ArtifactSigner
from hub.firmware.campaigns import refusal
from hub.firmware.settings import FirmwareSettings
from hub.firmware.store import CampaignRow, Candidate, DeviceFirmware
from hub.runtime.context import RuntimeKey
from hub.storage.database import connect_writable

log = logging.getLogger("hub.firmware")
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# pg_advisory_lock key of the rollout leader ("iochub.firmware"), beside the scheduler's.
LEADER_LOCK_KEY = 0x10C_F1A4_0A7E
CHANNELS = ("iochub_firmware", "iochub_broadcasts")
FINAL = ("updated", "failed", "refused", "cancelled")
ROUND_GAP_S = 0.02
"""Shortest time between two rounds' starts: bounds the driver's cost, not its reaction."""
ENDS = ("pending", *FINAL)
"""States a report can move a device to that free a ward's slot or may end a wave."""
GAUGE_INTERVAL_S = 2.0


class FirmwareLink(Protocol):
    @property
    def connected(self) -> bool: ...

    async def run(self, handle: ReportHandler) -> None: ...

    async def send_many(
        self, commands: Sequence[tuple[str, FirmwareCommand]], now: datetime | None = None
    ) -> list[tuple[str, str]]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def in_window(moment: time, starts: time, ends: time) -> bool:
    if starts < ends:
        return starts <= moment < ends
    return moment >= starts or moment < ends  # wraps midnight, e.g. 22:00-04:00


def ward_capacity(total: int, percent: float) -> int:
    """How many of a ward's ``total`` devices may update at once: never all of them (unless
    the ward has just one), and at least one."""
    if total <= 1:
        return 1
    return max(1, min(total - 1, math.floor(total * percent / 100)))


class RolloutDriver:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        settings: FirmwareSettings,
        link: FirmwareLink,
        signer: ArtifactSigner,
        *,
        node: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.link = link
        self.signer = signer
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self.zone = ZoneInfo(settings.timezone)
        self._dsn = dsn
        self._clock = clock
        self._wake = asyncio.Event()
        self._leading = asyncio.Event()
        self._settling: set[asyncio.Task[None]] = set()
        self._versions_due: dict[str, str] = {}
        self._versions_wake = asyncio.Event()
        """Rounds' commands whose PUBACKs are still awaited."""
        self.rounds = 0
        self._gauges_at = -GAUGE_INTERVAL_S

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ election

    async def run(self) -> None:
        while True:
            try:
                conn = await connect_writable(
                    self._dsn, server_settings={"application_name": "iochub-rollout-driver"}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("rollout driver cannot reach the database (%s); retrying", exc)
                await asyncio.sleep(self.settings.leader_retry_s)
                continue
            try:
                await self._elect_and_lead(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("rollout driver lost its lock connection (%s)", exc)
            finally:
                self._leading.clear()
                metrics.LEADER.set(0)
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
        for channel in CHANNELS:
            await conn.add_listener(channel, lambda *_: self._wake.set())
        self._leading.set()
        metrics.LEADER.set(1)
        log.info("%s drives firmware rollouts", self.node)
        tasks = [
            asyncio.create_task(self.link.run(self.reports), name="firmware-link"),
            asyncio.create_task(self._lead(), name="firmware-rounds"),
            asyncio.create_task(self._watch(conn, lost), name="firmware-leader-watch"),
            asyncio.create_task(self._write_versions(), name="firmware-reported-versions"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (*tasks, *self._settling):
                task.cancel()
            await asyncio.gather(*tasks, *self._settling, return_exceptions=True)
        log.warning("%s no longer drives firmware rollouts", self.node)

    async def _watch(self, conn: asyncpg.Connection[Any], lost: asyncio.Event) -> None:
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

    async def _lead(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._wake.clear()
            try:
                await self.round()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("rollout round failed (%s); retrying", exc)
            except Exception:
                # A bug in one round must not stop every campaign: log it, go on.
                log.exception("rollout round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.tick_s):
                    await self._wake.wait()
            # Reports arrive in bursts: let a burst gather rather than run a round for each.
            await asyncio.sleep(max(0.0, started + ROUND_GAP_S - loop.time()))

    # ------------------------------------------------------------------ reports

    async def reports(self, batch: Sequence[Received]) -> None:
        """Device reports onto their rows; an ``updated`` counts only on the target version."""
        good = [r for r in batch if r.report is not None]
        for bad in batch:
            if bad.report is None:
                metrics.REPORTS.labels(outcome="rejected").inc()
                log.info("firmware report from %s refused: %s", bad.device_uid, bad.problem)
        if not good:
            return
        now = self._clock()
        moved: list[tuple[int, str]] = []
        stopped: list[tuple[int, str]] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                flights = await store.in_flight_by_command(
                    conn, [r.report.command_id for r in good if r.report is not None]
                )
                moves: dict[str, tuple[str, str, str | None, str | None]] = {}
                versions: dict[str, str] = {}
                for received in good:
                    report = received.report
                    assert report is not None
                    flight = flights.get(report.command_id)
                    if flight is None or flight.uid != received.device_uid:
                        metrics.REPORTS.labels(outcome="unknown").inc()
                        continue
                    state, reason = report.state.value, None
                    if report.state is UpdateState.FAILED:
                        reason = report.reason.value if report.reason else "failed"
                        if report.detail:
                            reason = f"{reason}: {report.detail}"
                        if report.reason is UpdateFailure.BUSY:
                            # Busy is for now, not for good (playing an announcement): again later.
                            state, reason = "pending", f"{reason}; will be sent again"
                    elif report.state is UpdateState.UPDATED:
                        assert report.version is not None
                        versions[received.device_uid] = report.version
                        if not _same(report.version, flight.target_version):
                            state = "failed"
                            reason = f"came back on {report.version}, not {flight.target_version}"
                    elif report.state is UpdateState.CANCELLED:
                        state = "pending" if flight.state in store.PRE_INSTALL else flight.state
                        reason = "cancelled by the device"
                    previous = moves.get(report.command_id, (None, flight.state))[1] or ""
                    regress = store.STATE_RANK.get(state, 99) < store.STATE_RANK.get(previous, -1)
                    if regress and report.state not in (UpdateState.CANCELLED, UpdateState.FAILED):
                        metrics.REPORTS.labels(outcome="stale").inc()
                        continue  # a late "downloading" after "installing"
                    moves[report.command_id] = (report.command_id, state, report.version, reason)
                    metrics.REPORTS.labels(outcome="applied").inc()
                if moves:
                    moved = await store.apply_progress(conn, list(moves.values()), now)
                failing = [campaign for campaign, state in moved if state == "failed"]
                if failing:
                    stopped = await store.stop_past_threshold(conn, failing, self._clock())
            if any(state in ENDS for _, state in moved):
                self._wake.set()
        if versions:
            # Written beside the reports, not in their way: the health monitor writes the
            # same registry rows (a rebooted device's status), and waiting for its locks
            # held back the next reports, and with them the next devices.
            self._versions_due.update(versions)
            self._versions_wake.set()
        for campaign_id, reason in stopped:
            log.warning("campaign %d stopped: %s", campaign_id, reason)

    async def _write_versions(self) -> None:
        """The versions devices came back on, into the registry (a device's next status says
        it again, through the firmware service, should this write be lost)."""
        while True:
            await self._versions_wake.wait()
            self._versions_wake.clear()
            due, self._versions_due = self._versions_due, {}
            try:
                async with self.pool.acquire() as conn:
                    await store.set_reported_versions(conn, dict(sorted(due.items())))
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("reported firmware versions not written (%s); retrying", exc)
                self._versions_due = due | self._versions_due
                await asyncio.sleep(1)
                self._versions_wake.set()

    # ------------------------------------------------------------------ rounds

    async def round(self) -> None:
        self.rounds += 1
        now = self._clock()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                expired = await store.expire(conn, now)
                stopped = await store.stop_past_threshold(conn, expired, self._clock())
            for campaign_id, reason in stopped:
                log.warning("campaign %d stopped: %s", campaign_id, reason)
            campaigns = await store.open_campaigns(conn)
            for campaign_id in await store.cancelled_in_flight(conn):
                await self._cancel_in_flight(conn, campaign_id)
            for campaign in campaigns:
                await self._pre_empt(conn, campaign, now)
                if campaign.state == "running":
                    await self._advance(conn, campaign, now)
            await self._gauges(conn, campaigns)

    async def _advance(self, conn: Conn, campaign: CampaignRow, now: datetime) -> None:
        # A wave finishing can start the next in the same round.
        for _ in range(len(campaign.wave_sizes) + 1):
            counts = await store.wave_counts(conn, campaign.id)
            wave = campaign.current_wave
            here = counts.get(wave, {})
            size = sum(n for s, n in here.items() if s != "refused")
            failed, updated = here.get("failed", 0), here.get("updated", 0)
            busy = sum(here.get(s, 0) for s in ("pending", *store.IN_FLIGHT))
            earlier = sum(
                counts.get(w, {}).get(s, 0)
                for w in range(wave)
                for s in ("pending", *store.IN_FLIGHT)
            )
            if size and failed * 100 > campaign.error_percent * size:
                reason = store.stop_reason(wave, failed, size, campaign.error_percent)
                await self._stop(conn, campaign, reason)
                return
            if busy or earlier:
                await self._start(conn, campaign, now)
                return
            if size and updated * 100 < campaign.success_percent * size:
                await self._stop(
                    conn,
                    campaign,
                    f"wave {wave + 1} ended with {updated} of {size} updated, fewer than the "
                    f"{campaign.success_percent:g}% needed",
                )
                return
            campaign = await self._next_wave(conn, campaign, now)
            if campaign.state != "running":
                return

    async def _next_wave(self, conn: Conn, campaign: CampaignRow, now: datetime) -> CampaignRow:
        wave = campaign.current_wave
        async with conn.transaction():
            await store.set_wave(conn, campaign.id, wave, "succeeded", finished_at=now)
            if wave + 1 >= len(campaign.wave_sizes):
                await store.set_state(conn, campaign.id, "completed", finished_at=now)
                log.info("campaign %d completed", campaign.id)
            elif campaign.require_approval:
                await store.set_wave(conn, campaign.id, wave + 1, "waiting_approval")
                await store.set_state(conn, campaign.id, "waiting_approval")
            else:
                await store.set_wave(conn, campaign.id, wave + 1, "running", started_at=now)
                await store.set_state(conn, campaign.id, "running", current_wave=wave + 1)
            updated = await store.campaign(conn, campaign.id)
        assert updated is not None
        return updated

    async def _stop(self, conn: Conn, campaign: CampaignRow, reason: str) -> None:
        now = self._clock()  # the moment it is decided, not the round's start
        async with conn.transaction():
            stopped = await store.stop(conn, campaign.id, campaign.current_wave, reason, now)
        if stopped:
            log.warning("campaign %d stopped: %s", campaign.id, reason)

    async def _start(self, conn: Conn, campaign: CampaignRow, now: datetime) -> None:
        updating = await store.updating_per_ward(conn)
        totals = await store.devices_per_ward(conn)
        free = [
            ward_capacity(n, campaign.max_ward_percent) - updating.get(key, 0)
            for key, n in totals.items()
            if key[1] == campaign.kind
        ]
        if max(free, default=0) <= 0:
            return  # every ward is at its share: nothing can start this round
        # A few more than the room, for those a due broadcast or a window holds back.
        pending = await store.candidates(conn, campaign.id, campaign.current_wave, max(free) + 50)
        if not pending:
            return
        windows = await store.windows(conn) if campaign.use_windows else {}
        guard_until = now + timedelta(seconds=campaign.broadcast_guard_s)
        speakers = [c.device_id for c in pending if c.kind == "speaker"]
        busy = await store.busy_speakers(conn, speakers, now, guard_until, emergency=False)
        local = now.astimezone(self.zone).time()
        chosen: list[Candidate] = []
        refused: list[tuple[int, str, str | None]] = []
        room: dict[tuple[int | None, str], int] = {}
        for candidate in pending:
            key = (candidate.ward_id, candidate.kind)
            if key not in room:
                cap = ward_capacity(totals.get(key, 1), campaign.max_ward_percent)
                room[key] = cap - updating.get(key, 0)
            if room[key] <= 0 or candidate.device_id in busy:
                continue
            span = windows.get(candidate.ward_id) if candidate.ward_id is not None else None
            if span is not None and not in_window(local, *span):
                continue
            # The campaign carries its release's model and versions (store.CAMPAIGN_SELECT).
            why = refusal(_as_device(candidate), campaign)
            if why is not None:
                state = "updated" if why.startswith("already runs") else "refused"
                refused.append((candidate.device_id, state, why))
                continue
            room[key] -= 1
            chosen.append(candidate)
        if refused:
            await store.set_device_states(conn, campaign.id, refused, now)
        if not chosen:
            return
        if not self.link.connected:
            return  # nothing claimed: the next round tries again
        ids = {
            c.device_id: f"fw-{campaign.id}-{c.device_id}-{secrets.token_hex(4)}" for c in chosen
        }
        deadline = now + timedelta(seconds=campaign.device_timeout_s)
        claimed = set(await store.claim_sends(conn, campaign, list(ids.items()), now, deadline))
        expires = now + timedelta(seconds=min(self.settings.url_ttl_s, campaign.device_timeout_s))
        link_expires = now + timedelta(seconds=self.settings.url_ttl_s)
        commands: list[tuple[str, FirmwareCommand]] = [
            (
                c.uid,
                UpdateCommand(
                    command_id=ids[c.device_id],
                    issued_at=now,
                    expires_at=expires,
                    model=campaign.model,
                    version=campaign.version,
                    min_version=campaign.min_version,
                    url=self.signer.url(campaign.release_id, c.uid, link_expires),
                    size=campaign.artifact_size,
                    sha256=campaign.artifact_sha256,
                ),
            )
            for c in chosen
            if c.device_id in claimed
        ]
        if not commands:
            return
        # paho writes them out now; the PUBACKs are awaited beside the next rounds.
        task = asyncio.create_task(
            self._settle(campaign.id, {c.uid: c.device_id for c in chosen}, commands, now),
            name=f"firmware-commands-{campaign.id}",
        )
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.sleep(0)  # let the task hand them to paho before the round goes on

    async def _settle(
        self,
        campaign_id: int,
        devices: dict[str, int],
        commands: Sequence[tuple[str, FirmwareCommand]],
        now: datetime,
    ) -> None:
        """Publish a round's claimed commands; those the broker did not take go back to
        pending (nothing reached the device)."""
        began = asyncio.get_running_loop().time()
        try:
            failures = await self.link.send_many(commands, now)
        except FirmwareLinkDown as exc:
            failures = [(uid, str(exc)) for uid, _ in commands]
        took = asyncio.get_running_loop().time() - began
        if took > 1.0:
            log.info(
                "campaign %d: %d update commands took %.1f s to publish",
                campaign_id,
                len(commands),
                took,
            )
        metrics.COMMANDS.labels(action="update").inc(len(commands) - len(failures))
        if failures:
            async with self.pool.acquire() as conn:
                await store.unsend(
                    conn, campaign_id, [devices[uid] for uid, _ in failures], failures[0][1]
                )
            self._wake.set()

    async def _pre_empt(self, conn: Conn, campaign: CampaignRow, now: datetime) -> None:
        """An emergency broadcast takes back speakers that have not begun installing."""
        if campaign.kind != "speaker":
            return
        flights = await store.pre_install(conn, campaign.id)
        if not flights:
            return
        guard_until = now + timedelta(seconds=max(campaign.broadcast_guard_s, 60))
        emergency = await store.busy_speakers(
            conn, [f[0] for f in flights], now, guard_until, emergency=True
        )
        if not emergency:
            return
        taken = await store.requeue(
            conn,
            campaign.id,
            sorted(emergency),
            "pre-empted by an emergency broadcast; will be sent again",
        )
        await self._send_cancels(taken, now)
        log.info("campaign %d: %d speakers pre-empted by an emergency", campaign.id, len(taken))

    async def _cancel_in_flight(self, conn: Conn, campaign_id: int) -> None:
        flights = await store.pre_install(conn, campaign_id)
        taken = await store.requeue(
            conn, campaign_id, [f[0] for f in flights], "campaign cancelled", to="cancelled"
        )
        await self._send_cancels(taken, self._clock())

    async def _send_cancels(self, taken: Sequence[tuple[int, str, str]], now: datetime) -> None:
        commands: list[tuple[str, FirmwareCommand]] = [
            (
                uid,
                CancelCommand(
                    f"fwc-{secrets.token_hex(6)}", now, now + timedelta(minutes=10), command_id
                ),
            )
            for _, uid, command_id in taken
        ]
        with contextlib.suppress(FirmwareLinkDown):
            await self.link.send_many(commands, now)
            metrics.COMMANDS.labels(action="cancel").inc(len(commands))

    async def _gauges(self, conn: Conn, campaigns: Sequence[CampaignRow]) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._gauges_at < GAUGE_INTERVAL_S:
            return
        self._gauges_at = now
        metrics.ROLLOUT_DEVICES.clear()
        for campaign in campaigns:
            counts: Counter[str] = Counter(await store.campaign_counts(conn, campaign.id))
            for state, n in counts.items():
                metrics.ROLLOUT_DEVICES.labels(campaign=str(campaign.id), state=state).set(n)


def _same(a: str, b: str) -> bool:
    try:
        return parse_version(a) == parse_version(b)
    except InvalidFirmwareVersion:
        return a == b


def _as_device(c: Candidate) -> DeviceFirmware:
    return DeviceFirmware(
        c.device_id, c.uid, c.kind, c.ward_id, None, c.vendor, c.model, c.firmware_version, ""
    )


ROLLOUTS: RuntimeKey[RolloutDriver] = RuntimeKey("firmware rollouts")
