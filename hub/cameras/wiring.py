"""What the camera slice adds to the hub: its routes and background services.

The composition root calls `routes()` when it builds the app and `add_services()` in
the lifespan, after `state.sink` exists. The service objects land on the app state:
`state.cameras` (CameraService) and `state.camera_health` (CameraHealthService).
"""

from __future__ import annotations

from typing import Any

from drivers.contract import DriverSink
from hub.cameras import nearby
from hub.cameras.api import CameraController
from hub.cameras.events import run_camera_events
from hub.cameras.health import CameraHealthService
from hub.cameras.live import LiveViews
from hub.cameras.service import CameraService
from hub.server.context import HubContext
from hub.server.services import BackgroundService, ServiceGroup
from hub.storage.database import asyncpg_dsn
from hub.storage.leadership import led


def routes() -> list[Any]:
    return [CameraController]


async def add_services(ctx: HubContext, services: ServiceGroup) -> None:
    settings = ctx.settings.cameras
    pool = ctx.database.pool
    box = ctx.settings.secret_box()
    sink: DriverSink = ctx.state.sink
    cameras = CameraService(pool, box, settings, sink)
    health = CameraHealthService(
        pool, box, sink, settings, interval_s=ctx.settings.health.camera_interval_s
    )
    cameras.assess = health.assess
    live = LiveViews(settings)
    live.on_view_ended = cameras.view_ended
    cameras.live = live
    nearby.DEFAULTS.radius_m = settings.near_radius_m
    nearby.DEFAULTS.base_url = ctx.settings.http.base_url
    services.add(BackgroundService("camera-live", live.run))
    ctx.state.cameras, ctx.state.camera_health = cameras, health
    # Sweeps and event subscriptions run in one hub process at a time (a camera polled or
    # subscribed to by every replica would see N times the traffic and N event streams).
    dsn = asyncpg_dsn(ctx.database.url)
    if settings.health_enabled:
        services.add(BackgroundService("camera-health", led(dsn, "camera-health", health.run)))
    if settings.events_enabled:
        services.add(
            BackgroundService(
                "camera-events",
                led(
                    dsn,
                    "camera-events",
                    lambda: run_camera_events(
                        pool, box, sink, cameras.changes, settings.events_refresh_s
                    ),
                ),
            )
        )
