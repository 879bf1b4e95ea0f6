"""Fixtures: the running hub's camera services, simulated cameras, onboarding helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from hub.cameras.health import CAMERA_HEALTH, CameraHealthService
from hub.cameras.service import CAMERAS, CameraService
from hub.runtime import HubRuntime
from tests.conftest import Clients
from tests.support.cameras import StartCameras, camera_starter
from tests.support.hub import RunningHub


def app_state(hub: RunningHub) -> HubRuntime:
    return hub.runtime


@pytest.fixture
async def cameras(hub: RunningHub, clients: Clients, db: asyncpg.Connection) -> CameraService:
    """The hub's camera service, with no candidates left over (cameras go with devices)."""
    await db.execute("TRUNCATE camera_candidate RESTART IDENTITY")
    service = app_state(hub).get(CAMERAS)
    return service


def tune(monkeypatch: pytest.MonkeyPatch, cameras: CameraService, **settings: object) -> None:
    """Change these camera settings for this test only."""
    monkeypatch.setattr(cameras, "settings", cameras.settings.model_copy(update=settings))


@pytest.fixture
def camera_health(hub: RunningHub, cameras: CameraService) -> CameraHealthService:
    service = app_state(hub).get(CAMERA_HEALTH)
    return service


@pytest.fixture
async def start_cameras() -> AsyncIterator[StartCameras]:
    """Simulated cameras on loopback; every one is stopped after the test."""
    async with camera_starter() as start:
        yield start


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if slug is not None:
        assert body["type"] == f"urn:iochub:problem:{slug}", body
    return body
