from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import Clients
from tests.support.hub import RunningHub


@pytest.fixture
def state(hub: RunningHub) -> Any:
    return hub.runtime


@pytest.fixture
async def sensors(clients: Clients, db: asyncpg.Connection) -> dict[str, int]:
    """Three active sensors (two in ward-a, one in ward-b) and a decommissioned one."""
    await db.execute("TRUNCATE reading, reading_latest, quarantine")
    for uid, ward in (
        ("aq-1", "ward-a"),
        ("aq-2", "ward-a"),
        ("aq-3", "ward-b"),
        ("old-1", "ward-a"),
    ):
        response = await clients.admin.post(
            "/api/v1/devices",
            json={
                "uid": uid,
                "kind": "sensor",
                "ward": ward,
                "latitude": 20.86,
                "longitude": 106.7,
            },
        )
        assert response.status_code == 201, response.text
    await clients.admin.delete("/api/v1/devices/old-1")
    rows = await db.fetch("SELECT uid, id FROM device")
    return {r["uid"]: r["id"] for r in rows}
