"""Alerts: open by severity and ward, the timeline, mean time to acknowledge and resolve,
the noisiest devices, and the quarantine of unreadable payloads."""

from __future__ import annotations

from textwrap import indent

from grafana_foundation_sdk.builders import barchart, statetimeline
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders.dashboard import FieldColor
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import FieldColorModeId, ValueMap, ValueMappingResult

from dashboards.kit import (
    DATASOURCE,
    Board,
    Columns,
    Sql,
    coloured_cells,
    custom_variable,
    fixed_colour,
    local_time,
    prop,
    query_variable,
    stat,
    t,
    table,
    thresholds,
    timeseries,
)
from dashboards.queries import WARD_FILTER, bucket, counts_by, sql_list

UID = "iochub-alerts"
SEVERITIES = ("critical", "major", "minor", "warning")
SEVERITY_COLOURS = {"critical": "dark-red", "major": "orange", "minor": "yellow", "warning": "blue"}
ALERT_STATES = {1: ("Firing", "red"), 2: ("Acknowledged", "orange"), 3: ("Resolved", "green")}

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

# The same short label as the hub's iochub_payloads_quarantined_total counter
# (hub.telemetry.ingest.reason_label): the reason's first words.
QUARANTINE_REASON = (
    "coalesce(nullif(left(array_to_string((regexp_split_to_array(regexp_replace("
    "lower(split_part(split_part(q.reason, ':', 1), '(', 1)), '^\\s+|\\s+$', '', 'g'), "
    "'\\s+'))[1:4], ' '), 40), ''), 'unknown')"
)


def severity_texts() -> dict[str, str]:
    return {
        "critical": t("nghiêm trọng", "critical"),
        "major": t("cao", "major"),
        "minor": t("thấp", "minor"),
        "warning": t("cảnh giác", "warning"),
    }


def state_texts() -> dict[int, str]:
    return {
        1: t("Đang báo", "Firing"),
        2: t("Đã xác nhận", "Acknowledged"),
        3: t("Đã xử lý", "Resolved"),
    }


def coloured_by_severity(panel):  # type: ignore[no-untyped-def]
    for severity, colour in SEVERITY_COLOURS.items():
        panel = panel.override_by_name(
            severity.title(),
            [fixed_colour(colour), prop("displayName", severity_texts()[severity])],
        )
    return panel


