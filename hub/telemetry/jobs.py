"""The database's maintenance jobs, watched, and run by the hub when the database cannot.

On TimescaleDB, compression, retention and rollup refresh are the extension's background
jobs. On some PostgreSQL/TimescaleDB pairs its job runner fails every run while the same job
succeeds from a session (PostgreSQL 15.20 with TimescaleDB 2.28: ``cannot drop portal ""
while it is being set up``), and nothing but ``timescaledb_information.job_stats`` says so:
rollups go stale, retention never deletes, the disk fills. The supervisor, one leader across
hub processes:

- reads each policy's stats and errors on a cadence and records them (``maintenance_job``),
  for ``/readyz`` of every process and for the metrics;
- takes a job over when it has failed ``takeover_after_failures`` times in a row, or from the
  start on a pair known to break the job runner: the hub then runs ``CALL run_job(id)`` from
  its own connection on the policy's schedule, and gives the job back once the database's
  runner succeeds again on its own (not on a known-broken pair);
- on plain PostgreSQL runs the hub's own jobs the same way (retention, and the hourly
  rollup that stands in for the continuous aggregate), so one figure and one readiness check
  cover both backends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from packaging.version import InvalidVersion, Version

from hub.runtime.context import RuntimeKey
from hub.storage.leadership import Leadership
from hub.telemetry import metrics, store
from hub.telemetry.policies import RetentionPolicy, expire_plain
from hub.telemetry.rollups import RECENT, refresh_hourly

log = logging.getLogger("hub.telemetry.jobs")

Runner = Literal["timescaledb", "hub"]
ROLLUPS = (("reading_1m", timedelta(minutes=1)), ("reading_1h", timedelta(hours=1)))
POLICY_KINDS = {
    "policy_compression": "compression",
    "policy_retention": "retention",
    "policy_refresh_continuous_aggregate": "refresh",
}


@dataclass(frozen=True, slots=True)
class BrokenPair:
    """PostgreSQL server versions (server_version_num, [from, below)) on which TimescaleDB
    releases below ``timescaledb_below`` fail every background job."""

    pg_from: int
    pg_below: int
    timescaledb_below: Version
    why: str

    def matches(self, server_version_num: int, timescaledb: Version) -> bool:
        return self.pg_from <= server_version_num < self.pg_below and (
            timescaledb < self.timescaledb_below
        )


KNOWN_BROKEN = (
    BrokenPair(
        150020,
        160000,
        Version("2.29.0"),
        "PostgreSQL 15.20 changed portal handling that the job runner of TimescaleDB 2.28 "
        'and older trips on (every background job fails with \'cannot drop portal "" while '
        "it is being set up'); TimescaleDB 2.29 supports PostgreSQL 16 and newer only",
    ),
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Job:
    name: str
    schedule_s: float
    job_id: int | None = None
    runner: Runner = "timescaledb"
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    takeover_reason: str | None = None
    taken_over_at: datetime | None = None
    next_hub_run: datetime | None = None
    runs: int = 0
    action: Callable[[Job], Awaitable[None]] | None = None
    """The hub's own work (plain PostgreSQL); None: ``CALL run_job(job_id)``."""

    @property
    def state(self) -> tuple[Runner, bool]:
        return self.runner, self.consecutive_failures > 0


@dataclass(frozen=True, slots=True)
class JobSettings:
    check_every_s: float = 60.0
    takeover_after_failures: int = 2
    plain_retention_every_s: float = 3600.0
    plain_rollup_every_s: float = 300.0


async def broken_pair(conn: Any) -> str | None:
    """Why this server's PostgreSQL/TimescaleDB pair breaks the job runner, or None."""
    server, text = await store.server_versions(conn)
    if text is None:
        return None
    try:
        extension = Version(text)
    except InvalidVersion:
        return None
    for pair in KNOWN_BROKEN:
        if pair.matches(server, extension):
            return f"TimescaleDB {text} on PostgreSQL {server // 10000}.{server % 100}: {pair.why}"
    return None


