"""What the alert and rule routes take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from hub.alerts.rules import RuleIn
from hub.cameras import NearbyCameraOut


class AlertOut(msgspec.Struct):
    id: int
    fingerprint: str
    rule: str
    device: str
    device_kind: str
    ward: str | None
    severity: str
    state: str
    value: float | None
    threshold: float | None
    message: str
    started_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    assignee: str | None
    resolved_reason: str | None = None
    """Why it resolved when the state alone does not say it (its rule's window closed)."""
    nearby_cameras: list[NearbyCameraOut] = msgspec.field(default_factory=list)
    """Cameras near the alert's device, nearest first (in one alert's answer, not in lists)."""


class AlertPage(msgspec.Struct):
    items: list[AlertOut]
    next_before_id: int | None


class CommentIn(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class CommentOut(msgspec.Struct):
    id: int
    at: datetime
    author: str
    text: str


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[str, msgspec.Meta(max_length=64)] | None


class RuleOut(RuleIn):
    id: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DryRunIn(msgspec.Struct, forbid_unknown_fields=True):
    rule: RuleIn
    hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 31)] = 24


class DryRunEvent(msgspec.Struct):
    device: str
    severity: str
    fired_at: datetime
    resolved_at: datetime | None
    peak: float


class DryRunOut(msgspec.Struct):
    readings: int
    devices: int
    events: list[DryRunEvent]
