"""What the registry slice adds to the hub: its routes, the device directory, per-device
broker credentials and the CoAP keyring."""

from __future__ import annotations

import logging
from typing import Any

from hub.devices.api import DeviceController
from hub.devices.broker import (
    BrokerAccess,
    BrokerAccessError,
    DatabaseIdentities,
    MosquittoDynsec,
    NoBrokerAccess,
)
from hub.devices.coap_api import CoapCredentialController
from hub.devices.coap_keys import COAP_KEYS, CoapKeyring
from hub.devices.credentials import CREDENTIALS, DeviceCredentials
from hub.devices.directory import DIRECTORY, DeviceDirectory
from hub.devices.profiles import PROFILES, ProfileBook, keep_fresh
from hub.runtime import BackgroundService, HubRuntime, MqttSettings, Wiring

log = logging.getLogger("hub.devices")


def routes() -> list[Any]:
    return [DeviceController, CoapCredentialController]


def broker_access(mqtt: MqttSettings) -> BrokerAccess:
    if mqtt.identities == "database":
        return DatabaseIdentities()
    if mqtt.admin_username and mqtt.admin_password:
        return MosquittoDynsec(mqtt.host, mqtt.port, mqtt.admin_username, mqtt.admin_password)
    return NoBrokerAccess(
        "no broker admin configured (IOCHUB_MQTT__ADMIN_USERNAME/PASSWORD): "
        "devices are not confined to their own topics by the broker"
    )


async def start(hub: HubRuntime) -> None:
    settings = hub.settings
    pool = hub.database.pool
    hub.put(DIRECTORY, DeviceDirectory(pool))
    profiles = hub.put(PROFILES, ProfileBook())
    await profiles.refresh(pool)
    hub.services.add(BackgroundService("device-profiles", lambda: keep_fresh(profiles, pool)))
    mqtt = settings.mqtt
    password = mqtt.password.get_secret_value() if mqtt.password else None
    broker = broker_access(mqtt)
    log.info("device identities: %s", broker.describe())
    try:
        await broker.ensure_base_roles()
        if mqtt.username and password:
            await broker.ensure_hub_client(mqtt.username, password)
    except BrokerAccessError as exc:
        # The hub still serves; provisioning calls will say the broker is away.
        log.error("the broker's device identities could not be set up: %s", exc)
    hub.put(CREDENTIALS, DeviceCredentials(broker))
    hub.put(COAP_KEYS, CoapKeyring(settings.secret_box()))


wiring = Wiring("devices", routes, start)
