"""The concrete drivers, built from the settings: the only place of the hub that names
them (slices know the protocols in drivers.contract and their own)."""

from __future__ import annotations

import ssl

from drivers.sensors.coap import SensorCoapDriver
from drivers.sensors.mqtt import SensorMqttDriver
from drivers.sensors.oscore import OscoreAuthoriser
from drivers.sensors.payloads import PayloadLimits
from drivers.speaker.driver import SpeakerMqttDriver, SpeakerMqttSettings
from hub.broadcasts import BroadcastSettings
from hub.broadcasts.dispatch import SPEAKER_LINKS, SpeakerLink
from hub.devices.coap_keys import COAP_KEYS
from hub.runtime import BackgroundService, HubRuntime
from hub.server.metrics import SENSORS
from hub.server.settings import Settings
from hub.telemetry.ingest import BACKFILL_LIMIT


def provide(hub: HubRuntime, settings: Settings) -> None:
    """What slices ask the root for when they start: links to their devices."""
    mqtt = settings.mqtt

    def speakers(own: BroadcastSettings) -> SpeakerLink:
        return SpeakerMqttDriver(
            SpeakerMqttSettings(
                host=mqtt.host,
                port=mqtt.port,
                client_id=f"{mqtt.client_id}-speakers",
                username=mqtt.username,
                password=mqtt.password.get_secret_value() if mqtt.password else None,
                tls_context=ssl.create_default_context() if mqtt.tls else None,
                persistent_session=True,
                subscription_group=own.speaker_subscription_group,
            )
        )

    hub.put(SPEAKER_LINKS, speakers)


def add_sensor_drivers(hub: HubRuntime, settings: Settings) -> None:
    """Sensors over MQTT and CoAP, feeding the hub's sink; they start after (and so stop
    before) the slices that take their readings."""
    mqtt = settings.mqtt
    t = settings.telemetry
    sink = hub.sink
    # Drivers let through what some device may backfill; telemetry applies each device's limit.
    device_limits = PayloadLimits(max_age=BACKFILL_LIMIT)
    if t.mqtt_ingest:
        sensors = SensorMqttDriver(
            mqtt.host,
            mqtt.port,
            client_id=f"{mqtt.client_id}-sensors",
            username=mqtt.username,
            password=mqtt.password.get_secret_value() if mqtt.password else None,
            shared_group=mqtt.shared_group,
            batch_size=t.mqtt_batch_messages,
            max_batches=t.mqtt_batches_in_flight,
            limits=device_limits,
        )
        hub.services.add(BackgroundService("sensor-mqtt", lambda: sensors.run(sink)))
        hub.put(SENSORS, sensors)
    if settings.coap.enabled:
        coap_keys = hub.get(COAP_KEYS)
        coap = SensorCoapDriver(
            settings.coap.host,
            settings.coap.port,
            limits=device_limits,
            authorise=OscoreAuthoriser(required=settings.coap.require_oscore),
            security_contexts=coap_keys.registry,
        )
        hub.services.add(
            BackgroundService("sensor-coap", lambda: coap_keys.serve(lambda: coap.run(sink)))
        )
