"""Alerts: rules, streaming and periodic evaluation, the alert lifecycle; every change is
written with an outbox row.

Other slices use what is named here and nothing else of the package (the layering
contracts in pyproject.toml check it). `wiring` (hub.alerts.wiring) is the composition
root's hook.
"""

from hub.alerts.api import alert_out, visible_alert

__all__ = ["alert_out", "visible_alert"]