class JobSupervisor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        backend: str,
        policy: RetentionPolicy,
        settings: JobSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.backend = backend
        self.policy = policy
        self.settings = settings
        self.leadership = Leadership(dsn, "maintenance-jobs")
        self.jobs: dict[str, Job] = {}
        self.broken: str | None = None
        self._clock = clock
        self._logged: dict[str, tuple[Runner, bool]] = {}

    async def run(self) -> None:
        await self.leadership.run(self._lead)

    async def _lead(self) -> None:
        while True:
            try:
                await self.step()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("maintenance jobs: check failed (%s); next in %.0f s", exc, self.every)
            await asyncio.sleep(self.every)

    @property
    def every(self) -> float:
        return self.settings.check_every_s

    async def step(self) -> None:
        """Observe, run what the hub runs and is due, record, and report changes."""
        if self.backend == "timescaledb":
            await self._observe_timescaledb()
        elif not self.jobs:
            self.jobs = {
                job.name: job
                for job in (
                    Job(
                        "retention:reading",
                        self.settings.plain_retention_every_s,
                        runner="hub",
                        action=self._expire_raw,
                    ),
                    Job(
                        "refresh:reading_1h",
                        self.settings.plain_rollup_every_s,
                        runner="hub",
                        action=self._refresh_hourly,
                    ),
                )
            }
        now = self._clock()
        for job in self.jobs.values():
            if job.runner == "hub" and (job.next_hub_run is None or job.next_hub_run <= now):
                await self._run_by_hub(job)
        await self._record()
        self._report()
        await self._export_freshness()

    async def _observe_timescaledb(self) -> None:
        async with self.pool.acquire() as conn:
            if not self.jobs:
                self.broken = await broken_pair(conn)
                if self.broken:
                    log.warning(
                        "maintenance jobs: %s; the hub runs every policy itself", self.broken
                    )
            rows = await store.timescaledb_jobs(conn, list(POLICY_KINDS))
        seen = set()
        for row in rows:
            name = f"{POLICY_KINDS[row['proc_name']]}:{row['relation']}"
            seen.add(name)
            job = self.jobs.get(name)
            if job is None:
                job = self.jobs[name] = Job(name, row["schedule_s"], row["job_id"])
            job.job_id, job.schedule_s = row["job_id"], row["schedule_s"]
            database_success = row["last_successful_finish"]
            if job.runner == "timescaledb":
                job.last_success_at = database_success
                job.consecutive_failures = row["failures"]
                job.last_error = row["last_error"] if row["failures"] else None
                reason = self._takeover_reason(job)
                if reason:
                    job.runner, job.takeover_reason = "hub", reason
                    job.taken_over_at, job.next_hub_run = self._clock(), None
            elif (
                not self.broken
                and database_success is not None
                and job.taken_over_at is not None
                and database_success > job.taken_over_at
            ):
                # The database's own runner succeeded since the hub took over: hand it back.
                job.runner, job.takeover_reason, job.taken_over_at = "timescaledb", None, None
                job.last_success_at, job.consecutive_failures, job.last_error = (
                    database_success,
                    0,
                    None,
                )
        for gone in set(self.jobs) - seen:
            del self.jobs[gone]

    def _takeover_reason(self, job: Job) -> str | None:
        if self.broken:
            return self.broken
        if job.consecutive_failures >= self.settings.takeover_after_failures:
            return (
                f"TimescaleDB's job runner failed job {job.job_id} "
                f"{job.consecutive_failures} times in a row: {job.last_error}"
            )
        return None

    async def _run_by_hub(self, job: Job) -> None:
        started = self._clock()
        try:
            if job.action is not None:
                await job.action(job)
            else:
                await store.run_job(self.pool, job.job_id or 0)
        except (OSError, asyncpg.PostgresError) as exc:
            job.consecutive_failures += 1
            job.last_error = f"{type(exc).__name__}: {exc}"
        else:
            job.last_success_at, job.consecutive_failures, job.last_error = self._clock(), 0, None
        job.runs += 1
        job.next_hub_run = started + timedelta(seconds=job.schedule_s)

    async def _expire_raw(self, _job: Job) -> None:
        if deleted := await expire_plain(self.pool, self.policy):
            log.info(
                "retention: deleted %d raw readings older than %d days",
                deleted,
                self.policy.raw_days,
            )

    async def _refresh_hourly(self, job: Job) -> None:
        """The last hours on every run; the whole refresh window about once an hour."""
        now = self._clock()
        full_every = max(1, round(3600 / job.schedule_s))
        whole = timedelta(days=self.policy.refresh_1h_days)
        await refresh_hourly(
            self.pool, now - (whole if job.runs % full_every == 0 else RECENT), now
        )

    async def _record(self) -> None:
        jobs = list(self.jobs.values())
        now = self._clock()
        await store.record_jobs(
            self.pool,
            [
                (
                    j.name,
                    j.job_id,
                    j.runner,
                    j.schedule_s,
                    j.last_success_at,
                    j.consecutive_failures,
                    j.last_error,
                    j.takeover_reason,
                )
                for j in jobs
            ],
            now,
        )
        for job in jobs:
            metrics.JOB_FAILURES.labels(job.name).set(job.consecutive_failures)
            metrics.JOB_RUN_BY_HUB.labels(job.name).set(1 if job.takeover_reason else 0)
            if job.last_success_at is not None:
                metrics.JOB_LAST_SUCCESS.labels(job.name).set(job.last_success_at.timestamp())

    def _report(self) -> None:
        """One log line per change of a job's state (who runs it, failing or not)."""
        for job in self.jobs.values():
            before = self._logged.get(job.name)
            if before == job.state:
                continue
            self._logged[job.name] = job.state
            if job.consecutive_failures:
                log.warning(
                    "maintenance job %s failing (%d in a row, run by %s): %s",
                    job.name,
                    job.consecutive_failures,
                    job.runner,
                    job.last_error,
                )
            elif job.takeover_reason and (before is None or before[0] != "hub"):
                log.warning(
                    "maintenance job %s is run by the hub every %.0f s: %s",
                    job.name,
                    job.schedule_s,
                    job.takeover_reason,
                )
            elif before is not None:
                log.info("maintenance job %s runs again (by %s)", job.name, job.runner)

    async def _export_freshness(self) -> None:
        for rollup in await rollup_freshness(self.pool, self.backend, self._clock()):
            metrics.ROLLUP_AGE.labels(rollup.name).set(rollup.age_s or 0.0)


