"""IOC webhooks and Grafana annotations, fed by the transactional outbox. Other slices use
what is named here; `wiring` (hub.integrations.wiring) is the composition root's hook."""

from hub.integrations.events import (
    ALERT_ACKNOWLEDGED,
    ALERT_ASSIGNED,
    ALERT_COMMENTED,
    ALERT_EVENT_TYPES,
    ALERT_FIRING,
    ALERT_RESOLVED,
    ALERT_SEVERITY_RAISED,
)
from hub.integrations.outbox import OutboxMisuse, enqueue, notify_new
from hub.integrations.settings import DeliverySettings

__all__ = [
    "ALERT_ACKNOWLEDGED",
    "ALERT_ASSIGNED",
    "ALERT_COMMENTED",
    "ALERT_EVENT_TYPES",
    "ALERT_FIRING",
    "ALERT_RESOLVED",
    "ALERT_SEVERITY_RAISED",
    "DeliverySettings",
    "OutboxMisuse",
    "enqueue",
    "notify_new",
]
