"""The demo fleet's past: what its simulated devices did before the demo started.

Written once, at the first start, through the slices' own storage functions, so device
history, availability and the broadcast reports show days of life at once. A second start
finds the history there and writes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from hub.health.machine import describe
from hub.server.settings import Settings
from hub.server.simulate import HUNG_CAMERA, HUNG_SENSOR, LOCKED_CAMERA, SKEWED_CAMERA

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
# EVN's scheduled maintenance cut in one ward, the day before (announced, daytime): the
# ward's speakers and cameras run on mains and drop off; the sensors have batteries.
POWER_CUT_WARD = "lac-vien"
POWER_CUT = (time(8, 0), time(10, 30))
ON_MAINS = frozenset({"speaker", "camera"})
# When each misbehaving device began to misbehave, before the demo started.
FAULT_SINCE: dict[str, tuple[timedelta, str, str]] = {
    HUNG_CAMERA: (timedelta(hours=30), "offline", "disconnected"),
    SKEWED_CAMERA: (timedelta(hours=20), "degraded", "clock_drift"),
    LOCKED_CAMERA: (timedelta(hours=3), "degraded", "auth_failed"),
}


@dataclass(frozen=True, slots=True)
class Fleet:
    """One row per active device: (id, uid, kind, ward code)."""

    devices: Sequence[tuple[int, str, str, str | None]]


def health_history(
    fleet: Fleet, start: datetime, now: datetime
) -> list[tuple[int, datetime, str, str, str]]:
    """Each device's status changes over [start, now), as the health monitor would have
    written them: (device id, at, from, to, reason), in time order per device.

    Every device comes up at the start (the fleet was installed then); the ward with the
    power cut goes dark and back; the misbehaving devices go into the states they are in
    when the demo starts (the noise meter whose firmware hangs was silent all along)."""
    cut_day = (now.astimezone(LOCAL) - timedelta(days=1)).date()
    cut_from = datetime.combine(cut_day, POWER_CUT[0], LOCAL).astimezone(UTC)
    cut_to = datetime.combine(cut_day, POWER_CUT[1], LOCAL).astimezone(UTC)
    changes: list[tuple[int, datetime, str, str, str]] = []
    for device_id, uid, kind, ward in fleet.devices:
        rng = random.Random(f"history:{uid}")
        # (at, to, reason) from the device's first report on
        steps: list[tuple[datetime, str, str]] = []
        if uid == HUNG_SENSOR:
            steps.append((start, "offline", f"silent for {describe(now - start)}"))
        else:
            steps.append((start + timedelta(seconds=rng.uniform(0, 60)), "online", ""))
        if ward == POWER_CUT_WARD and kind in ON_MAINS and start < cut_from:
            steps.append(
                (cut_from + timedelta(seconds=rng.uniform(0, 5)), "offline", "disconnected")
            )
            # back once the power is, after booting and reconnecting
            steps.append((cut_to + timedelta(seconds=rng.uniform(30, 150)), "online", ""))
        if uid in FAULT_SINCE:
            ago, status, reason = FAULT_SINCE[uid]
            steps.append((max(now - ago, start + timedelta(minutes=1)), status, reason))
        status = "unknown"
        for at, to, reason in sorted(steps):
            if at < now and to != status:
                changes.append((device_id, at, status, to, reason))
                status = to
    return changes


async def backfill_health(pool: asyncpg.Pool, hours: float, now: datetime) -> int:
    """The fleet's health history over the last `hours`, through the health slice's own
    writer of the history; 0 when a history is there already."""
    from hub.health.monitor import insert_transitions

    if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM health_event WHERE at < $1)", now):
        return 0
    start = now - timedelta(hours=hours)
    rows = await pool.fetch(
        "SELECT d.id, d.uid, d.kind, w.code FROM device d LEFT JOIN ward w ON w.id = d.ward_id "
        "WHERE d.lifecycle = 'active' ORDER BY d.id"
    )
    fleet = Fleet([(r["id"], r["uid"], r["kind"], r["code"]) for r in rows])
    changes = health_history(fleet, start, now)
    async with pool.acquire() as conn, conn.transaction():
        # the fleet was installed before its history begins: availability counts from then
        await conn.execute(
            "UPDATE device SET created_at = $1 WHERE created_at > $1 AND lifecycle = 'active'",
            start,
        )
        await insert_transitions(conn, changes)
    return len(changes)


# -- past broadcasts ---------------------------------------------------------------------

# Each ward's loudspeakers read the ward's news twice a day (ward programmes commonly run
# early morning and late afternoon, outside quiet hours).
PROGRAMME_TITLE = "Bản tin phường {name}"
PROGRAMME_RRULE = "FREQ=DAILY;BYHOUR=6,17;BYMINUTE=30;BYSECOND=0"
PROGRAMME_LOCAL_TIMES = (time(6, 30), time(17, 30))
PROGRAMME_SECONDS = 20.0
# Speakers whose amplifier failed at some play: the speaker simulator's own fault model.
AMPLIFIER_FAULT_SHARE = 0.01
HISTORY_NODE = "demo-history"


def programme_audio(seconds: float = PROGRAMME_SECONDS, rate: int = 16_000) -> bytes:
    """The programme's opening chime and a spoken-level murmur, as a WAV upload."""
    import io
    import math

    import numpy as np
    import soundfile  # type: ignore[import-untyped]

    t = np.arange(int(seconds * rate)) / rate
    chime = sum(np.sin(2 * math.pi * f * t) * np.exp(-3 * t) for f in (523.25, 659.25, 783.99))
    voice = 0.3 * np.sin(2 * math.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * math.pi * 3 * t))
    out = io.BytesIO()
    soundfile.write(out, (0.2 * chime + voice).astype(np.float32), rate, format="WAV")
    return out.getvalue()


