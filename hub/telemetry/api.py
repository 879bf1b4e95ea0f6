"""Telemetry routes: latest values, series, ward summaries with AQI, CSV export, quarantine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from hub.auth import CurrentUser, Principal
from hub.devices import registry
from hub.errors import FieldProblem, NotFound, ValidationFailed
from hub.runtime import runtime_of
from hub.telemetry import aqi, aqi_history, jobs, queries
from hub.telemetry.catalog import METRICS
from hub.telemetry.store import QuarantineOut

Uids = Annotated[list[str] | None, QueryParameter(description="Device uid; repeat for several.")]
WardCodes = Annotated[list[str] | None, QueryParameter(description="Ward code.")]
MetricNames = Annotated[list[str] | None, QueryParameter(description="Metric name.")]
MetricName = Annotated[
    str, QueryParameter(max_length=64, description="Metric name (see /metrics).")
]


class PointOut(msgspec.Struct):
    time: datetime
    value: float | None
    count: int


class SeriesOut(msgspec.Struct):
    device: str
    metric: str
    unit: str
    bucket: str
    aggregate: str
    source: str
    """Which table answered: reading, or a continuous aggregate (reading_1m, reading_1h)."""
    points: list[PointOut]


class LatestOut(msgspec.Struct):
    device: str
    metric: str
    time: datetime
    value: float
    unit: str


class AqiOut(msgspec.Struct):
    value: int
    category: str
    label_vi: str
    label_en: str
    colour: str
    dominant: str
    """The first of dominant_pollutants."""
    station: str | None
    sub_indices: dict[str, int]
    dominant_pollutants: list[str] = msgspec.field(default_factory=list)
    """Every pollutant whose sub-index is the AQI (more than one on a tie)."""


class AqiValueOut(msgspec.Struct):
    value: int
    category: str
    label_vi: str
    label_en: str
    colour: str
    dominant_pollutants: list[str]
    """Every pollutant whose sub-index is the AQI (more than one on a tie)."""
    sub_indices: dict[str, int]


class AqiPointOut(msgspec.Struct):
    period_start: datetime
    """The hour (UTC) or the local day's midnight (Asia/Ho_Chi_Minh) the AQI is of."""
    local_date: str
    aqi: AqiValueOut | None
    missing: list[str]
    """Why the AQI is missing (or what it leaves out): hours of data, pollutants."""
    station: str | None = None
    """For a ward: the station whose AQI is the ward's (its worst)."""


class AqiStationOut(msgspec.Struct):
    station: str
    ward: str | None
    points: list[AqiPointOut]


class AqiWardOut(msgspec.Struct):
    ward: str
    points: list[AqiPointOut]


class AqiHistoryOut(msgspec.Struct):
    resolution: str
    start: datetime
    end: datetime
    stations: list[AqiStationOut]
    wards: list[AqiWardOut]


class MetricSummaryOut(msgspec.Struct):
    metric: str
    unit: str
    latest_avg: float | None
    today_min: float | None
    today_max: float | None
    devices: int


class RollupOut(msgspec.Struct):
    """How current a rollup is, so a dashboard can say "data as of"."""

    name: str
    as_of: datetime | None
    age_s: float | None
    live: bool


class WardSummaryOut(msgspec.Struct):
    ward: str
    name: str
    aqi: AqiOut | None
    metrics: list[MetricSummaryOut]
    aqi_missing: list[str] = msgspec.field(default_factory=list)
    """Why the hourly AQI is missing, or which stations it leaves out and why."""
    daily_aqi: AqiPointOut | None = None
    """Yesterday's daily AQI (local day, Decision 1459 §2.2.2), or why there is none."""
    rollups: list[RollupOut] = msgspec.field(default_factory=list)
    """How current each rollup is ("data as of")."""


class MetricOut(msgspec.Struct):
    name: str
    unit: str
    min_value: float
    max_value: float
    description: str


def unit_of(metric: str) -> str:
    return METRICS[metric].unit if metric in METRICS else ""


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValidationFailed(
            "unknown metric",
            [
                FieldProblem(
                    "metric", f"{metric!r} is not in the catalog ({', '.join(sorted(METRICS))})"
                )
            ],
        )


def time_range(
    start: datetime | None, end: datetime | None, default: timedelta
) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - default
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValidationFailed(
                "times need a zone",
                [
                    FieldProblem(
                        name,
                        "give an RFC 3339 time with its offset, e.g. 2026-01-31T07:00:00+07:00",
                    )
                ],
            )
    queries.check_range(start, end)
    return start, end


async def device_ids(
    principal: Principal, uids: list[str] | None, wards: list[str] | None
) -> dict[int, str]:
    devices = registry.scoped(principal).filter(kind="sensor")
    if uids:
        devices = devices.filter(uid__in=uids)
    if wards:
        directory = await registry.WardDirectory.load()
        devices = devices.filter(ward_id__in=directory.ids(wards))
    found = dict(await devices.values_list("id", "uid"))
    missing = sorted(set(uids or ()) - set(found.values()))
    if missing:
        raise NotFound(f"no sensor {', '.join(missing)} in your wards")
    return found


