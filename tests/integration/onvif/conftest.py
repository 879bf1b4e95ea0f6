from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.cameras import StartCameras, camera_starter


@pytest.fixture
async def start_cameras() -> AsyncIterator[StartCameras]:
    """Start simulated cameras on loopback; every one is stopped after the test."""
    async with camera_starter() as start:
        yield start
