from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from drivers.onvif.client import preload_wsdls
from drivers.onvif.simulator import CameraSimulator, CameraSpec
from tests.integration.onvif.support import StartCameras


@pytest.fixture
async def start_cameras() -> AsyncIterator[StartCameras]:
    """Start simulated cameras on loopback; every one is stopped after the test."""
    await preload_wsdls()
    running: list[CameraSimulator] = []

    async def start(*specs: CameraSpec) -> CameraSimulator:
        simulator = CameraSimulator(specs)
        await simulator.start()
        running.append(simulator)
        return simulator

    yield start
    for simulator in running:
        await simulator.stop()
