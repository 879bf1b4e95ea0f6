"""Loudspeaker broadcasts: today's and this week's schedule per ward, how each occurrence
reached its speakers (acknowledged, played, failed out of targeted), the speakers that
failed and why; emergency broadcasts stand out in red."""

from __future__ import annotations

from dashboards.kit import (
    Board,
    Columns,
    coloured_cells,
    custom_variable,
    local_time,
    prop,
    query_variable,
    stat,
    t,
    table,
    thresholds,
    timeseries,
)
from dashboards.queries import LOCAL_ZONE, ORIGIN, WARD_FILTER

UID = "iochub-broadcasts"
PRIORITIES = ("emergency", "priority", "normal")
PRIORITY_COLOURS = {"emergency": "red", "priority": "orange", "normal": "transparent"}
# A broadcast belongs to every ward its targets reach (broadcast.ward_ids).
BROADCAST_IN_WARDS = (
    "b.ward_ids && ARRAY(SELECT w.id FROM ward w WHERE " + WARD_FILTER + ")"
    " AND b.priority = ANY(ARRAY[$priority]::text[])"
)
DAY_START = f"date_trunc('day', $__timeTo()::timestamptz, '{LOCAL_ZONE}')"
WEEK_START = f"date_trunc('week', $__timeTo()::timestamptz, '{LOCAL_ZONE}')"
WARD_NAMES = (
    "(SELECT string_agg(w.name, ', ' ORDER BY w.name) FROM ward w WHERE w.id = ANY(b.ward_ids))"
)


def priority_texts() -> dict[str, str]:
    return {
        "emergency": t("khẩn cấp", "emergency"),
        "priority": t("ưu tiên", "priority"),
        "normal": t("thường", "normal"),
    }


def schedule_sql(start: str, days: int) -> str:
    return f"""
SELECT s.starts_at AS "Starts", s.ends_at AS "Ends", b.title AS "Broadcast",
       b.priority AS "Priority", {WARD_NAMES} AS "Wards",
       coalesce(o.status, CASE WHEN s.starts_at > now() THEN 'planned' ELSE 'not fired' END)
         AS "Status"
FROM broadcast_slot s
JOIN broadcast b ON b.id = s.broadcast_id
LEFT JOIN broadcast_occurrence o ON o.broadcast_id = s.broadcast_id AND o.scheduled_at = s.starts_at
WHERE b.state = 'active' AND {BROADCAST_IN_WARDS}
  AND s.starts_at >= {start} AND s.starts_at < {start} + interval '{days} days'
ORDER BY s.starts_at, b.id
LIMIT 500
"""


SCHEDULE_COLUMNS = {
    "Starts": ("Bắt đầu", "Starts"),
    "Ends": ("Kết thúc", "Ends"),
    "Broadcast": ("Bản tin", "Broadcast"),
    "Priority": ("Mức ưu tiên", "Priority"),
    "Wards": ("Phường", "Wards"),
    "Status": ("Trạng thái", "Status"),
}


