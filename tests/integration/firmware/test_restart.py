"""A hub restarted mid-campaign resumes it from the database, sending nothing twice.

The hubs run as processes of their own (`iochub serve`), as in production: one stops in the
middle of the installs, another starts on the same database and broker and carries on.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from bench.support import start_hub
from drivers.firmware.device import UpdateTiming
from hub.auth.models import Role
from hub.auth.principal import Principal
from hub.firmware.campaigns import Campaigns
from hub.firmware.catalog import import_catalog
from hub.firmware.schemas import CampaignIn
from hub.firmware.settings import FirmwareSettings
from hub.storage.database import run_migrations
from tests.support.broadcasts import eventually
from tests.support.brokers import PrivateBroker
from tests.support.firmware import S30, FleetSpeaker, update_commands, updating_speakers
from tests.support.hub import create_database, drop_database

ADMIN = Principal(user_id=0, username="test", role=Role.ADMIN, ward_ids=None, via="token")


async def test_a_restart_mid_campaign_resumes_without_sending_twice(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    url = await create_database()
    await run_migrations(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    hubs = []
    try:
        ward = await pool.fetchval(
            "INSERT INTO ward (code, name) VALUES ('ward-a', 'A') RETURNING id"
        )
        speakers = [FleetSpeaker(f"spk-restart-{n}", "ward-a", "2.4.1") for n in range(6)]
        await pool.executemany(
            "INSERT INTO device (uid, kind, ward_id, name, vendor, model, firmware_version) "
            "VALUES ($1, 'speaker', $2, $1, $3, $4, '2.4.1')",
            [(s.uid, ward, *S30) for s in speakers],
        )
        await import_catalog(pool)
        release = await pool.fetchval(
            "SELECT id FROM firmware_release WHERE model = $1 AND version = '2.10.0'", S30[1]
        )
        logs = tmp_path / "logs"
        env = {"IOCHUB_FIRMWARE__LEADER_RETRY_S": "0.5", "IOCHUB_TELEMETRY__MQTT_INGEST": "false"}
        first = await start_hub(url, broker.port, "restart-first", logs, env)
        hubs.append(first)
        slow = UpdateTiming(verify_s=0.05, install_s=2.0, reboot_s=0.3)
        async with updating_speakers(broker.port, speakers, timing=slow) as fleet:
            created = await Campaigns(pool, FirmwareSettings()).create(
                ADMIN,
                CampaignIn(
                    name="restart", release_id=release, wards=["ward-a"], waves=[100],
                    max_ward_percent=50,
                ),
            )  # fmt: skip

            async def count(state: str) -> int:
                found: int = await pool.fetchval(
                    "SELECT count(*) FROM firmware_campaign_device WHERE state = $1", state
                )
                return found

            await eventually(lambda: count("installing"), 20)
            assert await count("pending") == 3  # three of six at once: half the ward
            first.stop()  # the hub goes down in the middle of the installs
            second = await start_hub(url, broker.port, "restart-second", logs, env)
            hubs.append(second)

            async def completed() -> bool:
                state = await pool.fetchval(
                    "SELECT state FROM firmware_campaign WHERE id = $1", created.campaign.id
                )
                return bool(state == "completed")

            try:
                await eventually(completed, 60)
            except AssertionError:
                rows = await pool.fetch(
                    "SELECT device_uid, state, reason, attempts FROM firmware_campaign_device"
                )
                raise AssertionError([tuple(r) for r in rows]) from None
            assert [update_commands(fleet, s.uid) for s in speakers] == [1] * 6
            assert all(fleet.speaker(s.uid).firmware.version == "2.10.0" for s in speakers)
    finally:
        for hub in hubs:
            hub.stop()
        await pool.close()
        await drop_database(url)
