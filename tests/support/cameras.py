"""Simulated ONVIF cameras on loopback for a test, each stopped when the test ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from drivers.onvif.client import preload_wsdls
from drivers.onvif.simulator import CameraSimulator, CameraSpec

StartCameras = Callable[..., Awaitable[CameraSimulator]]


@contextlib.asynccontextmanager
async def camera_starter() -> AsyncIterator[StartCameras]:
    """Yields ``start(*specs)``; every simulator it started is stopped on the way out."""
    await preload_wsdls()
    started: list[CameraSimulator] = []

    async def start(*specs: CameraSpec) -> CameraSimulator:
        simulator = CameraSimulator(specs)
        started.append(simulator)
        # One by one: started together, cameras can be handed the same free port.
        for camera in simulator.cameras.values():
            await camera.start()
        return simulator

    try:
        yield start
    finally:
        for simulator in started:
            await simulator.stop()
