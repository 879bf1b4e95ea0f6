"""What the integrations slice adds to the hub: its routes and background services."""

from __future__ import annotations

from typing import Any

from hub.integrations.api import GrafanaDeliveryController, WebhookController
from hub.integrations.engine import DeliveryEngine
from hub.integrations.runtime import Integrations
from hub.server.context import HubContext
from hub.server.services import BackgroundService, ServiceGroup
from hub.storage.database import asyncpg_dsn


def routes() -> list[Any]:
    return [WebhookController, GrafanaDeliveryController]


async def add_services(ctx: HubContext, services: ServiceGroup) -> None:
    settings = ctx.settings
    box = settings.secret_box()
    pool = ctx.database.pool
    engine = None
    if settings.delivery.enabled:
        engine = DeliveryEngine(
            asyncpg_dsn(ctx.database.url),
            settings=settings.delivery,
            box=box,
            statement_timeout_ms=settings.database.statement_timeout_ms,
        )
        services.add(BackgroundService("alert-delivery", engine.run, stop=engine.stop))
    grafana = settings.delivery.grafana
    if grafana.sync_on_start and grafana.url is not None and grafana.token is not None:
        from hub.integrations.grafana_sync import sync_at_start

        url = ctx.database.url
        services.add(BackgroundService("grafana-sync", lambda: sync_at_start(pool, grafana, url)))
    ctx.state.integrations = Integrations(
        pool=pool, box=box, settings=settings.delivery, engine=engine
    )
