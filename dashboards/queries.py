"""SQL the dashboards share: filters, time buckets, the rollup choice, the VN_AQI.

Every query runs on TimescaleDB and on plain PostgreSQL (14 or later, for ``date_bin``).
Series read ``reading`` for short ranges and the rollups for long ones through
``reading_per_minute``/``reading_per_hour`` (migration 0016: continuous aggregates on
TimescaleDB, aggregated at query time from raw rows on plain PostgreSQL), chosen in the
query from the range and ``$__interval``: see :func:`rollup_choice`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from hub.telemetry import aqi
from hub.telemetry.catalog import METRICS

LOCAL_ZONE = "Asia/Ho_Chi_Minh"
# Buckets start at local midnight (UTC+7, no daylight saving), so day-sized buckets are
# Vietnamese days whatever the session time zone of Grafana's connection.
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+07'"
WARD_FILTER = "w.code = ANY(ARRAY[$ward]::text[])"
STATION_FILTER = "d.uid = ANY(ARRAY[$station]::text[])"
KIND_FILTER = "d.kind = ANY(ARRAY[$kind]::text[])"

# The rollup a series reads (issue 18): raw rows while the range is short enough to chart
# them; 1-minute rollups up to a week; 1-hour rollups beyond, or whenever Grafana's
# interval is a whole number of hours anyway.
RAW_UP_TO = timedelta(hours=6)
PER_MINUTE_UP_TO = timedelta(days=7)
SOURCES = {"raw": timedelta(0), "1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
RANGE_S = "($__unixEpochTo() - $__unixEpochFrom())"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def bucket(column: str) -> str:
    return f"date_bin('$__interval', {column}, {ORIGIN})"


def counts_by(column: str, values: Sequence[str]) -> str:
    return ",\n       ".join(
        f"count(*) FILTER (WHERE {column} = '{value}') AS " + f'"{value.title()}"'
        for value in values
    )


def rollup_choice() -> str:
    """'raw', '1m' or '1h': the table that fits the range and interval.

    Grafana expands both macros to integer literals, so PostgreSQL folds this to a
    constant when it plans the query and drops the branches not taken.
    """
    return (
        "CASE WHEN "
        f"{RANGE_S} > {int(PER_MINUTE_UP_TO.total_seconds())} "
        "OR $__interval_ms % 3600000 = 0 THEN '1h' "
        f"WHEN {RANGE_S} > {int(RAW_UP_TO.total_seconds())} THEN '1m' "
        "ELSE 'raw' END"
    )


def choose_source(range_: timedelta, interval: timedelta) -> str:
    """The same choice in Python, for the tests and the benchmark."""
    interval_ms = interval // timedelta(milliseconds=1)
    if range_ > PER_MINUTE_UP_TO or interval_ms % 3_600_000 == 0:
        return "1h"
    if range_ > RAW_UP_TO:
        return "1m"
    return "raw"


def _width(step_ms: int) -> str:
    """$__interval rounded up to whole rollup buckets, as an interval."""
    if step_ms == 1:
        return "make_interval(secs => $__interval_ms / 1000.0)"
    return f"make_interval(secs => ceil($__interval_ms / {step_ms}.0) * {step_ms // 1000})"


def samples(metrics: Sequence[str]) -> str:
    """Rows of time (the panel's bucket), device_id, total (sum of values) and n (how
    many, an integer), from the table the range calls for; callers group them by bucket.

    Raw readings are summed per device and bucket first (several a minute). Rollup rows
    are passed through as they are: grouping them here as well would aggregate the same
    rows twice (the slowest step of a 24-hour series at 1-minute buckets). The range's
    choice filters the raw branch outside its grouping, so PostgreSQL drops every branch
    not chosen when it plans the query; inside, an empty aggregate would be left behind,
    and with it an Append and a subquery scan that each rollup row passes through (and
    a parallel plan whose workers cost more than they save).
    """
    wanted = sql_list(metrics)
    choice = rollup_choice()
    return f"""(
  SELECT g.* FROM (
    SELECT date_bin({_width(1)}, r.time, {ORIGIN}) AS "time", r.device_id,
           sum(r.value) AS total, count(*)::integer AS n
    FROM reading r
    WHERE $__timeFilter(r.time) AND r.metric IN ({wanted})
    GROUP BY 1, 2, r.metric
  ) AS g
  WHERE {choice} = 'raw'
  UNION ALL
  SELECT date_bin({_width(60_000)}, m.bucket, {ORIGIN}), m.device_id,
         m.avg * m.count, m.count::integer
  FROM reading_per_minute($__timeFrom(), $__timeTo()) m
  WHERE {choice} = '1m' AND m.metric IN ({wanted})
  UNION ALL
  SELECT date_bin({_width(3_600_000)}, h.bucket, {ORIGIN}), h.device_id,
         h.avg * h.count, h.count::integer
  FROM reading_per_hour($__timeFrom(), $__timeTo()) h
  WHERE {choice} = '1h' AND h.metric IN ({wanted})
) AS s"""


def pollutant_label_sql(column: str) -> str:
    labels = {"pm2_5": "PM2.5", "pm10": "PM10", "o3": "O3", "no2": "NO2", "so2": "SO2", "co": "CO"}
    cases = " ".join(f"WHEN '{key}' THEN '{label}'" for key, label in labels.items())
    return f"CASE {column} {cases} ELSE {column} END"


def aqi_category_sql(column: str, *, english: bool) -> str:
    """The band's name in the decision's own words (Table 1), English beside it on request."""
    cases = "\n".join(
        f"    WHEN {column} <= {category.highest} THEN '{category.label_vi}"
        + (f" ({category.label_en})'" if english else "'")
        for category in aqi.AqiCategory
    )
    return f"CASE\n{cases}\n  END"


def units_sql() -> str:
    rows = ", ".join(f"('{metric.name}', '{metric.unit}')" for metric in METRICS.values())
    return f"(VALUES {rows}) AS u (metric, unit)"


def aqi_sql(final_select: str) -> str:
    """The ward's hourly VN_AQI as the hub computes it (hub.telemetry.queries.ward_aqi).

    As of the end of the time range: per sensor, the means of the 12 clock hours up to
    that moment (read from the 1-hour rollup, so a whole clock hour's); PM2.5 and PM10 rated by their NowCast (needing 2 of the 3 latest
    hours), gases by the latest hour's mean; breakpoints of Table 2, rounded half up;
    a station is rated only with a particulate, and a ward takes its worst station.
    """
    gases = [p for p in aqi.POLLUTANTS if p not in aqi.PARTICULATES]
    particulates = [p for p in aqi.POLLUTANTS if p in aqi.PARTICULATES]
    segments = ",\n    ".join(
        f"('{pollutant}', {low}, {high}, {index_low}, {index_high})"
        for pollutant in aqi.POLLUTANTS
        for low, high, index_low, index_high in zip(
            aqi.BREAKPOINTS[pollutant],
            aqi.BREAKPOINTS[pollutant][1:],
            aqi.INDEX_LEVELS,
            aqi.INDEX_LEVELS[1:],
            strict=False,
        )
    )
    top_index = aqi.INDEX_LEVELS[-1]
    return f"""
