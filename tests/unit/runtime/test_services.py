"""Service supervision: retryable failures restart with back-off, terminal ones stop."""

from __future__ import annotations

import asyncio

from drivers.sensors.errors import BrokerRefused
from hub.errors import Unavailable, ValidationFailed, is_retryable
from hub.runtime import BackgroundService, ServiceGroup


def test_one_distinction_between_retryable_and_terminal() -> None:
    assert is_retryable(ConnectionError("reset"))
    assert is_retryable(Unavailable("database restarting"))
    assert not is_retryable(ValidationFailed("wrong configuration"))
    # Drivers never import the hub, yet their errors answer the same question.
    assert not is_retryable(BrokerRefused("not authorised"))


async def test_a_terminal_error_stops_the_service_with_its_reason() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise BrokerRefused("broker refused the connection: not authorised")

    group = ServiceGroup(first_delay_s=0.001)
    group.add(BackgroundService("sensor-mqtt", refused))
    await group.start()
    await asyncio.wait_for(group.tasks["sensor-mqtt"], 2)
    assert calls == 1
    assert group.failed == {
        "sensor-mqtt": "BrokerRefused: broker refused the connection: not authorised"
    }
    assert group.status()["sensor-mqtt"].startswith("failed: BrokerRefused")
    await group.stop()


async def test_a_retryable_error_restarts_the_service() -> None:
    calls = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("broker away")
        done.set()
        await asyncio.Event().wait()

    group = ServiceGroup(first_delay_s=0.001, max_delay_s=0.002)
    group.add(BackgroundService("flaky", flaky))
    await group.start()
    await asyncio.wait_for(done.wait(), 2)
    assert calls == 3 and group.failed == {}
    assert group.status() == {"flaky": "running"}
    await group.stop()
