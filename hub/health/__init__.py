"""Device health: connectivity vs activity, the per-device state machine, maintenance
windows, availability. Other slices use what is named here (`health_service`: a device's
health as people read it, and its maintenance windows, audited; `health_board`: every
device, the unhealthy first); `wiring` (hub.health.wiring) is the composition root's hook."""

from hub.health import service as health_service
from hub.health.board import (
    STATUS_ORDER,
    BoardCount,
    BoardQuery,
    BoardRow,
    board_counts,
    health_board,
)
from hub.health.monitor import HEALTH, DeviceHealth, FlapChange, HealthMonitor, Transition
from hub.health.service import DeviceHealthOut, MaintenanceIn
from hub.health.settings import HealthSettings

__all__ = [
    "HEALTH",
    "STATUS_ORDER",
    "BoardCount",
    "BoardQuery",
    "BoardRow",
    "DeviceHealth",
    "DeviceHealthOut",
    "FlapChange",
    "HealthMonitor",
    "HealthSettings",
    "MaintenanceIn",
    "Transition",
    "board_counts",
    "health_board",
    "health_service",
]
