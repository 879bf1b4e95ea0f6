"""Rotating a sensor's secret mid-stream: the broker cuts it off, it reconnects with the
new secret, and the hub stores every reading it published — none lost."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiomqtt

from drivers.contract import DeviceKind, Topics
from drivers.sensors.mqtt import SensorMqttDriver
from hub.devices.broker import MosquittoDynsec, new_device_secret
from tests.integration.broker.mqtt_helpers import Credentials, provisioned
from tests.support.dynsec import DynsecBroker
from tests.support.sinks import RecordingSink, eventually, running

READINGS = 60


async def publish_with_reconnect(
    broker: DynsecBroker, device: Credentials, secrets: list[str], start: datetime
) -> int:
    """A device that keeps its unsent readings and retries with the newest secret it has;
    returns how many connections it needed."""
    pending = list(range(READINGS))
    connections = 0
    while pending:
        connections += 1
        try:
            async with aiomqtt.Client(
                broker.host,
                broker.port,
                username=device.username,
                password=secrets[-1],
                identifier=device.username,
                clean_session=False,
                timeout=3.0,
            ) as client:
                while pending:
                    n = pending[0]
                    body = {
                        "ts": (start + timedelta(seconds=n)).isoformat(),
                        "readings": {"pm10": float(n)},
                    }
                    await client.publish(
                        Topics.for_device(device.username, Topics.TELEMETRY),
                        json.dumps(body),
                        qos=1,
                    )
                    pending.pop(0)  # the broker acknowledged it
                    await asyncio.sleep(0.02)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)  # cut off (rotation): reconnect with the newest secret
    return connections


async def test_rotation_loses_no_reading(
    dynsec_broker: DynsecBroker, access: MosquittoDynsec, hub_credentials: Credentials
) -> None:
    device = await provisioned(access, DeviceKind.SENSOR)
    secrets = [device.secret]
    sink = RecordingSink()
    driver = SensorMqttDriver(
        dynsec_broker.host,
        dynsec_broker.port,
        client_id="hub-rotation",
        username=hub_credentials.username,
        password=hub_credentials.secret,
        shared_group="rotation",
    )
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with running(driver, sink):
        await driver.wait_connected()
        publisher = asyncio.create_task(
            publish_with_reconnect(dynsec_broker, device, secrets, start)
        )
        await eventually(lambda: len(sink.stored) >= 15)
        rotated = new_device_secret()
        await access.rotate_secret(device.username, rotated)
        secrets.append(rotated)
        assert await asyncio.wait_for(publisher, 30) >= 2  # the rotation did cut it off
        await eventually(lambda: len({r.time for r in sink.stored}) == READINGS, within=15)
    values = sorted({r.value for r in sink.stored})
    assert values == [float(n) for n in range(READINGS)]