@dataclass(frozen=True, slots=True)
class RollupFreshness:
    name: str
    as_of: datetime | None
    """End of the newest refreshed bucket; on plain PostgreSQL, now (computed per query)."""
    age_s: float | None
    live: bool
    """Computed at query time from raw readings (plain PostgreSQL): always current."""


async def rollup_freshness(
    pool: asyncpg.Pool, backend: str, now: datetime
) -> list[RollupFreshness]:
    """How current each rollup is: a dashboard's "data as of". On plain PostgreSQL the
    1-minute rollup is computed per query (live) and the hourly one is as current as the
    hub's last refresh of it."""
    if backend != "timescaledb":
        refreshed = await store.last_success(pool, "refresh:reading_1h")
        age = (now - refreshed).total_seconds() if refreshed is not None else None
        return [
            RollupFreshness("reading_1m", now, 0.0, True),
            RollupFreshness("reading_1h", refreshed, age, False),
        ]
    found = []
    async with pool.acquire() as conn:
        materialized = await store.rollup_tables(conn, [name for name, _ in ROLLUPS])
        for name, width in ROLLUPS:
            if name not in materialized:
                found.append(RollupFreshness(name, None, None, False))
                continue
            schema, table = materialized[name]
            newest = await store.newest_bucket(conn, schema, table)
            as_of = newest + width if newest is not None else None
            age = (now - as_of).total_seconds() if as_of is not None else None
            found.append(RollupFreshness(name, as_of, age, False))
    return found


@dataclass(frozen=True, slots=True)
class MaintenanceReadiness:
    status: Literal["ok", "degraded", "unknown"]
    failing: dict[str, str]
    run_by_hub: dict[str, str]

    def as_check(self) -> dict[str, Any] | str:
        if self.status == "ok":
            return "ok"
        return {"status": self.status, "failing": self.failing, "run_by_hub": self.run_by_hub}


async def readiness(conn: Any, now: datetime, stale_after_s: float) -> MaintenanceReadiness:
    """What /readyz says of the maintenance jobs, from the supervisor's last record."""
    rows = await store.job_records(conn)
    failing = {
        r["name"]: f"{r['consecutive_failures']} failures in a row: {r['last_error']}"
        for r in rows
        if r["consecutive_failures"]
    }
    run_by_hub = {r["name"]: r["takeover_reason"] for r in rows if r["takeover_reason"]}
    if failing or run_by_hub:
        return MaintenanceReadiness("degraded", failing, run_by_hub)
    stale = [r["name"] for r in rows if (now - r["checked_at"]).total_seconds() > stale_after_s]
    if stale:
        return MaintenanceReadiness(
            "unknown", {name: "not checked recently" for name in stale}, run_by_hub
        )
    return MaintenanceReadiness("ok", {}, {})


MAINTENANCE_JOBS: RuntimeKey[JobSupervisor] = RuntimeKey("the maintenance jobs")
