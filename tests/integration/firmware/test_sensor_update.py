"""Sensors update over the same protocol: the simulator's MQTT sensors run the device side."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from drivers.firmware.device import FirmwareFault, UpdateTiming
from drivers.sensors.simulator import SensorSimulator, SimulatedSensor
from hub.firmware.catalog import import_catalog
from tests.conftest import Clients
from tests.support.broadcasts import eventually
from tests.support.firmware import campaign_when, devices_of
from tests.support.hub import RunningHub


async def test_sensors_update_and_one_that_never_returns_fails(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection
) -> None:
    pool = hub.runtime.database.pool
    await import_catalog(pool)
    release = await db.fetchval(
        "SELECT id FROM firmware_release WHERE model = 'AQM-65' AND version = '1.10.0'"
    )
    uids = [f"aq-fw-{n}" for n in range(4)]
    await db.executemany(
        "INSERT INTO device (uid, kind, ward_id, name, vendor, model, firmware_version) "
        "SELECT $1, 'sensor', id, $1, 'Envitech', 'AQM-65', '1.9.2' FROM ward WHERE code = 'ward-a'",
        [(uid,) for uid in uids],
    )
    sensors = [
        SimulatedSensor(
            uid,
            "ward-a",
            20.86,
            106.69,
            firmware_faults=frozenset({FirmwareFault.NEVER_RETURNS})
            if uid == uids[3]
            else frozenset(),
        )
        for uid in uids
    ]
    simulator = SensorSimulator(
        sensors,
        "127.0.0.1",
        hub.settings.mqtt.port,
        interval=3600,
        dedicated_connections=True,
        update_timing=UpdateTiming(verify_s=0.05, install_s=0.2, reboot_s=0.1),
    )
    running = asyncio.create_task(simulator.run())
    try:
        await eventually(lambda: len(simulator.agents) == 4, 10)
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json={
                "name": "AQM-65 1.10.0",
                "release_id": release,
                "wards": ["ward-a"],
                "waves": [100],
                "max_ward_percent": 100,
                "error_percent": 50,
                "success_percent": 75,
                "device_timeout_s": 3,
            },
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["campaign"]["id"]
        done = await campaign_when(clients.technician, campaign_id, ["completed"], 20)
        assert done["counts"] == {"updated": 3, "failed": 1}
        rows = await devices_of(clients.technician, campaign_id)
        assert rows[uids[3]]["reason"] == "did not come back after its reboot"
        assert [simulator.agents[u].version for u in uids[:3]] == ["1.10.0"] * 3
        assert uids[3] in simulator.down

        async def registry() -> list[str] | None:
            versions = await db.fetch(
                "SELECT firmware_version FROM device WHERE uid = ANY($1) ORDER BY uid", uids[:3]
            )
            found = [r["firmware_version"] for r in versions]
            return found if found == ["1.10.0"] * 3 else None

        assert await eventually(registry, 5)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
