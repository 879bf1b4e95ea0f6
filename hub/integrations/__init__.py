"""IOC webhooks and Grafana annotations, fed by the transactional outbox."""

from hub.integrations.outbox import (
    ALERT_ACKNOWLEDGED,
    ALERT_ASSIGNED,
    ALERT_COMMENTED,
    ALERT_EVENT_TYPES,
    ALERT_FIRING,
    ALERT_RESOLVED,
    ALERT_SEVERITY_RAISED,
    OutboxMisuse,
    enqueue,
    notify_new,
)

__all__ = [
    "ALERT_ACKNOWLEDGED",
    "ALERT_ASSIGNED",
    "ALERT_COMMENTED",
    "ALERT_EVENT_TYPES",
    "ALERT_FIRING",
    "ALERT_RESOLVED",
    "ALERT_SEVERITY_RAISED",
    "OutboxMisuse",
    "enqueue",
    "notify_new",
]
