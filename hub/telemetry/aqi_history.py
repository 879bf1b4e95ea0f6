"""Hourly and daily VN_AQI over a range, per station and per ward, from hourly means.

Hourly means come from ``reading_1h`` (TimescaleDB's continuous aggregate, or the hub's
table on plain PostgreSQL, hub/telemetry/rollups.py), so months of daily AQI stay
queryable after raw readings expire; on plain PostgreSQL the hours the rollup may not
have reached yet are read from raw readings. Days are local days (Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import asyncpg

from hub.telemetry import aqi, store
from hub.telemetry.queries import LOCAL
from hub.telemetry.rollups import HOUR, hour_of

Resolution = Literal["hour", "day"]
_EIGHT_HOUR_LEAD = timedelta(hours=7)
_NOWCAST_LEAD = timedelta(hours=aqi.NOWCAST_HOURS - 1)
# On plain PostgreSQL the rollup is refreshed every few minutes for the last hours: later
# hours are read from raw readings.
_ROLLUP_LAG = timedelta(hours=2)

Means = dict[int, dict[str, dict[datetime, float]]]


@dataclass(frozen=True, slots=True)
class AqiPoint:
    """One hour's or one local day's AQI of a station (or of a ward: its worst station)."""

    period_start: datetime
    local_date: date
    rated: aqi.Rated
    station: str | None = None


async def hourly_means(
    pool: asyncpg.Pool,
    backend: str,
    device_ids: Sequence[int],
    start: datetime,
    end: datetime,
    now: datetime,
) -> Means:
    """Per device and pollutant, the hourly means of [start, end) by hour."""
    raw_from = end if backend == "timescaledb" else hour_of(now) - _ROLLUP_LAG
    rows = await store.hourly_means(pool, device_ids, aqi.POLLUTANTS, start, end, raw_from)
    means: Means = defaultdict(lambda: defaultdict(dict))
    for device_id, metric, hour, mean in rows:
        means[device_id][metric][hour] = mean
    return means


def local_day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL).astimezone(UTC)


def days_between(start: datetime, end: datetime) -> list[date]:
    """Local days whose start lies in [start, end)."""
    first = start.astimezone(LOCAL).date()
    if local_day_start(first) < start:
        first += timedelta(days=1)
    days = []
    day = first
    while local_day_start(day) < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    hour = hour_of(start)
    if hour < start:
        hour += HOUR
    hours = []
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


def fetch_window(
    resolution: Resolution, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """The hours of data the points of [start, end) are computed from."""
    if resolution == "day":
        days = days_between(start, end)
        if not days:
            return start, start
        return (
            local_day_start(days[0]) - _EIGHT_HOUR_LEAD,
            local_day_start(days[-1] + timedelta(days=1)),
        )
    hours = hours_between(start, end)
    if not hours:
        return start, start
    return hours[0] - _NOWCAST_LEAD, hours[-1] + HOUR


def station_points(
    resolution: Resolution,
    means: Mapping[str, Mapping[datetime, float]],
    start: datetime,
    end: datetime,
) -> list[AqiPoint]:
    """A station's AQI for each hour or local day of [start, end)."""
    points = []
    if resolution == "day":
        for day in days_between(start, end):
            begins = local_day_start(day)
            window = [begins - _EIGHT_HOUR_LEAD + HOUR * i for i in range(31)]
            hours = {p: [means.get(p, {}).get(h) for h in window] for p in aqi.POLLUTANTS}
            points.append(AqiPoint(begins, day, aqi.rate_day(hours)))
        return points
    for hour in hours_between(start, end):
        latest = [hour - HOUR * i for i in range(aqi.NOWCAST_HOURS)]
        hours = {p: [means.get(p, {}).get(h) for h in latest] for p in aqi.POLLUTANTS}
        points.append(AqiPoint(hour, hour.astimezone(LOCAL).date(), aqi.rate_hour(hours)))
    return points


def ward_points(stations: Mapping[str, Sequence[AqiPoint]]) -> list[AqiPoint]:
    """Per period, the ward's AQI: its worst station's (or why none has one)."""
    by_period: dict[datetime, list[tuple[str, AqiPoint]]] = defaultdict(list)
    for station, points in sorted(stations.items()):
        for point in points:
            by_period[point.period_start].append((station, point))
    out = []
    for period in sorted(by_period):
        candidates = by_period[period]
        rated = [(s, p) for s, p in candidates if p.rated.result is not None]
        if rated:
            station, best = max(rated, key=lambda sp: sp[1].rated.result.value)  # type: ignore[union-attr]
            out.append(AqiPoint(period, best.local_date, best.rated, station))
        else:
            reasons = tuple(f"{s}: {m}" for s, p in candidates for m in p.rated.missing)
            out.append(AqiPoint(period, candidates[0][1].local_date, aqi.Rated(None, reasons)))
    return out
