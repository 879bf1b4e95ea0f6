"""Test helpers: a DriverSink that records what drivers hand over, camera targets, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drivers.contract import Ack, DeviceEvent, Heartbeat, Reading, Rejected
from drivers.onvif.client import CameraTarget
from drivers.onvif.simulator import SimulatedCamera


def target_of(camera: SimulatedCamera, password: str | None = None) -> CameraTarget:
    return CameraTarget(
        device_uid=f"uid-{camera.name}",
        host=camera.host,
        port=camera.port,
        username=camera.spec.username,
        password=camera.spec.password if password is None else password,
    )


class RecordingSink:
    def __init__(self) -> None:
        self.heartbeats: list[Heartbeat] = []
        self.events: list[DeviceEvent] = []
        self.rejections: list[Rejected] = []

    async def readings(self, items: list[Reading], source: str) -> None:
        raise AssertionError("camera drivers send no readings")

    async def heartbeat(self, item: Heartbeat) -> None:
        self.heartbeats.append(item)

    async def event(self, item: DeviceEvent) -> None:
        self.events.append(item)

    async def ack(self, item: Ack) -> None:
        raise AssertionError("camera drivers send no acks")

    async def rejected(self, item: Rejected) -> None:
        self.rejections.append(item)

    def events_of(self, kind: str) -> list[DeviceEvent]:
        return [event for event in self.events if event.kind == kind]


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail the test if it does not ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)
