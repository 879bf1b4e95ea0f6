"""Time-series questions: latest values, bucketed series with gap filling, ward summaries.

The same questions answer on both backends. TimescaleDB reads its continuous aggregates
for minute- and hour-multiples; plain PostgreSQL aggregates raw rows at query time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg

from hub.errors import FieldProblem, ValidationFailed
from hub.telemetry import aqi

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
# Buckets start on local midnights, so a day bucket is a Vietnamese calendar day.
ORIGIN = datetime(2000, 1, 1, tzinfo=LOCAL)
Aggregate = Literal["avg", "min", "max", "last", "count"]
Fill = Literal["none", "null", "previous"]
MAX_POINTS = 10_000
_BUCKET = re.compile(r"^(?P<n>\d{1,4})(?P<unit>s|m|h|d)$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    value: float | None
    count: int


@dataclass(frozen=True, slots=True)
class Series:
    device: str
    metric: str
    bucket: str
    aggregate: str
    source: str
    points: list[Point]


def parse_bucket(text: str) -> timedelta:
    match = _BUCKET.match(text)
    if not match or int(match["n"]) == 0:
        raise ValidationFailed(
            "unknown bucket",
            [FieldProblem("bucket", "use raw, auto, or a size like 30s, 1m, 15m, 1h, 1d")],
        )
    return timedelta(**{_UNIT[match["unit"]]: int(match["n"])})


def auto_bucket(span: timedelta) -> str:
    """The finest of the standard buckets that keeps a chart under ~1,500 points."""
    for label, size in (
        ("raw", timedelta(0)),
        ("1m", timedelta(minutes=1)),
        ("5m", timedelta(minutes=5)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
    ):
        if label == "raw" and span <= timedelta(hours=2):
            return label
        if size and span / size <= 1500:
            return label
    return "1d"


def label_of(size: timedelta) -> str:
    seconds = int(size.total_seconds())
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % factor == 0:
            return f"{seconds // factor}{unit}"
    return f"{seconds}s"


def source_for(backend: str, size: timedelta) -> str:
    if backend == "timescaledb":
        if size % timedelta(hours=1) == timedelta(0):
            return "reading_1h"
        if size % timedelta(minutes=1) == timedelta(0):
            return "reading_1m"
    return "reading"


def check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ValidationFailed("empty time range", [FieldProblem("end", "end must be after start")])
    if end - start > timedelta(days=3 * 366):
        raise ValidationFailed(
            "time range too long", [FieldProblem("start", "ask for at most three years at once")]
        )


async def series(
    pool: asyncpg.Pool,
    backend: str,
    device_id: int,
    device_uid: str,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: str = "auto",
    aggregate: Aggregate = "avg",
    fill: Fill = "none",
) -> Series:
    check_range(start, end)
    label = auto_bucket(end - start) if bucket == "auto" else bucket
    if label == "raw":
        rows = await pool.fetch(
            "SELECT time, value FROM reading WHERE device_id = $1 AND metric = $2 "
            "AND time >= $3 AND time < $4 ORDER BY time LIMIT $5",
            device_id,
            metric,
            start,
            end,
            MAX_POINTS,
        )
        points = [Point(r["time"], r["value"], 1) for r in rows]
        return Series(device_uid, metric, "raw", "raw", "reading", points)
    size = parse_bucket(label)
    if (end - start) / size > MAX_POINTS:
        raise ValidationFailed(
            "too many points",
            [
                FieldProblem(
                    "bucket", f"{label} buckets over this range give more than {MAX_POINTS} points"
                )
            ],
        )
    source = source_for(backend, size)
    if source == "reading":
        grouped = (
            "SELECT date_bin($5, time, $6) AS b, avg(value) AS avg, min(value) AS min, "
            "max(value) AS max, count(*) AS count, "
            "(array_agg(value ORDER BY time DESC))[1] AS last FROM reading "
            "WHERE device_id = $1 AND metric = $2 AND time >= $3 AND time < $4 GROUP BY 1"
        )
    else:
        grouped = (
            f"SELECT date_bin($5, bucket, $6) AS b, "
            "sum(avg * count) / sum(count) AS avg, min(min) AS min, max(max) AS max, "
            "sum(count)::bigint AS count, (array_agg(last ORDER BY bucket DESC))[1] AS last "
            f"FROM {source} WHERE device_id = $1 AND metric = $2 AND bucket >= $3 "
            "AND bucket < $4 GROUP BY 1"
        )
    if fill == "none":
        query = f"{grouped} ORDER BY 1"
    else:
        query = (
            f"WITH agg AS ({grouped}), slots AS (SELECT generate_series(date_bin($5, $3, $6), "
            "$4 - interval '1 microsecond', $5) AS b) "
            "SELECT slots.b, agg.avg, agg.min, agg.max, coalesce(agg.count, 0) AS count, "
            "agg.last FROM slots LEFT JOIN agg USING (b) ORDER BY 1"
        )
    rows = await pool.fetch(query, device_id, metric, start, end, size, ORIGIN)
    points = [
        Point(
            r["b"],
            r[aggregate] if aggregate != "count" else float(r["count"] or 0),
            int(r["count"] or 0),
        )
        for r in rows
    ]
    if fill == "previous":
        points = carry_forward(points)
    return Series(device_uid, metric, label_of(size), aggregate, source, points)


def carry_forward(points: Sequence[Point]) -> list[Point]:
    filled: list[Point] = []
    previous: float | None = None
    for point in points:
        value = point.value if point.value is not None else previous
        filled.append(Point(point.time, value, point.count))
        previous = value
    return filled


@dataclass(frozen=True, slots=True)
class Latest:
    device: str
    metric: str
    time: datetime
    value: float


async def latest(
    pool: asyncpg.Pool, device_ids: Sequence[int] | None, metrics: Sequence[str] = ()
) -> list[Latest]:
    rows = await pool.fetch(
        "SELECT d.uid, l.metric, l.time, l.value FROM reading_latest l "
        "JOIN device d ON d.id = l.device_id "
        "WHERE ($1::bigint[] IS NULL OR l.device_id = ANY($1)) "
        "AND (cardinality($2::text[]) = 0 OR l.metric = ANY($2)) ORDER BY d.uid, l.metric",
        list(device_ids) if device_ids is not None else None,
        list(metrics),
    )
    return [Latest(r["uid"], r["metric"], r["time"], r["value"]) for r in rows]


@dataclass(frozen=True, slots=True)
class MetricSummary:
    metric: str
    latest_avg: float | None
    today_min: float | None
    today_max: float | None
    devices: int


@dataclass(frozen=True, slots=True)
class WardSummary:
    ward: str
    metrics: list[MetricSummary]
    aqi: aqi.AqiResult | None
    aqi_station: str | None
    aqi_missing: tuple[str, ...] = ()
    """Why the hourly AQI is missing (or what it leaves out), per station."""


async def ward_summary(
    pool: asyncpg.Pool, ward_id: int, ward_code: str, now: datetime | None = None
) -> WardSummary:
    now = now or datetime.now(UTC)
    local_midnight = now.astimezone(LOCAL).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await pool.fetch(
        """
        WITH devices AS (SELECT id FROM device WHERE ward_id = $1 AND kind = 'sensor'
                         AND lifecycle = 'active'),
             fresh AS (SELECT metric, avg(value) AS latest_avg, count(*) AS devices
                       FROM reading_latest WHERE device_id IN (SELECT id FROM devices)
                       AND time > $2::timestamptz - interval '1 hour'
                       AND metric NOT LIKE 'raw/%' GROUP BY metric),
             today AS (SELECT metric, min(value) AS today_min, max(value) AS today_max
                       FROM reading WHERE device_id IN (SELECT id FROM devices)
                       AND time >= $3 AND time <= $2::timestamptz
                       AND metric NOT LIKE 'raw/%' GROUP BY metric)
        SELECT coalesce(f.metric, t.metric) AS metric, f.latest_avg, t.today_min, t.today_max,
               coalesce(f.devices, 0) AS devices
        FROM fresh f FULL JOIN today t ON t.metric = f.metric ORDER BY 1
        """,
        ward_id,
        now,
        local_midnight,
    )
    summaries = [
        MetricSummary(r["metric"], r["latest_avg"], r["today_min"], r["today_max"], r["devices"])
        for r in rows
    ]
    station, index, missing = await ward_aqi_with_reasons(pool, ward_id, now)
    return WardSummary(ward_code, summaries, index, station, missing)


async def hourly_means(
    pool: asyncpg.Pool, ward_id: int, now: datetime
) -> dict[str, dict[str, list[float | None]]]:
    """Per station and pollutant, the 12 latest hourly means, most recent first."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = await pool.fetch(
        """
        SELECT d.uid, r.metric, date_trunc('hour', r.time) AS hour, avg(r.value) AS mean
        FROM reading r JOIN device d ON d.id = r.device_id
        WHERE d.ward_id = $1 AND d.kind = 'sensor' AND r.metric = ANY($2::text[])
          AND r.time >= $3::timestamptz - interval '11 hours'
          AND r.time < $3::timestamptz + interval '1 hour'
        GROUP BY 1, 2, 3
        """,
        ward_id,
        list(aqi.POLLUTANTS),
        hour,
    )
    stations: dict[str, dict[str, list[float | None]]] = {}
    for row in rows:
        slot = int((hour - row["hour"]) / timedelta(hours=1))
        if 0 <= slot < aqi.NOWCAST_HOURS:
            hours = stations.setdefault(row["uid"], {}).setdefault(
                row["metric"], [None] * aqi.NOWCAST_HOURS
            )
            hours[slot] = row["mean"]
    return stations


