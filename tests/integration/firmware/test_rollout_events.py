"""The rollout driver reacts to events: reports and new campaigns wake it, the tick is
only a backstop, and the failure that crosses the error threshold stops the campaign in
the transaction that records it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from drivers.firmware.device import FirmwareFault
from hub.firmware.rollout import ROLLOUTS, RolloutDriver
from tests.conftest import Clients
from tests.support.firmware import campaign_when, import_into, register, updating_speakers
from tests.support.hub import RunningHub

TICK_S = 120.0
"""Far longer than any of these campaigns may take: a step that waited for the tick fails."""


@pytest.fixture
async def releases(clients: Clients, hub: RunningHub) -> dict[str, int]:
    return await import_into(hub)


@pytest.fixture
async def slow_tick(hub: RunningHub) -> AsyncIterator[RolloutDriver]:
    driver = hub.runtime.get(ROLLOUTS)
    before = driver.settings
    driver.settings = before.model_copy(update={"tick_s": TICK_S})
    await driver.wait_leading()
    driver.wake()  # the wait in progress ends; every later one lasts the long tick
    try:
        yield driver
    finally:
        driver.settings = before
        driver.wake()


async def test_reports_and_a_new_campaign_move_it_along_without_the_tick(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    releases: dict[str, int],
    slow_tick: RolloutDriver,
) -> None:
    speakers = await register(db, {"ward-a": 8})
    async with updating_speakers(hub.settings.mqtt.port, speakers):
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json={
                "name": "S30 2.10.0",
                "release_id": releases["2.10.0"],
                "wards": ["ward-a"],
                "waves": [25, 50, 100],
                "max_ward_percent": 25,
            },
        )
        assert created.status_code == 201, created.text
        campaign = created.json()["campaign"]
        # Waves of 2, 2 and 4 with two at once: four steps, each started by a report.
        done = await campaign_when(clients.technician, campaign["id"], ["completed"], 30)
        assert done["counts"] == {"updated": 8}
        assert [w["state"] for w in done["waves"]] == ["succeeded"] * 3


async def test_the_crossing_failure_and_the_stop_commit_together(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    releases: dict[str, int],
    slow_tick: RolloutDriver,
) -> None:
    speakers = await register(db, {"ward-a": 10})
    faulty = {speakers[0].uid: frozenset({FirmwareFault.DOWNLOAD_FAILS})}
    async with updating_speakers(hub.settings.mqtt.port, speakers, faulty):
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json={
                "name": "S30 2.10.0",
                "release_id": releases["2.10.0"],
                "wards": ["ward-a"],
                "waves": [100],
                "max_ward_percent": 90,
                "error_percent": 5,
            },
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["campaign"]["id"]
        stopped = await campaign_when(clients.technician, campaign_id, ["stopped"], 30)
        assert stopped["stop_reason"] == "wave 1: 1 of 10 devices failed, more than the 5% allowed"
    # One transaction wrote the failure, the campaign's stop and its wave's: a round in
    # between (another transaction) could have started the device left waiting.
    failed = await db.fetch(
        "SELECT xmin::text AS tx FROM firmware_campaign_device "
        "WHERE campaign_id = $1 AND state = 'failed'",
        campaign_id,
    )
    campaign_tx = await db.fetchval(
        "SELECT xmin::text FROM firmware_campaign WHERE id = $1", campaign_id
    )
    wave_tx = await db.fetchval(
        "SELECT xmin::text FROM firmware_campaign_wave WHERE campaign_id = $1 AND wave = 0",
        campaign_id,
    )
    assert [r["tx"] for r in failed] == [campaign_tx] == [wave_tx]
    late = await db.fetchval(
        "SELECT count(*) FROM firmware_campaign_device cd JOIN firmware_campaign c "
        "ON c.id = cd.campaign_id WHERE c.id = $1 AND cd.sent_at > c.stopped_at",
        campaign_id,
    )
    assert late == 0
