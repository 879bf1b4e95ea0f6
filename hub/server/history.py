"""The demo fleet's past: what its simulated devices did before the demo started.

Written once, at the first start, through the slices' own storage functions, so device
history, availability and the broadcast reports show days of life at once. A second start
finds the history there and writes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from hub.health.machine import describe
from hub.server.simulate import HUNG_CAMERA, HUNG_SENSOR, LOCKED_CAMERA, SKEWED_CAMERA

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
# EVN's scheduled maintenance cut in one ward, the day before (announced, daytime): the
# ward's speakers and cameras run on mains and drop off; the sensors have batteries.
POWER_CUT_WARD = "lac-vien"
POWER_CUT = (time(8, 0), time(10, 30))
ON_MAINS = frozenset({"speaker", "camera"})
# When each misbehaving device began to misbehave, before the demo started.
FAULT_SINCE: dict[str, tuple[timedelta, str, str]] = {
    HUNG_CAMERA: (timedelta(hours=30), "offline", "disconnected"),
    SKEWED_CAMERA: (timedelta(hours=20), "degraded", "clock_drift"),
    LOCKED_CAMERA: (timedelta(hours=3), "degraded", "auth_failed"),
}


@dataclass(frozen=True, slots=True)
class Fleet:
    """One row per active device: (id, uid, kind, ward code)."""

    devices: Sequence[tuple[int, str, str, str | None]]


def health_history(
    fleet: Fleet, start: datetime, now: datetime
) -> list[tuple[int, datetime, str, str, str]]:
    """Each device's status changes over [start, now), as the health monitor would have
    written them: (device id, at, from, to, reason), in time order per device.

    Every device comes up at the start (the fleet was installed then); the ward with the
    power cut goes dark and back; the misbehaving devices go into the states they are in
    when the demo starts (the noise meter whose firmware hangs was silent all along)."""
    cut_day = (now.astimezone(LOCAL) - timedelta(days=1)).date()
    cut_from = datetime.combine(cut_day, POWER_CUT[0], LOCAL).astimezone(UTC)
    cut_to = datetime.combine(cut_day, POWER_CUT[1], LOCAL).astimezone(UTC)
    changes: list[tuple[int, datetime, str, str, str]] = []
    for device_id, uid, kind, ward in fleet.devices:
        rng = random.Random(f"history:{uid}")
        # (at, to, reason) from the device's first report on
        steps: list[tuple[datetime, str, str]] = []
        if uid == HUNG_SENSOR:
            steps.append((start, "offline", f"silent for {describe(now - start)}"))
        else:
            steps.append((start + timedelta(seconds=rng.uniform(0, 60)), "online", ""))
        if ward == POWER_CUT_WARD and kind in ON_MAINS and start < cut_from:
            steps.append(
                (cut_from + timedelta(seconds=rng.uniform(0, 5)), "offline", "disconnected")
            )
            # back once the power is, after booting and reconnecting
            steps.append((cut_to + timedelta(seconds=rng.uniform(30, 150)), "online", ""))
        if uid in FAULT_SINCE:
            ago, status, reason = FAULT_SINCE[uid]
            steps.append((max(now - ago, start + timedelta(minutes=1)), status, reason))
        status = "unknown"
        for at, to, reason in sorted(steps):
            if at < now and to != status:
                changes.append((device_id, at, status, to, reason))
                status = to
    return changes


async def backfill_health(pool: asyncpg.Pool, hours: float, now: datetime) -> int:
    """The fleet's health history over the last `hours`, through the health slice's own
    writer of the history; 0 when a history is there already."""
    from hub.health.monitor import insert_transitions

    if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM health_event WHERE at < $1)", now):
        return 0
    start = now - timedelta(hours=hours)
    rows = await pool.fetch(
        "SELECT d.id, d.uid, d.kind, w.code FROM device d LEFT JOIN ward w ON w.id = d.ward_id "
        "WHERE d.lifecycle = 'active' ORDER BY d.id"
    )
    fleet = Fleet([(r["id"], r["uid"], r["kind"], r["code"]) for r in rows])
    changes = health_history(fleet, start, now)
    async with pool.acquire() as conn, conn.transaction():
        # the fleet was installed before its history begins: availability counts from then
        await conn.execute(
            "UPDATE device SET created_at = $1 WHERE created_at > $1 AND lifecycle = 'active'",
            start,
        )
        await insert_transitions(conn, changes)
    return len(changes)
