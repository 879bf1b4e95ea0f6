"""Settings of the firmware slice: catalog, compliance, rollouts (IOCHUB_FIRMWARE__*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from firmware_meta import DEFAULT_ROOT, Severity


class FirmwareSettings(BaseModel):
    catalog_root: Path = Field(
        DEFAULT_ROOT,
        description="Catalog folder: vendor keys (keys/) and the images served (artifacts/).",
    )
    degrade_vulnerable: Severity | None = Field(
        None,
        description="Show devices as degraded in health when their firmware has a CVE of "
        "this severity or worse (low, medium, high, critical); unset: never.",
    )
    compliance_refresh_s: float = Field(
        60.0, gt=0, description="How often compliance gauges and the Grafana table refresh."
    )
    rollouts: bool = Field(
        True, description="Compete for the rollout driver's leadership in this hub process."
    )
    tick_s: float = Field(
        1.0, gt=0, le=60, description="Longest the rollout driver waits between two rounds."
    )
    leader_retry_s: float = Field(
        5.0, gt=0, description="How often a follower tries to become the rollout driver."
    )
    leader_check_s: float = Field(
        5.0, gt=0, description="How often the driver checks it still holds its lock."
    )
    url_ttl_s: int = Field(
        3600, ge=60, le=86400, description="Lifetime of a signed firmware download link."
    )
    device_timeout_s: int = Field(
        1800,
        ge=1,
        description="Default time a device has from the update command to reporting its new "
        "version before it counts as failed (a campaign may set its own).",
    )
    max_ward_percent: float = Field(
        25.0,
        gt=0,
        le=100,
        description="Default most of a ward's speakers that may be updating at the same time.",
    )
    broadcast_guard_min: int = Field(
        15,
        ge=0,
        description="Default: no update starts on a speaker with a broadcast due within this "
        "many minutes (or playing).",
    )
    timezone: str = Field(
        "Asia/Ho_Chi_Minh", description="Time zone of the wards' maintenance windows."
    )
