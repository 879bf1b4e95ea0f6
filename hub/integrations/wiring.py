"""What the integrations slice adds to the hub: its routes and the outbox workers."""

from __future__ import annotations

from typing import Any

from hub.integrations.api import GrafanaDeliveryController, WebhookController
from hub.integrations.engine import DeliveryEngine
from hub.integrations.runtime import INTEGRATIONS, Integrations
from hub.integrations.settings import DeliverySettings
from hub.runtime import BackgroundService, HubRuntime, Wiring
from hub.storage.database import asyncpg_dsn


def routes() -> list[Any]:
    return [WebhookController, GrafanaDeliveryController]


async def start(hub: HubRuntime) -> None:
    settings = hub.settings
    delivery = settings.group(DeliverySettings)
    box = settings.secret_box()
    engine = None
    if delivery.enabled:
        engine = DeliveryEngine(
            asyncpg_dsn(hub.database.url),
            settings=delivery,
            box=box,
            statement_timeout_ms=settings.database.statement_timeout_ms,
        )
        hub.services.add(BackgroundService("alert-delivery", engine.run, stop=engine.stop))
    grafana = delivery.grafana
    if grafana.sync_on_start and grafana.url is not None and grafana.token is not None:
        from hub.integrations.grafana_sync import sync_at_start

        pool, url = hub.database.pool, hub.database.url
        hub.services.add(
            BackgroundService("grafana-sync", lambda: sync_at_start(pool, grafana, url))
        )
    hub.put(
        INTEGRATIONS,
        Integrations(pool=hub.database.pool, box=box, settings=delivery, engine=engine),
    )


wiring = Wiring("integrations", routes, start)