WITH anchor AS (
  SELECT date_trunc('hour', $__timeTo()::timestamptz, 'UTC') AS hour
),
hourly AS (
  -- The clock hours' means, from the 1-hour rollup.
  SELECT w.name AS ward, d.uid AS station, h.metric,
         (extract(epoch FROM a.hour - h.bucket) / 3600)::int AS age,
         sum(h.avg * h.count) / sum(h.count) AS mean
  FROM reading_per_hour(
         date_trunc('hour', $__timeTo()::timestamptz, 'UTC')
           - interval '{aqi.NOWCAST_HOURS - 1} hours',
         $__timeTo()) h
  JOIN device d ON d.id = h.device_id
  JOIN ward w ON w.id = d.ward_id
  CROSS JOIN anchor a
  WHERE {WARD_FILTER} AND {STATION_FILTER} AND d.kind = 'sensor'
    AND h.metric IN ({sql_list(aqi.POLLUTANTS)})
  GROUP BY 1, 2, 3, 4
),
weight AS (
  SELECT ward, station, metric,
         CASE WHEN max(mean) = 0 THEN 1 ELSE greatest(min(mean) / max(mean), 0.5) END AS w
  FROM hourly
  WHERE metric IN ({sql_list(particulates)})
  GROUP BY 1, 2, 3
  HAVING count(*) FILTER (WHERE age < 3) >= 2
),
concentration AS (
  SELECT h.ward, h.station, h.metric,
         sum(power(k.w, h.age) * h.mean) / sum(power(k.w, h.age)) AS value
  FROM hourly h JOIN weight k USING (ward, station, metric)
  GROUP BY 1, 2, 3
  UNION ALL
  SELECT ward, station, metric, mean FROM hourly
  WHERE metric IN ({sql_list(gases)}) AND age = 0
),
breakpoint (metric, low, high, index_low, index_high) AS (VALUES
    {segments}
),
sub_index AS (
  SELECT c.ward, c.station, c.metric,
         coalesce(
           (SELECT floor(b.index_low + (b.index_high - b.index_low) * (c.value::numeric - b.low)
                         / (b.high - b.low) + 0.5)
            FROM breakpoint b
            WHERE b.metric = c.metric AND c.value::numeric >= b.low AND c.value::numeric < b.high),
           {top_index})::int AS aqi
  FROM concentration c
),
station AS (
  SELECT DISTINCT ON (ward, station) ward, station, metric AS dominant, aqi
  FROM sub_index s
  WHERE EXISTS (SELECT 1 FROM sub_index p WHERE p.ward = s.ward AND p.station = s.station
                AND p.metric IN ({sql_list(particulates)}))
  ORDER BY ward, station, aqi DESC,
           array_position(ARRAY[{sql_list(aqi.POLLUTANTS)}], metric)
),
ward_aqi AS (
  SELECT DISTINCT ON (ward) ward, station, dominant, aqi
  FROM station
  ORDER BY ward, aqi DESC, station COLLATE "C"
)
{final_select.strip()}
"""
