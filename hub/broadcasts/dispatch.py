"""Playing one occurrence: resolve its speakers, fan the play out, retry the silent ones.

The scheduler leader hands each claimed occurrence to ``Dispatcher.run_occurrence``.
Every speaker gets the same ``play`` with its own command id and one shared start
instant, so the ward hears one voice. The plays go out concurrently through the speaker
channel ``send_ahead_s`` before the start, so every speaker has downloaded the audio by
then; sent late (an emergency, a restart), the start is put a short lead ahead instead. Speakers that have not answered are sent the same command again
every ``retry_interval_s`` and as soon as they report online, until the occurrence's
retry window closes. A speaker acts on a command id once, so a resend never plays
twice. A new leader resumes what an old one left unfinished, from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import asyncpg

from drivers.contract import Command, CommandChannel, DriverSink
from hub.broadcasts import metrics, occurrences, planning, programme
from hub.broadcasts.conflicts import ConflictFinder
from hub.broadcasts.delivery import (
    CANCELLED,
    INVALID_COMMAND,
    NO_ANSWER,
    NO_FINAL_REPORT,
    command_id,
    group_command_id,
)
from hub.broadcasts.groups import SendPlan, plan_sends
from hub.broadcasts.occurrences import QUIET_HOURS, Status
from hub.broadcasts.settings import BroadcastSettings
from hub.broadcasts.targets import Speaker, resolve_stored
from hub.broadcasts.urls import AudioUrlSigner
from hub.runtime import RuntimeKey

log = logging.getLogger("hub.broadcasts")

# A speaker that gets its command this long after the start still plays it (retry
# window 0), and an occurrence fires this late after a hub restart.
PLAY_GRACE = timedelta(seconds=5)
# After its retry window and its audio's length, this long for every speaker's last word;
# then whoever said nothing more is written off and the occurrence gets its outcome.
SETTLE_GRACE = timedelta(seconds=30)
NO_ACK = (
    "received_at IS NULL AND downloading_at IS NULL AND started_at IS NULL "
    "AND finished_at IS NULL AND preempted_at IS NULL AND failed_at IS NULL"
)
ONLINE_RESEND_SPACING_S = 1.0


class SendFailure(Protocol):
    @property
    def command(self) -> Command: ...
    @property
    def reason(self) -> str: ...
    @property
    def retryable(self) -> bool: ...


class SpeakerChannel(CommandChannel, Protocol):
    """Sends commands to speakers (``SpeakerMqttDriver``); ConnectionError when down."""

    async def send_many(self, commands: Iterable[Command]) -> Sequence[SendFailure]: ...

    async def send_group(self, group: str, command: Command) -> None:
        """One publish every follower of ``group`` receives; ValueError if invalid."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False, slots=True)
class _Job:
    occurrence_id: int
    broadcast_id: int
    scheduled_at: datetime
    params: dict[str, Any]
    expires_at: datetime
    play_end: datetime
    settle_by: datetime
    pending: dict[str, str] = field(default_factory=dict)
    """uid -> command id of speakers that have not answered yet."""
    online: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


