"""Every dashboard panel's query over the demo fleet's history: p50/p99 per panel beside
the 200 ms limit, and the series panels once more forced onto the raw table, to show
what the rollups buy.

History: the 120 sensors of the demo fleet (464 series) at 1-minute resolution for the
last 24 hours and at 1-hour resolution for the 29 days before. Two views, as Grafana
would ask on a wall-sized panel: the last 24 hours at a 1-minute interval and the last
30 days at a 30-minute interval. Queries run as the read-only iochub_grafana role with
macros expanded as Grafana does. On plain PostgreSQL
the hourly rollup is the hub's own table (migration 0013) and the 1-minute one is
aggregated at query time; the 200 ms goal is TimescaleDB's.

Run: python -m bench.dashboards [--backend postgres|timescaledb] [--runs 7] [--budget-s 240]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.support import bench_database, percentile, row
from dashboards.queries import choose_source, rollup_choice
from hub.devices.fleet import demo_fleet
from hub.storage.database import asyncpg_dsn
from hub.telemetry.rollups import refresh_hourly
from tests.integration.dashboards.grafana_sql import expand
from tests.integration.dashboards.panels import panel_targets, resolve_variables

LIMIT_MS = 200.0
NOW = datetime(2026, 3, 10, 5, 0, tzinfo=UTC)  # fixed, so the figures do not follow the clock
METRICS_BY_PREFIX = {
    "aq": ("pm2_5", "pm10", "o3", "no2", "temperature", "humidity"),
    "wl": ("water_level", "rainfall"),
    "ns": ("noise",),
}
BASE = {
    "pm2_5": 35.0,
    "pm10": 60.0,
    "o3": 80.0,
    "no2": 40.0,
    "temperature": 28.0,
    "humidity": 75.0,
    "water_level": 120.0,
    "rainfall": 0.2,
    "noise": 62.0,
}
VIEWS = {
    "24 h @ 1 min": (timedelta(hours=24), timedelta(minutes=1)),
    "30 d @ 30 min": (timedelta(days=30), timedelta(minutes=30)),
}


@dataclass
class Figure:
    view: str
    key: str
    rows: int
    p50: float
    p99: float


async def fill(url: str) -> tuple[int, int]:
    """The demo fleet and its history; (series, readings)."""
    fleet = demo_fleet()
    rng = random.Random(18)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        wards = {
            code: await conn.fetchval(
                "INSERT INTO ward (code, name) VALUES ($1, $2) RETURNING id", code, name
            )
            for code, name in fleet.wards
        }
        ids: dict[str, int] = {}
        statuses = ("online",) * 8 + ("late", "offline", "degraded", "maintenance")
        for device in fleet.devices:
            ids[device.uid] = await conn.fetchval(
                "INSERT INTO device (uid, kind, name, vendor, model, firmware_version, ward_id, "
                "latitude, longitude, status, status_reason, last_seen, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                device.uid,
                device.kind,
                device.name,
                device.vendor,
                device.model,
                device.firmware_version,
                wards[device.ward] if device.ward else None,
                device.latitude,
                device.longitude,
                status := rng.choice(statuses),
                "" if status == "online" else "bench",
                NOW - timedelta(minutes=1),
                NOW - timedelta(days=60),
            )
        series = [
            (ids[d.uid], metric)
            for d in fleet.devices
            if d.kind == "sensor"
            for metric in METRICS_BY_PREFIX[d.uid.split("-", 1)[0]]
        ]
        moments = [NOW - timedelta(days=30) + timedelta(hours=h) for h in range(29 * 24)]
        moments += [NOW - timedelta(hours=24) + timedelta(minutes=m) for m in range(24 * 60)]
        total = 0
        for device_id, metric in series:
            phase = rng.uniform(0, math.tau)
            records = [
                (moment, device_id, metric, BASE[metric] * (1 + 0.3 * math.sin(n / 90 + phase)))
                for n, moment in enumerate(moments)
            ]
            await conn.copy_records_to_table(
                "reading", records=records, columns=["time", "device_id", "metric", "value"]
            )
            await conn.execute(
                "INSERT INTO reading_latest (device_id, metric, time, value) VALUES ($1, $2, $3, $4)",
                device_id,
                metric,
                records[-1][0],
                records[-1][3],
            )
            total += len(records)
        # A few status changes and alerts, so those panels have rows to count.
        events = [
            (
                ids[d.uid],
                NOW - timedelta(minutes=rng.randrange(1, 43_200)),
                "online",
                "late",
                "bench",
            )
            for d in fleet.devices[::7]
        ]
        await conn.executemany(
            "INSERT INTO health_event (device_id, at, from_status, to_status, reason) "
            "VALUES ($1, $2, $3, $4, $5)",
            events,
        )
        await conn.executemany(
            "INSERT INTO alert (fingerprint, rule_name, device_id, ward_id, severity, state, "
            "message, started_at) SELECT $1, 'bench', $2, ward_id, 'minor', 'firing', 'bench', $3 "
            "FROM device WHERE id = $2",
            [
                (f"bench:{n}", ids[d.uid], NOW - timedelta(hours=n % 700))
                for n, d in enumerate(fleet.devices[::3])
            ],
        )
        if await conn.fetchval("SELECT to_regclass('reading_1m') IS NOT NULL"):
            for aggregate in ("reading_1m", "reading_1h"):
                await conn.execute(f"CALL refresh_continuous_aggregate('{aggregate}', NULL, NULL)")
        else:  # what the hub's rollup service keeps on plain PostgreSQL
            await refresh_hourly(conn, NOW - timedelta(days=31), NOW)  # type: ignore[arg-type]
        await conn.execute("ANALYZE")
        return len(series), total
    finally:
        await conn.close()


def forced_raw(sql: str) -> str:
    """The same series from the raw table, whatever the range: the comparison."""
    return sql.replace(rollup_choice(), "'raw'")


async def measure(conn: asyncpg.Connection, sql: str, runs: int) -> tuple[int, list[float]]:
    timings = []
    rows = 0
    for attempt in range(runs + 1):  # the first run warms the cache and is not counted
        async with conn.transaction(readonly=True):
            await conn.execute("SET LOCAL ROLE iochub_grafana; SET LOCAL statement_timeout = 30000")
            started = time.perf_counter()
            result = await conn.fetch(sql)
            elapsed = (time.perf_counter() - started) * 1000
        rows = len(result)
        if attempt:
            timings.append(elapsed)
    return rows, timings


async def run(backend: str, runs: int, budget_s: float) -> int:
    deadline = time.monotonic() + budget_s
    async with bench_database("require" if backend == "timescaledb" else "off") as url:
        started = time.monotonic()
        series, readings = await fill(url)
        print(
            f"backend {backend}: {series} series, {readings:,} readings filled in "
            f"{time.monotonic() - started:.0f} s"
        )
        conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"TimeZone": "UTC"})
        try:
            targets = panel_targets()
            figures: list[Figure] = []
            raw: dict[tuple[str, str], Figure] = {}
            skipped = 0
            for view, (span, interval) in VIEWS.items():
                for target in targets:
                    if time.monotonic() > deadline:
                        skipped += 1
                        continue
                    variables = await resolve_variables(target.dashboard, conn.fetch, {})
                    request = target.request(
                        variables,
                        interval,
                        timescaledb=backend == "timescaledb",
                        time_from=NOW - span,
                        time_to=NOW,
                    )
                    sql = expand(target.sql, request)
                    count, timings = await measure(conn, sql, runs)
                    figures.append(
                        Figure(
                            view,
                            target.key,
                            count,
                            percentile(timings, 50),
                            percentile(timings, 99),
                        )
                    )
                    if rollup_choice() in target.sql and time.monotonic() < deadline:
                        raw_sql = expand(forced_raw(target.sql), request)
                        count, timings = await measure(conn, raw_sql, runs)
                        raw[(view, target.key)] = Figure(
                            view,
                            target.key,
                            count,
                            percentile(timings, 50),
                            percentile(timings, 99),
                        )
            report(figures, raw, runs, backend)
            if skipped:
                print(f"LOUD: {skipped} panel runs skipped: the {budget_s:.0f} s budget ran out")
                return 1
            return 0 if all(f.p99 <= LIMIT_MS for f in figures) else 2
        finally:
            await conn.close()


def report(
    figures: list[Figure], raw: dict[tuple[str, str], Figure], runs: int, backend: str
) -> None:
    for view, (span, interval) in VIEWS.items():
        source = choose_source(span, interval)
        print(f"\n{view} (series read: {source}; {runs} runs each, p99 = slowest of {runs})")
        row("panel", "p50 / p99 ms", f"limit {LIMIT_MS:.0f} ms p99")
        for figure in (f for f in figures if f.view == view):
            mark = "ok" if figure.p99 <= LIMIT_MS else "OVER"
            note = f"{mark}, {figure.p99 / LIMIT_MS:.2f}x limit, {figure.rows} rows"
            comparison = raw.get((view, figure.key))
            if comparison is not None:
                note += f"; raw table {comparison.p50:.0f}/{comparison.p99:.0f} ms"
                if figure.p50 > 0:
                    note += f" ({comparison.p50 / figure.p50:.1f}x)"
            row(figure.key[:48], f"{figure.p50:7.1f} / {figure.p99:7.1f}", note)
        within = [f for f in figures if f.view == view]
        worst = max(within, key=lambda f: f.p99)
        print(
            f"  worst p99 {worst.p99:.1f} ms ({worst.key}) vs limit {LIMIT_MS:.0f} ms on {backend}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("postgres", "timescaledb"), default="postgres")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=300.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.backend, args.runs, args.budget_s)))


if __name__ == "__main__":
    main()
