"""The hub side of ingest: device resolution, normalisation, quarantine, once-only rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from drivers.contract import Reading, RefusedDevice, Rejected, UnknownDevice
from hub.devices import DIRECTORY
from hub.storage.database import asyncpg_dsn
from hub.telemetry.ingest import Quarantine, TelemetryIngest
from hub.telemetry.store import ReadingWriter
from tests.support.proxy import OutageProxy

NOW = datetime.now(UTC).replace(microsecond=0)


def reading(
    uid: str, metric: str, value: float, seconds_ago: int = 0, unit: str | None = None
) -> Reading:
    return Reading(uid, metric, value, NOW - timedelta(seconds=seconds_ago), unit)


async def test_readings_are_normalised_and_stored_once(
    state: Any, sensors: dict[str, int], db: asyncpg.Connection
) -> None:
    sink = state.sink
    batch = [
        reading("aq-1", "pm2_5", 35.5),
        reading("aq-1", "temperature", 86.0, unit="degF"),
        reading("aq-2", "co", 1.2, unit="mg/m3"),
    ]
    await sink.readings(batch, "test")
    await sink.readings(batch, "test")  # a redelivery must not duplicate
    rows = await db.fetch("SELECT device_id, metric, value FROM reading ORDER BY metric")
    assert [(r["metric"], round(r["value"], 3)) for r in rows] == [
        ("co", 1200.0),
        ("pm2_5", 35.5),
        ("temperature", 30.0),
    ]
    latest = await db.fetchval("SELECT count(*) FROM reading_latest")
    assert latest == 3


async def test_unknown_device_becomes_pending_and_writes_nothing(
    state: Any, sensors: dict[str, int], db: asyncpg.Connection
) -> None:
    with pytest.raises(UnknownDevice):
        await state.sink.readings(
            [reading("stranger-9", "pm10", 20.0)], "mqtt:iochub/v1/dev/stranger-9/telemetry"
        )
    device = await db.fetchrow("SELECT * FROM device WHERE uid = 'stranger-9'")
    assert device["lifecycle"] == "pending" and "stranger-9" in device["discovered_from"]
    with pytest.raises(UnknownDevice, match="approval"):
        await state.sink.readings([reading("stranger-9", "pm10", 20.0)], "mqtt")
    assert await db.fetchval("SELECT count(*) FROM reading") == 0
    # A mixed batch is refused whole: the driver then retries device by device.
    with pytest.raises(UnknownDevice):
        await state.sink.readings(
            [reading("aq-1", "pm10", 1.0), reading("stranger-9", "pm10", 2.0)], "x"
        )
    assert await db.fetchval("SELECT count(*) FROM reading") == 0


async def test_decommissioned_device_is_refused(state: Any, sensors: dict[str, int]) -> None:
    with pytest.raises(RefusedDevice, match="decommissioned"):
        await state.sink.readings([reading("old-1", "pm10", 20.0)], "test")


@pytest.mark.parametrize(
    ("metric", "value", "unit", "why"),
    [
        ("pm2_5", -5.0, None, "range"),
        ("humidity", 140.0, None, "range"),
        ("pm2_5", float("nan"), None, "nan"),
        ("temperature", float("inf"), None, "finite"),
        ("radiation", 1.0, None, "unknown metric"),
        ("temperature", 20.0, "furlongs", "unit"),
    ],
)
async def test_implausible_values_are_quarantined_with_a_reason(
    state: Any,
    sensors: dict[str, int],
    db: asyncpg.Connection,
    metric: str,
    value: float,
    unit: str | None,
    why: str,
) -> None:
    await state.sink.readings(
        [reading("aq-1", metric, value, unit=unit), reading("aq-1", "pm10", 40.0)], "test"
    )
    assert await db.fetchval("SELECT count(*) FROM reading") == 1
    kept = await db.fetchrow("SELECT * FROM quarantine")
    assert kept["device_uid"] == "aq-1" and kept["source"] == "test"
    assert why in kept["reason"].lower(), kept["reason"]
    assert metric.encode() in bytes(kept["raw"])


async def test_rejected_payloads_are_kept_verbatim(
    state: Any, sensors: dict[str, int], db: asyncpg.Connection
) -> None:
    await state.sink.rejected(
        Rejected("iochub/v1/dev/aq-1/telemetry", b"\xff{not json", "invalid JSON", "aq-1")
    )
    row = await db.fetchrow("SELECT * FROM quarantine")
    assert bytes(row["raw"]) == b"\xff{not json" and row["reason"] == "invalid JSON"


async def test_database_outage_holds_readings_within_bounds_and_loses_none(
    state: Any, sensors: dict[str, int], db: asyncpg.Connection, database_url: str
) -> None:
    host_port = asyncpg_dsn(database_url).split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = OutageProxy(host, int(port))
    await proxy.start()
    proxied = database_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    pool = await asyncpg.create_pool(asyncpg_dsn(proxied), min_size=1, max_size=2)
    writer = ReadingWriter(pool, batch_rows=100, batch_age_s=0.01, max_queued_rows=500, writers=1)
    ingest = TelemetryIngest(state.get(DIRECTORY), writer, Quarantine(state.database.pool))
    runner = asyncio.create_task(writer.run())
    try:
        await ingest.readings([reading("aq-1", "pm10", 1.0, 1000)], "test")
        await proxy.cut()
        producers = [
            asyncio.create_task(
                ingest.readings(
                    [reading("aq-1", "pm10", float(n), n) for n in range(k * 100, k * 100 + 100)],
                    "test",
                )
            )
            for k in range(8)
        ]
        await asyncio.sleep(1.0)
        # Back-pressure: at most the bound is held; the rest of the producers wait.
        assert writer.queued_rows <= 500
        assert not any(p.done() for p in producers)
        assert await db.fetchval("SELECT count(*) FROM reading") == 1
        await proxy.restore()
        await asyncio.wait_for(asyncio.gather(*producers), 30)
        assert await db.fetchval("SELECT count(*) FROM reading") == 801
    finally:
        runner.cancel()
        await pool.close()
        await proxy.stop()


async def test_a_conflicting_value_is_quarantined_and_counted_a_redelivery_is_silent(
    state: Any, sensors: dict[str, int], db: asyncpg.Connection
) -> None:
    from hub.telemetry import metrics

    conflicts_before = metrics.CONFLICTS._value.get()
    first = reading("aq-1", "pm2_5", 44.0, seconds_ago=30)
    await state.sink.readings([first], "test")
    await state.sink.readings([first], "test")  # exact redelivery: a no-op, nothing kept aside
    assert await db.fetchval("SELECT count(*) FROM quarantine") == 0
    # Same device, metric and time, another value: the first stays, the second is kept aside.
    await state.sink.readings(
        [reading("aq-1", "pm2_5", 45.0, seconds_ago=30), reading("aq-1", "pm10", 60.0)], "test"
    )
    values = await db.fetch("SELECT metric, value FROM reading ORDER BY metric")
    assert [(r["metric"], r["value"]) for r in values] == [("pm10", 60.0), ("pm2_5", 44.0)]
    kept = await db.fetchrow("SELECT * FROM quarantine")
    assert kept["device_uid"] == "aq-1"
    assert kept["reason"] == (
        f"conflicting value: pm2_5 at {first.time.isoformat()} is already stored as 44; "
        "45 was not stored"
    )
    assert b'"value": 45.0' in bytes(kept["raw"])
    # Two values for one key within one batch: the first is stored, the other kept aside.
    twice = [reading("aq-2", "no2", 10.0, 5), reading("aq-2", "no2", 11.0, 5)]
    await state.sink.readings(twice, "test")
    assert await db.fetchval("SELECT value FROM reading WHERE metric = 'no2'") == 10.0
    assert await db.fetchval("SELECT count(*) FROM quarantine") == 2
    assert metrics.CONFLICTS._value.get() == conflicts_before + 2
    assert await db.fetchval("SELECT value FROM reading_latest WHERE metric = 'pm2_5'") == 44.0
