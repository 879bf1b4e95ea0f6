"""A device's own page: why it has its status (history and fault events), its latest
readings with a 24-hour chart, its firmware and compliance, maintenance on and off; for a
camera its ONVIF health and a snapshot through the hub, for a speaker its volume and plays.

Roles and ward scope are the slices' to enforce (a device outside the wards a person serves
does not exist for them); this page puts their answers side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from hub.auth import CSRF_FIELD, CurrentUser, Principal, form_csrf
from hub.broadcasts import may_schedule, speaker_history
from hub.cameras import CAMERAS
from hub.devices import registry
from hub.errors import FieldProblem, HubError, ValidationFailed
from hub.firmware import FIRMWARE
from hub.health import HEALTH, MaintenanceIn, health_service
from hub.runtime import runtime_of
from hub.telemetry import METRICS, Latest, timeseries
from hub.web import broadcast_forms as forms
from hub.web import words
from hub.web.i18n import LOCAL_TIME

CHART_HOURS = 24
CHARTS_SHOWN = 6
CHART_WIDTH = 600
CHART_HEIGHT = 160
CHART_PAD = 8
HISTORY_SHOWN = 30
EVENTS_SHOWN = 30


@dataclass(frozen=True, slots=True)
class Chart:
    """One metric's hourly means over the last day, drawn as inline SVG (its table beside)."""

    metric: str
    label: str
    unit: str
    rows: list[tuple[datetime, float | None]]
    lines: list[str]
    """SVG polyline point lists; a gap (an hour without readings) starts a new one."""
    dots: list[tuple[float, float]]
    low: float | None
    high: float | None


def chart_of(
    metric: str, points: list[tuple[datetime, float | None]], start: datetime, end: datetime
) -> Chart:
    values = [v for _, v in points if v is not None]
    known = METRICS.get(metric)
    low = min(values) if values else None
    high = max(values) if values else None
    lines: list[str] = []
    dots: list[tuple[float, float]] = []
    if low is not None and high is not None:
        spread = (high - low) or 1.0
        span = (end - start).total_seconds()
        current: list[str] = []
        for moment, value in points:
            if value is None:
                if current:
                    lines.append(" ".join(current))
                current = []
                continue
            x = CHART_PAD + (moment - start).total_seconds() / span * (CHART_WIDTH - 2 * CHART_PAD)
            y = CHART_HEIGHT - CHART_PAD - (value - low) / spread * (CHART_HEIGHT - 2 * CHART_PAD)
            current.append(f"{x:.1f},{y:.1f}")
            dots.append((round(x, 1), round(y, 1)))
        if current:
            lines.append(" ".join(current))
    return Chart(
        metric=metric,
        label=words.word(words.METRIC_WORDS, metric),
        unit=known.unit if known else "",
        rows=points,
        lines=lines,
        dots=dots,
        low=low,
        high=high,
    )


async def readings_of(
    request: Request[Any, Any, Any], device_id: int, uid: str, now: datetime
) -> tuple[list[Latest], list[Chart]]:
    database = runtime_of(request).database
    latest = await timeseries.latest(database.pool, [device_id])
    numeric = [
        r for r in latest if METRICS.get(r.metric) is None or METRICS[r.metric].kind == "number"
    ]
    # Whole hours: the hourly rollups answer (TimescaleDB's continuous aggregate).
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=CHART_HOURS)
    charts = []
    for reading in numeric[:CHARTS_SHOWN]:
        series = await timeseries.series(
            database.pool,
            database.backend,
            device_id,
            uid,
            reading.metric,
            start,
            end,
            bucket="1h",
            aggregate="avg",
            fill="null",
        )
        points = [(p.time, p.value) for p in series.points]
        charts.append(chart_of(reading.metric, points, start, end))
    return latest, charts


def parse_local(day_text: str, clock_text: str) -> datetime | None:
    """The form's day (dd/mm/yyyy) and 24-hour time on the IOC's wall clock, as an instant;
    None if they are not one."""
    day, clock = forms.parse_day(day_text.strip()), forms.parse_clock(clock_text.strip())
    return datetime.combine(day, clock, tzinfo=LOCAL_TIME) if day and clock else None


