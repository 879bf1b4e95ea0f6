"""Settings of device health."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator


class HealthSettings(BaseModel):
    sensor_interval_s: int = Field(
        60, ge=5, description="How often a sensor is expected to report."
    )
    speaker_interval_s: int = Field(60, ge=5, description="How often a speaker publishes status.")
    camera_interval_s: int = Field(60, ge=5, description="How often cameras are probed.")
    late_factor: float = Field(1.5, gt=1, description="Silent this many intervals: late.")
    offline_factor: float = Field(3.0, gt=1, description="Silent this many intervals: offline.")
    check_interval_s: float = Field(5.0, gt=0, description="How often health is re-assessed.")

    @model_validator(mode="after")
    def check_below_timeout(self) -> HealthSettings:
        shortest = min(self.sensor_interval_s, self.speaker_interval_s, self.camera_interval_s)
        # A check slower than the lateness threshold would notice silence late.
        if self.check_interval_s > shortest * (self.late_factor - 1):
            raise ValueError(
                f"check_interval_s must be at most {shortest * (self.late_factor - 1):.0f} s, "
                "well below the shortest lateness threshold"
            )
        if self.offline_factor <= self.late_factor:
            raise ValueError("offline_factor must be larger than late_factor")
        return self

    def interval_for(self, kind: str) -> int:
        return {
            "sensor": self.sensor_interval_s,
            "speaker": self.speaker_interval_s,
            "camera": self.camera_interval_s,
        }.get(kind, self.sensor_interval_s)
