"""What the camera slice adds to the hub: its routes and background services (health
sweeps and ONVIF events, both reporting to the hub's sink)."""

from __future__ import annotations

from typing import Any

from hub.cameras import nearby
from hub.cameras.api import CameraController
from hub.cameras.events import run_camera_events
from hub.cameras.health import CAMERA_HEALTH, CameraHealthService
from hub.cameras.live import LiveViews
from hub.cameras.service import CAMERAS, CameraService
from hub.cameras.settings import CameraSettings
from hub.health import HealthSettings
from hub.runtime import BackgroundService, HubRuntime, Wiring
from hub.storage.database import asyncpg_dsn
from hub.storage.leadership import led


def routes() -> list[Any]:
    return [CameraController]


async def start(hub: HubRuntime) -> None:
    settings = hub.settings.group(CameraSettings)
    pool = hub.database.pool
    box = hub.settings.secret_box()
    sink = hub.sink
    cameras = hub.put(CAMERAS, CameraService(pool, box, settings, sink))
    health = hub.put(
        CAMERA_HEALTH,
        CameraHealthService(
            pool,
            box,
            sink,
            settings,
            interval_s=hub.settings.group(HealthSettings).camera_interval_s,
        ),
    )
    cameras.assess = health.assess
    live = LiveViews(settings)
    live.on_view_ended = cameras.view_ended
    cameras.live = live
    nearby.DEFAULTS.radius_m = settings.near_radius_m
    nearby.DEFAULTS.base_url = hub.settings.http.base_url
    hub.services.add(BackgroundService("camera-live", live.run))
    # Sweeps and event subscriptions run in one hub process at a time (a camera polled or
    # subscribed to by every replica would see N times the traffic and N event streams).
    dsn = asyncpg_dsn(hub.database.url)
    if settings.health_enabled:
        hub.services.add(BackgroundService("camera-health", led(dsn, "camera-health", health.run)))
    if settings.events_enabled:
        hub.services.add(
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


wiring = Wiring("cameras", routes, start)
