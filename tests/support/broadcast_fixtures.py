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
async def awake_wards(clients: Clients, db: asyncpg.Connection) -> None:
    """No quiet hours in the test wards, for tests that play a broadcast seconds from now:
    the district's default (22:00-05:00 local) would refuse it at night. Tests of quiet hours
    set the hours they test."""
    await db.execute(
        "INSERT INTO ward_quiet_hours (ward_id, starts, ends, updated_by) "
        "SELECT id, '00:00', '00:00', 'tests' FROM ward "
        "ON CONFLICT (ward_id) DO UPDATE SET starts = EXCLUDED.starts, ends = EXCLUDED.ends"
    )


@pytest.fixture
async def jingle(clients: Clients) -> dict[str, Any]:
    """A 2-second announcement uploaded to the district library."""
    return await upload_jingle(clients.admin)
