"""Availability: the share of device-time spent up (online or degraded) over a window.

Time in maintenance counts neither way, so planned work does not lower a ward's score.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

UP = frozenset({"online", "degraded"})
EXCLUDED = frozenset({"maintenance"})


@dataclass(frozen=True, slots=True)
class Availability:
    ward_id: int | None
    devices: int
    up_seconds: float
    counted_seconds: float

    @property
    def percent(self) -> float | None:
        return (
            round(100 * self.up_seconds / self.counted_seconds, 2) if self.counted_seconds else None
        )


def integrate(
    initial: str, changes: list[tuple[datetime, str]], start: datetime, end: datetime
) -> tuple[float, float]:
    """(up seconds, counted seconds) of one device from its status at start and its changes."""
    up = counted = 0.0
    status, since = initial, start
    for at, to_status in [*changes, (end, "")]:
        at = min(max(at, start), end)
        span = (at - since).total_seconds()
        if status not in EXCLUDED:
            counted += span
            if status in UP:
                up += span
        status, since = to_status, at
    return up, counted


async def availability(
    pool: asyncpg.Pool, start: datetime, end: datetime, ward_ids: frozenset[int] | None
) -> list[Availability]:
    devices = await pool.fetch(
        "SELECT id, ward_id, status, created_at FROM device WHERE lifecycle = 'active' "
        "AND ($1::int[] IS NULL OR ward_id = ANY($1))",
        sorted(ward_ids) if ward_ids is not None else None,
    )
    ids = [d["id"] for d in devices]
    before = {
        r["device_id"]: r["to_status"]
        for r in await pool.fetch(
            "SELECT DISTINCT ON (device_id) device_id, to_status FROM health_event "
            "WHERE device_id = ANY($1) AND at < $2 ORDER BY device_id, at DESC",
            ids,
            start,
        )
    }
    changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    first_from: dict[int, str] = {}
    for row in await pool.fetch(
        "SELECT device_id, at, from_status, to_status FROM health_event "
        "WHERE device_id = ANY($1) AND at >= $2 AND at < $3 ORDER BY device_id, at",
        ids,
        start,
        end,
    ):
        first_from.setdefault(row["device_id"], row["from_status"])
        changes[row["device_id"]].append((row["at"], row["to_status"]))
    totals: dict[int | None, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for device in devices:
        initial = before.get(device["id"]) or first_from.get(device["id"]) or device["status"]
        up, counted = integrate(
            initial, changes[device["id"]], max(start, device["created_at"]), end
        )
        total = totals[device["ward_id"]]
        total[0] += 1
        total[1] += up
        total[2] += counted
    return [
        Availability(ward, int(t[0]), t[1], t[2])
        for ward, t in sorted(totals.items(), key=lambda item: item[0] or 0)
    ]
