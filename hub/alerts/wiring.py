"""What the alerts slice adds to the hub: its routes and the alert engine, fed by each
stored batch of readings, each health assessment and each change of maintenance."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from hub.alerts.api import AlertController, RuleController
from hub.alerts.engine import ALERT_ENGINE, AlertEngine
from hub.alerts.service import ALERTS, Alerts
from hub.alerts.settings import AlertSettings
from hub.health import HEALTH
from hub.runtime import HubRuntime, Wiring
from hub.telemetry import WRITER


def routes() -> list[Any]:
    return [AlertController, RuleController]


async def start(hub: HubRuntime) -> None:
    health = hub.get(HEALTH)
    settings = hub.settings.group(AlertSettings)
    engine = hub.put(
        ALERT_ENGINE,
        AlertEngine(
            hub.database.pool,
            zone=ZoneInfo(settings.timezone),
            # The health monitor's clock, whose ticks drive the periodic evaluation: one
            # clock for both, so readings and ticks agree on whether a window is open.
            clock=lambda: health.clock(),
        ),
    )
    await engine.refresh()
    hub.put(ALERTS, Alerts(hub.database.pool, engine))
    # After the health monitor's own hook: rules see the health the batch just gave.
    hub.get(WRITER).on_stored.append(engine.readings_stored)
    health.on_tick.append(engine.health_tick)
    health.on_flapping.append(engine.flapping_changed)
    health.on_maintenance.append(engine.refresh)


wiring = Wiring("alerts", routes, start)
