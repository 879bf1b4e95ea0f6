"""Hourly rollups on plain PostgreSQL, kept by the hub (TimescaleDB keeps its own).

TimescaleDB's continuous aggregate ``reading_1h`` is refreshed by the extension's policy
(hub/telemetry/policies.py). On plain PostgreSQL a table of the same name and columns is
refreshed here, so hourly means (and the daily VN_AQI computed from them) outlive raw
retention on both backends, and one query reads them. Like the continuous aggregate's
policy, only the last ``refresh_1h_days`` are recomputed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from hub.telemetry import store

log = logging.getLogger("hub.telemetry.rollups")

HOUR = timedelta(hours=1)
# The last hours are refreshed often; the whole refresh window now and then
# (hub/telemetry/jobs.py runs it).
RECENT = timedelta(hours=3)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def refresh_hourly(pool: asyncpg.Pool, start: datetime, end: datetime) -> None:
    """Recompute the hourly rollup of [start, end), widened to whole hours."""
    await store.refresh_hourly(pool, hour_of(start), hour_of(end) + HOUR)
