"""What the health slice adds to the hub: its routes and the health monitor, which takes
every driver's heartbeats and events from the sink and each stored batch of readings."""

from __future__ import annotations

from typing import Any

from hub.devices import DIRECTORY
from hub.health.api import HealthController
from hub.health.monitor import HEALTH, HealthMonitor
from hub.health.settings import HealthSettings
from hub.runtime import BackgroundService, HubRuntime, Wiring
from hub.storage.database import asyncpg_dsn
from hub.storage.leadership import led
from hub.telemetry import WRITER


def routes() -> list[Any]:
    return [HealthController]


async def start(hub: HubRuntime) -> None:
    health = hub.put(
        HEALTH,
        HealthMonitor(hub.database.pool, hub.get(DIRECTORY), hub.settings.group(HealthSettings)),
    )
    hub.get(WRITER).on_stored.append(health.readings_stored)
    hub.sink.take_health_news(health)
    # Absence ticks (late, offline) and the periodic rule evaluation run in one process at a
    # time; every process still assesses the heartbeats and readings it receives itself.
    hub.services.add(
        BackgroundService(
            "health-monitor", led(asyncpg_dsn(hub.database.url), "health-ticks", health.run)
        )
    )


wiring = Wiring("health", routes, start)
