"""Settings of loudspeaker broadcasts: audio, text-to-speech, scheduling and dispatch."""

from __future__ import annotations

import re
from datetime import time

from pydantic import BaseModel, Field, field_validator, model_validator

from hub.runtime.settings import TimeZoneName

_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$")


class BroadcastSettings(BaseModel):
    scheduler: bool = Field(
        True,
        description="Run the speaker driver and take part in scheduler leader election in "
        "this hub process (the API works either way).",
    )
    timezone: TimeZoneName = Field(
        "Asia/Ho_Chi_Minh", description="Local time of schedules, RRULEs and quiet hours."
    )
    max_audio_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest audio file accepted for upload."
    )
    max_audio_duration_s: float = Field(
        1800.0, gt=0, le=14_400, description="Longest announcement accepted, in seconds."
    )
    target_lufs: float = Field(
        -16.0,
        ge=-40.0,
        le=-5.0,
        description="Integrated loudness every announcement is normalised to (EBU R128).",
    )
    max_gain_db: float = Field(
        24.0, ge=0, description="Most an announcement is amplified, so hiss stays hiss."
    )
    tts_command: str = Field("espeak-ng", description="The espeak-ng program.")
    tts_voices: list[str] = Field(
        default_factory=lambda: ["vi", "vi-vn-x-central", "vi-vn-x-south"],
        description="espeak-ng voices offered; the first is the default.",
    )
    tts_words_per_minute: int = Field(
        140, ge=80, le=450, description="Speaking rate of text-to-speech."
    )
    tts_max_chars: int = Field(
        2000, ge=1, le=20_000, description="Longest text accepted for text-to-speech."
    )
    tts_timeout_s: float = Field(30.0, gt=0, description="Longest one synthesis may take.")
    quiet_hours_start: time = Field(
        time(22, 0), description="Default start of quiet hours (local), for wards without own."
    )
    quiet_hours_end: time = Field(
        time(5, 0), description="Default end of quiet hours (local); equal to start: none."
    )
    default_retry_window_minutes: int = Field(
        10, ge=0, le=120, description="How long speakers offline at start are retried."
    )
    retry_interval_s: float = Field(
        5.0, gt=0, description="How often unanswered speakers are sent the play again."
    )
    conflict_gap_s: float = Field(
        5.0, ge=0, description="Silence kept between two announcements on one speaker."
    )
    max_shift_minutes: int = Field(
        120,
        ge=1,
        description="Furthest a normal broadcast is moved to make way for another; beyond, "
        "it is rejected.",
    )
    plan_days: int = Field(
        366, ge=7, le=3660, description="How far ahead recurrences are planned (and checked)."
    )
    max_planned_occurrences: int = Field(
        1000, ge=1, description="Occurrences planned per broadcast at a time."
    )
    expansion_timeout_s: float = Field(
        2.0, gt=0, description="Longest the expansion of one RRULE may take."
    )
    prepare_s: float = Field(
        15.0, gt=0, description="How long before an occurrence it is claimed and resolved."
    )
    send_ahead_s: float = Field(
        10.0,
        ge=0,
        description="Plays go out this long before their start, so every speaker has the "
        "audio downloaded and starts at the planned instant.",
    )
    start_lead_ms: int = Field(
        300,
        ge=0,
        description="Start instant given this far ahead when a play goes out late "
        "(an emergency, a restart), so speakers still start together.",
    )
    start_lead_per_1000_ms: int = Field(
        150, ge=0, description="Added to that lead per thousand target speakers (fan-out time)."
    )
    audio_url_ttl_s: int = Field(
        900, ge=60, description="Validity of a signed audio URL beyond the play's expiry."
    )
    idle_poll_s: float = Field(
        30.0, gt=0, description="Longest the scheduler sleeps without being woken."
    )
    leader_retry_s: float = Field(
        1.0, gt=0, description="How often a follower tries to become the scheduler leader."
    )
    leader_check_s: float = Field(
        5.0, gt=0, description="How often the leader checks its lock connection is alive."
    )
    speaker_subscription_group: str | None = Field(
        None,
        description="Share speaker acks among hub processes in this MQTT 5 group (large "
        "fleets); unset: every process hears every ack.",
    )

    @model_validator(mode="after")
    def _claim_before_sending(self) -> BroadcastSettings:
        if self.prepare_s < self.send_ahead_s:
            raise ValueError("prepare_s must be at least send_ahead_s")
        return self

    @field_validator("tts_voices")
    @classmethod
    def _voices(cls, voices: list[str]) -> list[str]:
        if not voices:
            raise ValueError("name at least one voice")
        for voice in voices:
            if not _VOICE.match(voice):
                raise ValueError(f"{voice!r} is not a voice name")
        return voices

    def start_lead_s(self, speakers: int) -> float:
        """How far ahead of now speakers are told to start, for a fan-out of this size."""
        return (self.start_lead_ms + self.start_lead_per_1000_ms * speakers / 1000) / 1000
