"""Shapes of the firmware API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

StateName = Literal[
    "current", "outdated", "vulnerable", "end_of_support", "unknown_model", "unknown_version"
]
KindName = Literal["speaker", "sensor", "camera"]
LocalTime = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["01:00"])]


class CveOut(msgspec.Struct):
    id: str
    cvss: float
    severity: str
    summary: str
    source: str
    """'manifest', or the OSV record that said so."""


class ReleaseOut(msgspec.Struct):
    id: int
    vendor: str
    model: str
    kind: str
    version: str
    released_on: date
    min_version: str | None
    end_of_support: date | None
    notes: str
    prerelease: bool
    artifact_size: int
    artifact_sha256: str
    artifact_url: str | None
    """A vendor URL; images in the catalog are served to devices by the hub."""
    signature_key: str
    vulnerabilities: list[CveOut]


class DeviceComplianceOut(msgspec.Struct):
    uid: str
    kind: str
    ward: str | None
    vendor: str
    model: str
    version: str
    state: StateName
    reason: str
    latest_version: str | None
    versions_behind: int
    days_behind: int
    end_of_support: date | None
    worst_severity: str | None
    vulnerabilities: list[CveOut]


class CompliancePage(msgspec.Struct):
    items: list[DeviceComplianceOut]
    total: int
    counts: dict[str, int]


class SummaryOut(msgspec.Struct):
    ward: str | None
    kind: str
    vendor: str
    model: str
    total: int
    counts: dict[str, int]


class WindowIn(msgspec.Struct, forbid_unknown_fields=True):
    starts: LocalTime
    """Local time (Asia/Ho_Chi_Minh) from which updates may start; may wrap midnight."""
    ends: LocalTime


class WindowOut(msgspec.Struct):
    ward: str
    starts: str
    ends: str


class WaveOut(msgspec.Struct):
    wave: int
    size: int
    state: str
    counts: dict[str, int]
    started_at: datetime | None
    finished_at: datetime | None
    approved_by: str | None


class CampaignDeviceOut(msgspec.Struct):
    uid: str
    ward: str | None
    wave: int
    state: str
    from_version: str
    reported_version: str | None
    attempts: int
    reason: str | None
    updated_at: datetime


class CampaignOut(msgspec.Struct):
    id: int
    name: str
    state: str
    vendor: str
    model: str
    version: str
    current_wave: int
    require_approval: bool
    success_percent: float
    error_percent: float
    max_ward_percent: float
    broadcast_guard_min: float
    use_windows: bool
    device_timeout_s: int
    stop_reason: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    waves: list[WaveOut]


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    release_id: int
    """The target release (GET /api/v1/firmware/catalog); its model is the campaign's."""
    wards: list[str] = []
    """Ward codes; with neither wards, group nor devices: every ward you serve."""
    group: int | None = None
    devices: list[str] = []
    waves: list[Annotated[float, msgspec.Meta(gt=0, le=100)]] = msgspec.field(
        default_factory=lambda: [2.0, 10.0, 50.0, 100.0]
    )
    """Cumulative share of the devices (%) updated by the end of each wave: canary first."""
    success_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] = 95.0
    error_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] = 10.0
    require_approval: bool = False
    max_ward_percent: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    broadcast_guard_min: Annotated[float, msgspec.Meta(ge=0, le=1440)] | None = None
    use_windows: bool = True
    device_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=86400)] | None = None


class CampaignCreated(msgspec.Struct):
    campaign: CampaignOut
    refused: list[CampaignDeviceOut]
    """Devices of the selection that will not be sent this firmware, and why."""