def _rating(result: aqi.AqiResult) -> tuple[int, str, str, str, str]:
    """Index, category and its Vietnamese and English labels, colour: every AQI answer's."""
    category = result.category
    return result.value, category.value, category.label_vi, category.label_en, result.colour


def aqi_value_out(result: aqi.AqiResult | None) -> AqiValueOut | None:
    if result is None:
        return None
    return AqiValueOut(*_rating(result), list(result.dominant_pollutants), dict(result.sub_indices))


def aqi_point_out(point: aqi_history.AqiPoint) -> AqiPointOut:
    return AqiPointOut(
        point.period_start,
        point.local_date.isoformat(),
        aqi_value_out(point.rated.result),
        list(point.rated.missing),
        point.station,
    )


EARLIEST_AQI = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AQI_SPAN = {"hour": timedelta(days=31), "day": timedelta(days=400)}
DEFAULT_AQI_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=7)}


async def aqi_history_of(
    pool: Any,
    backend: str,
    principal: Principal,
    resolution: aqi_history.Resolution,
    start: datetime,
    end: datetime,
    devices: list[str] | None,
    wards: list[str] | None,
    now: datetime,
) -> AqiHistoryOut:
    ids = await device_ids(principal, devices, wards)
    ward_of = dict(
        await registry.scoped(principal).filter(id__in=list(ids)).values_list("id", "ward_id")
    )
    directory = await registry.WardDirectory.load()
    first, last = aqi_history.fetch_window(resolution, start, end)
    means = await aqi_history.hourly_means(pool, backend, list(ids), first, last, now)
    stations: list[AqiStationOut] = []
    per_ward: dict[str, dict[str, list[aqi_history.AqiPoint]]] = {}
    for device_id, uid in sorted(ids.items(), key=lambda item: item[1]):
        if device_id not in means:
            continue  # measures no pollutant in the range (a rain gauge, or silent)
        points = aqi_history.station_points(resolution, means[device_id], start, end)
        ward = directory.code(ward_of.get(device_id))
        stations.append(AqiStationOut(uid, ward, [aqi_point_out(p) for p in points]))
        if ward is not None:
            per_ward.setdefault(ward, {})[uid] = points
    return AqiHistoryOut(
        resolution,
        start,
        end,
        stations,
        [
            AqiWardOut(ward, [aqi_point_out(p) for p in aqi_history.ward_points(points)])
            for ward, points in sorted(per_ward.items())
        ],
    )


def aqi_out(result: Any, station: str | None) -> AqiOut | None:
    if result is None:
        return None
    return AqiOut(
        *_rating(result),
        result.dominant,
        station,
        dict(result.sub_indices),
        list(result.dominant_pollutants),
    )


