"""What the telemetry slice adds to the hub: its routes, retention, the reading writer and
the ingest path that takes every driver's readings from the sink."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.devices import DIRECTORY, PROFILES
from hub.runtime import BackgroundService, HubRuntime, Wiring
from hub.storage.database import asyncpg_dsn
from hub.telemetry.api import QuarantineController, TelemetryController
from hub.telemetry.ingest import AgeLimit, Quarantine, TelemetryIngest
from hub.telemetry.jobs import MAINTENANCE_JOBS, JobSettings, JobSupervisor
from hub.telemetry.policies import RetentionPolicy, apply_timescaledb
from hub.telemetry.settings import TelemetrySettings
from hub.telemetry.store import WRITER, ReadingWriter


def routes() -> list[Any]:
    return [TelemetryController, QuarantineController]


def retention_policy(t: TelemetrySettings) -> RetentionPolicy:
    return RetentionPolicy(
        raw_days=t.raw_retention_days,
        rollup_1m_days=t.rollup_1m_retention_days,
        rollup_1h_days=t.rollup_1h_retention_days,
        compress_after_days=t.compress_after_days,
    )


async def start(hub: HubRuntime) -> None:
    db = hub.database
    t = hub.settings.group(TelemetrySettings)
    policy = retention_policy(t)
    if db.backend == "timescaledb":
        await apply_timescaledb(db.pool, policy)
    jobs = hub.put(
        MAINTENANCE_JOBS,
        JobSupervisor(
            db.pool,
            asyncpg_dsn(db.url),
            db.backend,
            policy,
            JobSettings(
                check_every_s=t.jobs_check_interval_s,
                takeover_after_failures=t.jobs_takeover_after_failures,
                plain_retention_every_s=t.plain_retention_interval_s,
                plain_rollup_every_s=t.plain_rollup_interval_s,
            ),
        ),
    )
    hub.services.add(BackgroundService("maintenance-jobs", jobs.run))
    writer = hub.put(
        WRITER,
        ReadingWriter(
            db.pool,
            batch_rows=t.batch_rows,
            batch_age_s=t.batch_age_ms / 1000,
            max_queued_rows=t.max_queued_rows,
            writers=t.writers,
        ),
    )
    hub.sink.take_readings(
        TelemetryIngest(
            hub.get(DIRECTORY),
            writer,
            Quarantine(db.pool),
            profiles=hub.get(PROFILES),
            age=AgeLimit(timedelta(days=t.max_age_days)),
        )
    )
    hub.services.add(BackgroundService("telemetry-writer", writer.run, stop=writer.drain))


wiring = Wiring("telemetry", routes, start)
