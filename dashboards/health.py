"""Device health: status counts per ward and kind, availability, the unhealthy, a map,
firmware versions as the devices report them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.builders.dashboard import FieldColor
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import geomap as geomap_model
from grafana_foundation_sdk.models.dashboard import FieldColorModeId

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
    timeseries,
    value_colours,
)
from dashboards.queries import KIND_FILTER, ORIGIN, WARD_FILTER, bucket, counts_by, sql_list
from dashboards.sensors import MAP_CENTRE

UID = "iochub-device-health"
DEVICE_STATUSES = ("online", "late", "offline", "degraded", "maintenance", "unknown")
UNHEALTHY_STATUSES = ("offline", "degraded", "late", "unknown")
DEVICE_KINDS = ("camera", "speaker", "sensor")
# As hub.health.availability: up is online or degraded; maintenance counts neither way.
UP_STATUSES = ("online", "degraded")
STATUS_COLOURS = {
    "online": "green",
    "late": "yellow",
    "offline": "red",
    "degraded": "orange",
    "maintenance": "blue",
    "unknown": "#8e8e8e",
}


def status_texts() -> dict[str, str]:
    return {
        "online": t("trực tuyến", "online"),
        "late": t("chậm", "late"),
        "offline": t("mất kết nối", "offline"),
        "degraded": t("suy giảm", "degraded"),
        "maintenance": t("bảo trì", "maintenance"),
        "unknown": t("chưa rõ", "unknown"),
    }


COMPLIANCE_COLOURS = {
    "current": "green",
    "outdated": "yellow",
    "vulnerable": "red",
    "end_of_support": "orange",
    "unknown_model": "#8e8e8e",
    "unknown_version": "#8e8e8e",
    "not_assessed": "#8e8e8e",
}


def compliance_texts() -> dict[str, str]:
    return {
        "current": t("hiện hành", "current"),
        "outdated": t("lỗi thời", "outdated"),
        "vulnerable": t("có lỗ hổng", "vulnerable"),
        "end_of_support": t("hết hỗ trợ", "end of support"),
        "unknown_model": t("model lạ", "unknown model"),
        "unknown_version": t("phiên bản lạ", "unknown version"),
        "not_assessed": t("chưa đánh giá", "not assessed yet"),
    }


def kind_texts() -> dict[str, str]:
    return {
        "camera": t("camera", "camera"),
        "speaker": t("loa", "speaker"),
        "sensor": t("cảm biến", "sensor"),
    }


DEVICE_FROM = f"""
FROM device d
JOIN ward w ON w.id = d.ward_id
WHERE d.lifecycle = 'active' AND {WARD_FILTER} AND {KIND_FILTER}
"""

AVAILABILITY_SQL = f"""
WITH dev AS (
  SELECT d.id, w.name AS ward, d.status,
         greatest(d.created_at, $__timeFrom()::timestamptz) AS born
  FROM device d
  JOIN ward w ON w.id = d.ward_id
  WHERE d.lifecycle = 'active' AND {WARD_FILTER} AND {KIND_FILTER}
),
change AS (
  SELECT he.device_id, he.at, he.from_status, he.to_status
  FROM health_event he JOIN dev ON dev.id = he.device_id
  WHERE he.at >= $__timeFrom() AND he.at < $__timeTo()
),
opening AS (
  -- The status at the start: the last change before it, else what the first change in
  -- the range changed from, else the status now (as hub.health.availability).
  SELECT dev.id, dev.born AS at, coalesce(
      (SELECT he.to_status FROM health_event he
       WHERE he.device_id = dev.id AND he.at < $__timeFrom() ORDER BY he.at DESC LIMIT 1),
      (SELECT c.from_status FROM change c WHERE c.device_id = dev.id ORDER BY c.at LIMIT 1),
      dev.status) AS status
  FROM dev
),
segment AS (
  SELECT id, status, at AS starts,
         lead(at, 1, $__timeTo()::timestamptz) OVER (PARTITION BY id ORDER BY at) AS ends
  FROM (SELECT id, at, status FROM opening
        UNION ALL
        SELECT c.device_id, greatest(c.at, dev.born), c.to_status
        FROM change c JOIN dev ON dev.id = c.device_id) AS step
),
step AS (
  -- Per ward, how many devices are present, counted and up change only where a
  -- segment starts or ends: integrate that step function, not every device.
  SELECT dev.ward, at, sum(present) AS present, sum(counted) AS counted, sum(up) AS up
  FROM segment
  JOIN dev ON dev.id = segment.id
  CROSS JOIN LATERAL (VALUES
      (segment.starts, 1, (segment.status <> 'maintenance')::int,
       (segment.status IN ({sql_list(UP_STATUSES)}))::int),
      (segment.ends, -1, -(segment.status <> 'maintenance')::int,
       -(segment.status IN ({sql_list(UP_STATUSES)}))::int)
  ) AS edge (at, present, counted, up)
  GROUP BY 1, 2
),
level AS (
  SELECT ward, at AS starts, lead(at) OVER by_time AS ends,
         sum(present) OVER by_time AS present, sum(counted) OVER by_time AS counted,
         sum(up) OVER by_time AS up
  FROM step
  WINDOW by_time AS (PARTITION BY ward ORDER BY at)
),
slot AS (
  SELECT slot AS starts, slot + make_interval(secs => $__interval_ms / 1000.0) AS ends
  FROM generate_series(date_bin('$__interval', $__timeFrom()::timestamptz, {ORIGIN}),
                       $__timeTo()::timestamptz, make_interval(secs => $__interval_ms / 1000.0))
       AS slot
),
overlap AS (
  SELECT slot.starts AS "time", level.ward, level.counted, level.up,
         extract(epoch FROM least(level.ends, slot.ends, $__timeTo()::timestamptz)
                          - greatest(level.starts, slot.starts, $__timeFrom()::timestamptz))
           AS seconds
  FROM level
  JOIN slot ON level.starts < slot.ends AND level.ends > slot.starts
  WHERE level.present > 0
)
SELECT "time", ward AS metric,
       100 * sum(seconds * up) / nullif(sum(seconds * counted), 0) AS value