class TelemetryController(Controller):
    path = "/api/v1/telemetry"
    tags = ["telemetry"]

    @get("/metrics")
    async def catalog(self, principal: CurrentUser) -> list[MetricOut]:
        """The metric catalog: names, canonical units, valid ranges."""
        return [
            MetricOut(m.name, m.unit, m.min_value, m.max_value, m.description)
            for m in METRICS.values()
        ]

    @get("/latest")
    async def latest(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        device: Uids = None,
        ward: WardCodes = None,
        metric: MetricNames = None,
    ) -> list[LatestOut]:
        """The newest value of each metric of each sensor you may see."""
        for name in metric or ():
            check_metric(name)
        ids = await device_ids(principal, device, ward)
        rows = await queries.latest(runtime_of(request).database.pool, list(ids), metric or ())
        return [LatestOut(r.device, r.metric, r.time, r.value, unit_of(r.metric)) for r in rows]

    @get("/series")
    async def series(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        device: Annotated[str, QueryParameter(max_length=128)],
        metric: MetricName,
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
        bucket: Annotated[
            str,
            QueryParameter(
                max_length=8, description="raw, auto, or a size like 1m, 15m, 1h, 1d (local days)"
            ),
        ] = "auto",
        aggregate: FromQuery[queries.Aggregate] = "avg",
        fill: FromQuery[queries.Fill] = "none",
    ) -> SeriesOut:
        """One metric of one sensor over time, bucketed (default: chosen from the span)."""
        check_metric(metric)
        first, last = time_range(start, end, timedelta(hours=24))
        ids = await device_ids(principal, [device], None)
        (device_id,) = ids
        db = runtime_of(request).database
        result = await queries.series(
            db.pool, db.backend, device_id, device, metric, first, last, bucket, aggregate, fill
        )
        return SeriesOut(
            result.device,
            result.metric,
            unit_of(metric),
            result.bucket,
            result.aggregate,
            result.source,
            [PointOut(p.time, p.value, p.count) for p in result.points],
        )

    @get("/aqi")
    async def aqi_index(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        resolution: FromQuery[aqi_history.Resolution] = "day",
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
        device: Uids = None,
        ward: WardCodes = None,
    ) -> AqiHistoryOut:
        """VN_AQI history per station and per ward (its worst station), hourly or daily.

        Daily: local days (Asia/Ho_Chi_Minh) whose midnight is in [start, end), from the
        24-hour means (PM), the day's highest hourly mean (gases) and highest 8-hour mean
        (O3), Decision 1459/QĐ-TCMT §2.2.2; default the last 7 days, at most 400.
        Hourly: hours in [start, end) (§2.2.1, NowCast for PM); default the last 24 hours,
        at most 31 days. A missing AQI says why in `missing`.
        """
        now = datetime.now(UTC)
        if end is None and resolution == "day":
            end = now
        first, last = time_range(start, end, DEFAULT_AQI_SPAN[resolution])
        for name, moment in (("start", first), ("end", last)):
            if not EARLIEST_AQI <= moment <= now + timedelta(days=1):
                raise ValidationFailed(
                    "time out of range",
                    [FieldProblem(name, "give a time from 2000 up to tomorrow")],
                )
        if last - first > MAX_AQI_SPAN[resolution]:
            raise ValidationFailed(
                "time range too long",
                [
                    FieldProblem(
                        "start",
                        f"ask for at most {MAX_AQI_SPAN[resolution].days} days of "
                        f"{resolution}ly AQI at once",
                    )
                ],
            )
        db = runtime_of(request).database
        return await aqi_history_of(
            db.pool, db.backend, principal, resolution, first, last, device, ward, now
        )

    @get("/wards")
    async def wards(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> list[WardSummaryOut]:
        """Per ward: latest averages, today's min/max (local day), the hourly VN_AQI and
        yesterday's daily VN_AQI, each with the reasons when it is missing."""
        db = runtime_of(request).database
        pool = db.pool
        directory = await registry.WardDirectory.load()
        now = datetime.now(UTC)
        today = aqi_history.local_day_start(now.astimezone(queries.LOCAL).date())
        rollups = [
            RollupOut(r.name, r.as_of, r.age_s, r.live)
            for r in await jobs.rollup_freshness(pool, db.backend, now)
        ]
        out = []
        for ward in await registry.list_wards(principal):
            summary = await queries.ward_summary(pool, directory.by_code[ward.code].id, ward.code)
            daily = await aqi_history_of(
                pool,
                db.backend,
                principal,
                "day",
                today - timedelta(days=1),
                today,
                None,
                [ward.code],
                now,
            )
            yesterday = next(iter(daily.wards), None)
            out.append(
                WardSummaryOut(
                    ward.code,
                    ward.name,
                    aqi_out(summary.aqi, summary.aqi_station),
                    [
                        MetricSummaryOut(
                            m.metric,
                            unit_of(m.metric),
                            m.latest_avg,
                            m.today_min,
                            m.today_max,
                            m.devices,
                        )
                        for m in summary.metrics
                    ],
                    list(summary.aqi_missing),
                    yesterday.points[0]
                    if yesterday and yesterday.points
                    else AqiPointOut(
                        today - timedelta(days=1),
                        (today - timedelta(days=1)).astimezone(queries.LOCAL).date().isoformat(),
                        None,
                        ["no station of the ward measured PM2.5, PM10 or gases that day"],
                    ),
                    rollups,
                )
            )
        return out

    @get("/export.csv", media_type="text/csv")
    async def export(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        device: Uids = None,
        ward: WardCodes = None,
        metric: MetricNames = None,
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> Stream:
        """Raw readings as CSV (time, device, metric, value, unit), streamed."""
        for name in metric or ():
            check_metric(name)
        first, last = time_range(start, end, timedelta(days=1))
        ids = await device_ids(principal, device, ward)
        rows = queries.export_rows(
            runtime_of(request).database.pool, list(ids), metric or (), first, last
        )

        async def lines() -> AsyncIterator[str]:
            yield "time,device,metric,value,unit\n"
            async for row in rows:
                yield (
                    f"{row['time'].isoformat()},{row['uid']},{row['metric']},"
                    f"{row['value']!r},{unit_of(row['metric'])}\n"
                )

        return Stream(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="readings.csv"'},
        )


class QuarantineController(Controller):
    path = "/api/v1/quarantine"
    tags = ["telemetry"]

    @get("/")
    async def list_items(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        device: Annotated[str | None, QueryParameter(max_length=128)] = None,
        before_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[QuarantineOut]:
        """Payloads kept aside with the reason they were not stored, newest first."""
        visible = await registry.scoped(principal).values_list("uid", flat=True)
        # Ward staff see what their devices sent; payloads of unknown origin are for technicians.
        allowed = None if principal.ward_ids is None else [str(u) for u in visible]
        return await queries.quarantined(
            runtime_of(request).database.pool,
            device=device,
            before_id=before_id,
            device_uids=allowed,
            limit=limit,
        )

    @get("/{item_id:int}")
    async def get_item(
        self, request: Request[Any, Any, Any], principal: CurrentUser, item_id: FromPath[int]
    ) -> QuarantineOut:
        item = await queries.quarantined_item(runtime_of(request).database.pool, item_id)
        if item is None or (
            principal.ward_ids is not None
            and not (
                item.device_uid
                and await registry.scoped(principal).filter(uid=item.device_uid).exists()
            )
        ):
            raise NotFound(f"no quarantined payload {item_id}")
        return item
