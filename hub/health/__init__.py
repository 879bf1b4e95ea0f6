"""Device health: connectivity vs activity, the per-device state machine, maintenance
windows, availability. Other slices use what is named here; `wiring`
(hub.health.wiring) is the composition root's hook."""

from hub.health.monitor import HEALTH, DeviceHealth, FlapChange, HealthMonitor, Transition
from hub.health.settings import HealthSettings

__all__ = ["HEALTH", "DeviceHealth", "FlapChange", "HealthMonitor", "HealthSettings", "Transition"]