FROM overlap
WHERE seconds > 0
GROUP BY 1, 2
ORDER BY 1, 2
"""


def status_overrides() -> list[tuple[str, str]]:
    return [(status.title(), colour) for status, colour in STATUS_COLOURS.items()]


def device_map() -> geomap.Panel:
    lat, lon = MAP_CENTRE
    return (
        geomap.Panel()
        .title(t("Bản đồ thiết bị", "Device map"))
        .description(
            t(
                "Mọi thiết bị đang hoạt động có tọa độ, tô màu theo tình trạng.",
                "Every active device with coordinates, coloured by health status.",
            )
        )
        .datasource(DATASOURCE)
        .with_target(
            Sql(
                f"""
SELECT d.uid AS "Device", d.name AS "Name", d.kind AS "Kind", w.name AS "Ward",
       d.status AS "Status", d.status_reason AS "Reason", d.last_seen AS "Last seen",
       d.latitude AS latitude, d.longitude AS longitude
{DEVICE_FROM.strip()}
  AND d.latitude IS NOT NULL
ORDER BY d.uid
"""
            )
        )
        .span(24)
        .height(14)
        .color_scheme(FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .override_by_name(
            "Status", [prop("mappings", [value_colours(STATUS_COLOURS, status_texts())])]
        )
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
                .name(t("Thiết bị", "Devices"))
                .config(
                    {
                        "showLegend": True,
                        "style": {
                            "color": {"field": "Status", "fixed": "#8e8e8e"},
                            "opacity": 0.9,
                            "size": {"fixed": 7},
                            "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
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
        t("IOC · Tình trạng thiết bị", "IOC · Device health"),
        t(
            "Tình trạng camera, loa và cảm biến theo phường: số lượng theo tình trạng, độ sẵn "
            "sàng, thiết bị có sự cố, thay đổi tình trạng, phiên bản phần mềm và bản đồ.",
            "Health of cameras, loudspeakers and sensors per ward: status counts, "
            "availability, unhealthy devices, status changes, firmware and a map.",
        ),
    )
    board.variable(
        query_variable(
            "ward",
            t("Phường", "Ward"),
            "SELECT code AS __value, name AS __text FROM ward ORDER BY name",
        )
    )
    board.variable(custom_variable("kind", t("Loại", "Kind"), DEVICE_KINDS, kind_texts()))
    by_status = stat(
        t("Thiết bị theo tình trạng", "Devices by status"),
        t(
            "Thiết bị đang hoạt động của các phường và loại đã chọn, theo tình trạng.",
            "Active devices of the selected wards and kinds, by health status.",
        ),
        f"SELECT {counts_by('d.status', DEVICE_STATUSES)}\n{DEVICE_FROM.strip()}",
        width=16,
    )
    for status, colour in STATUS_COLOURS.items():
        by_status = by_status.override_by_name(
            status.title(), [fixed_colour(colour), prop("displayName", status_texts()[status])]
        )
    board.add(
        by_status,
        stat(
            t("Chờ duyệt", "Pending approval"),
            t(
                "Thiết bị đã tự giới thiệu và đang chờ kỹ thuật viên duyệt (mọi phường).",
                "Devices that announced themselves and wait for a technician (all wards).",
            ),
            "SELECT count(*) AS \"Pending\" FROM device WHERE lifecycle = 'pending'",
            width=4,
            steps=[(None, "text"), (1, "orange")],
        ),
        stat(
            t("Thiết bị chưa gán phường", "Active devices without a ward"),
            t(
                "Thiết bị đang hoạt động của các loại đã chọn chưa thuộc phường nào: chúng "
                "không có trên bảng nào khác của trang này.",
                "Active devices of the selected kinds assigned to no ward: they appear on no "
                "other panel of this dashboard.",
            ),
            'SELECT count(*) AS "Without ward" FROM device '
            "WHERE lifecycle = 'active' AND ward_id IS NULL "
            "AND kind = ANY(ARRAY[$kind]::text[])",
            width=4,
            steps=[(None, "text"), (1, "orange")],
        ),
    )
    status_columns = {
        status.title(): (text, status.title())
        for status, text in zip(
            DEVICE_STATUSES, (status_texts()[s] for s in DEVICE_STATUSES), strict=True
        )
    }
    board.add(
        table(
            t("Tình trạng theo phường và loại", "Status by ward and kind"),
            t(
                "Thiết bị đang hoạt động theo phường và loại, theo tình trạng.",
                "Active devices per ward and kind, by health status.",
            ),
            f"""
