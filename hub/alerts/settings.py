"""Settings of alert rules."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hub.runtime.settings import TimeZoneName


class AlertSettings(BaseModel):
    timezone: TimeZoneName = Field(
        "Asia/Ho_Chi_Minh", description="Local time of the rules' active windows (21:00-06:00)."
    )
