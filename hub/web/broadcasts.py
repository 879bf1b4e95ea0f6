"""Console pages for loudspeaker broadcasts: the list, the scheduling form with its preview
of conflicts, a broadcast's details and occurrences, and each occurrence's speaker report.

Roles and ward scope are the broadcasts service's to enforce: these pages turn a form into
its requests and its answers into HTML, nothing more.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template

from hub.auth import CSRF_FIELD, CurrentUser, Principal, form_csrf
from hub.broadcasts import (
    BROADCASTS,
    MULTIPART_OVERHEAD,
    OPEN_OCCURRENCES,
    SPEAKERS,
    AssetOut,
    BroadcastIn,
    Broadcasts,
    PlanOut,
    SpeakerDelivery,
    TargetsIn,
    operations,
    speaker_controls,
)
from hub.devices import registry
from hub.errors import (
    BadRequest,
    FieldProblem,
    HubError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from hub.runtime import runtime_of

PAGE_SIZE = 50
FIRED_SHOWN = 100
UPCOMING_SHOWN = 20
LIBRARY_SHOWN = 200
PLAN_SLOTS_SHOWN = 12
PRIORITIES = {
    "normal": "normal: gives way, placed after what it overlaps",
    "priority": "priority: ahead of normal programmes, which give way to it",
    "emergency": "emergency: interrupts whatever is playing",
}
SOURCES = ("text", "file", "library")
# Most useful first: what went wrong, then what is still under way, then what went well.
DELIVERY_STATES = (
    "failed",
    "preempted",
    "not_sent",
    "sent",
    "received",
    "downloading",
    "playing",
    "finished",
)
# Occurrences still waiting for speakers' acknowledgements: their report page refreshes.
OPEN_STATUSES = frozenset(OPEN_OCCURRENCES)
FIELD_LABELS = {
    "form": "Form",
    "title": "Title",
    "source": "Audio",
    "text": "Text",
    "voice": "Voice",
    "file": "Audio file",
    "audio_asset_id": "Recording",
    "starts_at": "Start",
    "repeat": "Repeats",
    "rrule": "Recurrence",
    "exdates": "Skipped dates",
    "wards": "Wards",
    "volume": "Volume",
    "priority": "Priority",
    "retry_window_minutes": "Retry window",
    "on_conflict": "On overlap",
}


class Repeat(NamedTuple):
    label: str
    rrule: str | None


REPEATS = {
    "once": Repeat("Once", None),
    "daily": Repeat("Every day", "FREQ=DAILY"),
    "weekdays": Repeat("Weekdays (Monday to Friday)", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    "weekly": Repeat("Every week, on the start's weekday", "FREQ=WEEKLY"),
    "custom": Repeat("Custom RRULE", None),
}
_PRESET_LABELS = {r.rrule: r.label.lower() for r in REPEATS.values() if r.rrule}


def runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Broadcasts:
    return runtime_of(connection).get(BROADCASTS)


def audio_form_size(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The scheduling form may carry an audio file: it is bounded by the audio limit, not
    by the (smaller) limit of other requests, and refused before it is read."""
    limit = runtime(connection).settings.max_audio_bytes
    declared = connection.headers.get("content-length", "")
    if not declared.isdigit():
        raise BadRequest("send the form with a Content-Length header")
    if int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"the audio file is larger than {limit // (1024 * 1024)} MiB",
            [FieldProblem("file", f"at most {limit} bytes")],
        )


