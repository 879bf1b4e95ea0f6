"""Settings of device health."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, model_validator

from hub.health.machine import Flapping


class HealthSettings(BaseModel):
    sensor_interval_s: int = Field(
        60, ge=5, description="How often a sensor is expected to report."
    )
    speaker_interval_s: int = Field(60, ge=5, description="How often a speaker publishes status.")
    camera_interval_s: int = Field(60, ge=5, description="How often cameras are probed.")
    late_factor: float = Field(1.5, gt=1, description="Silent this many intervals: late.")
    offline_factor: float = Field(3.0, gt=1, description="Silent this many intervals: offline.")
    check_interval_s: float = Field(5.0, gt=0, description="How often health is re-assessed.")
    flap_window_s: int = Field(
        600, ge=10, description="Window in which state changes are counted for flapping."
    )
    flap_enter_changes: int = Field(
        10, ge=2, description="This many state changes within the window: the device flaps."
    )
    flap_leave_changes: int = Field(
        4, ge=0, description="A flapping device stops flapping at this many changes or fewer."
    )

    @model_validator(mode="after")
    def check_below_timeout(self) -> HealthSettings:
        shortest = min(self.sensor_interval_s, self.speaker_interval_s, self.camera_interval_s)
        # A check slower than the lateness threshold would notice silence late.
        if self.check_interval_s > shortest * (self.late_factor - 1):
            raise ValueError(
                f"check_interval_s must be at most {shortest * (self.late_factor - 1):g} s, "
                "well below the shortest lateness threshold"
            )
        if self.offline_factor <= self.late_factor:
            raise ValueError("offline_factor must be larger than late_factor")
        if self.flap_leave_changes >= self.flap_enter_changes:
            raise ValueError("flap_leave_changes must be below flap_enter_changes (hysteresis)")
        return self

    @property
    def flapping(self) -> Flapping:
        return Flapping(
            timedelta(seconds=self.flap_window_s), self.flap_enter_changes, self.flap_leave_changes
        )

    def interval_for(self, kind: str) -> int:
        return {
            "sensor": self.sensor_interval_s,
            "speaker": self.speaker_interval_s,
            "camera": self.camera_interval_s,
        }.get(kind, self.sensor_interval_s)
