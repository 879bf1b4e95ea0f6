"""What the console adds to the hub: its pages, and the one LISTEN connection per process
that feeds the pages' live updates."""

from __future__ import annotations

from typing import Any

from hub.runtime import BackgroundService, HubRuntime, Wiring
from hub.storage.database import asyncpg_dsn
from hub.web.alerts import AlertConsoleController
from hub.web.broadcasts import BroadcastConsoleController
from hub.web.cameras import CameraConsoleController
from hub.web.console import ConsoleController
from hub.web.device_page import DeviceConsoleController
from hub.web.home import HomeController
from hub.web.live import LIVE, LiveController, LiveFeed
from hub.web.map import MapConsoleController


def routes() -> list[Any]:
    return [
        ConsoleController,
        BroadcastConsoleController,
        CameraConsoleController,
        DeviceConsoleController,
        HomeController,
        AlertConsoleController,
        LiveController,
        MapConsoleController,
    ]


async def start(hub: HubRuntime) -> None:
    feed = hub.put(LIVE, LiveFeed(asyncpg_dsn(hub.database.url)))
    hub.services.add(BackgroundService("console-live", feed.run, feed.stop))


wiring = Wiring("web", routes, start)
