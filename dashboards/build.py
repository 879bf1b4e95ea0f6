"""Build the IOC's Grafana dashboards and write them as JSON beside this module.

Run ``python -m dashboards.build`` after changing a panel; ``--check`` fails when the
checked-in JSON differs from what this module builds. Every query runs on TimescaleDB
and on plain PostgreSQL (14 or later, for ``date_bin``), except those reading the
``reading_1h`` continuous aggregate, which exists on TimescaleDB only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from textwrap import indent
from typing import Any

from hub.telemetry import aqi
from hub.telemetry.catalog import METRICS

JSON = dict[str, Any]

DATASOURCE_UID = "iochub-postgres"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE: JSON = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
LOCAL_ZONE = "Asia/Ho_Chi_Minh"
HERE = Path(__file__).resolve().parent

# Buckets start at local midnight (UTC+7, no daylight saving), so day-sized buckets are
# Vietnamese days whatever the session time zone of Grafana's connection.
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+07'"
WARD_FILTER = "w.code = ANY(ARRAY[$ward]::text[])"
DEVICE_STATUSES = ("online", "late", "offline", "degraded", "maintenance", "unknown")
UNHEALTHY_STATUSES = ("offline", "degraded", "late", "unknown")
SEVERITIES = ("critical", "major", "minor", "warning")
DEVICE_KINDS = ("camera", "speaker", "sensor")

STATUS_COLOURS = {
    "online": "green",
    "late": "yellow",
    "offline": "red",
    "degraded": "orange",
    "maintenance": "blue",
    "unknown": "#8e8e8e",
}
SEVERITY_COLOURS = {"critical": "dark-red", "major": "orange", "minor": "yellow", "warning": "blue"}
POLLUTANT_LABELS = {
    "pm2_5": "PM2.5",
    "pm10": "PM10",
    "o3": "O3",
    "no2": "NO2",
    "so2": "SO2",
    "co": "CO",
}
GRAFANA_UNITS = {
    "pm2_5": "conμgm3",
    "pm10": "conμgm3",
    "temperature": "celsius",
    "humidity": "humidity",
    "noise": "suffix: dB(A)",
    "water_level": "suffix: cm",
    "rainfall": "lengthmm",
}


def bucket(column: str) -> str:
    return f"date_bin('$__interval', {column}, {ORIGIN})"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def counts_by(column: str, values: Sequence[str]) -> str:
    return ",\n       ".join(
        f"count(*) FILTER (WHERE {column} = '{value}') AS " + f'"{value.title()}"'
        for value in values
    )


def target(sql: str, fmt: str = "table", ref_id: str = "A") -> JSON:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": sql.strip(),
        "refId": ref_id,
    }


def value_colours(colours: dict[str, str]) -> list[JSON]:
    return [
        {
            "type": "value",
            "options": {
                value: {"color": colour, "index": index, "text": value}
                for index, (value, colour) in enumerate(colours.items())
            },
        }
    ]


def fixed_colour_overrides(colours: dict[str, str], *, title_case: bool = False) -> list[JSON]:
    return [
        {
            "matcher": {"id": "byName", "options": name.title() if title_case else name},
            "properties": [{"id": "color", "value": {"fixedColor": colour, "mode": "fixed"}}],
        }
        for name, colour in colours.items()
    ]


def cell_colour_override(field: str, colours: dict[str, str]) -> JSON:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [
            {"id": "mappings", "value": value_colours(colours)},
            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
        ],
    }


def unit_override(field: str, unit: str) -> JSON:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "unit", "value": unit}],
    }


def panel(kind: str, title: str, description: str, targets: list[JSON]) -> JSON:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }


def timeseries(
    title: str,
    description: str,
    sql: str,
    unit: str,
    *,
    bars: bool = False,
    stacked: bool = False,
) -> JSON:
    built = panel("timeseries", title, description, [target(sql, "time_series")])
    built["fieldConfig"]["defaults"] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "lineInterpolation": "linear",
            "fillOpacity": 80 if bars else 10,
            "gradientMode": "none",
            "showPoints": "never",
            "pointSize": 4,
            "spanNulls": False,
            "axisPlacement": "auto",
            "barAlignment": -1,
            "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        },
    }
    built["options"] = {
        "legend": {
            "calcs": ["sum"] if bars else ["mean", "max", "lastNotNull"],
            "displayMode": "table",
            "placement": "right",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return built


def table(title: str, description: str, sql: str, overrides: list[JSON] | None = None) -> JSON:
    built = panel("table", title, description, [target(sql)])
    built["fieldConfig"] = {
        "defaults": {
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
            "color": {"mode": "thresholds"},
            "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
        },
        "overrides": overrides or [],
    }
    built["options"] = {
        "cellHeight": "sm",
        "showHeader": True,
        "footer": {"show": False, "countRows": False, "fields": "", "reducer": ["sum"]},
    }
    return built


def stat(
    title: str,
    description: str,
    sql: str,
    *,
    unit: str = "none",
    overrides: list[JSON] | None = None,
    thresholds: list[JSON] | None = None,
    per_row: bool = False,
    fields: str = "",
) -> JSON:
    built = panel("stat", title, description, [target(sql)])
    built["fieldConfig"] = {
        "defaults": {
            "unit": unit,
            "decimals": 0,
            "color": {"mode": "thresholds"},
            "thresholds": {
                "mode": "absolute",
                "steps": thresholds or [{"color": "text", "value": None}],
            },
        },
        "overrides": overrides or [],
    }
    built["options"] = {
        "reduceOptions": {"values": per_row, "calcs": ["lastNotNull"], "fields": fields},
        "orientation": "auto",
        "textMode": "value_and_name",
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
    }
    return built


class Grid:
    """Places panels left to right on Grafana's 24-column grid, starting a new line as needed."""

    WIDTH = 24

    def __init__(self) -> None:
        self.panels: list[JSON] = []
        self._x = 0
        self._y = 0
        self._line_height = 0

    def row(self, title: str) -> None:
        self._new_line()
        self._place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self._new_line()

    def add(self, built: JSON, width: int, height: int) -> None:
        if self._x + width > self.WIDTH:
            self._new_line()
        self._place(built, width, height)

    def _place(self, built: JSON, width: int, height: int) -> None:
        built["id"] = len(self.panels) + 1
        built["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        self.panels.append(built)
        self._x += width
        self._line_height = max(self._line_height, height)

    def _new_line(self) -> None:
        if self._x:
            self._y += self._line_height
        self._x = 0
        self._line_height = 0


def query_variable(name: str, label: str, sql: str) -> JSON:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": sql,
        "definition": sql,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "refresh": 1,
        "regex": "",
        "sort": 0,
        "hide": 0,
        "skipUrlSync": False,
    }


