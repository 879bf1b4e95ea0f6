"""What the integrations slice adds to the hub: its routes and background services."""

from __future__ import annotations

from typing import Any

from hub.server.context import HubContext
from hub.server.services import ServiceGroup


def routes() -> list[Any]:
    return []


async def add_services(ctx: HubContext, services: ServiceGroup) -> None:
    return None