SELECT w.name AS "Ward", d.kind AS "Kind",
       {counts_by("d.status", DEVICE_STATUSES)},
       count(*) AS "Total"
{DEVICE_FROM.strip()}
GROUP BY w.name, d.kind
ORDER BY 1, 2
""",
            width=12,
            height=9,
            columns=Columns(
                Ward=("Phường", "Ward"),
                Kind=("Loại", "Kind"),
                Total=("Tổng", "Total"),
                **status_columns,
            ),
        ),
        timeseries(
            t("Độ sẵn sàng theo phường", "Availability by ward"),
            t(
                "Tỷ lệ thời gian thiết bị hoạt động (trực tuyến hoặc suy giảm) theo khoảng; "
                "thời gian bảo trì không tính.",
                "Share of device time spent up (online or degraded) per interval; time in "
                "maintenance counts neither way.",
            ),
            AVAILABILITY_SQL,
            "percent",
            width=12,
            height=9,
        ),
    )
    board.add(
        table(
            t("Thiết bị có sự cố", "Unhealthy devices"),
            t(
                "Thiết bị đang hoạt động bị mất kết nối, suy giảm, chậm hoặc chưa từng thấy, "
                "nặng nhất trước, với lý do và thời điểm bắt đầu.",
                "Active devices that are offline, degraded, late or never seen, worst first, "
                "with the reason the hub recorded and since when.",
            ),
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
            width=24,
            height=9,
            columns=Columns(
                Device=("Thiết bị", "Device"),
                Name=("Tên", "Name"),
                Kind=("Loại", "Kind"),
                Ward=("Phường", "Ward"),
                Status=("Tình trạng", "Status"),
                Reason=("Lý do", "Reason"),
                Faults=("Lỗi", "Faults"),
                **{
                    "Last seen": ("Lần cuối thấy", "Last seen"),
                    "Status since": ("Từ lúc", "Status since"),
                },
            ),
        )
        .override_by_name("Status", coloured_cells(STATUS_COLOURS, status_texts()))
        .override_by_name("Last seen", local_time())
        .override_by_name("Status since", local_time()),
    )
    changes = timeseries(
        t("Thay đổi tình trạng", "Status changes"),
        t(
            "Số lần chuyển tình trạng theo khoảng, theo tình trạng chuyển đến.",
            "Health transitions per interval, by the status devices changed to.",
        ),
        f"""
