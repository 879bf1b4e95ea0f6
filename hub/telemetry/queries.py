"""Time-series questions: latest values, bucketed series with gap filling, ward summaries.

The same questions answer on both backends. TimescaleDB reads its continuous aggregates
for minute- and hour-multiples; plain PostgreSQL aggregates raw rows at query time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg

from hub.errors import FieldProblem, ValidationFailed
from hub.telemetry import aqi, store

# The structs of the answers, named here for other slices (hub.telemetry.timeseries).
from hub.telemetry.store import Latest as Latest
from hub.telemetry.store import MetricSummary as MetricSummary
from hub.telemetry.store import Point as Point

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
# Buckets start on local midnights, so a day bucket is a Vietnamese calendar day.
ORIGIN = datetime(2000, 1, 1, tzinfo=LOCAL)
Aggregate = Literal["avg", "min", "max", "last", "count"]
Fill = Literal["none", "null", "previous"]
MAX_POINTS = 10_000
_BUCKET = re.compile(r"^(?P<n>\d{1,4})(?P<unit>s|m|h|d)$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


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
        points = await store.raw_points(pool, device_id, metric, start, end, MAX_POINTS)
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
    points = await store.bucketed_points(
        pool, source, device_id, metric, start, end, size, ORIGIN, aggregate, fill != "none"
    )
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


async def latest(
    pool: asyncpg.Pool, device_ids: Sequence[int] | None, metrics: Sequence[str] = ()
) -> list[Latest]:
    return await store.latest(pool, device_ids, metrics)


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
    summaries = await store.ward_metric_summaries(pool, ward_id, now, local_midnight)
    station, index, missing = await ward_aqi_with_reasons(pool, ward_id, now)
    return WardSummary(ward_code, summaries, index, station, missing)


async def hourly_means(
    pool: asyncpg.Pool, ward_id: int, now: datetime
) -> dict[str, dict[str, list[float | None]]]:
    """Per station and pollutant, the 12 latest hourly means, most recent first."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = await store.ward_hourly_means(pool, ward_id, aqi.POLLUTANTS, hour)
    stations: dict[str, dict[str, list[float | None]]] = {}
    for station, metric, started, mean in rows:
        slot = int((hour - started) / timedelta(hours=1))
        if 0 <= slot < aqi.NOWCAST_HOURS:
            hours = stations.setdefault(station, {}).setdefault(metric, [None] * aqi.NOWCAST_HOURS)
            hours[slot] = mean
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


# Read as stored: raw readings in time order (a server-side cursor) and the quarantine.
export_rows = store.export_rows
quarantined = store.quarantined
quarantined_item = store.quarantined_item