OCCURRENCE = """
SELECT o.*, b.priority, b.volume, b.duration_s, b.retry_window_s, b.audio_asset_id,
       b.target_all, b.target_wards, b.target_groups, b.target_speakers, b.ward_ids,
       a.sha256
FROM broadcast_occurrence o
JOIN broadcast b ON b.id = o.broadcast_id
JOIN audio_asset a ON a.id = b.audio_asset_id
WHERE o.id = $1
"""


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: SpeakerChannel,
        signer: AudioUrlSigner,
        settings: BroadcastSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.channel = channel
        self.signer = signer
        self.settings = settings
        self._clock = clock
        self._jobs: list[_Job] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def broadcast_changed(self, broadcast_id: int) -> None:
        """Changed or cancelled: stop what of it still plays; follow-ups look at once."""
        for job in self._jobs:
            if job.broadcast_id == broadcast_id:
                job.wake.set()
        task = asyncio.get_running_loop().create_task(self._stop_cancelled(broadcast_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_cancelled(self, broadcast_id: int) -> None:
        try:
            rows = await self.pool.fetch(
                "UPDATE broadcast_occurrence SET stop_sent_at = $2 WHERE broadcast_id = $1 "
                "AND status = 'cancelled' AND start_at IS NOT NULL AND stop_sent_at IS NULL "
                "RETURNING id",
                broadcast_id,
                self._clock(),
            )
            for row in rows:
                await self._stop(row["id"])
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("broadcast %d: cancelled plays not stopped (%s)", broadcast_id, exc)

    def speaker_online(self, uid: str) -> None:
        """A speaker reported online: resend at once whatever it has not answered."""
        for job in self._jobs:
            if uid in job.pending:
                job.online.add(uid)
                job.wake.set()

    async def run_occurrence(self, occurrence_id: int) -> None:
        """Fire a claimed occurrence, or resume one another leader left unfinished."""
        row = await self.pool.fetchrow(OCCURRENCE, occurrence_id)
        if row is None:
            return
        if row["status"] == Status.PLANNED:
            job = await self._fire(row)
        elif row["status"] in (Status.DISPATCHING, Status.PLAYING):
            job = self._job(row, row["start_at"], row["expires_at"])
        else:
            return
        if job is None:
            return
        self._jobs.append(job)
        try:
            await self._follow_up(job)
        finally:
            self._jobs.remove(job)

    # ------------------------------------------------------------------ first send

    async def _fire(self, row: Any) -> _Job | None:
        occurrence_id: int = row["id"]
        scheduled_at: datetime = row["scheduled_at"]
        now = self._clock()
        late_limit = scheduled_at + max(timedelta(seconds=row["retry_window_s"]), PLAY_GRACE)
        if now > late_limit:
            await occurrences.end_unsent(
                self.pool, occurrence_id, Status.MISSED, "its time passed before it could be sent"
            )
            metrics.OCCURRENCES.labels("missed").inc()
            return None
        speakers = await resolve_stored(row)
        quiet = await self._in_quiet_hours(row, speakers)
        playing = {k: s for k, s in speakers.items() if s.ward_id not in quiet}
        plan = await plan_sends(self.pool, playing)
        command_ids = plan_command_ids(occurrence_id, plan)
        await insert_deliveries(self.pool, occurrence_id, speakers, quiet, plan, command_ids, now)
        if not playing:
            await occurrences.end_unsent(
                self.pool,
                occurrence_id,
                Status.SKIPPED,
                "quiet hours in every ward it reaches" if speakers else "no active speaker",
            )
            metrics.OCCURRENCES.labels("skipped").inc()
            return None
        send_due = max(scheduled_at - timedelta(seconds=self.settings.send_ahead_s), now)
        wait_s = (send_due - self._clock()).total_seconds()
        if wait_s > 0:
            await occurrences.note_send_due(self.pool, occurrence_id, send_due)
            await asyncio.sleep(wait_s)
        sending_at = self._clock()
        # Sent ahead, speakers start at the planned instant; late (an emergency asked for
        # "now", a restart), they get just enough lead to start together.
        lead = timedelta(seconds=self.settings.start_lead_s(plan.messages))
        start_at = max(scheduled_at, sending_at + lead)
        expires_at = max(start_at, scheduled_at + timedelta(seconds=row["retry_window_s"]))
        expires_at += PLAY_GRACE
        metrics.DRIFT_SECONDS.observe(max(0.0, (sending_at - send_due).total_seconds()))
        emergency = row["priority"] == "emergency"
        wards = {s.ward_id for s in playing.values()}

        async def decide() -> tuple[set[int], bool, list[programme.Taken]]:
            async with self.pool.acquire() as conn, conn.transaction():
                # One programme per ward: this decision and any other occurrence's on
                # the same wards happen one after the other (see programme.py).
                await programme.lock_wards(conn, programme.PLAYING_LOCK_CLASS, wards)
                yielded, higher = await self._higher_first(conn, row, playing)
                if len(yielded) == len(playing):
                    await occurrences.end_unsent(
                        conn,
                        occurrence_id,
                        Status.PREEMPTED,
                        "gave way on every speaker to a higher priority broadcast: "
                        + ", ".join(higher),
                    )
                    return yielded, False, []
                # Cancelled while it waited to be sent: nothing goes out.
                sending = await occurrences.begin_dispatch(
                    conn,
                    occurrence_id,
                    send_due_at=send_due,
                    send_started_at=sending_at,
                    start_at=start_at,
                    expires_at=expires_at,
                    speaker_count=len(playing) - len(yielded),
                )
                if not sending:
                    return yielded, False, []
                taken = await programme.take_from_lower(
                    conn,
                    broadcast_id=row["broadcast_id"],
                    priority=row["priority"],
                    starts_at=start_at,
                    ends_at=start_at + timedelta(seconds=row["duration_s"]),
                    speakers=[s for k, s in playing.items() if k not in yielded],
                    gap_s=self.settings.conflict_gap_s,
                    now=sending_at,
                )
                return yielded, True, taken

        yielded, sending, taken = await _again_after_deadlock(decide)
        playing = {k: s for k, s in playing.items() if k not in yielded}
        if not playing:
            return None
        if not sending:
            await self._settle_cancelled(occurrence_id)
            return None
        if yielded:
            plan = await plan_sends(self.pool, playing)
        # Lower programmes stop before this one is sent; an emergency interrupts by itself
        # and is not held up, the stops follow it.
        stops = [(t.device_uid, t.command_id) for t in taken if t.status != Status.PLANNED]
        if not emergency:
            await self._stop_plays(stops)
        job = self._job(row, start_at, expires_at)
        job.pending = {s.uid: command_ids[s.uid] for s in playing.values()}
        await self._send_groups(job, plan)
        await self._send(job, [(s.uid, job.pending[s.uid]) for s in plan.direct], retry=False)
        metrics.FAN_OUT_SECONDS.observe((self._clock() - sending_at).total_seconds())
        if emergency:
            await self._stop_plays(stops)
        if not emergency:
            # Nothing takes speakers from an emergency: no play of it needs stopping again.
            await self._stop_taken_while_sending(occurrence_id, playing, yielded)
        await occurrences.note_sent(self.pool, occurrence_id, self._clock())
        metrics.OCCURRENCES.labels("sent").inc()
        log.info(
            "broadcast %d occurrence %d sent to %d speakers: %d group publishes, %d direct "
            "(start %s)",
            row["broadcast_id"],
            occurrence_id,
            len(playing),
            len(plan.groups),
            len(plan.direct),
            start_at.isoformat(),
        )
        return job

    async def _higher_first(
        self, conn: Any, row: Any, playing: dict[int, Speaker]
    ) -> tuple[set[int], list[str]]:
        """The speakers this occurrence leaves to higher priority ones (written pre-empted)
        and those broadcasts, named."""
        if row["priority"] == "emergency":
            return set(), []  # nothing ranks above an emergency: it gives way to none
        finder = ConflictFinder(
            conn, self.settings.conflict_gap_s, self.settings.max_audio_duration_s
        )
        higher = await programme.higher_overlapping(
            conn,
            finder,
            broadcast_id=row["broadcast_id"],
            priority=row["priority"],
            starts_at=row["scheduled_at"],
            duration_s=row["duration_s"],
            speakers=playing,
            ward_ids=frozenset(row["ward_ids"]),
        )
        shared = {uid for h in higher for uid in h.speakers}
        yielded = {k for k, s in playing.items() if s.uid in shared}
        yielded |= await programme.taken_away(conn, row["id"]) & set(playing)
        if yielded:
            await programme.give_way(conn, row["id"], yielded, self._clock())
        names = [f"{h.priority} broadcast {h.broadcast_id} ({h.title!r})" for h in higher]
        return yielded, names or ["a higher priority broadcast"]

    async def _stop_plays(self, plays: Sequence[tuple[str, str]]) -> None:
        """Stop these (speaker, command id) plays, each on its speaker's own topic."""
        if not plays:
            return
        try:
            failures = await self.channel.send_many(
                Command(f"stop-{cid}", uid, "stop", {"target": cid}) for uid, cid in plays
            )
        except ConnectionError as exc:
            log.warning("%d pre-empted plays not stopped (%s)", len(plays), exc)
            return
        if failures:
            log.warning("%d pre-empted plays not stopped: %s", len(failures), failures[0].reason)

    async def _stop_taken_while_sending(
        self, occurrence_id: int, playing: dict[int, Speaker], yielded: set[int]
    ) -> None:
        """A higher priority occurrence that decided while this one was being sent may
        have stopped a play before it arrived: stop those again, after the plays."""
        async with self.pool.acquire() as conn, conn.transaction():
            await programme.lock_wards(
                conn, programme.PLAYING_LOCK_CLASS, {s.ward_id for s in playing.values()}
            )
            late = (await programme.taken_away(conn, occurrence_id)) - yielded
            rows = await conn.fetch(
                "SELECT device_uid, command_id FROM broadcast_delivery "
                "WHERE occurrence_id = $1 AND device_id = ANY($2::bigint[])",
                occurrence_id,
                sorted(late),
            )
        await self._stop_plays([(r["device_uid"], r["command_id"]) for r in rows])

    async def _in_quiet_hours(self, row: Any, speakers: dict[int, Speaker]) -> set[int | None]:
        """Wards whose quiet hours this occurrence would break (emergencies break none)."""
        if row["priority"] == "emergency":
            return set()
        ward_ids = sorted({s.ward_id for s in speakers.values() if s.ward_id is not None})
        hours = await planning.quiet_hours(self.pool, ward_ids, self.settings)
        start: datetime = row["scheduled_at"]
        end = start + timedelta(seconds=row["duration_s"])
        zone = planning.zone(self.settings)
        return {ward for ward, quiet in hours.items() if quiet.overlaps(start, end, zone)}

    def _job(self, row: Any, start_at: datetime, expires_at: datetime) -> _Job:
        link_expiry = expires_at + timedelta(
            seconds=row["duration_s"] + self.settings.audio_url_ttl_s
        )
        return _Job(
            occurrence_id=row["id"],
            broadcast_id=row["broadcast_id"],
            scheduled_at=row["scheduled_at"],
            expires_at=expires_at,
            play_end=start_at + timedelta(seconds=row["duration_s"]),
            settle_by=max(expires_at, start_at + timedelta(seconds=row["duration_s"]))
            + SETTLE_GRACE,
            params={
                "audio_url": self.signer.url(row["audio_asset_id"], link_expiry),
                "sha256": row["sha256"],
                "duration_s": row["duration_s"],
                "volume": row["volume"],
                "priority": row["priority"],
                "broadcast_id": f"occ-{row['id']}",
                "start_at": start_at,
                "expires_at": expires_at,
            },
        )

    # ------------------------------------------------------------------ sending

    async def _send_groups(self, job: _Job, plan: SendPlan) -> None:
        """One publish per group, all at once; whoever a failed publish missed is reached
        one by one by the follow-up."""

        async def publish(group: str, cid: str) -> SendFailure | None:
            command = Command(cid, group, "play", job.params)
            try:
                await self.channel.send_group(group, command)
            except ConnectionError as exc:
                return _NotSent(command, str(exc))
            except ValueError as exc:
                return _NotSent(command, str(exc), retryable=False)
            return None

        groups = [(group, [s.uid for s in members]) for group, members in plan.groups.items()]
        if not groups:
            return
        published_at = self._clock()
        results = await asyncio.gather(
            *(publish(group, job.pending[members[0]]) for group, members in groups)
        )
        sent: list[str] = []
        failed: dict[str, SendFailure] = {}
        for (_, members), failure in zip(groups, results, strict=True):
            if failure is None:
                sent += members
            else:
                failed.update((uid, failure) for uid in members)
        metrics.COMMANDS.labels("group").inc(sum(r is None for r in results))
        await self._record_sent(job, sent, failed, published_at)

    async def _send(self, job: _Job, targets: Iterable[tuple[str, str]], *, retry: bool) -> None:
        commands = [Command(cid, uid, "play", job.params) for uid, cid in targets]
        if not commands:
            return
        published_at = self._clock()
        try:
            failures = list(await self.channel.send_many(commands))
        except ConnectionError as exc:
            failures = [_NotSent(c, str(exc)) for c in commands]
        failed = {f.command.device_uid: f for f in failures}
        sent = [c.device_uid for c in commands if c.device_uid not in failed]
        metrics.COMMANDS.labels("retry" if retry else "first").inc(len(sent))
        await self._record_sent(job, sent, failed, published_at)

    async def _record_sent(
        self, job: _Job, sent: list[str], failed: dict[str, SendFailure], now: datetime
    ) -> None:
        """Note who was sent the play (by speaker uid, as of when its publish began), and
        why the others were not."""
        await _again_after_deadlock(lambda: self._write_sent(job, sent, failed, now))
        for uid, failure in failed.items():
            if not failure.retryable:
                job.pending.pop(uid, None)
        if failed:
            uid, first = next(iter(failed.items()))
            log.warning(
                "occurrence %d: play not sent to %d speakers, e.g. to %s: %s",
                job.occurrence_id,
                len(failed),
                uid,
                first.reason,
            )

    async def _write_sent(
        self, job: _Job, sent: list[str], failed: dict[str, SendFailure], now: datetime
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await note_deliveries_sent(conn, job.occurrence_id, sent, now)
            if not failed:
                return
            metrics.SEND_FAILURES.inc(len(failed))
            await conn.execute(
                "UPDATE broadcast_delivery d SET send_error = f.reason, "
                "failed_at = CASE WHEN f.terminal THEN $3 ELSE d.failed_at END, "
                "failure_reason = CASE WHEN f.terminal THEN $4 ELSE d.failure_reason END "
                "FROM unnest($2::text[], $5::text[], $6::bool[]) AS f(device_uid, reason, "
                "terminal) WHERE d.occurrence_id = $1 AND d.device_uid = f.device_uid",
                job.occurrence_id,
                list(failed),
                now,
                INVALID_COMMAND,
                [f.reason[:500] for f in failed.values()],
                [not f.retryable for f in failed.values()],
            )

    async def _unanswered(self, job: _Job) -> dict[str, str] | None:
        """Speakers without any ack; None when the occurrence is no longer open (after
        stopping its speakers if it was cancelled)."""
        async with self.pool.acquire() as conn:
            await occurrences.follow_facts(conn, [job.occurrence_id])
            current = await conn.fetchval(
                "SELECT status FROM broadcast_occurrence WHERE id = $1 AND broadcast_id = $2 "
                "AND scheduled_at = $3",
                job.occurrence_id,
                job.broadcast_id,
                job.scheduled_at,
            )
            if current in (Status.DISPATCHING, Status.PLAYING):
                rows = await conn.fetch(
                    "SELECT device_uid, command_id FROM broadcast_delivery "
                    f"WHERE occurrence_id = $1 AND {NO_ACK}",
                    job.occurrence_id,
                )
                return {r["device_uid"]: r["command_id"] for r in rows}
        if current == Status.CANCELLED:
            # Again, after the first send: a stop that overtook the plays is undone.
            await self._stop(job.occurrence_id)
        return None

    async def _follow_up(self, job: _Job) -> None:
        """Resend to the silent until they answer or the retry window closes; then wait for
        every speaker's last word, and write off whoever keeps quiet."""
        last_online_resend = 0.0
        loop = asyncio.get_running_loop()
        retrying = True
        while True:
            now = self._clock()
            if retrying and now >= job.expires_at:
                # No play goes out any more: the silent ones did not get it.
                retrying = False
                await self._write_off(job, NO_ANSWER, NO_ACK)
            if now >= job.settle_by:
                break
            until = job.expires_at if retrying else job.settle_by
            job.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(
                    min(self.settings.retry_interval_s, (until - now).total_seconds())
                ):
                    await job.wake.wait()
            woken = job.wake.is_set()
            try:
                pending = await self._unanswered(job)
                if pending is None:
                    return
                job.pending = pending
                if retrying and not pending:
                    # Everyone answered: nobody to resend to, only their last words to
                    # wait for, until the audio's end (and the grace) at the latest.
                    retrying = False
                    job.settle_by = min(job.settle_by, job.play_end + SETTLE_GRACE)
                if not retrying:
                    continue
                if woken:
                    if loop.time() - last_online_resend < ONLINE_RESEND_SPACING_S:
                        continue
                    last_online_resend = loop.time()
                    targets = [(uid, pending[uid]) for uid in job.online if uid in pending]
                    job.online.clear()
                else:
                    targets = list(pending.items())
                if self._clock() < job.expires_at:
                    await self._send(job, targets, retry=True)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("occurrence %d: retry round failed (%s)", job.occurrence_id, exc)
        await self._write_off(
            job,
            NO_FINAL_REPORT,
            "finished_at IS NULL AND preempted_at IS NULL AND failed_at IS NULL",
        )

    async def _write_off(self, job: _Job, reason: str, which: str) -> None:
        """The hub's verdict on speakers that said nothing (more); any later word wins."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"UPDATE broadcast_delivery SET failed_at = $2, failure_reason = '{reason}' "
                f"WHERE occurrence_id = $1 AND {which} AND EXISTS (SELECT 1 FROM "
                "broadcast_occurrence o WHERE o.id = $1 AND o.broadcast_id = $3 "
                "AND o.scheduled_at = $4)",
                job.occurrence_id,
                self._clock(),
                job.broadcast_id,
                job.scheduled_at,
            )
            await occurrences.follow_facts(conn, [job.occurrence_id])

    async def _stop(self, occurrence_id: int) -> None:
        """Stop the plays of a cancelled occurrence: one stop per group, one per other speaker
        it reached; whoever had not answered is marked cancelled."""
        rows = await self.pool.fetch(
            "SELECT device_uid, command_id, via_group FROM broadcast_delivery "
            "WHERE occurrence_id = $1 AND send_count > 0 AND finished_at IS NULL "
            "AND preempted_at IS NULL AND failed_at IS NULL",
            occurrence_id,
        )
        groups = {r["via_group"]: r["command_id"] for r in rows if r["via_group"] is not None}
        direct = [r for r in rows if r["via_group"] is None]
        try:
            for group, cid in groups.items():
                stop = Command(f"stop-{cid}", group, "stop", {"target": cid})
                await self.channel.send_group(group, stop)
            await self.channel.send_many(
                Command(
                    f"stop-{r['command_id']}", r["device_uid"], "stop", {"target": r["command_id"]}
                )
                for r in direct
            )
        except (ConnectionError, ValueError) as exc:
            log.warning("occurrence %d: stop not sent to every speaker (%s)", occurrence_id, exc)
        await self._settle_cancelled(occurrence_id)
        log.info(
            "occurrence %d cancelled: stop sent to %d groups and %d speakers",
            occurrence_id,
            len(groups),
            len(direct),
        )

    async def _settle_cancelled(self, occurrence_id: int) -> None:
        await self.pool.execute(
            f"UPDATE broadcast_delivery SET failed_at = $2, failure_reason = '{CANCELLED}' "
            f"WHERE occurrence_id = $1 AND {NO_ACK}",
            occurrence_id,
            self._clock(),
        )


_T = TypeVar("_T")


async def _again_after_deadlock(attempt: Callable[[], Awaitable[_T]], tries: int = 3) -> _T:
    """Run a transaction again if PostgreSQL chose it to break a deadlock (a decision
    locking other occurrences' deliveries can meet their own sends); it was rolled back."""
    for n in range(tries):
        try:
            return await attempt()
        except asyncpg.DeadlockDetectedError:
            if n == tries - 1:
                raise
            log.info("a deadlock was broken; trying again")
            await asyncio.sleep(0.01 * (n + 1))
    raise AssertionError("unreachable")


async def insert_deliveries(
    conn: Any,
    occurrence_id: int,
    speakers: dict[int, Speaker],
    quiet: set[int | None],
    plan: SendPlan,
    ids: dict[str, str],
    now: datetime,
) -> None:
    """One delivery row per targeted speaker; those in quiet hours written off at once."""
    ordered = sorted(speakers.values(), key=lambda s: s.uid)
    silenced = [s.ward_id in quiet for s in ordered]
    via = {s.uid: group for group, members in plan.groups.items() for s in members}
    await conn.execute(
        "INSERT INTO broadcast_delivery (occurrence_id, device_id, device_uid, ward_id, "
        "command_id, via_group, failed_at, failure_reason) "
        "SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[], "
        "$6::text[], $7::timestamptz[], $8::text[]) ON CONFLICT DO NOTHING",
        occurrence_id,
        [s.device_id for s in ordered],
        [s.uid for s in ordered],
        [s.ward_id for s in ordered],
        [ids.get(s.uid) or command_id(occurrence_id, s.device_id) for s in ordered],
        [via.get(s.uid) for s in ordered],
        [now if quiet_ else None for quiet_ in silenced],
        [QUIET_HOURS if quiet_ else None for quiet_ in silenced],
    )


async def note_deliveries_sent(
    conn: Any, occurrence_id: int, device_uids: Sequence[str], at: datetime
) -> None:
    """These speakers were sent the play (once more) at `at`."""
    await conn.execute(
        "UPDATE broadcast_delivery SET send_count = send_count + 1, "
        "first_sent_at = COALESCE(first_sent_at, $3), last_sent_at = $3, "
        "send_error = NULL WHERE occurrence_id = $1 AND device_uid = ANY($2::text[])",
        occurrence_id,
        list(device_uids),
        at,
    )


def plan_command_ids(occurrence_id: int, plan: SendPlan) -> dict[str, str]:
    """uid -> the command id each speaker is sent: its group's, or its own."""
    ids = {s.uid: command_id(occurrence_id, s.device_id) for s in plan.direct}
    for members in plan.groups.values():
        # A group is named after one ward; its members share the command id.
        shared = group_command_id(occurrence_id, members[0].ward_id or 0)
        ids.update((s.uid, shared) for s in members)
    return ids


@dataclass(frozen=True, slots=True)
class _NotSent:
    command: Command
    reason: str
    retryable: bool = True


class SpeakerLink(SpeakerChannel, Protocol):
    """The speakers' side of the hub: commands out, group assignments, news in."""

    async def assign_groups(self, device_uid: str, groups: Sequence[str]) -> None: ...

    async def run(self, sink: DriverSink) -> None: ...


# Given the slice's settings, a link to the speakers (the root builds the MQTT driver).
SPEAKER_LINKS: RuntimeKey[Callable[[BroadcastSettings], SpeakerLink]] = RuntimeKey(
    "the speaker driver"
)
SPEAKERS: RuntimeKey[SpeakerLink] = RuntimeKey("the speaker link")
