"""Sensors by ward: VN_AQI (Decision 1459/QĐ-TCMT), particulates, weather, noise, water."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.builders.dashboard import FieldColor
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import geomap as geomap_model
from grafana_foundation_sdk.models.dashboard import FieldColorModeId

from dashboards.kit import (
    DATASOURCE,
    LOCAL_ZONE,
    Board,
    Columns,
    Sql,
    current_language,
    prop,
    query_variable,
    stat,
    t,
    table,
    thresholds,
    timeseries,
)
from dashboards.queries import (
    ORIGIN,
    STATION_FILTER,
    WARD_FILTER,
    aqi_category_sql,
    aqi_sql,
    pollutant_label_sql,
    samples,
    units_sql,
)
from hub.telemetry import aqi

UID = "iochub-sensors"
GRAFANA_UNITS = {
    "pm2_5": "conμgm3",
    "pm10": "conμgm3",
    "temperature": "celsius",
    "humidity": "humidity",
    "noise": "suffix: dB(A)",
    "water_level": "suffix: cm",
    "rainfall": "lengthmm",
}
# The selected stations of the selected wards. The wards' ids are looked up once (an
# InitPlan) and tested on the device rows, so each sample row meets one hash join, to the
# devices; the series join ward names to their grouped rows (one per ward and bucket).
SENSOR_FILTER = (
    f"d.ward_id = ANY(ARRAY(SELECT w.id FROM ward w WHERE {WARD_FILTER})) AND {STATION_FILTER}"
)
SENSOR_FROM = f"""JOIN device d ON d.id = s.device_id
WHERE {SENSOR_FILTER}"""
# Ngô Quyền district, Hải Phòng.
MAP_CENTRE = (20.857, 106.699)


def aqi_steps() -> list[tuple[float | None, str]]:
    """The decision's colours (Table 1), from the lowest index of each band."""
    return [
        (None if category.lowest == 0 else float(category.lowest), category.colour)
        for category in aqi.AqiCategory
    ]


def ward_average_sql(metric: str) -> str:
    """Grouped by ward id (an integer key), the name joined to the groups."""
    return f"""
SELECT a."time", w.name AS metric, a.total / a.n AS value
FROM (
  SELECT s."time", d.ward_id, sum(s.total) AS total, sum(s.n) AS n
  FROM {samples([metric])}
  {SENSOR_FROM}
  GROUP BY 1, 2
) AS a
JOIN ward w ON w.id = a.ward_id
ORDER BY 1, 2
"""


def today_sql(*, raw: bool = False) -> str:
    """Every reading from local midnight of the day the range ends in up to its end, as
    per-device min, max, total and n: whole hours from the hourly rollup, the hour under
    way from raw readings (one raw range, so plain PostgreSQL scans its table once).
    Minima, maxima, sums and counts add up exactly, and half a day is a few thousand
    rollup rows instead of every reading since midnight. ``raw``: all of it from raw
    readings (the benchmark's comparison)."""
    end = "$__timeTo()::timestamptz"
    midnight = f"date_trunc('day', {end}, '{LOCAL_ZONE}')"
    hour = f"greatest(date_trunc('hour', {end}, 'UTC'), {midnight})"
    raw_from = midnight if raw else hour
    raw_rows = f"""
  SELECT r.device_id, r.metric, r.value AS min, r.value AS max, r.value AS total, 1 AS n
  FROM reading r
  WHERE r.time >= {raw_from} AND r.time <= $__timeTo()
"""
    if raw:
        return raw_rows
    return f"""
  SELECT h.device_id, h.metric, h.min, h.max, h.avg * h.count AS total, h.count AS n
  FROM reading_per_hour({midnight}, {hour} - interval '1 hour') h
  UNION ALL{raw_rows}"""


def band_sql(column: str) -> str:
    return aqi_category_sql(column, english=current_language() == "en")


