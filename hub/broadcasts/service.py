"""Broadcast use cases behind the API: audio, plans, conflicts, calendar, reports.

Every query is scoped: ward staff see a broadcast only if every ward it reaches is one
of theirs, and may schedule only inside their wards. Every change is audited.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from hub.auth import Permission, Principal, audit
from hub.broadcasts import occurrences, planning, programme
from hub.broadcasts.audio import AudioStore, PreparedAudio, prepare_audio
from hub.broadcasts.conflicts import Candidate, Conflict, ConflictFinder, Slot, settle
from hub.broadcasts.delivery import FAILURES, SUMMARY, delivery_state
from hub.broadcasts.dispatch import PLAY_GRACE
from hub.broadcasts.schedule import ScheduleError, Series
from hub.broadcasts.schemas import (
    AssetOut,
    BroadcastIn,
    BroadcastOut,
    CalendarEntry,
    CalendarOut,
    ConflictOut,
    CreatedOut,
    DeliverySummary,
    EmergencyIn,
    OccurrenceOut,
    OccurrenceReport,
    PlanOut,
    QuietHoursIn,
    QuietHoursOut,
    SlotOut,
    SpeakerDelivery,
    TargetsIn,
    TargetsOut,
)
from hub.broadcasts.settings import BroadcastSettings
from hub.broadcasts.targets import ResolvedTargets, check_targets
from hub.broadcasts.tts import TtsEngine, checked_text
from hub.broadcasts.urls import AudioUrlSigner
from hub.devices import registry
from hub.errors import Conflict as ConflictError
from hub.errors import FieldProblem, Forbidden, NotFound, ValidationFailed
from hub.runtime import RuntimeKey

log = logging.getLogger("hub.broadcasts")

SCHEDULING_ROLES = frozenset({"admin", "technician", "ward_staff"})
PLAN_SAMPLE = 50
MAX_CALENDAR_DAYS = 93
MAX_CALENDAR_ITEMS = 5000
MAX_REMEMBERED_ASSETS = 10_000


@dataclass
class Broadcasts:
    """The slice's runtime, kept on app state as ``broadcasts``."""

    pool: asyncpg.Pool
    settings: BroadcastSettings
    audio: AudioStore
    signer: AudioUrlSigner
    tts: TtsEngine
    # Assets never change: speakers' downloads need not ask the database each time.
    _hashes: dict[int, str] = field(default_factory=dict)

    def forget_all(self) -> None:
        """Drop what is remembered per asset id (ids are never reused outside tests)."""
        self._hashes.clear()

    async def asset_sha256(self, asset_id: int) -> str | None:
        known = self._hashes.get(asset_id)
        if known is None:
            known = await self.pool.fetchval(
                "SELECT sha256 FROM audio_asset WHERE id = $1", asset_id
            )
            if known is not None:
                if len(self._hashes) >= MAX_REMEMBERED_ASSETS:
                    self._hashes.clear()
                self._hashes[asset_id] = known
        return known


def may_schedule(principal: Principal) -> bool:
    return principal.role.value in SCHEDULING_ROLES


def require_scheduling(principal: Principal) -> None:
    if not may_schedule(principal):
        raise Forbidden(f"the {principal.role.value} role may not schedule broadcasts")


def ward_scope(principal: Principal) -> list[int] | None:
    return sorted(principal.ward_ids) if principal.ward_ids is not None else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def _schedule_problem(exc: ScheduleError) -> ValidationFailed:
    return ValidationFailed(exc.message, [FieldProblem(exc.field, exc.message)])


# --------------------------------------------------------------------------- audio