SELECT {bucket("he.at")} AS "time", 'to ' || he.to_status AS metric, count(*) AS value
FROM health_event he
JOIN device d ON d.id = he.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(he.at) AND {WARD_FILTER} AND {KIND_FILTER}
GROUP BY 1, 2
ORDER BY 1, 2
""",
        "none",
        width=12,
        height=9,
        bars=True,
        stacked=True,
    )
    for status, colour in STATUS_COLOURS.items():
        changes = changes.override_by_name(
            f"to {status}",
            [fixed_colour(colour), prop("displayName", t("→ ", "to ") + status_texts()[status])],
        )
    board.add(
        changes,
        table(
            t("Thay đổi tình trạng gần đây", "Recent status changes"),
            t(
                "Các lần chuyển tình trạng mới nhất trong khoảng thời gian.",
                "The latest health transitions in the time range.",
            ),
            f"""
SELECT he.at AS "Time", d.uid AS "Device", d.kind AS "Kind", w.name AS "Ward",
       he.from_status AS "From", he.to_status AS "To", he.reason AS "Reason"
FROM health_event he
JOIN device d ON d.id = he.device_id
JOIN ward w ON w.id = d.ward_id
WHERE $__timeFilter(he.at) AND {WARD_FILTER} AND {KIND_FILTER}
ORDER BY he.at DESC, he.id DESC
LIMIT 200
""",
            width=12,
            height=9,
            columns=Columns(
                Time=("Thời điểm", "Time"),
                Device=("Thiết bị", "Device"),
                Kind=("Loại", "Kind"),
                Ward=("Phường", "Ward"),
                From=("Từ", "From"),
                To=("Sang", "To"),
                Reason=("Lý do", "Reason"),
            ),
        )
        .override_by_name("To", coloured_cells(STATUS_COLOURS, status_texts()))
        .override_by_name("Time", local_time()),
    )
    board.add(
        table(
            t("Tuân thủ phần mềm theo model", "Firmware compliance by model"),
            t(
                "Số thiết bị đang hoạt động theo phiên bản phần mềm và mức tuân thủ so với "
                "danh mục đã ký (như /api/v1/firmware, hub tính lại mỗi phút): hiện hành, "
                "lỗi thời, có lỗ hổng (CVE nặng nhất), hết hỗ trợ, model hay phiên bản lạ.",
                "Active devices per firmware version and its compliance against the signed "
                "catalog (as /api/v1/firmware gives it, recomputed by the hub every minute): "
                "current, outdated, vulnerable (worst CVE), end of support, unknown model "
                "or version.",
            ),
            f"""
SELECT d.kind AS "Kind", d.vendor AS "Vendor", d.model AS "Model",
       coalesce(c.version, d.firmware_version) AS "Firmware",
       coalesce(c.state, 'not_assessed') AS "Compliance",
       c.worst_severity AS "Severity", array_to_string(c.cves, ', ') AS "CVEs",
       c.latest_version AS "Latest", count(*) AS "Devices",
       count(*) FILTER (WHERE d.status = 'online') AS "Online"
FROM device d
JOIN ward w ON w.id = d.ward_id
LEFT JOIN firmware_device_compliance c ON c.device_id = d.id
WHERE d.lifecycle = 'active' AND {WARD_FILTER} AND {KIND_FILTER}
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 1, 2, 3, "Devices" DESC, 4
""",
            width=24,
            height=9,
            columns=Columns(
                Kind=("Loại", "Kind"),
                Vendor=("Hãng", "Vendor"),
                Model=("Model", "Model"),
                Firmware=("Phần mềm", "Firmware"),
                Compliance=("Tuân thủ", "Compliance"),
                Severity=("Mức CVE nặng nhất", "Worst CVE"),
                CVEs=("CVE", "CVEs"),
                Latest=("Mới nhất", "Latest"),
                Devices=("Thiết bị", "Devices"),
                Online=("Trực tuyến", "Online"),
            ),
        ).override_by_name("Compliance", coloured_cells(COMPLIANCE_COLOURS, compliance_texts())),
    )
    board.add(device_map())
    return board
