"""Simulated ONVIF cameras on loopback for a test, each stopped when the test ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from drivers.onvif.client import preload_wsdls
from drivers.onvif.simulator import CameraSimulator, CameraSpec, SimulatedCamera

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


def onboarding(camera: SimulatedCamera, ward: str = "ward-a", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "host": camera.host,
        "port": camera.port,
        "username": camera.spec.username,
        "password": camera.spec.password,
        "ward": ward,
        "name": f"Camera {camera.name}",
        "latitude": 20.86,
        "longitude": 106.69,
    }
    body.update(overrides)
    return body


async def onboard(
    client: httpx.AsyncClient, camera: SimulatedCamera, ward: str = "ward-a", **overrides: Any
) -> dict[str, Any]:
    response = await client.post("/api/v1/cameras", json=onboarding(camera, ward, **overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