def asset_out(row: Any, codes: dict[int, str]) -> AssetOut:
    return AssetOut(
        id=row["id"],
        name=row["name"],
        ward=codes.get(row["ward_id"]) if row["ward_id"] is not None else None,
        source=row["source"],
        original_format=row["original_format"],
        original_bytes=row["original_bytes"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        duration_s=row["duration_s"],
        sample_rate=row["sample_rate"],
        loudness_lufs=row["loudness_lufs"],
        gain_db=row["gain_db"],
        tts_text=row["tts_text"],
        tts_voice=row["tts_voice"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


async def _ward_codes() -> dict[int, str]:
    wards = await registry.WardDirectory.load()
    return {ward_id: ward.code for ward_id, ward in wards.by_id.items()}


async def _upload_ward(principal: Principal, ward: str | None) -> int | None:
    """The ward an upload belongs to: named, or the only ward of the ward staff uploading."""
    if ward is None:
        if principal.ward_ids is None:
            return None
        if len(principal.ward_ids) == 1:
            return next(iter(principal.ward_ids))
        raise ValidationFailed(
            "name the ward", [FieldProblem("ward", "you serve several wards: name one")]
        )
    ward_id = (await registry.WardDirectory.load()).ids([ward], "ward")[0]
    if not principal.sees_ward(ward_id):
        raise Forbidden(
            "that ward is outside yours", [FieldProblem("ward", f"{ward} is not one of yours")]
        )
    return ward_id


async def _prepare(rt: Broadcasts, raw: bytes, field: str) -> PreparedAudio:
    s = rt.settings
    return await asyncio.to_thread(
        prepare_audio,
        raw,
        target_lufs=s.target_lufs,
        max_gain_db=s.max_gain_db,
        max_duration_s=s.max_audio_duration_s,
        field=field,
    )


async def _insert_asset(
    conn: Any,
    principal: Principal,
    audio: PreparedAudio,
    *,
    name: str,
    ward_id: int | None,
    source: str,
    tts_text: str | None = None,
    tts_voice: str | None = None,
) -> Any:
    return await conn.fetchrow(
        "INSERT INTO audio_asset (name, ward_id, source, original_format, original_sha256, "
        "original_bytes, sha256, size_bytes, duration_s, sample_rate, loudness_lufs, gain_db, "
        "tts_text, tts_voice, created_by) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) RETURNING *",
        name,
        ward_id,
        source,
        audio.original_format,
        audio.original_sha256,
        audio.original_bytes,
        audio.sha256,
        len(audio.wav),
        audio.duration_s,
        audio.sample_rate,
        audio.loudness_lufs,
        audio.gain_db,
        tts_text,
        tts_voice,
        principal.username,
    )


async def upload_audio(
    rt: Broadcasts, principal: Principal, raw: bytes, name: str, ward: str | None
) -> AssetOut:
    require_scheduling(principal)
    ward_id = await _upload_ward(principal, ward)
    audio = await _prepare(rt, raw, "file")
    await asyncio.to_thread(rt.audio.save, audio)
    row = await _insert_asset(
        rt.pool, principal, audio, name=name, ward_id=ward_id, source="upload"
    )
    out = asset_out(row, await _ward_codes())
    await audit.record(
        principal,
        "audio.upload",
        "audio_asset",
        row["id"],
        ward_id=ward_id,
        after=msgspec.to_builtins(out),
    )
    return out


async def visible_asset(rt: Broadcasts, principal: Principal, asset_id: int, field: str) -> Any:
    row = await rt.pool.fetchrow("SELECT * FROM audio_asset WHERE id = $1", asset_id)
    if row is None or not (row["ward_id"] is None or principal.sees_ward(row["ward_id"])):
        raise ValidationFailed("unknown audio", [FieldProblem(field, f"no audio {asset_id}")])
    return row


async def get_asset(rt: Broadcasts, principal: Principal, asset_id: int) -> AssetOut:
    principal.require(Permission.DEVICES_READ)
    try:
        row = await visible_asset(rt, principal, asset_id, "asset_id")
    except ValidationFailed:
        raise NotFound(f"no audio {asset_id}") from None
    return asset_out(row, await _ward_codes())


async def list_assets(rt: Broadcasts, principal: Principal, limit: int) -> list[AssetOut]:
    principal.require(Permission.DEVICES_READ)
    rows = await rt.pool.fetch(
        "SELECT * FROM audio_asset WHERE $1::int[] IS NULL OR ward_id IS NULL "
        "OR ward_id = ANY($1) ORDER BY id DESC LIMIT $2",
        ward_scope(principal),
        limit,
    )
    codes = await _ward_codes()
    return [asset_out(r, codes) for r in rows]


async def synthesize(
    rt: Broadcasts, text: str, voice: str | None, field: str = "text"
) -> tuple[PreparedAudio, str, str]:
    """Speak the text; (audio, the text as spoken, the voice)."""
    s = rt.settings
    cleaned, chosen = checked_text(text, voice, s.tts_voices, s.tts_max_chars, field)
    raw = await rt.tts.synthesize(cleaned, chosen)
    return await _prepare(rt, raw, field), cleaned, chosen


# --------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    data: BroadcastIn
    targets: ResolvedTargets
    asset: Any | None
    spoken: tuple[PreparedAudio, str, str] | None
    timing: planning.Timing
    retry_window_s: int
    duration_s: float

    @property
    def candidate(self) -> Candidate:
        return Candidate(
            slots=self.timing.slots,
            speakers=self.targets.speakers,
            priority=self.data.priority,
            target_all=self.targets.all,
            scope_ward_ids=self.targets.scope_ward_ids,
        )


async def _plan(rt: Broadcasts, principal: Principal, data: BroadcastIn, now: datetime) -> _Plan:
    require_scheduling(principal)
    s = rt.settings
    if (data.audio_asset_id is None) == (data.text is None):
        raise ValidationFailed(
            "give the audio or the text",
            [FieldProblem("audio_asset_id", "give audio_asset_id or text (one of them)")],
        )
    if data.text is not None:
        checked_text(data.text, data.voice, s.tts_voices, s.tts_max_chars)
    try:
        # The cheap checks first, before any audio is synthesised or any rule expanded.
        planning.check_request(data.starts_at, data.rrule, data.exdates, s, now)
    except ScheduleError as exc:
        raise _schedule_problem(exc) from None
    targets = await check_targets(principal, data.targets)
    asset = spoken = None
    if data.audio_asset_id is not None:
        asset = await visible_asset(rt, principal, data.audio_asset_id, "audio_asset_id")
        duration_s = float(asset["duration_s"])
    else:
        assert data.text is not None
        spoken = await synthesize(rt, data.text, data.voice)
        duration_s = spoken[0].duration_s
    try:
        timing = await planning.plan_timing(
            starts_at=data.starts_at,
            rrule=data.rrule,
            exdates=data.exdates,
            duration_s=duration_s,
            settings=s,
            now=now,
        )
        if data.priority != "emergency":
            quiet = await planning.quiet_hours(rt.pool, sorted(targets.scope_ward_ids), s)
            codes = await _ward_codes()
            for slot in timing.slots:
                problem = planning.quiet_problem(slot, quiet, codes, s)
                if problem is not None:
                    raise ScheduleError("rrule" if data.rrule else "starts_at", problem)
    except ScheduleError as exc:
        raise _schedule_problem(exc) from None
    retry_minutes = (
        data.retry_window_minutes
        if data.retry_window_minutes is not None
        else s.default_retry_window_minutes
    )
    return _Plan(data, targets, asset, spoken, timing, retry_minutes * 60, duration_s)


async def _settle(rt: Broadcasts, conn: Any, plan: _Plan) -> tuple[list[Slot], list[Conflict]]:
    s = rt.settings
    quiet = await planning.quiet_hours(conn, sorted(plan.targets.scope_ward_ids), s)
    codes = await _ward_codes()
    finder = ConflictFinder(conn, s.conflict_gap_s, s.max_audio_duration_s)
    return await settle(
        finder,
        plan.candidate,
        on_conflict=plan.data.on_conflict,
        gap=timedelta(seconds=s.conflict_gap_s),
        max_shift=timedelta(minutes=s.max_shift_minutes),
        placeable=lambda slot: planning.quiet_problem(slot, quiet, codes, s),
    )


def conflict_out(conflict: Conflict) -> ConflictOut:
    return ConflictOut(
        occurrence_at=conflict.occurrence_at,
        other_broadcast_id=conflict.other_broadcast_id,
        other_title=conflict.other_title,
        other_priority=conflict.other_priority,
        other_starts_at=conflict.other_starts_at,
        other_ends_at=conflict.other_ends_at,
        speaker_count=len(conflict.speakers),
        speakers=list(conflict.speakers[:20]),
        resolution=conflict.resolution,
        placed_at=conflict.placed_at,
    )


def slot_out(slot: Slot, settings: BroadcastSettings) -> SlotOut:
    local = slot.starts_at.astimezone(planning.zone(settings))
    return SlotOut(slot.starts_at, slot.ends_at, local.isoformat(), slot.shifted_from)


async def _plan_out(
    plan: _Plan, slots: list[Slot], conflicts: list[Conflict], settings: BroadcastSettings
) -> PlanOut:
    codes = await _ward_codes()
    return PlanOut(
        occurrence_count=len(slots),
        occurrences=[slot_out(slot, settings) for slot in slots[:PLAN_SAMPLE]],
        complete=plan.timing.complete,
        conflicts=[conflict_out(c) for c in conflicts],
        speaker_count=len(plan.targets.speakers),
        wards=sorted(codes[w] for w in plan.targets.scope_ward_ids if w in codes),
        duration_s=plan.duration_s,
    )


async def preview(rt: Broadcasts, principal: Principal, data: BroadcastIn) -> PlanOut:
    """What saving would do, nothing saved: occurrences, and conflicts with their fate."""
    plan = await _plan(rt, principal, data, utc_now())
    async with rt.pool.acquire() as conn:
        slots, conflicts = await _settle(rt, conn, plan)
    return await _plan_out(plan, slots, conflicts, rt.settings)


async def create(
    rt: Broadcasts, principal: Principal, data: BroadcastIn, now: datetime | None = None
) -> CreatedOut:
    """Save a broadcast and plan its slots; `now` is the hub's clock (the moment it is
    saved, which its start may not precede)."""
    plan = await _plan(rt, principal, data, now or utc_now())
    if plan.spoken is not None:
        await asyncio.to_thread(rt.audio.save, plan.spoken[0])
    single_ward = (
        next(iter(plan.targets.scope_ward_ids)) if len(plan.targets.scope_ward_ids) == 1 else None
    )
    async with rt.pool.acquire() as conn, conn.transaction():
        # Saving checks conflicts and writes under the locks of the wards it reaches, so
        # two people scheduling for one ward at once are served one after the other.
        await programme.lock_wards(
            conn, programme.SAVING_LOCK_CLASS, plan.targets.scope_ward_ids or {None}
        )
        slots, conflicts = await _settle(rt, conn, plan)
        if plan.spoken is not None:
            audio, text, voice = plan.spoken
            asset = await _insert_asset(
                conn,
                principal,
                audio,
                name=data.title,
                ward_id=single_ward,
                source="tts",
                tts_text=text,
                tts_voice=voice,
            )
        else:
            asset = plan.asset
        # Kept on the broadcast: what it pre-empts, for people reading it later.
        flagged = [conflict_out(c) for c in conflicts if c.resolution == "preempts"]
        targets = plan.targets
        broadcast_id: int = await conn.fetchval(
            "INSERT INTO broadcast (title, priority, volume, audio_asset_id, duration_s, "
            "target_all, target_wards, target_groups, target_speakers, ward_ids, starts_at, "
            "timezone, rrule, exdates, retry_window_s, planned_through, conflicts, created_by) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb,$18) "
            "RETURNING id",
            data.title,
            data.priority,
            data.volume,
            asset["id"],
            plan.duration_s,
            targets.all,
            list(targets.ward_ids),
            list(targets.group_ids),
            list(targets.speaker_uids),
            sorted(targets.scope_ward_ids),
            plan.timing.series.starts_at,
            plan.timing.series.timezone,
            plan.timing.series.rrule,
            list(plan.timing.series.exdates),
            plan.retry_window_s,
            plan.timing.planned_through,
            msgspec.json.encode(flagged).decode(),
            principal.username,
        )
        await planning.insert_slots(conn, broadcast_id, slots)
    broadcast = await get(rt, principal, broadcast_id)
    await audit.record(
        principal,
        "broadcast.emergency" if data.priority == "emergency" else "broadcast.create",
        "broadcast",
        broadcast_id,
        ward_id=single_ward,
        after=msgspec.to_builtins(broadcast),
    )
    return CreatedOut(broadcast, await _plan_out(plan, slots, conflicts, rt.settings))


async def emergency(rt: Broadcasts, principal: Principal, data: EmergencyIn) -> CreatedOut:
    """Now, to the chosen wards (or every ward the caller serves), pre-empting all else."""
    require_scheduling(principal)
    if data.wards:
        targets = TargetsIn(wards=list(data.wards))
    elif principal.ward_ids is None:
        targets = TargetsIn(all=True)
    else:
        codes = await _ward_codes()
        targets = TargetsIn(wards=sorted(codes[w] for w in principal.ward_ids if w in codes))
    request = BroadcastIn(
        title=data.title,
        targets=targets,
        starts_at=utc_now(),
        audio_asset_id=data.audio_asset_id,
        text=data.text,
        voice=data.voice,
        volume=data.volume,
        priority="emergency",
    )
    return await create(rt, principal, request)


# --------------------------------------------------------------------------- reading


BROADCAST = """
SELECT b.*,
       (SELECT min(s.starts_at) FROM broadcast_slot s
        WHERE s.broadcast_id = b.id AND s.starts_at > now()
          AND NOT EXISTS (SELECT 1 FROM broadcast_occurrence o
                          WHERE o.broadcast_id = s.broadcast_id
                            AND o.scheduled_at = s.starts_at)) AS next_occurrence
FROM broadcast b
"""


def broadcast_out(row: Any, codes: dict[int, str], settings: BroadcastSettings) -> BroadcastOut:
    flagged = msgspec.json.decode(row["conflicts"], type=list[ConflictOut])
    starts_at: datetime = row["starts_at"]
    return BroadcastOut(
        id=row["id"],
        title=row["title"],
        priority=row["priority"],
        volume=row["volume"],
        audio_asset_id=row["audio_asset_id"],
        duration_s=row["duration_s"],
        targets=TargetsOut(
            all=row["target_all"],
            wards=[codes.get(w, str(w)) for w in row["target_wards"]],
            groups=list(row["target_groups"]),
            speakers=list(row["target_speakers"]),
        ),
        wards=sorted(codes.get(w, str(w)) for w in row["ward_ids"]),
        starts_at=starts_at,
        local_start=starts_at.astimezone(planning.zone(settings)).isoformat(),
        timezone=row["timezone"],
        rrule=row["rrule"],
        exdates=list(row["exdates"]),
        retry_window_minutes=row["retry_window_s"] // 60,
        state=row["state"],
        planned_through=row["planned_through"],
        next_occurrence=row["next_occurrence"],
        flagged_conflicts=flagged,
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


async def _visible_broadcast(rt: Broadcasts, principal: Principal, broadcast_id: int) -> Any:
    principal.require(Permission.DEVICES_READ)
    row = await rt.pool.fetchrow(
        BROADCAST + " WHERE b.id = $1 AND ($2::int[] IS NULL OR b.ward_ids <@ $2)",
        broadcast_id,
        ward_scope(principal),
    )
    if row is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    return row


async def get(rt: Broadcasts, principal: Principal, broadcast_id: int) -> BroadcastOut:
    row = await _visible_broadcast(rt, principal, broadcast_id)
    return broadcast_out(row, await _ward_codes(), rt.settings)


async def list_broadcasts(
    rt: Broadcasts,
    principal: Principal,
    state: str | None,
    before_id: int | None,
    limit: int,
) -> list[BroadcastOut]:
    principal.require(Permission.DEVICES_READ)
    rows = await rt.pool.fetch(
        BROADCAST + " WHERE ($1::int[] IS NULL OR b.ward_ids <@ $1) "
        "AND ($2::text IS NULL OR b.state = $2) AND ($3::bigint IS NULL OR b.id < $3) "
        "ORDER BY b.id DESC LIMIT $4",
        ward_scope(principal),
        state,
        before_id,
        limit,
    )
    codes = await _ward_codes()
    return [broadcast_out(r, codes, rt.settings) for r in rows]


UPCOMING = """
SELECT s.starts_at, s.ends_at, s.shifted_from
FROM broadcast_slot s JOIN broadcast b ON b.id = s.broadcast_id
WHERE s.broadcast_id = $1 AND b.state = 'active' AND s.starts_at > $3
  AND NOT EXISTS (SELECT 1 FROM broadcast_occurrence o
                  WHERE o.broadcast_id = s.broadcast_id AND o.scheduled_at = s.starts_at)
ORDER BY s.starts_at
LIMIT $2
"""


async def upcoming(
    rt: Broadcasts, principal: Principal, broadcast_id: int, limit: int
) -> list[SlotOut]:
    """The planned occurrences not fired yet, soonest first; none once cancelled."""
    await _visible_broadcast(rt, principal, broadcast_id)
    rows = await rt.pool.fetch(UPCOMING, broadcast_id, limit, utc_now())
    return [
        slot_out(Slot(r["starts_at"], r["ends_at"], r["shifted_from"]), rt.settings) for r in rows
    ]


LEFT_TO_PLAY = f"""
SELECT EXISTS (SELECT 1 FROM broadcast_occurrence o
               WHERE o.broadcast_id = b.id AND o.status IN {occurrences.OPEN_SQL})
    OR EXISTS (SELECT 1 FROM broadcast_slot s
               WHERE s.broadcast_id = b.id
                 AND s.starts_at + make_interval(secs => GREATEST(b.retry_window_s, $2)) >= $3
                 AND NOT EXISTS (SELECT 1 FROM broadcast_occurrence o
                                 WHERE o.broadcast_id = s.broadcast_id
                                   AND o.scheduled_at = s.starts_at))
    OR b.planned_through IS NOT NULL
FROM broadcast b WHERE b.id = $1
"""


async def _nothing_to_cancel(conn: Any, rt: Broadcasts, broadcast_id: int) -> ConflictError:
    """Why a cancel is refused: cancelled already, or everything of it is over."""
    row = await conn.fetchrow(
        "SELECT state, cancelled_by, cancelled_at FROM broadcast WHERE id = $1", broadcast_id
    )
    zone = planning.zone(rt.settings)
    if row["state"] == "cancelled":
        return ConflictError(
            f"broadcast {broadcast_id} was cancelled already, by {row['cancelled_by']} at "
            f"{row['cancelled_at'].astimezone(zone):%Y-%m-%d %H:%M:%S} local time"
        )
    last = await conn.fetchrow(
        "SELECT scheduled_at, status FROM broadcast_occurrence WHERE broadcast_id = $1 "
        "ORDER BY scheduled_at DESC LIMIT 1",
        broadcast_id,
    )
    ended = (
        f": its last occurrence, at {last['scheduled_at'].astimezone(zone):%Y-%m-%d %H:%M:%S} "
        f"local time, ended {last['status']}"
        if last is not None
        else ""
    )
    return ConflictError(
        f"broadcast {broadcast_id} has finished{ended}; nothing of it is left to cancel"
    )


async def cancel(rt: Broadcasts, principal: Principal, broadcast_id: int) -> BroadcastOut:
    """Cancel what has not played yet and stop what plays; what played keeps its reports.

    A broadcast with nothing left to play (or cancelled already) is refused with 409,
    unchanged and unaudited: there is nothing to cancel."""
    require_scheduling(principal)
    before = await get(rt, principal, broadcast_id)
    async with rt.pool.acquire() as conn, conn.transaction():
        # Locked, so a cancel and the occurrence it races with see one another.
        await conn.execute("SELECT 1 FROM broadcast WHERE id = $1 FOR UPDATE", broadcast_id)
        # Judged by the hub's clock, as every schedule decision is (docs/architecture.md).
        left = await conn.fetchval(
            LEFT_TO_PLAY, broadcast_id, PLAY_GRACE.total_seconds(), utc_now()
        )
        if before.state != "active" or not left:
            raise await _nothing_to_cancel(conn, rt, broadcast_id)
        await conn.execute(
            "UPDATE broadcast SET state = 'cancelled', cancelled_by = $2, cancelled_at = now() "
            "WHERE id = $1 AND state = 'active'",
            broadcast_id,
            principal.username,
        )
        # What is under way, or still playing, stops too (the leader sends the stops).
        await occurrences.cancel_open(conn, broadcast_id, f"cancelled by {principal.username}")
    after = await get(rt, principal, broadcast_id)
    wards = (await _visible_broadcast(rt, principal, broadcast_id))["ward_ids"]
    await audit.record(
        principal,
        "broadcast.cancel",
        "broadcast",
        broadcast_id,
        ward_id=wards[0] if len(wards) == 1 else None,
        before=msgspec.to_builtins(before),
        after=msgspec.to_builtins(after),
    )
    return after


CALENDAR = """
SELECT s.broadcast_id, s.starts_at, s.ends_at, s.shifted_from, b.title, b.priority,
       b.ward_ids, o.id AS occurrence_id, o.status
FROM broadcast_slot s
JOIN broadcast b ON b.id = s.broadcast_id
LEFT JOIN broadcast_occurrence o
       ON o.broadcast_id = s.broadcast_id AND o.scheduled_at = s.starts_at
WHERE s.starts_at >= $1 AND s.starts_at < $2
  AND (b.state = 'active' OR o.id IS NOT NULL)
  AND ($3::int[] IS NULL OR b.ward_ids <@ $3)
  AND ($4::int IS NULL OR $4 = ANY(b.ward_ids))
ORDER BY s.starts_at, s.broadcast_id
LIMIT $5
"""


async def calendar(
    rt: Broadcasts,
    principal: Principal,
    start: datetime,
    end: datetime,
    ward: str | None,
) -> CalendarOut:
    """Every occurrence in [start, end), planned or fired, in the caller's wards."""
    principal.require(Permission.DEVICES_READ)
    zone = planning.zone(rt.settings)
    start, end = (m.replace(tzinfo=zone) if m.tzinfo is None else m for m in (start, end))
    if end <= start:
        raise ValidationFailed("empty range", [FieldProblem("end", "end must be after start")])
    if end - start > timedelta(days=MAX_CALENDAR_DAYS):
        raise ValidationFailed(
            "range too long",
            [FieldProblem("end", f"ask for at most {MAX_CALENDAR_DAYS} days at a time")],
        )
    ward_id = None
    if ward is not None:
        ward_id = (await registry.WardDirectory.load()).ids([ward], "ward")[0]
    rows = await rt.pool.fetch(
        CALENDAR, start, end, ward_scope(principal), ward_id, MAX_CALENDAR_ITEMS + 1
    )
    codes = await _ward_codes()
    items = [
        CalendarEntry(
            broadcast_id=r["broadcast_id"],
            title=r["title"],
            priority=r["priority"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            local_start=r["starts_at"].astimezone(zone).isoformat(),
            wards=sorted(codes.get(w, str(w)) for w in r["ward_ids"]),
            shifted_from=r["shifted_from"],
            status=r["status"] or "scheduled",
            occurrence_id=r["occurrence_id"],
        )
        for r in rows
    ]
    beyond, complete = await _beyond_the_plan(rt, principal, start, end, ward_id, codes)
    items = sorted([*items, *beyond], key=lambda e: (e.starts_at, e.broadcast_id))
    truncated = len(items) > MAX_CALENDAR_ITEMS or not complete
    return CalendarOut(
        items[:MAX_CALENDAR_ITEMS],
        truncated=truncated,
        planned_until=datetime.now(UTC) + timedelta(days=rt.settings.plan_days),
    )


UNPLANNED_SERIES = """
SELECT id, title, priority, ward_ids, starts_at, timezone, rrule, exdates, duration_s,
       planned_through
FROM broadcast
WHERE state = 'active' AND planned_through IS NOT NULL AND planned_through < $1
  AND ($2::int[] IS NULL OR ward_ids <@ $2)
  AND ($3::int IS NULL OR $3 = ANY(ward_ids))
ORDER BY id
"""


async def _beyond_the_plan(
    rt: Broadcasts,
    principal: Principal,
    start: datetime,
    end: datetime,
    ward_id: int | None,
    codes: dict[int, str],
) -> tuple[list[CalendarEntry], bool]:
    """Occurrences of open series past what is planned, expanded from the rule itself.

    Series are planned ``plan_days`` ahead (and further each day); a calendar asked for
    later months reads the rule (RFC 5545 section 3.8.5.3) instead of the empty slot
    table. Such entries have ``planned`` false: quiet hours and conflicts are applied
    when they are planned. False beside the entries when some rule could not be read
    within the expansion timeout (the calendar is then truncated).
    """
    zone = planning.zone(rt.settings)
    series_rows = await rt.pool.fetch(UNPLANNED_SERIES, end, ward_scope(principal), ward_id)
    limit = asyncio.Semaphore(2)
    complete = True

    async def expand(row: Any) -> list[CalendarEntry]:
        nonlocal complete
        series = Series(row["starts_at"], row["timezone"], row["rrule"], tuple(row["exdates"]))
        window_start = max(start, row["planned_through"])
        async with limit:
            try:
                expansion = await planning.expand_isolated(
                    series,
                    window_start,
                    end,
                    MAX_CALENDAR_ITEMS + 1,
                    rt.settings.expansion_timeout_s,
                )
            except ScheduleError as exc:
                log.warning("calendar: broadcast %d not expanded: %s", row["id"], exc.message)
                complete = False
                return []
        duration = timedelta(seconds=row["duration_s"])
        return [
            CalendarEntry(
                broadcast_id=row["id"],
                title=row["title"],
                priority=row["priority"],
                starts_at=begins,
                ends_at=begins + duration,
                local_start=begins.astimezone(zone).isoformat(),
                wards=sorted(codes.get(w, str(w)) for w in row["ward_ids"]),
                shifted_from=None,
                status="scheduled",
                occurrence_id=None,
                planned=False,
            )
            for begins in expansion.starts
        ]

    found = await asyncio.gather(*(expand(row) for row in series_rows))
    return [entry for entries in found for entry in entries], complete


# --------------------------------------------------------------------------- reports


OCCURRENCE = """
SELECT o.*, b.title, b.priority, b.ward_ids
FROM broadcast_occurrence o JOIN broadcast b ON b.id = o.broadcast_id
"""


async def _summary(conn: Any, occurrence_id: int) -> DeliverySummary:
    row = await conn.fetchrow(SUMMARY, occurrence_id)
    failures = {
        r["failure_reason"] or "unknown": r["n"] for r in await conn.fetch(FAILURES, occurrence_id)
    }
    return DeliverySummary(
        speakers=row["speakers"],
        delivered=row["delivered"],
        played=row["played"],
        finished=row["finished"],
        preempted=row["preempted"],
        failed=row["failed"],
        pending=row["pending"],
        failures=failures,
    )


def _occurrence_out(row: Any, summary: DeliverySummary) -> OccurrenceOut:
    return OccurrenceOut(
        id=row["id"],
        broadcast_id=row["broadcast_id"],
        title=row["title"],
        priority=row["priority"],
        scheduled_at=row["scheduled_at"],
        status=row["status"],
        start_at=row["start_at"],
        send_started_at=row["send_started_at"],
        sent_at=row["sent_at"],
        expires_at=row["expires_at"],
        note=row["note"],
        summary=summary,
    )


async def occurrences_of(
    rt: Broadcasts, principal: Principal, broadcast_id: int, limit: int
) -> list[OccurrenceOut]:
    await _visible_broadcast(rt, principal, broadcast_id)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            OCCURRENCE + " WHERE o.broadcast_id = $1 ORDER BY o.scheduled_at DESC LIMIT $2",
            broadcast_id,
            limit,
        )
        return [_occurrence_out(r, await _summary(conn, r["id"])) for r in rows]


async def occurrence_report(
    rt: Broadcasts, principal: Principal, occurrence_id: int
) -> OccurrenceReport:
    """Per occurrence: delivered, played, failed and why, pending; and every speaker."""
    principal.require(Permission.DEVICES_READ)
    scope = ward_scope(principal)
    # One snapshot, so the summary and the per-speaker rows tell the same story.
    async with (
        rt.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        row = await conn.fetchrow(
            OCCURRENCE + " WHERE o.id = $1 AND ($2::int[] IS NULL OR b.ward_ids <@ $2)",
            occurrence_id,
            scope,
        )
        if row is None:
            raise NotFound(f"no occurrence {occurrence_id}")
        summary = await _summary(conn, occurrence_id)
        deliveries = await conn.fetch(
            "SELECT * FROM broadcast_delivery WHERE occurrence_id = $1 ORDER BY device_uid",
            occurrence_id,
        )
    codes = await _ward_codes()
    base = _occurrence_out(row, summary)
    return OccurrenceReport(
        **msgspec.structs.asdict(base),
        speakers=[
            SpeakerDelivery(
                speaker=d["device_uid"],
                ward=codes.get(d["ward_id"]) if d["ward_id"] is not None else None,
                state=delivery_state(d),
                command_id=d["command_id"],
                send_count=d["send_count"],
                first_sent_at=d["first_sent_at"],
                send_error=d["send_error"],
                received_at=d["received_at"],
                downloading_at=d["downloading_at"],
                started_at=d["started_at"],
                finished_at=d["finished_at"],
                preempted_at=d["preempted_at"],
                failed_at=d["failed_at"],
                failure_reason=d["failure_reason"],
                duplicate_acks=d["duplicate_acks"],
                out_of_order_acks=d["out_of_order_acks"],
            )
            for d in deliveries
        ],
    )


# --------------------------------------------------------------------------- quiet hours


async def list_quiet_hours(rt: Broadcasts, principal: Principal) -> list[QuietHoursOut]:
    principal.require(Permission.DEVICES_READ)
    wards = await registry.WardDirectory.load()
    visible = sorted(w for w in wards.by_id if principal.sees_ward(w))
    rows = {
        r["ward_id"]: r
        for r in await rt.pool.fetch(
            "SELECT * FROM ward_quiet_hours WHERE ward_id = ANY($1::int[])", visible
        )
    }
    default = planning.default_quiet_hours(rt.settings)
    out = []
    for ward_id in visible:
        own = rows.get(ward_id)
        starts, ends = (own["starts"], own["ends"]) if own else (default.starts, default.ends)
        out.append(
            QuietHoursOut(
                ward=wards.by_id[ward_id].code,
                starts=f"{starts:%H:%M}",
                ends=f"{ends:%H:%M}",
                default=own is None,
            )
        )
    return sorted(out, key=lambda q: q.ward)


async def set_quiet_hours(
    rt: Broadcasts, principal: Principal, ward: str, data: QuietHoursIn
) -> QuietHoursOut:
    """Admins only. Occurrences already planned keep their time; each is checked again
    when it fires, and a ward in quiet hours then is left out."""
    principal.require(Permission.USERS_ADMIN)
    ward_id = (await registry.WardDirectory.load()).ids([ward], "ward")[0]
    before = await rt.pool.fetchrow("SELECT * FROM ward_quiet_hours WHERE ward_id = $1", ward_id)
    await rt.pool.execute(
        "INSERT INTO ward_quiet_hours (ward_id, starts, ends, updated_by) VALUES ($1,$2,$3,$4) "
        "ON CONFLICT (ward_id) DO UPDATE SET starts = EXCLUDED.starts, ends = EXCLUDED.ends, "
        "updated_by = EXCLUDED.updated_by, updated_at = now()",
        ward_id,
        planning.parse_clock(data.starts),
        planning.parse_clock(data.ends),
        principal.username,
    )
    await audit.record(
        principal,
        "quiet_hours.update",
        "ward",
        ward,
        ward_id=ward_id,
        before={"starts": f"{before['starts']:%H:%M}", "ends": f"{before['ends']:%H:%M}"}
        if before
        else None,
        after={"starts": data.starts, "ends": data.ends},
    )
    return QuietHoursOut(ward=ward, starts=data.starts, ends=data.ends, default=False)


BROADCASTS: RuntimeKey[Broadcasts] = RuntimeKey("broadcasts")
