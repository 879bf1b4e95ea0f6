"""The webhook API's shapes (msgspec). Secrets appear only in the answers that create them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

EventTypeName = Literal[
    "vn.iochub.alert.firing",
    "vn.iochub.alert.acknowledged",
    "vn.iochub.alert.resolved",
    "vn.iochub.alert.severity_raised",
    "vn.iochub.alert.assigned",
    "vn.iochub.alert.commented",
]
WardCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", examples=["ward-a"])]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["IOC alerts"])]
Url = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2000,
        description="http or https URL the hub POSTs events to.",
        examples=["https://ioc.example.vn/hooks/iochub"],
    ),
]
EventTypes = Annotated[
    list[EventTypeName],
    msgspec.Meta(max_length=16, description="Only these event types; empty means every one."),
]
Wards = Annotated[
    list[WardCode],
    msgspec.Meta(max_length=500, description="Only events of these wards; empty means all."),
]
DeliveryStatus = Literal["pending", "delivered", "dead"]


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    url: Url
    event_types: EventTypes = msgspec.field(default_factory=list)
    wards: Wards = msgspec.field(default_factory=list)
    active: bool = True


class SubscriptionPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType = msgspec.UNSET
    wards: Wards | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class SubscriptionOut(msgspec.Struct):
    id: int
    name: str
    url: str
    event_types: list[str]
    wards: list[str]
    active: bool
    deactivated_reason: str
    """Why the hub turned the subscription off (a 410 Gone answer), if it did."""
    previous_secret_expires_at: datetime | None
    """While set, requests carry a second signature made with the rotated-out secret."""
    pending_deliveries: int
    dead_deliveries: int
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(msgspec.Struct):
    subscription: SubscriptionOut
    secret: str
    """The signing secret (whsec_...). Shown this once: store it now."""


class SecretRotated(msgspec.Struct):
    secret: str
    """The new signing secret. Shown this once: store it now."""
    previous_secret_expires_at: datetime | None
    """Until then requests are signed with both secrets."""


class DeliveryOut(msgspec.Struct):
    id: int
    webhook_id: str
    """The webhook-id header and CloudEvents id: the same on every retry and redelivery."""
    event_type: str
    subject: str
    occurred_at: datetime
    status: DeliveryStatus
    in_flight: bool
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    delivered_at: datetime | None
    created_at: datetime
    external_id: str | None = None


class AttemptOut(msgspec.Struct):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int | None
    error: str | None


class DeliveryDetail(msgspec.Struct):
    delivery: DeliveryOut
    data: dict[str, Any]
    """The event's data, as sent."""
    log: list[AttemptOut]
    """Every attempt, oldest first."""


class RedeliveryReport(msgspec.Struct):
    queued: int
