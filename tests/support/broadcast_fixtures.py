"""Fixtures of the broadcast, console and browser tests: speakers in the registry and an
uploaded announcement (a plugin of the root conftest, so each suite uses the same ones)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import Clients
from tests.support.broadcasts import Speakers, register_speakers, upload_jingle


@pytest.fixture
async def speakers(clients: Clients, db: asyncpg.Connection) -> Speakers:
    """Three speakers in ward-a and two in ward-b, with fresh uids."""
    return await register_speakers(db, {"ward-a": 3, "ward-b": 2})


@pytest.fixture
async def jingle(clients: Clients) -> dict[str, Any]:
    """A 2-second announcement uploaded to the district library."""
    return await upload_jingle(clients.admin)
