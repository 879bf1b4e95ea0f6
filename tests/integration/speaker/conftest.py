from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.speaker.driver import SpeakerMqttDriver, SpeakerMqttSettings
from tests.integration.speaker.support import AudioServer, RecordingSink
from tests.support.brokers import PrivateBroker, mosquitto_available, private_mosquitto


@pytest.fixture(scope="module")
def mqtt_broker() -> Iterator[PrivateBroker]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with private_mosquitto() as running:
        yield running


@pytest.fixture(scope="module")
async def audio_server() -> AsyncIterator[AudioServer]:
    server = AudioServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def hub_side(
    mqtt_broker: PrivateBroker,
) -> AsyncIterator[tuple[SpeakerMqttDriver, RecordingSink]]:
    """A running driver feeding a recording sink."""
    driver = SpeakerMqttDriver(SpeakerMqttSettings(host=mqtt_broker.host, port=mqtt_broker.port))
    sink = RecordingSink()
    task = asyncio.create_task(driver.run(sink))
    async with asyncio.timeout(10):
        await driver.wait_connected()
    yield driver, sink
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
