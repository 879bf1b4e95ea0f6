"""The sensor simulator on the wire: what it publishes, the drivers decode within the catalog."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.contract import Reading
from drivers.sensors.coap import SensorCoapDriver
from drivers.sensors.errors import BrokerUnavailable
from drivers.sensors.mqtt import SensorMqttDriver
from drivers.sensors.simulator import (
    AIR_METRICS,
    HYDRO_METRICS,
    PayloadStyle,
    SimulatedSensor,
    Transport,
    run_sensor_fleet,
)
from hub.devices import NATIVE, DeviceIdentity
from hub.telemetry.catalog import normalise
from hub.telemetry.names import DeviceNames
from tests.support.brokers import PrivateBroker, free_port, private_mosquitto
from tests.support.sinks import RecordingSink, eventually, running

from .conftest import BROKER_USERS

FLEET = [
    SimulatedSensor("hp-a", "Lê Chân", 20.85, 106.68),
    SimulatedSensor("hp-b", "Lê Chân", 20.85, 106.69, style=PayloadStyle.SENML_JSON),
    SimulatedSensor(
        "hp-c",
        "Ngô Quyền",
        20.86,
        106.70,
        style=PayloadStyle.SENML_CBOR,
        username="hp-c",
        password="device-secret",
    ),
    SimulatedSensor("hp-d", "Hồng Bàng", 20.87, 106.67, HYDRO_METRICS),
    SimulatedSensor(
        "hp-e",
        "Hồng Bàng",
        20.86,
        106.66,
        style=PayloadStyle.SENML_CBOR,
        transport=Transport.COAP,
    ),
    SimulatedSensor("hp-f", "Kiến An", 20.81, 106.63, silent=True),
]
ROUNDS = 3


def telemetry(sink: RecordingSink) -> list[Reading]:
    """Readings from telemetry, without the battery and RSSI that status messages carry."""
    return [reading for reading in sink.stored if reading.metric not in ("battery", "rssi")]


async def test_simulated_fleet_publishes_decodable_readings_within_the_catalog(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    coap_port = free_port()
    mqtt_driver = SensorMqttDriver(broker.host, broker.port, client_id="hub-sim")
    coap_driver = SensorCoapDriver("127.0.0.1", coap_port)
    async with running(mqtt_driver, sink), running(coap_driver, sink):
        await asyncio.wait_for(mqtt_driver.wait_connected(), 5)
        await asyncio.wait_for(coap_driver.wait_listening(), 5)
        stats = await run_sensor_fleet(
            FLEET,
            broker.host,
            broker.port,
            coap_host="127.0.0.1",
            coap_port=coap_port,
            interval=0.05,
            rounds=ROUNDS,
            seed=1,
        )
        expected = ROUNDS * sum(len(sensor.metrics) for sensor in FLEET if not sensor.silent)
        await eventually(lambda: len(telemetry(sink)) == expected)
        mqtt_devices = {sensor.uid for sensor in FLEET if sensor.transport is Transport.MQTT}
        await eventually(
            lambda: {h.device_uid for h in sink.heartbeats if not h.connected} == mqtt_devices
        )

    assert (stats.published, stats.malformed, stats.failed) == (5 * ROUNDS, 0, 0)
    assert sink.quarantined == []
    by_device: dict[str, set[str]] = {}
    for reading in telemetry(sink):
        metric, unit = reading.metric, reading.unit
        if reading.senml:  # named as the hub maps a device without a profile
            identity = DeviceIdentity(reading.device_uid, "", None)
            metric, unit = DeviceNames(NATIVE, identity).resolve(metric, unit, "topic")
        by_device.setdefault(reading.device_uid, set()).add(metric)
        normalise(metric, reading.value, unit)  # raises if out of the catalog
    assert by_device == {
        "hp-a": set(AIR_METRICS),
        "hp-b": set(AIR_METRICS),
        "hp-c": set(AIR_METRICS),
        "hp-d": set(HYDRO_METRICS),
        "hp-e": set(AIR_METRICS),
    }
    online = {h.device_uid: h for h in sink.heartbeats if h.connected and h.source == "mqtt-status"}
    assert set(online) == mqtt_devices  # the silent device announced itself too
    assert 0 <= online["hp-f"].detail["battery"] <= 100
    assert {h.device_uid for h in sink.heartbeats if h.source == "coap"} == {"hp-e"}


async def test_malformed_share_is_quarantined_by_the_drivers(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    coap_port = free_port()
    mqtt_driver = SensorMqttDriver(broker.host, broker.port, client_id="hub-sim")
    coap_driver = SensorCoapDriver("127.0.0.1", coap_port)
    fleet = FLEET[:2] + FLEET[4:5]
    async with running(mqtt_driver, sink), running(coap_driver, sink):
        await asyncio.wait_for(mqtt_driver.wait_connected(), 5)
        await asyncio.wait_for(coap_driver.wait_listening(), 5)
        stats = await run_sensor_fleet(
            fleet,
            broker.host,
            broker.port,
            coap_host="127.0.0.1",
            coap_port=coap_port,
            interval=0.02,
            rounds=4,
            seed=2,
            malformed_share=1.0,
        )
        await eventually(lambda: len(sink.quarantined) == 12)
    assert stats.malformed == 12
    assert stats.failed == 4  # the CoAP device was answered 4.00 each time
    assert telemetry(sink) == []
    assert all(rejected.reason for rejected in sink.quarantined)


async def test_a_device_with_credentials_connects_as_itself(
    password_file: Path, sink: RecordingSink
) -> None:
    device = FLEET[2]
    assert (device.username, device.password) == ("hp-c", BROKER_USERS["hp-c"])
    with private_mosquitto(f"password_file {password_file}", allow_anonymous=False) as secured:
        driver = SensorMqttDriver(
            secured.host, secured.port, username="iochub", password=BROKER_USERS["iochub"]
        )
        async with running(driver, sink):
            await asyncio.wait_for(driver.wait_connected(), 5)
            stats = await run_sensor_fleet(
                [device], secured.host, secured.port, interval=0.02, rounds=2
            )
            await eventually(lambda: len(telemetry(sink)) == 2 * len(AIR_METRICS))
        # Without credentials the same device is turned away by this broker.
        anonymous = SimulatedSensor(device.uid, device.ward, device.lat, device.lon)
        with pytest.raises(BrokerUnavailable, match="simulator cannot connect"):
            await run_sensor_fleet([anonymous], secured.host, secured.port, rounds=1)
    assert stats.published == 2
