"""The broadcast API's shapes (msgspec: strict, and described in the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from hub.devices import Uid, WardCode

Priority = Literal["normal", "priority", "emergency"]
Volume = Annotated[int, msgspec.Meta(ge=0, le=100, description="Speaker volume, 0-100.")]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# The configured limit (tts_max_chars) is checked with a clear message; this only bounds
# what the hub is willing to parse at all.
SpokenText = Annotated[str, msgspec.Meta(max_length=20_000)]
Voice = Annotated[str, msgspec.Meta(max_length=64)]
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class TargetsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Who hears it: every speaker, or the union of wards, device groups and speakers."""

    all: bool = False
    wards: Annotated[list[WardCode], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    groups: Annotated[list[int], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=list)
    speakers: Annotated[list[Uid], msgspec.Meta(max_length=2000)] = msgspec.field(
        default_factory=list
    )


class BroadcastIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    targets: TargetsIn
    starts_at: Annotated[
        datetime,
        msgspec.Meta(
            description="First start; without an offset it is local time (Asia/Ho_Chi_Minh).",
            examples=["2025-03-01T06:30:00"],
        ),
    ]
    rrule: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=500,
                description="RFC 5545 recurrence, local time, e.g. FREQ=DAILY;BYHOUR=6;BYMINUTE=30.",
            ),
        ]
        | None
    ) = None
    exdates: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=40)]],
        msgspec.Meta(
            max_length=500,
            description="Exceptions: local dates (2025-02-10) or local date-times.",
        ),
    ] = msgspec.field(default_factory=list)
    audio_asset_id: int | None = None
    text: SpokenText | None = None
    voice: Voice | None = None
    volume: Volume = 70
    priority: Priority = "normal"
    retry_window_minutes: Annotated[int, msgspec.Meta(ge=0, le=120)] | None = None
    on_conflict: Annotated[
        Literal["auto", "reject"],
        msgspec.Meta(
            description="auto (Circular 39/2020/TT-BTTTT): placed after what it overlaps of "
            "the same or a higher priority, and pre-empting what it overlaps of a lower "
            "one (that gives way on the shared speakers); an emergency pre-empts all. "
            "reject: any overlap refuses the broadcast (409) with the conflicts listed."
        ),
    ] = "auto"


class EmergencyIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    wards: Annotated[
        list[WardCode],
        msgspec.Meta(max_length=64, description="Wards to reach; empty: all you serve."),
    ] = msgspec.field(default_factory=list)
    audio_asset_id: int | None = None
    text: SpokenText | None = None
    voice: Voice | None = None
    volume: Volume = 100


class TargetsOut(msgspec.Struct):
    all: bool
    wards: list[str]
    groups: list[int]
    speakers: list[str]


class SlotOut(msgspec.Struct):
    starts_at: datetime
    ends_at: datetime
    local_start: str
    shifted_from: datetime | None = None


class ConflictOut(msgspec.Struct):
    occurrence_at: datetime
    """The start asked for, of the new broadcast's occurrence that overlaps."""
    other_broadcast_id: int
    other_title: str
    other_priority: str
    other_starts_at: datetime
    other_ends_at: datetime
    speaker_count: int
    speakers: list[str]
    """Speakers both reach (the first 20)."""
    resolution: Literal["placed_after", "flagged", "preempts", "rejected"]
    placed_at: datetime | None = None


class BroadcastOut(msgspec.Struct):
    id: int
    title: str
    priority: str
    volume: int
    audio_asset_id: int
    duration_s: float
    targets: TargetsOut
    wards: list[str]
    starts_at: datetime
    local_start: str
    timezone: str
    rrule: str | None
    exdates: list[str]
    retry_window_minutes: int
    state: str
    planned_through: datetime | None
    next_occurrence: datetime | None
    flagged_conflicts: list[ConflictOut]
    """What it overlapped when saved and pre-empts (lower priorities give way to it)."""
    created_by: str
    created_at: datetime


class PlanOut(msgspec.Struct):
    """What a broadcast would do (preview) or does (create): its occurrences and conflicts."""

    occurrence_count: int
    occurrences: list[SlotOut]
    """The first 50."""
    complete: bool
    """False when the series goes on beyond what is planned (planned_through)."""
    conflicts: list[ConflictOut]
    speaker_count: int
    wards: list[str]
    duration_s: float


class CreatedOut(msgspec.Struct):
    broadcast: BroadcastOut
    plan: PlanOut


class CalendarEntry(msgspec.Struct):
    broadcast_id: int
    title: str
    priority: str
    starts_at: datetime
    ends_at: datetime
    local_start: str
    wards: list[str]
    shifted_from: datetime | None
    status: str
    """scheduled, or the occurrence's status once claimed: planned, dispatching, playing,
    completed, partially_failed, failed, preempted, cancelled, missed, skipped."""
    occurrence_id: int | None
    planned: bool = True
    """False for an occurrence past the planning horizon, read from the rule itself: quiet
    hours and conflicts are applied to it once it is planned."""


class CalendarOut(msgspec.Struct):
    items: list[CalendarEntry]
    truncated: bool
    """True when more occurrences fall in the range than are listed."""
    planned_until: datetime | None = None
    """Occurrences are planned (checked for quiet hours and conflicts) up to here; later
    ones are expanded from their rules."""


class DeliverySummary(msgspec.Struct):
    speakers: int
    delivered: int
    """Speakers that acknowledged the command in any way."""
    played: int
    """Speakers that started playing."""
    finished: int
    preempted: int
    failed: int
    pending: int
    """Speakers with no final word yet (not finished, failed or pre-empted)."""
    failures: dict[str, int]


class SpeakerDelivery(msgspec.Struct):
    speaker: str
    ward: str | None
    state: str
    command_id: str
    send_count: int
    first_sent_at: datetime | None
    send_error: str | None
    received_at: datetime | None
    downloading_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    preempted_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None
    duplicate_acks: int
    out_of_order_acks: int


class OccurrenceOut(msgspec.Struct):
    id: int
    broadcast_id: int
    title: str
    priority: str
    scheduled_at: datetime
    status: str
    """planned → dispatching → playing → completed | partially_failed | failed | preempted,
    or cancelled; missed or skipped when nothing went out. It follows the speakers' reports
    (hub/broadcasts/occurrences.py)."""
    start_at: datetime | None
    send_started_at: datetime | None
    sent_at: datetime | None
    expires_at: datetime | None
    note: str
    summary: DeliverySummary


class OccurrenceReport(OccurrenceOut):
    speakers: list[SpeakerDelivery] = msgspec.field(default_factory=list)


class AssetOut(msgspec.Struct):
    id: int
    name: str
    ward: str | None
    source: str
    original_format: str
    original_bytes: int
    sha256: str
    size_bytes: int
    duration_s: float
    sample_rate: int
    loudness_lufs: float | None
    gain_db: float
    tts_text: str | None
    tts_voice: str | None
    created_by: str
    created_at: datetime


class TtsPreviewIn(msgspec.Struct, forbid_unknown_fields=True):
    text: SpokenText
    voice: Voice | None = None


class QuietHoursIn(msgspec.Struct, forbid_unknown_fields=True):
    starts: ClockTime
    ends: ClockTime


class QuietHoursOut(msgspec.Struct):
    ward: str
    starts: str
    ends: str
    default: bool
    """True when the ward follows the hub's default."""