async def device_context(
    request: Request[Any, Any, Any], principal: Principal, uid: str
) -> dict[str, Any]:
    rt = runtime_of(request)
    device = await registry.get_scoped(principal, uid)
    out = await registry.get_device(principal, uid)
    monitor = rt.get(HEALTH)
    now = monitor.clock()
    health = await health_service.device_health(rt.database.pool, principal, uid)
    wards = {w.code: w.name for w in await registry.list_wards(principal)}
    latest, charts = await readings_of(request, device.id, uid, now)
    firmware = rt.find(FIRMWARE)
    compliance = None
    if firmware is not None:
        try:
            compliance = await firmware.device(principal, uid)
        except HubError:
            compliance = None
    camera = None
    cameras = rt.find(CAMERAS) if device.kind == "camera" else None
    if cameras is not None:
        try:
            camera = await cameras.get_camera(principal, uid)
        except HubError:
            camera = None  # registered, not onboarded over ONVIF yet
    speaker = None
    if device.kind == "speaker":
        speaker = await speaker_history.speaker_history(rt.database.pool, principal, uid)
    return {
        "principal": principal,
        "device": out,
        "ward_name": wards.get(out.ward or "", out.ward),
        "health": health,
        "history": health.history[:HISTORY_SHOWN],
        "events": health.events[:EVENTS_SHOWN],
        "latest": latest,
        "charts": charts,
        "chart_size": (CHART_WIDTH, CHART_HEIGHT),
        "compliance": compliance,
        "camera": camera,
        "speaker": speaker,
        "words": words,
        "metric_units": {name: m.unit for name, m in METRICS.items()},
        "now": now,
        "may_maintain": health_service.may_set_maintenance(principal),
        # Volume and stop for speakers: those who schedule broadcasts may use them.
        "may_control": may_schedule(principal),
        "csrf_field": CSRF_FIELD,
        # Day first and 24 h, typed (a browser's own picker follows its locale: mm/dd, AM/PM).
        "maintenance_day": (now + timedelta(hours=2)).astimezone(LOCAL_TIME).strftime("%d/%m/%Y"),
        "maintenance_clock": (now + timedelta(hours=2)).astimezone(LOCAL_TIME).strftime("%H:%M"),
    }


class DeviceConsoleController(Controller):
    include_in_schema = False

    @get("/devices/{uid:str}")
    async def device_page(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Template:
        return Template("device.html", context=await device_context(request, principal, uid))

    @post("/devices/{uid:str}/maintenance", guards=[form_csrf], status_code=303)
    async def start_maintenance(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Redirect | Template:
        form = await request.form()
        day_text, clock_text = form.get("until_date"), form.get("until_time")
        reason = form.get("reason")
        until = (
            parse_local(day_text, clock_text)
            if isinstance(day_text, str) and isinstance(clock_text, str)
            else None
        )
        try:
            if until is None:
                raise ValidationFailed(
                    "give the end of the maintenance",
                    [FieldProblem("until", "a date and time, in local time")],
                )
            data = MaintenanceIn(
                until=until, reason=reason[:500] if isinstance(reason, str) else ""
            )
            await health_service.start_maintenance(
                runtime_of(request).get(HEALTH), principal, uid, data
            )
        except ValidationFailed as exc:
            context = await device_context(request, principal, uid)
            context["maintenance_error"] = exc
            context["maintenance_reason"] = reason if isinstance(reason, str) else ""
            return Template("device.html", context=context, status_code=exc.status)
        return Redirect(f"/devices/{uid}", status_code=303)

    @post("/devices/{uid:str}/maintenance/end", guards=[form_csrf], status_code=303)
    async def end_maintenance(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Redirect:
        await health_service.end_maintenance(runtime_of(request).get(HEALTH), principal, uid)
        return Redirect(f"/devices/{uid}", status_code=303)
