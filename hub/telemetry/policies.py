"""Retention, compression and rollup refresh, set from settings at every start.

On TimescaleDB these are the extension's own background policies; on plain PostgreSQL
the hub deletes expired raw readings itself (rollups are computed at query time there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from hub.errors import HubError
from hub.telemetry import store

log = logging.getLogger("hub.telemetry.policies")


class PolicyError(HubError):
    status = 500
    slug = "bad-retention-settings"
    title = "Retention settings are inconsistent"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    raw_days: int = 30
    rollup_1m_days: int = 90
    rollup_1h_days: int = 730
    compress_after_days: int = 7
    # How far back each rollup is refreshed; must stay inside raw retention, or a refresh
    # would recompute buckets from raw data that is already gone.
    refresh_1m_hours: int = 6
    refresh_1h_days: int = 3

    def problems(self) -> list[str]:
        found = []
        if self.refresh_1m_hours >= self.raw_days * 24:
            found.append("the 1-minute refresh window reaches past raw retention")
        if self.refresh_1h_days >= self.raw_days:
            found.append("the 1-hour refresh window reaches past raw retention")
        if self.rollup_1m_days < self.raw_days or self.rollup_1h_days < self.rollup_1m_days:
            found.append("rollups must be kept at least as long as the data they summarise")
        return found


async def apply_timescaledb(pool: asyncpg.Pool, policy: RetentionPolicy) -> None:
    if problems := policy.problems():
        raise PolicyError("; ".join(problems))
    await store.set_timescaledb_policies(
        pool,
        compress_after_days=policy.compress_after_days,
        retention_days=(
            ("reading", policy.raw_days),
            ("reading_value", policy.raw_days),
            ("reading_1m", policy.rollup_1m_days),
            ("reading_1h", policy.rollup_1h_days),
        ),
        refresh_1m_hours=policy.refresh_1m_hours,
        refresh_1h_days=policy.refresh_1h_days,
    )
    log.info(
        "TimescaleDB policies: raw %d d, 1 min %d d, 1 h %d d, compress after %d d",
        policy.raw_days,
        policy.rollup_1m_days,
        policy.rollup_1h_days,
        policy.compress_after_days,
    )


async def expire_plain(pool: asyncpg.Pool, policy: RetentionPolicy, batch: int = 50_000) -> int:
    """Delete raw readings (numbers and other values) past retention, in slices that keep
    locks short; hourly rollups past theirs."""
    deleted = 0
    for table, column, days in (
        ("reading", "time", policy.raw_days),
        ("reading_value", "time", policy.raw_days),
        ("reading_1h", "bucket", policy.rollup_1h_days),
    ):
        while True:
            count = await store.delete_older(pool, table, column, days, batch)
            if table != "reading_1h":
                deleted += count
            if count < batch:
                break
    return deleted
