"""Device health: connectivity vs activity, the per-device state machine, maintenance
windows, availability. Other slices use what is named here (`health_service`: a device's
health as people read it, and its maintenance windows, audited); `wiring`
(hub.health.wiring) is the composition root's hook."""

from hub.health import service as health_service
from hub.health.monitor import HEALTH, DeviceHealth, FlapChange, HealthMonitor, Transition
from hub.health.service import DeviceHealthOut, MaintenanceIn
from hub.health.settings import HealthSettings

__all__ = [
    "HEALTH",
    "DeviceHealth",
    "DeviceHealthOut",
    "FlapChange",
    "HealthMonitor",
    "HealthSettings",
    "MaintenanceIn",
    "Transition",
    "health_service",
]
