"""Alerts: rules, streaming and periodic evaluation, the alert lifecycle; every change is
written with an outbox row.

Other slices use what is named here and nothing else of the package (the layering
contracts in pyproject.toml check it): the running `Alerts` service (ALERTS in the hub's
runtime), what it answers, and the slice's settings. `wiring` (hub.alerts.wiring) is the
composition root's hook.
"""

from hub.alerts.schemas import AlertOut, AlertPage
from hub.alerts.service import ALERTS, AlertQuery, Alerts
from hub.alerts.settings import AlertSettings

__all__ = ["ALERTS", "AlertOut", "AlertPage", "AlertQuery", "AlertSettings", "Alerts"]