async def ward_aqi(
    pool: asyncpg.Pool, ward_id: int, now: datetime
) -> tuple[str | None, aqi.AqiResult | None]:
    """The ward's hourly VN_AQI: its worst station's."""
    best: tuple[str | None, aqi.AqiResult | None] = (None, None)
    for station, pollutants in sorted((await hourly_means(pool, ward_id, now)).items()):
        result = aqi.hourly_aqi(pollutants)
        if result is not None and (best[1] is None or result.value > best[1].value):
            best = (station, result)
    return best


async def ward_aqi_with_reasons(
    pool: asyncpg.Pool, ward_id: int, now: datetime
) -> tuple[str | None, aqi.AqiResult | None, tuple[str, ...]]:
    """The ward's hourly VN_AQI (its worst station's), or why there is none."""
    stations = await hourly_means(pool, ward_id, now)
    if not stations:
        return None, None, ("no pollutant data in the last 12 hours",)
    best: tuple[str | None, aqi.AqiResult | None] = (None, None)
    reasons: list[str] = []
    for station, pollutants in sorted(stations.items()):
        rated = aqi.rate_hour(pollutants)
        reasons += [f"{station}: {reason}" for reason in rated.missing]
        result = rated.result
        if result is not None and (best[1] is None or result.value > best[1].value):
            best = (station, result)
    if best[1] is not None:
        # Stations that are rated say nothing: only the ones left out explain themselves.
        rated_ok = {s for s, p in stations.items() if aqi.rate_hour(p).result is not None}
        reasons = [r for r in reasons if r.split(":", 1)[0] not in rated_ok]
    return best[0], best[1], tuple(reasons)


async def export_rows(
    pool: asyncpg.Pool,
    device_ids: Sequence[int],
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
) -> AsyncIterator[asyncpg.Record]:
    """Raw readings in time order, streamed through a server-side cursor."""
    async with pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor(
            "SELECT r.time, d.uid, r.metric, r.value FROM reading r JOIN device d "
            "ON d.id = r.device_id WHERE r.device_id = ANY($1::bigint[]) "
            "AND (cardinality($2::text[]) = 0 OR r.metric = ANY($2)) "
            "AND r.time >= $3 AND r.time < $4 ORDER BY r.time, d.uid, r.metric",
            list(device_ids),
            list(metrics),
            start,
            end,
            prefetch=2000,
        ):
            yield row
