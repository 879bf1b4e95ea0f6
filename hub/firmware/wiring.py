"""What the firmware slice adds to the hub: its routes and background services.

The composition root calls `routes()` when it builds the app and `add_services()` in the
lifespan, after `state.sink` and `state.health` exist. `state.firmware` is the
FirmwareService; the sink tells it which firmware each device reports in its status.
"""

from __future__ import annotations

import ssl
from typing import Any

from drivers.contract import Heartbeat
from drivers.firmware.link import FirmwareLinkSettings, FirmwareMqttLink
from hub.firmware.api import CampaignController, FirmwareController, firmware_artifact
from hub.firmware.artifacts import ArtifactSigner, url_key
from hub.firmware.campaigns import Campaigns
from hub.firmware.rollout import RolloutDriver
from hub.firmware.service import FirmwareService
from hub.server.context import HubContext
from hub.server.services import BackgroundService, ServiceGroup
from hub.storage.database import asyncpg_dsn

# Speakers say firmware_version in their status, sensors firmware (docs/device-protocol.md).
VERSION_KEYS = ("firmware_version", "firmware")


def routes() -> list[Any]:
    return [FirmwareController, CampaignController, firmware_artifact]


def reported_version(heartbeat: Heartbeat) -> str | None:
    for key in VERSION_KEYS:
        value = heartbeat.detail.get(key)
        if isinstance(value, str) and value:
            return value
    return None


async def add_services(ctx: HubContext, services: ServiceGroup) -> None:
    settings = ctx.settings.firmware
    service = FirmwareService(ctx.database.pool, settings, health=ctx.state.health)
    ctx.state.firmware = service
    ctx.state.sink.on_heartbeat.append(
        lambda heartbeat: service.version_reported(
            heartbeat.device_uid, reported_version(heartbeat)
        )
    )
    ctx.state.firmware_campaigns = Campaigns(ctx.database.pool, settings)
    signer = ArtifactSigner(
        url_key(ctx.settings.secret_key, ctx.settings.data_dir), ctx.settings.http.base_url
    )
    ctx.state.firmware_signer = signer
    services.add(BackgroundService("firmware-versions", service.run_versions))
    services.add(BackgroundService("firmware-compliance", service.run_refresh))
    if not settings.rollouts:
        return
    mqtt = ctx.settings.mqtt
    link = FirmwareMqttLink(
        FirmwareLinkSettings(
            host=mqtt.host,
            port=mqtt.port,
            client_id=f"{mqtt.client_id}-firmware",
            username=mqtt.username,
            password=mqtt.password.get_secret_value() if mqtt.password else None,
            tls_context=ssl.create_default_context() if mqtt.tls else None,
        )
    )
    driver = RolloutDriver(ctx.database.pool, asyncpg_dsn(ctx.database.url), settings, link, signer)
    ctx.state.firmware_link, ctx.state.rollout_driver = link, driver
    services.add(BackgroundService("firmware-rollouts", driver.run))
