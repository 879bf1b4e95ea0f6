"""What the firmware slice adds to the hub: its routes and background services.

The sink tells the FirmwareService (FIRMWARE in the runtime) which firmware each device
reports in its status; the rollout driver runs where rollouts are enabled.
"""

from __future__ import annotations

import ssl
from typing import Any

from drivers.contract import Heartbeat
from drivers.firmware.link import FirmwareLinkSettings, FirmwareMqttLink
from hub.firmware.api import CampaignController, FirmwareController, firmware_artifact
from hub.firmware.artifacts import ARTIFACT_SIGNER, ArtifactSigner, url_key
from hub.firmware.campaigns import CAMPAIGNS, Campaigns
from hub.firmware.rollout import ROLLOUTS, RolloutDriver
from hub.firmware.service import FIRMWARE, FirmwareService
from hub.firmware.settings import FirmwareSettings
from hub.health import HEALTH
from hub.runtime import BackgroundService, HubRuntime, Wiring
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


async def start(hub: HubRuntime) -> None:
    settings = hub.settings.group(FirmwareSettings)
    pool = hub.database.pool
    service = hub.put(FIRMWARE, FirmwareService(pool, settings, health=hub.get(HEALTH)))
    hub.sink.listen_to_heartbeats(
        lambda heartbeat: service.version_reported(
            heartbeat.device_uid, reported_version(heartbeat)
        )
    )
    hub.put(CAMPAIGNS, Campaigns(pool, settings))
    signer = hub.put(
        ARTIFACT_SIGNER,
        ArtifactSigner(
            url_key(hub.settings.secret_key, hub.settings.data_dir), hub.settings.http.base_url
        ),
    )
    hub.services.add(BackgroundService("firmware-versions", service.run_versions))
    hub.services.add(BackgroundService("firmware-compliance", service.run_refresh))
    if not settings.rollouts:
        return
    mqtt = hub.settings.mqtt
    # The one slice that still builds its own driver (the firmware MQTT link).
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
    driver = hub.put(
        ROLLOUTS, RolloutDriver(pool, asyncpg_dsn(hub.database.url), settings, link, signer)
    )
    hub.services.add(BackgroundService("firmware-rollouts", driver.run))


wiring = Wiring("firmware", routes, start)