def custom_variable(name: str, label: str, values: Sequence[str]) -> JSON:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [
            {"selected": True, "text": "All", "value": "$__all"},
            *({"selected": False, "text": value, "value": value} for value in values),
        ],
        "hide": 0,
        "skipUrlSync": False,
    }


WARD_VARIABLE = query_variable(
    "ward", "Ward", "SELECT code AS __value, name AS __text FROM ward ORDER BY name"
)

BUILT_IN_ANNOTATIONS: JSON = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}
# The hub annotates every alert firing and resolution with these tags (hub.integrations.grafana).
ALERT_ANNOTATIONS: JSON = {
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "iconColor": "red",
    "name": "iochub alerts",
    "target": {
        "type": "tags",
        "tags": ["alert:firing", "alert:resolved"],
        "matchAny": True,
        "limit": 200,
    },
}


def dashboard(
    uid: str,
    title: str,
    description: str,
    grid: Grid,
    variables: list[JSON],
    *,
    time_from: str = "now-6h",
    alert_annotations: bool = False,
) -> JSON:
    annotations = [BUILT_IN_ANNOTATIONS] + ([ALERT_ANNOTATIONS] if alert_annotations else [])
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["iochub"],
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "monday",
        "timezone": LOCAL_ZONE,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "annotations": {"list": annotations},
        "links": [
            {
                "type": "dashboards",
                "title": "IOC dashboards",
                "tags": ["iochub"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": grid.panels,
    }


# ---------------------------------------------------------------------------------------
# Sensors


def aqi_sql(final_select: str) -> str:
    """The ward's hourly VN_AQI as the hub computes it (hub.telemetry.queries.ward_aqi).

    As of the end of the time range: per sensor, hourly means of the 12 clock hours up
    to that moment; PM2.5 and PM10 rated by their NowCast (needing 2 of the 3 latest
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
  SELECT w.name AS ward, d.uid AS station, r.metric,
         (extract(epoch FROM a.hour - date_trunc('hour', r.time, 'UTC')) / 3600)::int AS age,
         avg(r.value) AS mean
  FROM reading r
  JOIN device d ON d.id = r.device_id
  JOIN ward w ON w.id = d.ward_id
  CROSS JOIN anchor a
  WHERE {WARD_FILTER} AND d.kind = 'sensor'
    AND r.metric IN ({sql_list(aqi.POLLUTANTS)})
    AND r.time >= a.hour - interval '{aqi.NOWCAST_HOURS - 1} hours'
    AND r.time <= $__timeTo()
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


def aqi_category_sql(column: str) -> str:
    cases = "\n".join(
        f"    WHEN {column} <= {category.highest} THEN '{category.label_vi} ({category.label_en})'"
        for category in aqi.AqiCategory
    )
    return f"CASE\n{cases}\n  END"


def pollutant_label_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{key}' THEN '{label}'" for key, label in POLLUTANT_LABELS.items())
    return f"CASE {column} {cases} ELSE {column} END"


def units_sql() -> str:
    rows = ", ".join(f"('{metric.name}', '{metric.unit}')" for metric in METRICS.values())
    return f"(VALUES {rows}) AS u (metric, unit)"


def ward_average_sql(metric: str) -> str:
    return f"""
SELECT {bucket("r.time")} AS "time",
       w.name AS metric,
       avg(r.value) AS value
FROM reading r
JOIN device d ON d.id = r.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(r.time) AND r.metric = '{metric}' AND {WARD_FILTER}
GROUP BY 1, 2
ORDER BY 1, 2
"""


def sensors_dashboard() -> JSON:
    grid = Grid()
    aqi_thresholds = [
        {"color": category.colour, "value": None if category.lowest == 0 else category.lowest}
        for category in aqi.AqiCategory
    ]
    grid.row("Air quality")
    grid.add(
        stat(
            "Hourly VN_AQI by ward",
            "The hourly Vietnamese air-quality index (Decision 1459/QĐ-TCMT) of each ward "
            "as of the end of the time range: its worst station's. Colours are the bands "
            "of Table 1. Wards without a rated station (no PM2.5 or PM10 in 2 of the last "
            "3 hours) are not shown.",
            aqi_sql("SELECT ward, aqi FROM ward_aqi ORDER BY ward"),
            thresholds=aqi_thresholds,
            per_row=True,
            fields="/^aqi$/",
        ),
        14,
        6,
    )
    grid.add(
        table(
            "VN_AQI detail",
            "The hourly VN_AQI per ward with its band (Table 1), the pollutant behind it "
            "and the station that sets it.",
            aqi_sql(
                f"""
SELECT ward AS "Ward", aqi AS "VN_AQI", {aqi_category_sql("aqi")} AS "Band",
       {pollutant_label_sql("dominant")} AS "Dominant pollutant", station AS "Station"
FROM ward_aqi
ORDER BY aqi DESC, ward
"""
            ),
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "VN_AQI"},
                    "properties": [
                        {
                            "id": "thresholds",
                            "value": {"mode": "absolute", "steps": aqi_thresholds},
                        },
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    ],
                }
            ],
        ),
        10,
        6,
    )
    for metric, title in (("pm2_5", "PM2.5"), ("pm10", "PM10")):
        grid.add(
            timeseries(
                f"{title} (ward average)",
                f"Mean of every {title} reading of the ward's sensors per interval.",
                ward_average_sql(metric),
                GRAFANA_UNITS[metric],
            ),
            12,
            8,
        )
    grid.add(
        timeseries(
            "PM2.5 and PM10 daily mean, last 30 days (TimescaleDB)",
            "Daily (Vietnamese day) means per ward from the reading_1h continuous "
            "aggregate. Needs TimescaleDB: on plain PostgreSQL this panel reports that "
            "reading_1h does not exist.",
            f"""
SELECT date_bin('1 day', h.bucket, {ORIGIN}) AS "time",
       w.name || ' · ' || {pollutant_label_sql("h.metric")} AS metric,
       sum(h.avg * h.count) / sum(h.count) AS value
FROM reading_1h h
JOIN device d ON d.id = h.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(h.bucket) AND h.metric IN ('pm2_5', 'pm10') AND {WARD_FILTER}
GROUP BY 1, 2
ORDER BY 1, 2
""",
            GRAFANA_UNITS["pm2_5"],
        )
        | {"timeFrom": "30d", "hideTimeOverride": False},
        24,
        8,
    )
    grid.row("Weather, noise and water")
    for metric, title, description in (
        ("temperature", "Temperature (ward average)", "Mean air temperature per interval."),
        ("humidity", "Humidity (ward average)", "Mean relative humidity per interval."),
        ("noise", "Noise (ward average)", "Mean A-weighted sound level per interval."),
    ):
        grid.add(
            timeseries(title, description, ward_average_sql(metric), GRAFANA_UNITS[metric]),
            8,
            8,
        )
    grid.add(
        timeseries(
            "Rainfall (ward average of gauge totals)",
            "Rain fallen per interval: each gauge's total, averaged over the ward's gauges.",
            f"""
SELECT "time", metric, avg(total) AS value
FROM (
  SELECT {bucket("r.time")} AS "time", w.name AS metric, r.device_id, sum(r.value) AS total
  FROM reading r
  JOIN device d ON d.id = r.device_id
  JOIN ward w ON w.id = d.ward_id
  WHERE $__timeFilter(r.time) AND r.metric = 'rainfall' AND {WARD_FILTER}
  GROUP BY 1, 2, 3
) AS gauge
GROUP BY 1, 2
ORDER BY 1, 2
""",
            GRAFANA_UNITS["rainfall"],
            bars=True,
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Water level (per station)",
            "Mean water level per interval and station. Stations measure above their own "
            "datum, so levels are not averaged across a ward.",
            f"""
SELECT {bucket("r.time")} AS "time",
       w.name || ' · ' || coalesce(nullif(d.name, ''), d.uid) AS metric,
       avg(r.value) AS value
FROM reading r
JOIN device d ON d.id = r.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(r.time) AND r.metric = 'water_level' AND {WARD_FILTER}
GROUP BY 1, 2
ORDER BY 1, 2
""",
            GRAFANA_UNITS["water_level"],
        ),
        12,
        8,
    )
    grid.row("Latest and today")
    grid.add(
        table(
            "Latest values",
            "Per ward and metric, the latest value of each active sensor that reported "
            "in the hour before the end of the time range (as the hub's ward summary).",
            f"""
SELECT w.name AS "Ward", l.metric AS "Metric", u.unit AS "Unit",
       avg(l.value) AS "Average", min(l.value) AS "Lowest", max(l.value) AS "Highest",
       count(*) AS "Sensors", max(l.time) AS "Newest reading"
FROM reading_latest l
JOIN device d ON d.id = l.device_id
JOIN ward w ON w.id = d.ward_id
LEFT JOIN {units_sql()} ON u.metric = l.metric
WHERE {WARD_FILTER} AND l.metric = ANY(ARRAY[$metric]::text[])
  AND d.kind = 'sensor' AND d.lifecycle = 'active'
  AND l.time > $__timeTo()::timestamptz - interval '1 hour' AND l.time <= $__timeTo()
GROUP BY w.name, l.metric, u.unit
ORDER BY 1, 2
""",
            overrides=[unit_override("Newest reading", "dateTimeAsLocal")],
        ),
        12,
        10,
    )
    grid.add(
        table(
            "Today's minimum and maximum",
            "Per ward and metric, from local midnight (Asia/Ho_Chi_Minh) of the day the "
            "time range ends in, up to its end; active sensors only.",
            f"""
SELECT w.name AS "Ward", r.metric AS "Metric", u.unit AS "Unit",
       min(r.value) AS "Minimum", max(r.value) AS "Maximum", avg(r.value) AS "Average",
       count(*) AS "Readings"
FROM reading r
JOIN device d ON d.id = r.device_id
JOIN ward w ON w.id = d.ward_id
LEFT JOIN {units_sql()} ON u.metric = r.metric
WHERE {WARD_FILTER} AND r.metric = ANY(ARRAY[$metric]::text[])
  AND d.kind = 'sensor' AND d.lifecycle = 'active'
  AND r.time >= date_trunc('day', $__timeTo()::timestamptz, '{LOCAL_ZONE}')
  AND r.time <= $__timeTo()
GROUP BY w.name, r.metric, u.unit
ORDER BY 1, 2
""",
        ),
        12,
        10,
    )
    return dashboard(
        "iochub-sensors",
        "IOC · Sensors by ward",
        "Environmental sensors per ward: hourly VN_AQI, particulates, weather, noise, "
        "water; latest values and today's extremes.",
        grid,
        [
            WARD_VARIABLE,
            query_variable(
                "metric", "Metric", "SELECT DISTINCT metric FROM reading_latest ORDER BY metric"
            ),
        ],
        alert_annotations=True,
    )


# ---------------------------------------------------------------------------------------
# Device health

DEVICE_FROM = f"""
FROM device d
JOIN ward w ON w.id = d.ward_id
WHERE d.lifecycle = 'active' AND {WARD_FILTER} AND d.kind = ANY(ARRAY[$kind]::text[])
"""


def device_health_dashboard() -> JSON:
    grid = Grid()
    grid.add(
        stat(
            "Devices by status",
            "Active devices of the selected wards and kinds, by health status.",
            f"SELECT {counts_by('d.status', DEVICE_STATUSES)}\n{DEVICE_FROM.strip()}",
            overrides=fixed_colour_overrides(STATUS_COLOURS, title_case=True),
        ),
        16,
        5,
    )
    grid.add(
        stat(
            "Pending approval",
            "Devices that announced themselves and wait for a technician (all wards).",
            "SELECT count(*) AS \"Pending\" FROM device WHERE lifecycle = 'pending'",
            thresholds=[{"color": "text", "value": None}, {"color": "orange", "value": 1}],
        ),
        4,
        5,
    )
    grid.add(
        stat(
            "Active devices without a ward",
            "Active devices of the selected kinds assigned to no ward: they appear on no "
            "other panel of this dashboard.",
            'SELECT count(*) AS "Without ward" FROM device '
            "WHERE lifecycle = 'active' AND ward_id IS NULL "
            "AND kind = ANY(ARRAY[$kind]::text[])",
            thresholds=[{"color": "text", "value": None}, {"color": "orange", "value": 1}],
        ),
        4,
        5,
    )
    grid.add(
        table(
            "Status by ward and kind",
            "Active devices per ward and kind, by health status.",
            f"""
SELECT w.name AS "Ward", d.kind AS "Kind",
       {counts_by("d.status", DEVICE_STATUSES)},
       count(*) AS "Total"
{DEVICE_FROM.strip()}
GROUP BY w.name, d.kind
ORDER BY 1, 2
""",
        ),
        12,
        9,
    )
    grid.add(
        table(
            "Firmware versions by model",
            "How many active devices run each firmware version, per model.",
            f"""
SELECT d.kind AS "Kind", d.vendor AS "Vendor", d.model AS "Model",
       d.firmware_version AS "Firmware", count(*) AS "Devices",
       count(*) FILTER (WHERE d.status = 'online') AS "Online"
{DEVICE_FROM.strip()}
GROUP BY d.kind, d.vendor, d.model, d.firmware_version
ORDER BY 1, 2, 3, "Devices" DESC, 4
""",
        ),
        12,
        9,
    )
    grid.add(
        table(
            "Unhealthy devices",
            "Active devices that are offline, degraded, late or never seen, worst first, "
            "with the reason the hub recorded.",
            f"""
SELECT d.uid AS "Device", d.name AS "Name", d.kind AS "Kind", w.name AS "Ward",
       d.status AS "Status", d.status_reason AS "Reason",
       array_to_string(d.faults, ', ') AS "Faults",
       d.last_seen AS "Last seen", d.status_changed_at AS "Status since"
{DEVICE_FROM.strip()}
  AND d.status IN ({sql_list(UNHEALTHY_STATUSES)})
ORDER BY array_position(ARRAY[{sql_list(UNHEALTHY_STATUSES)}], d.status),
         d.last_seen NULLS FIRST, d.uid
""",
            overrides=[
                cell_colour_override("Status", STATUS_COLOURS),
                unit_override("Last seen", "dateTimeAsLocal"),
                unit_override("Status since", "dateTimeAsLocal"),
            ],
        ),
        24,
        9,
    )
    changes = timeseries(
        "Status changes",
        "Health transitions per interval, by the status devices changed to.",
        f"""
SELECT {bucket("he.at")} AS "time", 'to ' || he.to_status AS metric, count(*) AS value
FROM health_event he
JOIN device d ON d.id = he.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(he.at) AND {WARD_FILTER} AND d.kind = ANY(ARRAY[$kind]::text[])
GROUP BY 1, 2
ORDER BY 1, 2
""",
        "none",
        bars=True,
        stacked=True,
    )
    changes["fieldConfig"]["overrides"] = fixed_colour_overrides(
        {f"to {status}": colour for status, colour in STATUS_COLOURS.items()}
    )
    grid.add(changes, 12, 9)
    grid.add(
        table(
            "Recent status changes",
            "The latest health transitions in the time range.",
            f"""
SELECT he.at AS "Time", d.uid AS "Device", d.kind AS "Kind", w.name AS "Ward",
       he.from_status AS "From", he.to_status AS "To", he.reason AS "Reason"
FROM health_event he
JOIN device d ON d.id = he.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(he.at) AND {WARD_FILTER} AND d.kind = ANY(ARRAY[$kind]::text[])
ORDER BY he.at DESC, he.id DESC
LIMIT 200
""",
            overrides=[
                cell_colour_override("To", STATUS_COLOURS),
                unit_override("Time", "dateTimeAsLocal"),
            ],
        ),
        12,
        9,
    )
    geomap = panel(
        "geomap",
        "Device map",
        "Every active device with coordinates, coloured by health status.",
        [
            target(
                f"""
SELECT d.uid AS "Device", d.name AS "Name", d.kind AS "Kind", w.name AS "Ward",
       d.status AS "Status", d.status_reason AS "Reason", d.last_seen AS "Last seen",
       d.latitude AS latitude, d.longitude AS longitude
{DEVICE_FROM.strip()}
  AND d.latitude IS NOT NULL
ORDER BY d.uid
"""
            )
        ],
    )
    geomap["fieldConfig"] = {
        "defaults": {"color": {"mode": "thresholds"}},
        "overrides": [
            {
                "matcher": {"id": "byName", "options": "Status"},
                "properties": [{"id": "mappings", "value": value_colours(STATUS_COLOURS)}],
            }
        ],
    }
    geomap["options"] = {
        # Ngô Quyền district, Hải Phòng.
        "view": {"id": "coords", "lat": 20.857, "lon": 106.699, "zoom": 14, "allLayers": True},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap", "config": {}},
        "layers": [
            {
                "type": "markers",
                "name": "Devices",
                "config": {
                    "showLegend": True,
                    "style": {
                        "color": {"field": "Status", "fixed": "#8e8e8e"},
                        "opacity": 0.9,
                        "size": {"fixed": 7},
                        "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                    },
                },
                "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                "tooltip": True,
            }
        ],
        "tooltip": {"mode": "details"},
    }
    grid.add(geomap, 24, 14)
    return dashboard(
        "iochub-device-health",
        "IOC · Device health",
        "Health of cameras, loudspeakers and sensors per ward: status counts, unhealthy "
        "devices, status changes, firmware and a map.",
        grid,
        [WARD_VARIABLE, custom_variable("kind", "Kind", DEVICE_KINDS)],
    )


# ---------------------------------------------------------------------------------------
# Alerts

ALERT_FROM = f"""
FROM alert a
JOIN ward w ON w.id = a.ward_id
WHERE {WARD_FILTER} AND a.severity = ANY(ARRAY[$severity]::text[])
"""

# Alerts open at some moment of the time range, with their device.
OPEN_ALERT_FROM = f"""
FROM alert a
JOIN device d ON d.id = a.device_id
JOIN ward w ON w.id = a.ward_id
WHERE {WARD_FILTER} AND a.severity = ANY(ARRAY[$severity]::text[])
  AND a.started_at <= $__timeTo()
  AND (a.resolved_at IS NULL OR a.resolved_at >= $__timeFrom())
"""

ALERT_STATES = {1: ("Firing", "red"), 2: ("Acknowledged", "orange"), 3: ("Resolved", "green")}


def alerts_dashboard() -> JSON:
    grid = Grid()
    grid.add(
        stat(
            "Open alerts by severity",
            "Alerts firing or acknowledged now, in the selected wards.",
            f"SELECT {counts_by('a.severity', SEVERITIES)}\n{ALERT_FROM.strip()}\n"
            "  AND a.state <> 'resolved'",
            overrides=fixed_colour_overrides(SEVERITY_COLOURS, title_case=True),
        ),
        12,
        5,
    )
    grid.add(
        stat(
            "Mean time to acknowledge and resolve",
            "Over alerts that started in the time range: from start to acknowledgement "
            "(acknowledged alerts) and from start to resolution (resolved alerts).",
            f"""
SELECT avg(extract(epoch FROM a.acknowledged_at - a.started_at)) AS "Mean time to acknowledge",
       avg(extract(epoch FROM a.resolved_at - a.started_at)) AS "Mean time to resolve"
{ALERT_FROM.strip()}
  AND $__timeFilter(a.started_at)
""",
            unit="s",
        ),
        12,
        5,
    )
    by_ward = panel(
        "barchart",
        "Open alerts by ward",
        "Alerts firing or acknowledged now, per ward and severity.",
        [
            target(
                f"""
SELECT w.name AS "Ward",
       {counts_by("a.severity", SEVERITIES)}
FROM ward w
LEFT JOIN alert a ON a.ward_id = w.id AND a.state <> 'resolved'
                 AND a.severity = ANY(ARRAY[$severity]::text[])
WHERE {WARD_FILTER}
GROUP BY w.name
ORDER BY w.name
"""
            )
        ],
    )
    by_ward["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "palette-classic"},
            "custom": {"fillOpacity": 80, "lineWidth": 1, "gradientMode": "none"},
            "decimals": 0,
        },
        "overrides": fixed_colour_overrides(SEVERITY_COLOURS, title_case=True),
    }
    by_ward["options"] = {
        "xField": "Ward",
        "orientation": "horizontal",
        "stacking": "normal",
        "showValue": "auto",
        "barWidth": 0.8,
        "groupWidth": 0.7,
        "xTickLabelRotation": 0,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    grid.add(by_ward, 12, 9)
    grid.add(
        table(
            "Response times by severity",
            "Alerts that started in the time range, with how many were acknowledged and "
            "resolved and their mean response times.",
            f"""
SELECT a.severity AS "Severity", count(*) AS "Alerts",
       count(a.acknowledged_at) AS "Acknowledged",
       avg(extract(epoch FROM a.acknowledged_at - a.started_at)) AS "Mean time to acknowledge",
       count(a.resolved_at) AS "Resolved",
       avg(extract(epoch FROM a.resolved_at - a.started_at)) AS "Mean time to resolve"
{ALERT_FROM.strip()}
  AND $__timeFilter(a.started_at)
GROUP BY a.severity
ORDER BY array_position(ARRAY[{sql_list(SEVERITIES)}], a.severity)
""",
            overrides=[
                cell_colour_override("Severity", SEVERITY_COLOURS),
                unit_override("Mean time to acknowledge", "s"),
                unit_override("Mean time to resolve", "s"),
            ],
        ),
        12,
        9,
    )
    timeline = panel(
        "state-timeline",
        "Alert timeline",
        "Each alert open during the time range: firing from its start, acknowledged, resolved.",
        [
            target(
                f"""
WITH shown AS (
  SELECT a.id, a.started_at, a.acknowledged_at, a.resolved_at,
         a.rule_name || ' · ' || d.uid || ' #' || a.id AS label
{indent(OPEN_ALERT_FROM.strip(), "  ")}
  ORDER BY a.started_at DESC
  LIMIT 50
)
SELECT started_at AS "time", label AS metric, 1 AS value FROM shown
UNION ALL
SELECT acknowledged_at, label, 2 FROM shown WHERE acknowledged_at IS NOT NULL
UNION ALL
SELECT resolved_at, label, 3 FROM shown WHERE resolved_at IS NOT NULL
ORDER BY 1, 2
""",
                "time_series",
            )
        ],
    )
    timeline["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "thresholds"},
            "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
            "custom": {"fillOpacity": 80, "lineWidth": 0, "spanNulls": True},
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        str(code): {"text": text, "color": colour, "index": code - 1}
                        for code, (text, colour) in ALERT_STATES.items()
                    },
                }
            ],
        },
        "overrides": [],
    }
    timeline["options"] = {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.8,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    grid.add(timeline, 24, 10)
    grid.add(
        timeseries(
            "Alerts started and resolved",
            "How many alerts started and how many were resolved per interval.",
            f"""
SELECT {bucket("a.started_at")} AS "time", 'started' AS metric, count(*) AS value
{ALERT_FROM.strip()}
  AND $__timeFilter(a.started_at)
GROUP BY 1
UNION ALL
SELECT {bucket("a.resolved_at")}, 'resolved', count(*)
{ALERT_FROM.strip()}
  AND $__timeFilter(a.resolved_at)
GROUP BY 1
ORDER BY 1, 2
""",
            "none",
            bars=True,
        ),
        12,
        8,
    )
    grid.add(
        table(
            "Top noisy devices",
            "The ten devices that raised the most alerts in the time range.",
            f"""
SELECT d.uid AS "Device", d.name AS "Name", d.kind AS "Kind", w.name AS "Ward",
       count(*) AS "Alerts",
       count(*) FILTER (WHERE a.severity = 'critical') AS "Critical",
       count(DISTINCT a.rule_name) AS "Rules",
       max(a.started_at) AS "Last started"
FROM alert a
JOIN device d ON d.id = a.device_id
JOIN ward w ON w.id = a.ward_id
WHERE {WARD_FILTER} AND a.severity = ANY(ARRAY[$severity]::text[])
  AND $__timeFilter(a.started_at)
GROUP BY d.uid, d.name, d.kind, w.name
ORDER BY "Alerts" DESC, d.uid
LIMIT 10
""",
            overrides=[unit_override("Last started", "dateTimeAsLocal")],
        ),
        12,
        8,
    )
    grid.add(
        table(
            "Alerts in the time range",
            "Every alert open at some moment of the time range, newest first.",
            f"""
SELECT a.started_at AS "Started", a.severity AS "Severity", a.state AS "State",
       w.name AS "Ward", d.uid AS "Device", a.rule_name AS "Rule", a.message AS "Message",
       a.acknowledged_at AS "Acknowledged", a.acknowledged_by AS "Acknowledged by",
       a.resolved_at AS "Resolved",
       extract(epoch FROM coalesce(a.resolved_at, $__timeTo()::timestamptz) - a.started_at)
         AS "Open for"
{OPEN_ALERT_FROM.strip()}
ORDER BY a.started_at DESC, a.id DESC
LIMIT 500
""",
            overrides=[
                cell_colour_override("Severity", SEVERITY_COLOURS),
                unit_override("Open for", "s"),
                unit_override("Started", "dateTimeAsLocal"),
                unit_override("Acknowledged", "dateTimeAsLocal"),
                unit_override("Resolved", "dateTimeAsLocal"),
            ],
        ),
        24,
        10,
    )
    grid.row("Quarantine (all wards)")
    # The same short label as the hub's iochub_payloads_quarantined_total counter
    # (hub.telemetry.ingest.reason_label): the reason's first words.
    reason = (
        "coalesce(nullif(left(array_to_string((regexp_split_to_array(regexp_replace("
        "lower(split_part(split_part(q.reason, ':', 1), '(', 1)), '^\\s+|\\s+$', '', 'g'), "
        "'\\s+'))[1:4], ' '), 40), ''), 'unknown')"
    )
    grid.add(
        timeseries(
            "Quarantined payloads by reason",
            "Payloads the hub could not store, per interval and reason (the reason's "
            "first words). Not filtered by ward: many come from unknown devices.",
            f"""
SELECT {bucket("q.received_at")} AS "time", {reason} AS metric, count(*) AS value
FROM quarantine q
WHERE $__timeFilter(q.received_at)
GROUP BY 1, 2
ORDER BY 1, 2
""",
            "none",
            bars=True,
            stacked=True,
        ),
        14,
        8,
    )
    grid.add(
        table(
            "Quarantined payloads by source",
            "Per source and reason in the time range: how many, from how many devices, "
            "and when the last one arrived.",
            f"""
SELECT q.source AS "Source", {reason} AS "Reason", count(*) AS "Payloads",
       count(DISTINCT q.device_uid) AS "Devices", max(q.received_at) AS "Last received"
FROM quarantine q
WHERE $__timeFilter(q.received_at)
GROUP BY 1, 2
ORDER BY "Payloads" DESC, 1, 2
""",
            overrides=[unit_override("Last received", "dateTimeAsLocal")],
        ),
        10,
        8,
    )
    return dashboard(
        "iochub-alerts",
        "IOC · Alerts",
        "Open alerts by severity and ward, their timeline and response times, the "
        "noisiest devices and the quarantine of unreadable payloads.",
        grid,
        [WARD_VARIABLE, custom_variable("severity", "Severity", SEVERITIES)],
        time_from="now-24h",
        alert_annotations=True,
    )


def dashboards() -> dict[str, JSON]:
    """Each dashboard's JSON model, by file name."""
    return {
        "iochub-sensors.json": sensors_dashboard(),
        "iochub-device-health.json": device_health_dashboard(),
        "iochub-alerts.json": alerts_dashboard(),
    }


def render(model: JSON) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path = HERE) -> list[Path]:
    """The dashboard files whose content differs from what this module builds."""
    return [
        directory / name
        for name, model in dashboards().items()
        if not (directory / name).is_file()
        or (directory / name).read_text("utf-8") != render(model)
    ]


def write(directory: Path = HERE) -> list[Path]:
    written = []
    for name, model in dashboards().items():
        path = directory / name
        path.write_text(render(model), "utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="fail if the checked-in JSON is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