def dashboard() -> Board:
    board = Board(
        UID,
        t("IOC · Cảnh báo", "IOC · Alerts"),
        t(
            "Cảnh báo đang mở theo mức độ và phường, dòng thời gian, thời gian xác nhận và xử "
            "lý, thiết bị báo nhiều nhất và các bản tin không đọc được.",
            "Open alerts by severity and ward, their timeline and response times, the "
            "noisiest devices and the quarantine of unreadable payloads.",
        ),
        time_from="now-24h",
    )
    board.variable(
        query_variable(
            "ward",
            t("Phường", "Ward"),
            "SELECT code AS __value, name AS __text FROM ward ORDER BY name",
        )
    )
    board.variable(
        custom_variable("severity", t("Mức độ", "Severity"), SEVERITIES, severity_texts())
    )
    board.add(
        coloured_by_severity(
            stat(
                t("Cảnh báo đang mở theo mức độ", "Open alerts by severity"),
                t(
                    "Cảnh báo đang báo hoặc đã xác nhận, ở các phường đã chọn.",
                    "Alerts firing or acknowledged now, in the selected wards.",
                ),
                f"SELECT {counts_by('a.severity', SEVERITIES)}\n{ALERT_FROM.strip()}\n"
                "  AND a.state <> 'resolved'",
                width=12,
            )
        ),
        stat(
            t("Thời gian trung bình để xác nhận và xử lý", "Mean time to acknowledge and resolve"),
            t(
                "Trên các cảnh báo bắt đầu trong khoảng thời gian: từ lúc bắt đầu đến khi xác "
                "nhận (MTTA) và đến khi xử lý xong (MTTR).",
                "Over alerts that started in the time range: from start to acknowledgement "
                "(MTTA, acknowledged alerts) and from start to resolution (MTTR).",
            ),
            f"""
SELECT avg(extract(epoch FROM a.acknowledged_at - a.started_at)) AS "Mean time to acknowledge",
       avg(extract(epoch FROM a.resolved_at - a.started_at)) AS "Mean time to resolve"
{ALERT_FROM.strip()}
  AND $__timeFilter(a.started_at)
""",
            width=12,
            unit="s",
        )
        .override_by_name(
            "Mean time to acknowledge", [prop("displayName", t("MTTA (xác nhận)", "MTTA"))]
        )
        .override_by_name("Mean time to resolve", [prop("displayName", t("MTTR (xử lý)", "MTTR"))]),
    )
    by_ward = (
        barchart.Panel()
        .title(t("Cảnh báo đang mở theo phường", "Open alerts by ward"))
        .description(
            t(
                "Cảnh báo đang báo hoặc đã xác nhận, theo phường và mức độ.",
                "Alerts firing or acknowledged now, per ward and severity.",
            )
        )
        .datasource(DATASOURCE)
        .with_target(
            Sql(
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
        )
        .span(12)
        .height(9)
        .color_scheme(FieldColor().mode(FieldColorModeId.PALETTE_CLASSIC))
        .decimals(0)
        .fill_opacity(80)
        .x_field("Ward")
        .orientation(common.VizOrientation.HORIZONTAL)
        .stacking(common.StackingMode.NORMAL)
        .show_value(common.VisibilityMode.AUTO)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    board.add(
        coloured_by_severity(by_ward),
        table(
            t("Thời gian phản hồi theo mức độ", "Response times by severity"),
            t(
                "Cảnh báo bắt đầu trong khoảng thời gian: số đã xác nhận, đã xử lý và thời "
                "gian trung bình.",
                "Alerts that started in the time range, with how many were acknowledged and "
                "resolved and their mean response times.",
            ),
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
            width=12,
            height=9,
            columns=Columns(
                Severity=("Mức độ", "Severity"),
                Alerts=("Cảnh báo", "Alerts"),
                Acknowledged=("Đã xác nhận", "Acknowledged"),
                Resolved=("Đã xử lý", "Resolved"),
                **{
                    "Mean time to acknowledge": ("MTTA", "Mean time to acknowledge"),
                    "Mean time to resolve": ("MTTR", "Mean time to resolve"),
                },
            ),
        )
        .override_by_name("Severity", coloured_cells(SEVERITY_COLOURS, severity_texts()))
        .override_by_name("Mean time to acknowledge", [prop("unit", "s")])
        .override_by_name("Mean time to resolve", [prop("unit", "s")]),
    )
    states = state_texts()
    board.add(
        statetimeline.Panel()
        .title(t("Dòng thời gian cảnh báo", "Alert timeline"))
        .description(
            t(
                "Mỗi cảnh báo mở trong khoảng thời gian: đang báo từ lúc bắt đầu, đã xác nhận, "
                "đã xử lý.",
                "Each alert open during the time range: firing from its start, acknowledged, "
                "resolved.",
            )
        )
        .datasource(DATASOURCE)
        .with_target(
            Sql(
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
        )
        .span(24)
        .height(10)
        .color_scheme(FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds([(None, "text")]))
        .fill_opacity(80)
        .line_width(0)
        .mappings(
            [
                ValueMap(
                    options={
                        str(code): ValueMappingResult(
                            text=states[code], color=colour, index=code - 1
                        )
                        for code, (_, colour) in ALERT_STATES.items()
                    }
                )
            ]
        )
        .merge_values(True)
        .show_value(common.VisibilityMode.NEVER)
        .row_height(0.8)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    board.add(
        timeseries(
            t("Cảnh báo bắt đầu và đã xử lý", "Alerts started and resolved"),
            t(
                "Số cảnh báo bắt đầu và số đã xử lý theo khoảng.",
                "How many alerts started and how many were resolved per interval.",
            ),
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
            width=12,
            bars=True,
        )
        .override_by_name("started", [prop("displayName", t("bắt đầu", "started"))])
        .override_by_name("resolved", [prop("displayName", t("đã xử lý", "resolved"))]),
        table(
            t("Thiết bị báo nhiều nhất", "Top noisy devices"),
            t(
                "Mười thiết bị gây nhiều cảnh báo nhất trong khoảng thời gian.",
                "The ten devices that raised the most alerts in the time range.",
            ),
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
            width=12,
            columns=Columns(
                Device=("Thiết bị", "Device"),
                Name=("Tên", "Name"),
                Kind=("Loại", "Kind"),
                Ward=("Phường", "Ward"),
                Alerts=("Cảnh báo", "Alerts"),
                Critical=("Nghiêm trọng", "Critical"),
                Rules=("Quy tắc", "Rules"),
                **{"Last started": ("Lần gần nhất", "Last started")},
            ),
        ).override_by_name("Last started", local_time()),
    )
    board.add(
        table(
            t("Cảnh báo trong khoảng thời gian", "Alerts in the time range"),
            t(
                "Mọi cảnh báo mở vào lúc nào đó trong khoảng thời gian, mới nhất trước.",
                "Every alert open at some moment of the time range, newest first.",
            ),
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
            width=24,
            height=10,
            columns=Columns(
                Started=("Bắt đầu", "Started"),
                Severity=("Mức độ", "Severity"),
                State=("Trạng thái", "State"),
                Ward=("Phường", "Ward"),
                Device=("Thiết bị", "Device"),
                Rule=("Quy tắc", "Rule"),
                Message=("Nội dung", "Message"),
                Acknowledged=("Xác nhận lúc", "Acknowledged"),
                Resolved=("Xử lý lúc", "Resolved"),
                **{
                    "Acknowledged by": ("Người xác nhận", "Acknowledged by"),
                    "Open for": ("Thời gian mở", "Open for"),
                },
            ),
        )
        .override_by_name("Severity", coloured_cells(SEVERITY_COLOURS, severity_texts()))
        .override_by_name("Open for", [prop("unit", "s")])
        .override_by_name("Started", local_time())
        .override_by_name("Acknowledged", local_time())
        .override_by_name("Resolved", local_time()),
    )
    board.row(t("Bản tin bị cách ly (mọi phường)", "Quarantine (all wards)"))
    board.add(
        timeseries(
            t("Bản tin bị cách ly theo lý do", "Quarantined payloads by reason"),
            t(
                "Bản tin hub không lưu được, theo khoảng và lý do (vài từ đầu). Không lọc theo "
                "phường: nhiều bản tin đến từ thiết bị chưa biết.",
                "Payloads the hub could not store, per interval and reason (the reason's "
                "first words). Not filtered by ward: many come from unknown devices.",
            ),
            f"""
SELECT {bucket("q.received_at")} AS "time", {QUARANTINE_REASON} AS metric, count(*) AS value
FROM quarantine q
WHERE $__timeFilter(q.received_at)
GROUP BY 1, 2
ORDER BY 1, 2
""",
            "none",
            width=14,
            bars=True,
            stacked=True,
        ),
        table(
            t("Bản tin bị cách ly theo nguồn", "Quarantined payloads by source"),
            t(
                "Theo nguồn và lý do trong khoảng thời gian: bao nhiêu, từ bao nhiêu thiết bị, "
                "lần cuối lúc nào.",
                "Per source and reason in the time range: how many, from how many devices, "
                "and when the last one arrived.",
            ),
            f"""
SELECT q.source AS "Source", {QUARANTINE_REASON} AS "Reason", count(*) AS "Payloads",
       count(DISTINCT q.device_uid) AS "Devices", max(q.received_at) AS "Last received"
FROM quarantine q
WHERE $__timeFilter(q.received_at)
GROUP BY 1, 2
ORDER BY "Payloads" DESC, 1, 2
""",
            width=10,
            columns=Columns(
                Source=("Nguồn", "Source"),
                Reason=("Lý do", "Reason"),
                Payloads=("Bản tin", "Payloads"),
                Devices=("Thiết bị", "Devices"),
                **{"Last received": ("Lần cuối", "Last received")},
            ),
        ).override_by_name("Last received", local_time()),
    )
    return board