def dashboard() -> Board:
    board = Board(
        UID,
        t("IOC · Phát thanh", "IOC · Broadcasts"),
        t(
            "Lịch phát thanh hôm nay và tuần này theo phường, tỷ lệ loa nhận và phát mỗi lần "
            "phát, loa lỗi và lý do; bản tin khẩn cấp tô đỏ.",
            "Today's and this week's broadcast schedule per ward, how each occurrence reached "
            "its speakers, the speakers that failed and why; emergencies in red.",
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
        custom_variable("priority", t("Mức ưu tiên", "Priority"), PRIORITIES, priority_texts())
    )
    board.add(
        stat(
            t("Bản tin khẩn cấp trong khoảng", "Emergency broadcasts in the range"),
            t(
                "Số lần phát bản tin khẩn cấp đến các phường đã chọn trong khoảng thời gian.",
                "Emergency broadcast occurrences to the selected wards in the time range.",
            ),
            f"""
SELECT count(*) AS "Emergency"
FROM broadcast_occurrence o
JOIN broadcast b ON b.id = o.broadcast_id
WHERE {BROADCAST_IN_WARDS} AND b.priority = 'emergency' AND $__timeFilter(o.scheduled_at)
""",
            width=6,
            steps=[(None, "green"), (1, "red")],
        ),
        stat(
            t("Tỷ lệ phát thành công", "Delivery rate"),
            t(
                "Tỷ lệ loa đã phát xong trên số loa được nhắm tới, mọi lần phát trong khoảng.",
                "Speakers that played to the end out of those targeted, over every occurrence "
                "in the time range.",
            ),
            f"""
SELECT 100.0 * count(bd.finished_at) / nullif(count(bd.device_id), 0) AS "Played"
FROM broadcast_occurrence o
JOIN broadcast b ON b.id = o.broadcast_id
LEFT JOIN broadcast_delivery bd ON bd.occurrence_id = o.id
WHERE {BROADCAST_IN_WARDS} AND $__timeFilter(o.scheduled_at)
""",
            width=6,
            unit="percent",
            steps=[(None, "red"), (90, "orange"), (98, "green")],
        ),
        timeseries(
            t("Tỷ lệ phát theo thời gian", "Delivery rate over time"),
            t(
                "Theo khoảng: phần trăm loa đã xác nhận, đã phát xong và lỗi trên số loa được "
                "nhắm tới.",
                "Per interval: the share of targeted speakers that acknowledged, played to "
                "the end and failed.",
            ),
            f"""
SELECT date_bin('$__interval', o.scheduled_at, {ORIGIN}) AS "time",
       100.0 * count(bd.received_at) / nullif(count(bd.device_id), 0) AS "acknowledged",
       100.0 * count(bd.finished_at) / nullif(count(bd.device_id), 0) AS "played",
       100.0 * count(bd.failed_at) / nullif(count(bd.device_id), 0) AS "failed"
FROM broadcast_occurrence o
JOIN broadcast b ON b.id = o.broadcast_id
LEFT JOIN broadcast_delivery bd ON bd.occurrence_id = o.id
WHERE {BROADCAST_IN_WARDS} AND $__timeFilter(o.scheduled_at)
GROUP BY 1
ORDER BY 1
""",
            "percent",
            width=12,
            height=5,
        )
        .override_by_name("acknowledged", [prop("displayName", t("đã xác nhận", "acknowledged"))])
        .override_by_name("played", [prop("displayName", t("đã phát", "played"))])
        .override_by_name(
            "failed",
            [
                prop("displayName", t("lỗi", "failed")),
                prop("color", {"fixedColor": "red", "mode": "fixed"}),
            ],
        ),
    )
    board.row(t("Lịch phát", "Schedule"))
    board.add(
        table(
            t("Lịch hôm nay", "Today's schedule"),
            t(
                "Các lần phát đã lên lịch trong ngày (giờ Việt Nam) của cuối khoảng thời gian, "
                "cho các phường đã chọn.",
                "Occurrences planned on the day (Asia/Ho_Chi_Minh) the time range ends in, "
                "for the selected wards.",
            ),
            schedule_sql(DAY_START, 1),
            width=12,
            height=10,
            columns=Columns(**SCHEDULE_COLUMNS),
        )
        .override_by_name("Priority", coloured_cells(PRIORITY_COLOURS, priority_texts()))
        .override_by_name("Starts", local_time())
        .override_by_name("Ends", local_time()),
        table(
            t("Tuần này theo phường", "This week per ward"),
            t(
                "Số lần phát đã lên lịch mỗi ngày của tuần (thứ Hai đến Chủ nhật, giờ Việt Nam) "
                "theo phường; cột khẩn cấp đếm riêng bản tin khẩn cấp.",
                "Occurrences planned per day of the week (Monday to Sunday, Asia/Ho_Chi_Minh) "
                "per ward; the emergency column counts emergency broadcasts alone.",
            ),
            f"""
SELECT w.name AS "Ward",
       (s.starts_at AT TIME ZONE '{LOCAL_ZONE}')::date AS "Day",
       count(*) AS "Occurrences",
       count(*) FILTER (WHERE b.priority = 'emergency') AS "Emergency",
       min(s.starts_at) AS "First", max(s.starts_at) AS "Last"
FROM broadcast_slot s
JOIN broadcast b ON b.id = s.broadcast_id
JOIN ward w ON w.id = ANY(b.ward_ids)
WHERE b.state = 'active' AND {WARD_FILTER} AND b.priority = ANY(ARRAY[$priority]::text[])
  AND s.starts_at >= {WEEK_START} AND s.starts_at < {WEEK_START} + interval '7 days'
GROUP BY 1, 2
ORDER BY 1, 2
""",
            width=12,
            height=10,
            columns=Columns(
                Ward=("Phường", "Ward"),
                Day=("Ngày", "Day"),
                Occurrences=("Số lần phát", "Occurrences"),
                Emergency=("Khẩn cấp", "Emergency"),
                First=("Sớm nhất", "First"),
                Last=("Muộn nhất", "Last"),
            ),
        )
        .override_by_name(
            "Emergency",
            [
                prop("thresholds", thresholds([(None, "transparent"), (1, "red")]).build()),
                prop("custom.cellOptions", {"type": "color-background"}),
            ],
        )
        .override_by_name("First", local_time())
        .override_by_name("Last", local_time()),
    )
    board.row(t("Kết quả phát", "Delivery"))
    board.add(
        table(
            t("Kết quả mỗi lần phát", "Delivery per occurrence"),
            t(
                "Mỗi lần phát trong khoảng thời gian: số loa được nhắm tới, đã xác nhận, đã phát "
                "xong, lỗi và tỷ lệ phát xong.",
                "Each occurrence in the time range: speakers targeted, acknowledged, played to "
                "the end, failed, and the share played.",
            ),
            f"""
SELECT o.scheduled_at AS "Scheduled", b.title AS "Broadcast", b.priority AS "Priority",
       {WARD_NAMES} AS "Wards", o.status AS "Status",
       count(bd.device_id) AS "targeted", count(bd.received_at) AS "acknowledged",
       count(bd.finished_at) AS "played", count(bd.failed_at) AS "failed",
       round(100.0 * count(bd.finished_at) / nullif(count(bd.device_id), 0), 1) AS "Played %"
FROM broadcast_occurrence o
JOIN broadcast b ON b.id = o.broadcast_id
LEFT JOIN broadcast_delivery bd ON bd.occurrence_id = o.id
WHERE {BROADCAST_IN_WARDS} AND $__timeFilter(o.scheduled_at)
GROUP BY o.id, b.id
ORDER BY o.scheduled_at DESC, o.id DESC
LIMIT 500
""",
            width=24,
            height=10,
            columns=Columns(
                Scheduled=("Thời điểm", "Scheduled"),
                Broadcast=("Bản tin", "Broadcast"),
                Priority=("Mức ưu tiên", "Priority"),
                Wards=("Phường", "Wards"),
                Status=("Trạng thái", "Status"),
                targeted=("Loa nhắm tới", "Targeted"),
                acknowledged=("Đã xác nhận", "Acknowledged"),
                played=("Đã phát", "Played"),
                failed=("Lỗi", "Failed"),
                **{"Played %": ("Tỷ lệ phát", "Played %")},
            ),
        )
        .override_by_name("Priority", coloured_cells(PRIORITY_COLOURS, priority_texts()))
        .override_by_name("Scheduled", local_time())
        .override_by_name("Played %", [prop("unit", "percent")]),
    )
    board.add(
        table(
            t("Loa lỗi và lý do", "Speakers that failed and why"),
            t(
                "Loa không phát được trong khoảng thời gian: lý do loa báo, hoặc của hub "
                "(không trả lời, giờ yên tĩnh).",
                "Speakers that did not play in the time range: the speaker's reason, or the "
                "hub's (no answer, quiet hours).",
            ),
            f"""
SELECT bd.failed_at AS "Failed at", bd.device_uid AS "Speaker", w.name AS "Ward",
       b.title AS "Broadcast", b.priority AS "Priority", o.scheduled_at AS "Scheduled",
       coalesce(bd.failure_reason, bd.send_error, '') AS "Reason", bd.send_count AS "Sends"
FROM broadcast_delivery bd
JOIN broadcast_occurrence o ON o.id = bd.occurrence_id
JOIN broadcast b ON b.id = o.broadcast_id
JOIN ward w ON w.id = bd.ward_id
WHERE bd.failed_at IS NOT NULL AND $__timeFilter(o.scheduled_at) AND {WARD_FILTER}
  AND b.priority = ANY(ARRAY[$priority]::text[])
ORDER BY bd.failed_at DESC, bd.device_uid
LIMIT 500
""",
            width=24,
            height=10,
            columns=Columns(
                Speaker=("Loa", "Speaker"),
                Ward=("Phường", "Ward"),
                Broadcast=("Bản tin", "Broadcast"),
                Priority=("Mức ưu tiên", "Priority"),
                Scheduled=("Thời điểm", "Scheduled"),
                Reason=("Lý do", "Reason"),
                Sends=("Số lần gửi", "Sends"),
                **{"Failed at": ("Lỗi lúc", "Failed at")},
            ),
        )
        .override_by_name("Priority", coloured_cells(PRIORITY_COLOURS, priority_texts()))
        .override_by_name("Failed at", local_time())
        .override_by_name("Scheduled", local_time()),
    )
    return board