def first_slot(start: datetime) -> datetime:
    """The programme's first slot at or after `start`."""
    day = start.astimezone(LOCAL).date()
    for offset in range(2):
        for at in PROGRAMME_LOCAL_TIMES:
            moment = datetime.combine(day + timedelta(days=offset), at, LOCAL).astimezone(UTC)
            if moment >= start:
                return moment
    raise AssertionError("two days hold a slot")


@dataclass(frozen=True, slots=True)
class PastBroadcasts:
    broadcasts: int
    occurrences: int
    reports: int


async def backfill_broadcasts(
    settings: Settings, pool: asyncpg.Pool, hours: float, now: datetime
) -> PastBroadcasts | None:
    """Each ward's daily programme, saved as ward staff would have saved it at the start of
    the history (the service plans its slots), and every slot already past fired: claimed,
    dispatched, one delivery per speaker, and each speaker's reports as the speaker
    simulator makes them (received, downloading the first time, started at the planned
    instant, finished; a failed amplifier fails the play), recorded by the hub's delivery
    recorder, which moves each occurrence to its outcome. None when the programmes exist."""
    from drivers.contract import Ack, AckStage
    from drivers.speaker.simulator import Fault, Latency, SpeakerSpec, assign_faults
    from hub.broadcasts import occurrences
    from hub.broadcasts.audio import AudioStore
    from hub.broadcasts.delivery import DeliveryRecorder
    from hub.broadcasts.dispatch import (
        PLAY_GRACE,
        insert_deliveries,
        note_deliveries_sent,
        plan_command_ids,
    )
    from hub.broadcasts.groups import SendPlan
    from hub.broadcasts.schemas import BroadcastIn, TargetsIn
    from hub.broadcasts.service import Broadcasts, create, upload_audio
    from hub.broadcasts.targets import resolve_stored
    from hub.broadcasts.tts import EspeakNg
    from hub.broadcasts.urls import AudioUrlSigner, url_key
    from hub.devices.fleet import WARDS
    from hub.server.operator import system_principal

    titles = [PROGRAMME_TITLE.format(name=name) for _, name, _, _ in WARDS]
    if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM broadcast WHERE title = ANY($1))", titles):
        return None
    own = settings.broadcasts
    rt = Broadcasts(
        pool=pool,
        settings=own,
        audio=AudioStore(settings.data_dir / "audio"),
        signer=AudioUrlSigner(url_key(settings.secret_key, settings.data_dir), ""),
        tts=EspeakNg(own.tts_command, own.tts_words_per_minute, own.tts_timeout_s),
    )
    principal = system_principal()
    start = now - timedelta(hours=hours)
    asset = await upload_audio(rt, principal, programme_audio(), "Nhạc hiệu bản tin", None)
    saved_at = start - timedelta(minutes=5)
    latency = Latency()
    recorder = DeliveryRecorder(pool)
    fired = reports = 0
    held: set[str] = set()  # speakers holding the audio: later plays need no download
    # a failed amplifier fails every play until it is repaired (after the history)
    fleet = await pool.fetch("SELECT uid FROM device WHERE kind = 'speaker' ORDER BY uid")
    faults = assign_faults(
        [SpeakerSpec(r["uid"], "") for r in fleet],
        {Fault.AMPLIFIER_FAULT: AMPLIFIER_FAULT_SHARE},
        seed=2025,
    )
    for (code, _, _, _), title in zip(WARDS, titles, strict=True):
        created = await create(
            rt,
            principal,
            BroadcastIn(
                title=title,
                targets=TargetsIn(wards=[code]),
                starts_at=first_slot(start),
                rrule=PROGRAMME_RRULE,
                audio_asset_id=asset.id,
                volume=70,
            ),
            now=saved_at,
        )
        broadcast = created.broadcast
        row = await pool.fetchrow("SELECT * FROM broadcast WHERE id = $1", broadcast.id)
        assert row is not None
        speakers = await resolve_stored(row)
        slots = await pool.fetch(
            "SELECT starts_at FROM broadcast_slot WHERE broadcast_id = $1 AND starts_at < $2 "
            "ORDER BY starts_at",
            broadcast.id,
            now - timedelta(seconds=row["duration_s"]) - PLAY_GRACE,
        )
        for slot in slots:
            at: datetime = slot["starts_at"]
            async with pool.acquire() as conn, conn.transaction():
                occurrence_id = await occurrences.claim(conn, broadcast.id, at, HISTORY_NODE)
                assert occurrence_id is not None
                send_due = at - timedelta(seconds=own.send_ahead_s)
                await occurrences.begin_dispatch(
                    conn,
                    occurrence_id,
                    send_due_at=send_due,
                    send_started_at=send_due,
                    start_at=at,
                    expires_at=at + timedelta(seconds=row["retry_window_s"]) + PLAY_GRACE,
                    speaker_count=len(speakers),
                )
                plan = SendPlan(groups={}, direct=list(speakers.values()))
                ids = plan_command_ids(occurrence_id, plan)
                await insert_deliveries(conn, occurrence_id, speakers, set(), plan, ids, send_due)
                await note_deliveries_sent(conn, occurrence_id, sorted(ids), send_due)
                await occurrences.note_sent(conn, occurrence_id, send_due)
            rng = random.Random(f"history:{occurrence_id}")
            for speaker in speakers.values():
                command = ids[speaker.uid]
                heard = send_due + timedelta(seconds=latency.sample(rng))
                stages: list[tuple[AckStage, datetime, str | None]] = [
                    (AckStage.RECEIVED, heard, None)
                ]
                if Fault.AMPLIFIER_FAULT in faults[speaker.uid]:
                    stages.append((AckStage.FAILED, heard, "amplifier_fault"))
                else:
                    if speaker.uid not in held:
                        stages.append((AckStage.DOWNLOADING, heard, None))
                        held.add(speaker.uid)
                    began = at + timedelta(seconds=latency.sample(rng))
                    ended = began + timedelta(seconds=row["duration_s"])
                    stages += [(AckStage.STARTED, began, None), (AckStage.FINISHED, ended, None)]
                for stage, moment, reason in stages:
                    await recorder.record(Ack(command, speaker.uid, stage, moment, reason))
                    reports += 1
            fired += 1
        await recorder.flush()
    return PastBroadcasts(len(titles), fired, reports)
