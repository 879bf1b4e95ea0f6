"""What the console adds to the hub: its pages (it has no background work)."""

from __future__ import annotations

from typing import Any

from hub.runtime import Wiring
from hub.web.broadcasts import BroadcastConsoleController
from hub.web.cameras import CameraConsoleController
from hub.web.console import ConsoleController
from hub.web.device_page import DeviceConsoleController


def routes() -> list[Any]:
    return [
        ConsoleController,
        BroadcastConsoleController,
        CameraConsoleController,
        DeviceConsoleController,
    ]


wiring = Wiring("web", routes)