@dataclass(frozen=True, slots=True)
class Clock:
    """Instants as the district's clocks show them (templates call it as ``local``)."""

    zone: ZoneInfo

    def __call__(self, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(self.zone).strftime(fmt) if moment is not None else "—"

    def precise(self, moment: datetime | None) -> str:
        """To the millisecond: speakers start together within a few of them."""
        if moment is None:
            return ""
        return moment.astimezone(self.zone).strftime("%H:%M:%S.%f")[:-3]


def schedule_label(rrule: str | None) -> str | None:
    """The preset a rule came from, in words; None for a rule typed by hand."""
    return "once" if rrule is None else _PRESET_LABELS.get(rrule)


def form_field(api_field: str) -> str:
    """The form field an API field problem (``targets.wards[1]``, ``exdates[0]``) is about."""
    head = re.split(r"[.\[]", api_field, maxsplit=1)[0]
    return "wards" if head in ("targets", "ward") else head


@dataclass
class BroadcastForm:
    """The scheduling form as typed, so a refused form comes back filled in."""

    title: str = ""
    source: str = "text"
    text: str = ""
    voice: str = ""
    audio_asset_id: str = ""
    starts_at: str = ""
    repeat: str = "once"
    rrule: str = ""
    exdates: str = ""
    wards: list[str] = field(default_factory=list)
    volume: str = "70"
    priority: str = "normal"
    retry_window_minutes: str = ""
    on_conflict: str = "auto"

    @classmethod
    def read(cls, form: FormMultiDict) -> BroadcastForm:
        def value(name: str, default: str = "") -> str:
            given = form.get(name, default)
            return given.strip() if isinstance(given, str) else default

        return cls(
            title=value("title"),
            source=value("source", "text"),
            text=value("text"),
            voice=value("voice"),
            audio_asset_id=value("audio_asset_id"),
            starts_at=value("starts_at"),
            repeat=value("repeat", "once"),
            rrule=value("rrule"),
            exdates=value("exdates"),
            wards=[w for w in form.getall("wards", []) if isinstance(w, str) and w],
            volume=value("volume"),
            priority=value("priority", "normal"),
            retry_window_minutes=value("retry_window_minutes"),
            on_conflict="reject" if value("on_conflict") == "reject" else "auto",
        )

    def problems(self, file_chosen: bool = False) -> list[FieldProblem]:
        """What is wrong before anything is asked of the service."""
        found: list[FieldProblem] = []
        if not self.title:
            found.append(FieldProblem("title", "give the announcement a title"))
        elif len(self.title) > 200:
            found.append(FieldProblem("title", "at most 200 characters"))
        if self.source == "text" and not self.text:
            found.append(FieldProblem("text", "type what the speakers should say"))
        elif self.source == "file" and not file_chosen:
            found.append(FieldProblem("file", "choose an audio file (MP3, WAV or OGG)"))
        elif self.source == "library" and not self.audio_asset_id.isdigit():
            found.append(FieldProblem("audio_asset_id", "choose a recording"))
        elif self.source not in SOURCES:
            found.append(FieldProblem("source", "choose text, a file or a recording"))
        if not self.starts_at:
            found.append(FieldProblem("starts_at", "choose when it first plays"))
        elif self._start() is None:
            found.append(FieldProblem("starts_at", "give a date and time, like 2025-03-01 06:30"))
        if self.repeat not in REPEATS:
            found.append(FieldProblem("repeat", "choose how it repeats"))
        elif self.repeat == "custom" and not self.rrule:
            found.append(
                FieldProblem(
                    "rrule", "type a rule such as FREQ=DAILY;BYHOUR=6;BYMINUTE=30, or a preset"
                )
            )
        if not self.wards:
            found.append(FieldProblem("wards", "choose at least one ward"))
        _whole(self.volume, "volume", 0, 100, found)
        if self.retry_window_minutes:
            _whole(self.retry_window_minutes, "retry_window_minutes", 0, 120, found)
        if self.priority not in PRIORITIES:
            found.append(FieldProblem("priority", "choose normal, priority or emergency"))
        return found

    def _start(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.starts_at)
        except ValueError:
            return None

    def request(self) -> BroadcastIn:
        """The service's request; ValidationFailed names the fields to fix."""
        found = self.problems()
        if found:
            raise ValidationFailed("the form needs changes", found)
        body: dict[str, Any] = {
            "title": self.title,
            "targets": {"wards": self.wards},
            "starts_at": self._start(),
            "rrule": self.rrule if self.repeat == "custom" else REPEATS[self.repeat].rrule,
            "exdates": [d.strip() for d in re.split(r"[,;\n]+", self.exdates) if d.strip()],
            "volume": int(self.volume),
            "priority": self.priority,
            "retry_window_minutes": int(self.retry_window_minutes)
            if self.retry_window_minutes
            else None,
            "on_conflict": self.on_conflict,
        }
        if self.source == "text":
            body |= {"text": self.text, "voice": self.voice or None}
        else:
            body["audio_asset_id"] = int(self.audio_asset_id)
        try:
            return msgspec.convert(body, BroadcastIn)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$.")
            name = form_field(where.rstrip("`")) if where else "form"
            raise ValidationFailed(
                "the form needs changes", [FieldProblem(name, message)]
            ) from None


def _whole(text: str, name: str, low: int, high: int, found: list[FieldProblem]) -> None:
    if not (text.isdigit() and low <= int(text) <= high):
        found.append(FieldProblem(name, f"a whole number from {low} to {high}"))


def upload_ward(principal: Principal, wards: list[str]) -> str | None:
    """The ward an uploaded file belongs to: the one targeted, else one of the uploader's
    (ward staff may see only their wards' recordings), else the district library."""
    if len(wards) == 1 or (principal.ward_ids is not None and wards):
        return wards[0]
    return None


class BroadcastConsoleController(Controller):
    include_in_schema = False

    @get("/broadcasts")
    async def broadcasts_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        lifecycle: Annotated[str, QueryParameter(name="state")] = "",
        before: FromQuery[int | None] = None,
    ) -> Template:
        rt = runtime(request)
        state = lifecycle if lifecycle in ("active", "cancelled") else ""
        items = await operations.list_broadcasts(
            rt, principal, state or None, before, PAGE_SIZE + 1
        )
        next_link = None
        if len(items) > PAGE_SIZE:
            items = items[:PAGE_SIZE]
            next_link = "/broadcasts?" + urlencode({"state": state, "before": items[-1].id})
        return Template(
            "broadcasts.html",
            context={
                "principal": principal,
                "items": items,
                "state": state,
                "next_link": next_link,
                "timezone": rt.settings.timezone,
                "may_schedule": operations.may_schedule(principal),
                "local": _clock(rt),
                "schedule_label": schedule_label,
            },
        )

    @get("/broadcasts/new")
    async def new_page(self, request: Request[Any, Any, Any], principal: CurrentUser) -> Template:
        operations.require_scheduling(principal)
        rt = runtime(request)
        form = BroadcastForm(
            retry_window_minutes=str(rt.settings.default_retry_window_minutes),
            voice=rt.settings.tts_voices[0],
        )
        if principal.ward_ids is not None and len(principal.ward_ids) == 1:
            form.wards = [w.code for w in await registry.list_wards(principal)]
        return await _form_page(rt, principal, form)

    # A form cannot send the API's X-CSRF-Token header: it carries the session's token instead.
    @post(
        "/broadcasts/new",
        guards=[audio_form_size, form_csrf],
        request_max_body_size=None,
        status_code=200,
    )
    async def new_submit(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template | Redirect:
        operations.require_scheduling(principal)
        rt = runtime(request)
        submitted = await request.form()
        form = BroadcastForm.read(submitted)
        upload = submitted.get("file")
        chosen = isinstance(upload, UploadFile) and bool(upload.filename)
        notice = None
        try:
            found = form.problems(file_chosen=chosen)
            if found:
                raise ValidationFailed("the form needs changes", found)
            if form.source == "file" and isinstance(upload, UploadFile):
                asset = await _upload(rt, principal, upload, form)
                # Kept in the library and chosen, so the form need not send the file again.
                form.source, form.audio_asset_id = "library", str(asset.id)
                notice = f"{asset.name} ({asset.duration_s:.0f} s) is now in the audio library."
            data = form.request()
            if submitted.get("action") == "save":
                created = await operations.create(rt, principal, data)
                return Redirect(f"/broadcasts/{created.broadcast.id}?saved=1", status_code=303)
            plan = await operations.preview(rt, principal, data)
        except HubError as exc:
            return await _form_page(rt, principal, form, error=exc, notice=notice)
        return await _form_page(rt, principal, form, plan=plan, notice=notice)

    @get("/broadcasts/{broadcast_id:int}")
    async def broadcast_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        broadcast_id: FromPath[int],
        saved: FromQuery[bool] = False,
        cancelled: FromQuery[bool] = False,
    ) -> Template:
        rt = runtime(request)
        broadcast = await operations.get(rt, principal, broadcast_id)
        fired = await operations.occurrences_of(rt, principal, broadcast_id, FIRED_SHOWN)
        upcoming = await operations.upcoming(rt, principal, broadcast_id, UPCOMING_SHOWN)
        try:
            asset = await operations.get_asset(rt, principal, broadcast.audio_asset_id)
        except NotFound:
            asset = None  # a recording of a ward outside the viewer's; the broadcast is not
        return Template(
            "broadcast.html",
            context={
                "principal": principal,
                "b": broadcast,
                "asset": asset,
                "fired": fired,
                "upcoming": upcoming,
                "upcoming_shown": UPCOMING_SHOWN,
                "saved": saved,
                "cancelled": cancelled,
                "may_schedule": operations.may_schedule(principal),
                "local": _clock(rt),
                "schedule_label": schedule_label,
                "csrf_field": CSRF_FIELD,
            },
        )

    @post("/broadcasts/{broadcast_id:int}/cancel", guards=[form_csrf], status_code=303)
    async def cancel(
        self, request: Request[Any, Any, Any], principal: CurrentUser, broadcast_id: FromPath[int]
    ) -> Redirect:
        await operations.cancel(runtime(request), principal, broadcast_id)
        return Redirect(f"/broadcasts/{broadcast_id}?cancelled=1", status_code=303)

    @get("/broadcasts/{broadcast_id:int}/occurrences/{occurrence_id:int}")
    async def occurrence_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        broadcast_id: FromPath[int],
        occurrence_id: FromPath[int],
        delivery: Annotated[str, QueryParameter(name="state")] = "",
        ward: FromQuery[str] = "",
        q: FromQuery[str] = "",
    ) -> Template:
        rt = runtime(request)
        report = await operations.occurrence_report(rt, principal, occurrence_id)
        if report.broadcast_id != broadcast_id:
            raise NotFound(f"no occurrence {occurrence_id} of broadcast {broadcast_id}")
        states = Counter(s.state for s in report.speakers)
        wards = sorted({s.ward for s in report.speakers if s.ward})
        needle = q.strip().lower()

        def shown(row: SpeakerDelivery) -> bool:
            return (
                (not delivery or row.state == delivery)
                and (not ward or row.ward == ward)
                and (not needle or needle in row.speaker.lower())
            )

        return Template(
            "occurrence.html",
            context={
                "principal": principal,
                "report": report,
                "rows": [s for s in report.speakers if shown(s)],
                "states": [(s, states[s]) for s in DELIVERY_STATES if states[s] or s == delivery],
                "wards": wards,
                "filters": {"state": delivery, "ward": ward, "q": q},
                "filter_link": _filter_link(broadcast_id, occurrence_id, ward, q),
                "open": report.status in OPEN_STATUSES,
                "local": _clock(rt),
            },
        )

    # Volume and stop from the console: a speaker's page, and a broadcast's wards.

    @post("/devices/{uid:str}/control", guards=[form_csrf], status_code=303)
    async def speaker_control(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Redirect:
        return await _control_from_form(request, principal, TargetsIn(speakers=[uid]))

    @post("/broadcasts/{broadcast_id:int}/control", guards=[form_csrf], status_code=303)
    async def wards_control(
        self, request: Request[Any, Any, Any], principal: CurrentUser, broadcast_id: FromPath[int]
    ) -> Redirect:
        broadcast = await operations.get(runtime(request), principal, broadcast_id)
        return await _control_from_form(request, principal, TargetsIn(wards=broadcast.wards))

    @get("/speaker-controls/{request_id:str}")
    async def control_page(
        self, request: Request[Any, Any, Any], principal: CurrentUser, request_id: FromPath[str]
    ) -> Template:
        rt = runtime(request)
        answer = await speaker_controls.get_control(rt.pool, principal, request_id)
        return Template(
            "speaker_control.html",
            context={"principal": principal, "c": answer, "local": _clock(rt)},
        )


def _clock(rt: Broadcasts) -> Clock:
    return Clock(ZoneInfo(rt.settings.timezone))


def _filter_link(broadcast_id: int, occurrence_id: int, ward: str, q: str) -> str:
    """The report's address with a state filter to append, the other filters kept."""
    kept = urlencode({k: v for k, v in {"ward": ward, "q": q}.items() if v})
    base = f"/broadcasts/{broadcast_id}/occurrences/{occurrence_id}?"
    return base + (kept + "&" if kept else "") + "state="


async def _upload(
    rt: Broadcasts, principal: Principal, upload: UploadFile, form: BroadcastForm
) -> AssetOut:
    raw = await upload.read()
    limit = rt.settings.max_audio_bytes
    if len(raw) > limit:
        raise PayloadTooLarge(
            "the audio file is too large",
            [FieldProblem("file", f"at most {limit // (1024 * 1024)} MiB")],
        )
    name = (upload.filename or form.title)[:200]
    return await operations.upload_audio(
        rt, principal, raw, name, upload_ward(principal, form.wards)
    )


async def _form_page(
    rt: Broadcasts,
    principal: Principal,
    form: BroadcastForm,
    *,
    error: HubError | None = None,
    plan: PlanOut | None = None,
    notice: str | None = None,
) -> Template:
    field_errors: dict[str, list[str]] = {}
    for problem in error.errors if error else ():
        field_errors.setdefault(form_field(problem.field), []).append(problem.message)
    problems = [
        (FIELD_LABELS.get(form_field(p.field), p.field), p.message)
        for p in (error.errors if error else ())
    ]
    s = rt.settings
    return Template(
        "broadcast_form.html",
        status_code=error.status if error else 200,
        context={
            "principal": principal,
            "form": form,
            "error": error,
            "problems": problems,
            "field_errors": field_errors,
            "plan": plan,
            "notice": notice,
            "wards": await registry.list_wards(principal),
            "assets": await operations.list_assets(rt, principal, LIBRARY_SHOWN),
            "voices": s.tts_voices,
            "repeats": REPEATS,
            "slots_shown": PLAN_SLOTS_SHOWN,
            "priorities": PRIORITIES,
            "timezone": s.timezone,
            "max_upload_bytes": s.max_audio_bytes,
            "max_upload_mib": s.max_audio_bytes // (1024 * 1024),
            "tts_max_chars": s.tts_max_chars,
            "csrf_field": CSRF_FIELD,
            "local": _clock(rt),
        },
    )


async def _control_from_form(
    request: Request[Any, Any, Any], principal: Principal, targets: TargetsIn
) -> Redirect:
    """A volume or stop form: sent at once, then the speakers' answers on their own page."""
    form = await request.form()
    action = form.get("action")
    if action not in ("set_volume", "stop"):
        raise ValidationFailed("choose set volume or stop", [FieldProblem("action", "unknown")])
    volume = None
    if action == "set_volume":
        raw = form.get("volume")
        try:
            volume = int(raw) if isinstance(raw, str) else -1
        except ValueError:
            volume = -1
        if not 0 <= volume <= 100:
            raise ValidationFailed(
                "the volume is 0 to 100", [FieldProblem("volume", "give a volume from 0 to 100")]
            )
    channel = runtime_of(request).find(SPEAKERS)
    answer = await speaker_controls.control(
        runtime(request).pool,
        channel,
        principal,
        speaker_controls.ControlIn(action=action, targets=targets, volume=volume),
    )
    return Redirect(f"/speaker-controls/{answer.request_id}", status_code=303)
