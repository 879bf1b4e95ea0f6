"""The outbox's event types and the channels its NOTIFYs use (shared by outbox and store)."""

from __future__ import annotations

from typing import Final

EVENT_PREFIX: Final = "vn.iochub."
ALERT_FIRING: Final = "vn.iochub.alert.firing"
ALERT_ACKNOWLEDGED: Final = "vn.iochub.alert.acknowledged"
ALERT_RESOLVED: Final = "vn.iochub.alert.resolved"
ALERT_SEVERITY_RAISED: Final = "vn.iochub.alert.severity_raised"
ALERT_ASSIGNED: Final = "vn.iochub.alert.assigned"
ALERT_COMMENTED: Final = "vn.iochub.alert.commented"
WEBHOOK_TEST: Final = "vn.iochub.webhook.test"
# What a subscription may filter on; an empty filter means all of these.
ALERT_EVENT_TYPES: Final = (
    ALERT_FIRING,
    ALERT_ACKNOWLEDGED,
    ALERT_RESOLVED,
    ALERT_SEVERITY_RAISED,
    ALERT_ASSIGNED,
    ALERT_COMMENTED,
)
# Grafana shows when alerts fire and resolve; the rest of an alert's life is IOC business.
GRAFANA_EVENT_TYPES: Final = (ALERT_FIRING, ALERT_RESOLVED)

OUTBOX_CHANNEL: Final = "iochub_outbox"
DELIVERY_CHANNEL: Final = "iochub_delivery"