def station_map() -> geomap.Panel:
    lat, lon = MAP_CENTRE
    return (
        geomap.Panel()
        .title(t("Bản đồ trạm theo VN_AQI", "Stations by current VN_AQI"))
        .description(
            t(
                "Mỗi trạm quan trắc có tọa độ, tô màu theo VN_AQI giờ hiện tại của trạm "
                "(màu của Bảng 1, Quyết định 1459/QĐ-TCMT).",
                "Every monitoring station with coordinates, coloured by its current hourly "
                "VN_AQI (the colours of Table 1, Decision 1459/QĐ-TCMT).",
            )
        )
        .datasource(DATASOURCE)
        .with_target(
            Sql(
                aqi_sql(
                    f"""
SELECT s.station AS "Station", s.ward AS "Ward", s.aqi AS "VN_AQI",
       {band_sql("s.aqi")} AS "Band", {pollutant_label_sql("s.dominant")} AS "Dominant pollutant",
       d.latitude AS latitude, d.longitude AS longitude
FROM station s
JOIN device d ON d.uid = s.station
WHERE d.latitude IS NOT NULL
ORDER BY s.station
"""
                )
            )
        )
        .span(24)
        .height(12)
        .thresholds(thresholds(aqi_steps()))
        .color_scheme(FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .view(
            geomap.MapViewConfig()
            .id("coords")
            .lat(lat)  # type: ignore[arg-type]  # the SDK types degrees as int
            .lon(lon)  # type: ignore[arg-type]
            .zoom(14)
            .all_layers(True)
        )
        .controls(
            geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_attribution(True)
        )
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap").config({}))
        .layers(
            [
                common_builders.MapLayerOptions()
                .type("markers")
                .name(t("Trạm", "Stations"))
                .config(
                    {
                        "showLegend": True,
                        "style": {
                            "color": {"field": "VN_AQI", "fixed": "#8e8e8e"},
                            "opacity": 0.9,
                            "size": {"fixed": 9},
                            "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                            "text": {"field": "VN_AQI", "mode": "field"},
                        },
                    }
                )
                .location(
                    common_builders.FrameGeometrySource()
                    .mode(common.FrameGeometrySourceMode.COORDS)
                    .latitude("latitude")
                    .longitude("longitude")
                )
                .tooltip(True)
            ]
        )
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
    )


def dashboard() -> Board:
    board = Board(
        UID,
        t("IOC · Cảm biến theo phường", "IOC · Sensors by ward"),
        t(
            "Cảm biến môi trường theo phường: VN_AQI giờ, bụi mịn, thời tiết, tiếng ồn, "
            "mực nước, lượng mưa; giá trị mới nhất và cực trị trong ngày.",
            "Environmental sensors per ward: hourly VN_AQI, particulates, weather, noise, "
            "water level, rainfall; latest values and today's extremes.",
        ),
    )
    board.variable(
        query_variable(
            "ward",
            t("Phường", "Ward"),
            "SELECT code AS __value, name AS __text FROM ward ORDER BY name",
        )
    )
    board.variable(
        query_variable(
            "station",
            t("Trạm", "Station"),
            f"""SELECT d.uid AS __value, coalesce(nullif(d.name, ''), d.uid) AS __text
FROM device d JOIN ward w ON w.id = d.ward_id
WHERE d.kind = 'sensor' AND d.lifecycle = 'active' AND {WARD_FILTER}
ORDER BY 2, 1""",
        )
    )
    board.variable(
        query_variable(
            "metric",
            t("Chỉ số", "Metric"),
            f"""SELECT DISTINCT l.metric FROM reading_latest l
JOIN device d ON d.id = l.device_id
WHERE {STATION_FILTER}
ORDER BY 1""",
        )
    )
    board.row(t("Chất lượng không khí", "Air quality"))
    board.add(
        stat(
            t("VN_AQI giờ theo phường", "Hourly VN_AQI by ward"),
            t(
                "Chỉ số chất lượng không khí Việt Nam theo giờ (Quyết định 1459/QĐ-TCMT) của "
                "mỗi phường tại cuối khoảng thời gian: của trạm kém nhất. Màu theo Bảng 1. "
                "Phường không có trạm đủ số liệu (PM2.5 hoặc PM10 trong 2 của 3 giờ gần nhất) "
                "không hiển thị.",
                "The hourly Vietnamese air-quality index (Decision 1459/QĐ-TCMT) of each ward "
                "as of the end of the time range: its worst station's. Colours are the bands "
                "of Table 1. Wards without a rated station (no PM2.5 or PM10 in 2 of the last "
                "3 hours) are not shown.",
            ),
            aqi_sql("SELECT ward, aqi FROM ward_aqi ORDER BY ward"),
            width=14,
            height=6,
            steps=aqi_steps(),
            per_row=True,
            fields="/^aqi$/",
        ),
        table(
            t("Chi tiết VN_AQI", "VN_AQI detail"),
            t(
                "VN_AQI giờ theo phường với mức (Bảng 1), chất ô nhiễm chính và trạm quyết định.",
                "The hourly VN_AQI per ward with its band (Table 1), the pollutant behind it "
                "and the station that sets it.",
            ),
            aqi_sql(
                f"""
SELECT ward AS "Ward", aqi AS "VN_AQI", {band_sql("aqi")} AS "Band",
       {pollutant_label_sql("dominant")} AS "Dominant pollutant", station AS "Station"
FROM ward_aqi
ORDER BY aqi DESC, ward
"""
            ),
            width=10,
            height=6,
            columns=Columns(
                Ward=("Phường", "Ward"),
                Band=("Mức", "Band"),
                **{"Dominant pollutant": ("Chất ô nhiễm chính", "Dominant pollutant")},
                Station=("Trạm", "Station"),
            ),
        ).override_by_name(
            "VN_AQI",
            [
                prop("thresholds", thresholds(aqi_steps()).build()),
                prop("custom.cellOptions", {"type": "color-background"}),
            ],
        ),
    )
    board.add(station_map())
    for metric, label in (("pm2_5", "PM2.5"), ("pm10", "PM10")):
        board.add(
            timeseries(
                t(f"{label} (trung bình phường)", f"{label} (ward average)"),
                t(
                    f"Trung bình mọi số đo {label} của các trạm trong phường theo từng khoảng.",
                    f"Mean of every {label} reading of the ward's sensors per interval.",
                ),
                ward_average_sql(metric),
                GRAFANA_UNITS[metric],
                width=12,
            )
        )
    board.add(
        timeseries(
            t(
                "PM2.5 và PM10 trung bình ngày, 30 ngày qua",
                "PM2.5 and PM10 daily mean, last 30 days",
            ),
            t(
                "Trung bình theo ngày (ngày Việt Nam) của mỗi phường, từ bản tổng hợp theo giờ.",
                "Daily (Vietnamese day) means per ward, from the hourly rollup.",
            ),
            # Each station's day first (24 hourly rows become one before the joins), the
            # label once per ward and day rather than on every hourly row.
            f"""
SELECT daily."time", daily.ward || ' · ' || {pollutant_label_sql("daily.metric")} AS metric,
       daily.value
FROM (
  SELECT p."time", w.name AS ward, p.metric, sum(p.total) / sum(p.n) AS value
  FROM (
    SELECT date_bin('1 day', h.bucket, {ORIGIN}) AS "time", h.device_id, h.metric,
           sum(h.avg * h.count) AS total, sum(h.count) AS n
    FROM reading_per_hour($__timeFrom(), $__timeTo()) h
    WHERE h.metric IN ('pm2_5', 'pm10')
    GROUP BY 1, 2, 3
  ) AS p
  JOIN device d ON d.id = p.device_id
  JOIN ward w ON w.id = d.ward_id
  WHERE {WARD_FILTER} AND {STATION_FILTER}
  GROUP BY 1, 2, 3
) AS daily
ORDER BY 1, 2
""",
            GRAFANA_UNITS["pm2_5"],
            width=24,
        )
        .time_from("30d")
        .hide_time_override(False)
    )
    board.row(t("Thời tiết, tiếng ồn và nước", "Weather, noise and water"))
    for metric, title, description in (
        (
            "temperature",
            t("Nhiệt độ (trung bình phường)", "Temperature (ward average)"),
            t("Nhiệt độ không khí trung bình theo khoảng.", "Mean air temperature per interval."),
        ),
        (
            "humidity",
            t("Độ ẩm (trung bình phường)", "Humidity (ward average)"),
            t("Độ ẩm tương đối trung bình theo khoảng.", "Mean relative humidity per interval."),
        ),
        (
            "noise",
            t("Tiếng ồn (trung bình phường)", "Noise (ward average)"),
            t(
                "Mức âm trọng số A trung bình theo khoảng.",
                "Mean A-weighted sound level per interval.",
            ),
        ),
    ):
        board.add(
            timeseries(title, description, ward_average_sql(metric), GRAFANA_UNITS[metric], width=8)
        )
    board.add(
        timeseries(
            t(
                "Lượng mưa (trung bình các trạm đo của phường)",
                "Rainfall (ward average of gauge totals)",
            ),
            t(
                "Lượng mưa theo khoảng: tổng của mỗi trạm đo, lấy trung bình trên các trạm của phường.",
                "Rain fallen per interval: each gauge's total, averaged over the ward's gauges.",
            ),
            f"""
SELECT r."time", w.name AS metric, r.value
FROM (
  SELECT "time", ward_id, avg(total) AS value
  FROM (
    SELECT s."time", d.ward_id, s.device_id, sum(s.total) AS total
    FROM {samples(["rainfall"])}
    {SENSOR_FROM}
    GROUP BY 1, 2, 3
  ) AS gauge
  GROUP BY 1, 2
) AS r
JOIN ward w ON w.id = r.ward_id
ORDER BY 1, 2
""",
            GRAFANA_UNITS["rainfall"],
            width=12,
            bars=True,
        ),
        timeseries(
            t("Mực nước (theo trạm)", "Water level (per station)"),
            t(
                "Mực nước trung bình theo khoảng và trạm. Mỗi trạm đo so với mốc riêng nên "
                "không lấy trung bình theo phường.",
                "Mean water level per interval and station. Stations measure above their own "
                "datum, so levels are not averaged across a ward.",
            ),
            f"""
SELECT s."time", w.name || ' · ' || coalesce(nullif(d.name, ''), d.uid) AS metric,
       sum(s.total) / sum(s.n) AS value
FROM {samples(["water_level"])}
JOIN device d ON d.id = s.device_id
JOIN ward w ON w.id = d.ward_id
WHERE {SENSOR_FILTER}
GROUP BY 1, 2
ORDER BY 1, 2
""",
            GRAFANA_UNITS["water_level"],
            width=12,
        ),
    )
    board.row(t("Mới nhất và hôm nay", "Latest and today"))
    board.add(
        table(
            t("Giá trị mới nhất", "Latest values"),
            t(
                "Theo phường và chỉ số: giá trị mới nhất của mỗi cảm biến đang hoạt động đã "
                "báo trong giờ trước cuối khoảng thời gian.",
                "Per ward and metric, the latest value of each active sensor that reported "
                "in the hour before the end of the time range (as the hub's ward summary).",
            ),
            f"""
SELECT w.name AS "Ward", l.metric AS "Metric", u.unit AS "Unit",
       avg(l.value) AS "Average", min(l.value) AS "Lowest", max(l.value) AS "Highest",
       count(*) AS "Sensors", max(l.time) AS "Newest reading"
FROM reading_latest l
JOIN device d ON d.id = l.device_id
JOIN ward w ON w.id = d.ward_id
LEFT JOIN {units_sql()} ON u.metric = l.metric
WHERE {WARD_FILTER} AND {STATION_FILTER} AND l.metric = ANY(ARRAY[$metric]::text[])
  AND d.kind = 'sensor' AND d.lifecycle = 'active'
  AND l.time > $__timeTo()::timestamptz - interval '1 hour' AND l.time <= $__timeTo()
GROUP BY w.name, l.metric, u.unit
ORDER BY 1, 2
""",
            width=12,
            height=10,
            columns=Columns(
                Ward=("Phường", "Ward"),
                Metric=("Chỉ số", "Metric"),
                Unit=("Đơn vị", "Unit"),
                Average=("Trung bình", "Average"),
                Lowest=("Thấp nhất", "Lowest"),
                Highest=("Cao nhất", "Highest"),
                Sensors=("Cảm biến", "Sensors"),
                **{"Newest reading": ("Số đo mới nhất", "Newest reading")},
            ),
        ).override_by_name("Newest reading", [prop("unit", "dateTimeAsLocal")]),
        table(
            t("Thấp nhất và cao nhất hôm nay", "Today's minimum and maximum"),
            t(
                "Theo phường và chỉ số, từ nửa đêm (giờ Việt Nam) của ngày cuối khoảng thời "
                "gian đến cuối khoảng; chỉ cảm biến đang hoạt động.",
                "Per ward and metric, from local midnight (Asia/Ho_Chi_Minh) of the day the "
                "time range ends in, up to its end; active sensors only.",
            ),
            f"""
SELECT w.name AS "Ward", p.metric AS "Metric", u.unit AS "Unit",
       min(p.min) AS "Minimum", max(p.max) AS "Maximum", sum(p.total) / sum(p.n) AS "Average",
       sum(p.n)::bigint AS "Readings"
FROM ({today_sql()}) AS p
JOIN device d ON d.id = p.device_id
JOIN ward w ON w.id = d.ward_id
LEFT JOIN {units_sql()} ON u.metric = p.metric
WHERE {WARD_FILTER} AND {STATION_FILTER} AND p.metric = ANY(ARRAY[$metric]::text[])
  AND d.kind = 'sensor' AND d.lifecycle = 'active'
GROUP BY w.name, p.metric, u.unit
ORDER BY 1, 2
""",
            width=12,
            height=10,
            columns=Columns(
                Ward=("Phường", "Ward"),
                Metric=("Chỉ số", "Metric"),
                Unit=("Đơn vị", "Unit"),
                Minimum=("Thấp nhất", "Minimum"),
                Maximum=("Cao nhất", "Maximum"),
                Average=("Trung bình", "Average"),
                Readings=("Số đo", "Readings"),
            ),
        ),
    )
    return board
