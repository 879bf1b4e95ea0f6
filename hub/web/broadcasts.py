"""Console pages for loudspeaker broadcasts: the list, the week calendar, the scheduling form
with its preview of conflicts (refreshed as the form changes) and of the spoken text, the
emergency broadcast and its confirmation, a broadcast's details and occurrences, and each
occurrence's speaker report.

Roles and ward scope are the broadcasts service's to enforce: these pages turn a form into
its requests and its answers into HTML, nothing more.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from babel.dates import format_datetime
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict, MultiDict, UploadFile
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
from hub.web import broadcast_forms as forms
from hub.web.broadcast_forms import Gettext, Recurrence
from hub.web.i18n import language_of, translations


def _(message: str) -> str:
    """Marks a source string for the catalog; the page translates it when it shows it."""
    return message


PAGE_SIZE = 50
FIRED_SHOWN = 100
UPCOMING_SHOWN = 20
LIBRARY_SHOWN = 200
PLAN_SLOTS_SHOWN = 12
PRIORITIES = ("normal", "priority", "emergency")
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
# espeak-ng's Vietnamese voices (all three are male voices of its own).
VOICE_NAMES = {
    "vi": _("Northern male voice (Hà Nội)"),
    "vi-vn-x-central": _("Central male voice (Huế)"),
    "vi-vn-x-south": _("Southern male voice (Sài Gòn)"),
}
FIELD_LABELS = {
    "form": _("Form"),
    "title": _("Title"),
    "source": _("Audio"),
    "text": _("Text"),
    "voice": _("Voice"),
    "file": _("Audio file"),
    "audio_asset_id": _("Recording"),
    "start_date": _("Date"),
    "start_time": _("Time"),
    "starts_at": _("Start"),
    "repeat": _("Repeats"),
    "days": _("Days of the week"),
    "month_day": _("Day of the month"),
    "ends": _("Ends"),
    "until": _("Last day"),
    "count": _("Number of times"),
    "rrule": _("Recurrence"),
    "exdates": _("Skipped dates"),
    "wards": _("Wards"),
    "volume": _("Volume"),
    "priority": _("Level"),
    "retry_window_minutes": _("Retry window"),
    "on_conflict": _("On overlap"),
}


# What the broadcasts service says, in the page's language: its fixed sentences as they are,
# and the ones carrying values by their pattern (times it gives in UTC are shown local).
SERVICE_SENTENCES = (
    _("the broadcast overlaps others on the same speakers"),
    _("the broadcast could not be placed between the others"),
    _("the text cannot be spoken as given"),
    _("give the text to be spoken"),
    _("the text contains control characters"),
    _("exceptions apply to a recurring broadcast (give rrule)"),
    _("ward staff reach their own wards: name them instead"),
    _("unknown audio"),
    _("give the audio or the text"),
)
SERVICE_PATTERNS = (
    (
        r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \((?P<zone>[^)]+)\) is in the past$",
        _("%(when)s (%(zone)s) is in the past"),
    ),
    (
        r"^(?P<ward>\S+) is outside the wards you serve$",
        _("%(ward)s is outside the wards you serve"),
    ),
    (r"^no audio (?P<id>\d+)$", _("no audio %(id)s")),
    (r"^no ward with code '(?P<ward>[^']*)'$", _("no ward with code %(ward)s")),
    (r"^not a valid RFC 5545 RRULE: (?P<why>.*)$", _("not a valid RFC 5545 RRULE: %(why)s")),
    (r"^'(?P<day>[^']*)' is not an occurrence of the rule$", _("%(day)s is not a day it plays on")),
    (
        r"^the occurrence at (?P<when>\d{4}-\d\d-\d\d \d\d:\d\d) falls in the quiet hours of "
        r"(?P<ward>\S+) \((?P<hours>[^)]+)\); only emergencies may play then$",
        _(
            "the occurrence at %(when)s falls in the quiet hours of %(ward)s (%(hours)s); "
            "only emergencies may play then"
        ),
    ),
    (
        r"^the occurrence at (?P<utc>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)Z overlaps (?P<level>\w+) "
        r"broadcast (?P<id>\d+) \((?P<title>.*), (?P<start>[\d:]+)–(?P<end>[\d:]+)Z\) on "
        r"(?P<n>\d+) speakers$",
        _(
            "the occurrence at %(when)s overlaps broadcast %(id)s (%(title)s, %(start)s–%(end)s) "
            "on %(n)s speakers"
        ),
    ),
    (
        r"^the rule gives no occurrence within (?P<days>\d+) days of starts_at.*$",
        _("the rule gives no occurrence within %(days)s days of the first day"),
    ),
    (
        r"^occurrences (?P<gap>.+) apart overlap each other: the audio lasts (?P<s>\d+) s$",
        _("occurrences %(gap)s apart overlap each other: the audio lasts %(s)s s"),
    ),
)


def service_message(message: str, gettext: Gettext, zone: ZoneInfo) -> str:
    """A problem the service reported, translated where the catalog knows it."""
    translated = gettext(message)
    if translated != message:
        return translated
    for pattern, template in SERVICE_PATTERNS:
        found = re.match(pattern, message)
        if found is None:
            continue
        values = dict(found.groupdict())
        if "utc" in values:
            moment = datetime.fromisoformat(values.pop("utc")).replace(tzinfo=UTC)
            values["when"] = moment.astimezone(zone).strftime("%d/%m/%Y %H:%M:%S")
            for key in ("start", "end"):
                clock = datetime.combine(moment.date(), forms.parse_seconds(values[key]), UTC)
                values[key] = clock.astimezone(zone).strftime("%H:%M:%S")
        elif "when" in values and "zone" not in values:
            values["when"] = datetime.fromisoformat(values["when"]).strftime("%d/%m/%Y %H:%M")
        elif "zone" in values:
            values["when"] = datetime.fromisoformat(values["when"]).strftime("%d/%m/%Y %H:%M:%S")
        if "title" in values:
            values["title"] = values["title"].strip("'\"")
        return gettext(template) % values
    return message


def runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Broadcasts:
    return runtime_of(connection).get(BROADCASTS)


def gettext_of(request: Request[Any, Any, Any]) -> Gettext:
    return translations(language_of(request)).gettext


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
    """Instants as the district's clocks show them, in the page's language (templates call
    it as ``local``); plain dates and times go through the i18n filters."""

    zone: ZoneInfo
    language: str

    def day(self, moment: datetime | None) -> str:
        """Weekday and date: "Thứ Hai, 07/12/2026"."""
        if moment is None:
            return "—"
        return format_datetime(moment, "EEEE, dd/MM/yyyy", tzinfo=self.zone, locale=self.language)

    def weekday(self, day: date) -> str:
        return forms.day_names(self.language)[forms.WEEKDAYS[day.weekday()]]

    def seconds(self, moment: datetime | None) -> str:
        """The local time with its seconds (where the conflict gap is a few of them)."""
        if moment is None:
            return "—"
        return moment.astimezone(self.zone).strftime("%H:%M:%S")

    def precise(self, moment: datetime | None) -> str:
        """To the millisecond: speakers start together within a few of them."""
        if moment is None:
            return ""
        return moment.astimezone(self.zone).strftime("%H:%M:%S.%f")[:-3]


def as_request(
    body: dict[str, Any],
    source: str,
    text: str,
    voice: str,
    audio_asset_id: str,
    gettext: Gettext,
) -> BroadcastIn:
    """A form's broadcast with its audio, as the API would take it; a value the API refuses
    is named against the form's own field."""
    if source == "text":
        body |= {"text": text, "voice": voice or None}
    else:
        body["audio_asset_id"] = int(audio_asset_id)
    try:
        return msgspec.convert(body, BroadcastIn)
    except msgspec.ValidationError as exc:
        message, _sep, where = str(exc).partition(" - at `$.")
        name = form_field(where.rstrip("`")) if where else "form"
        raise ValidationFailed(
            gettext("the form needs changes"), [FieldProblem(name, message)]
        ) from None


def form_field(api_field: str) -> str:
    """The form field an API field problem (``targets.wards[1]``, ``exdates[0]``) is about."""
    head = re.split(r"[.\[]", api_field, maxsplit=1)[0]
    if head == "starts_at":
        return "start_date"
    return "wards" if head in ("targets", "ward") else head


def voice_name(voice: str | None) -> str:
    """The catalog's name of a voice (translated by the page), else its id."""
    return VOICE_NAMES.get(voice or "", voice or "")


@dataclass
class BroadcastForm:
    """The scheduling form as typed, so a refused form comes back filled in."""

    title: str = ""
    source: str = "text"
    text: str = ""
    voice: str = ""
    audio_asset_id: str = ""
    start_date: str = ""
    start_time: str = ""
    recurrence: Recurrence = field(default_factory=Recurrence)
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
            start_date=value("start_date"),
            start_time=value("start_time"),
            recurrence=forms.read_recurrence(form),
            exdates=value("exdates"),
            wards=[w for w in form.getall("wards", []) if isinstance(w, str) and w],
            volume=value("volume"),
            priority=value("priority", "normal"),
            retry_window_minutes=value("retry_window_minutes"),
            on_conflict="reject" if value("on_conflict") == "reject" else "auto",
        )

    def problems(self, gettext: Gettext, file_chosen: bool = False) -> list[FieldProblem]:
        """What is wrong before anything is asked of the service."""
        found: list[FieldProblem] = []
        if not self.title:
            found.append(FieldProblem("title", gettext("give the announcement a title")))
        elif len(self.title) > 200:
            found.append(FieldProblem("title", gettext("at most 200 characters")))
        found += self.audio_problems(gettext, file_chosen)
        if not self.start_date:
            found.append(FieldProblem("start_date", gettext("choose the day it first plays")))
        elif (problem := forms.day_problem(self.start_date, gettext)) is not None:
            found.append(FieldProblem("start_date", problem))
        if not self.start_time:
            found.append(FieldProblem("start_time", gettext("choose the time it plays")))
        elif forms.parse_clock(self.start_time) is None:
            found.append(
                FieldProblem(
                    "start_time",
                    gettext("write the time as HH:MM on a 24-hour clock, e.g. 06:30 or 17:45"),
                )
            )
        found += self.recurrence.problems(forms.parse_day(self.start_date), gettext)
        for day in self._exdate_texts():
            if forms.parse_day(day) is None:
                found.append(
                    FieldProblem(
                        "exdates",
                        gettext("%(day)s is not a date written as dd/mm/yyyy") % {"day": day},
                    )
                )
        if not self.wards:
            found.append(FieldProblem("wards", gettext("choose at least one ward")))
        _whole(self.volume, "volume", 0, 100, found, gettext)
        if self.retry_window_minutes:
            _whole(self.retry_window_minutes, "retry_window_minutes", 0, 120, found, gettext)
        if self.priority not in PRIORITIES:
            found.append(FieldProblem("priority", gettext("choose normal, priority or emergency")))
        return found

    def audio_problems(self, gettext: Gettext, file_chosen: bool) -> list[FieldProblem]:
        if self.source == "text" and not self.text:
            return [FieldProblem("text", gettext("type what the speakers should say"))]
        if self.source == "file" and not file_chosen:
            return [FieldProblem("file", gettext("choose an audio file (MP3, WAV or OGG)"))]
        if self.source == "library" and not self.audio_asset_id.isdigit():
            return [FieldProblem("audio_asset_id", gettext("choose a recording"))]
        if self.source not in SOURCES:
            return [FieldProblem("source", gettext("choose text, a file or a recording"))]
        return []

    def _exdate_texts(self) -> list[str]:
        return [d.strip() for d in re.split(r"[,;\n]+", self.exdates) if d.strip()]

    def _start(self) -> datetime | None:
        day, clock = forms.parse_day(self.start_date), forms.parse_clock(self.start_time)
        # Naive: the service reads it as the district's local time.
        return datetime.combine(day, clock) if day and clock else None

    def rrule(self, zone: ZoneInfo) -> str | None:
        return self.recurrence.to_rrule(zone)

    def request(self, gettext: Gettext, zone: ZoneInfo) -> BroadcastIn:
        """The service's request; ValidationFailed names the fields to fix."""
        found = self.problems(gettext, file_chosen=True)
        if found:
            raise ValidationFailed(gettext("the form needs changes"), found)
        exdates = []
        for text in self._exdate_texts():
            day = forms.parse_day(text)
            assert day is not None
            exdates.append(day.isoformat())
        body: dict[str, Any] = {
            "title": self.title,
            "targets": {"wards": self.wards},
            "starts_at": self._start(),
            "rrule": self.rrule(zone),
            "exdates": exdates,
            "volume": int(self.volume),
            "priority": self.priority,
            "retry_window_minutes": int(self.retry_window_minutes)
            if self.retry_window_minutes
            else None,
            "on_conflict": self.on_conflict,
        }
        return as_request(body, self.source, self.text, self.voice, self.audio_asset_id, gettext)


def _whole(
    text: str, name: str, low: int, high: int, found: list[FieldProblem], gettext: Gettext
) -> None:
    if not (text.isdigit() and low <= int(text) <= high):
        found.append(
            FieldProblem(
                name,
                gettext("a whole number from %(low)d to %(high)d") % {"low": low, "high": high},
            )
        )


@dataclass
class EmergencyForm:
    """The emergency form: what to say, to which wards, now."""

    title: str = ""
    source: str = "text"
    text: str = ""
    voice: str = ""
    audio_asset_id: str = ""
    wards: list[str] = field(default_factory=list)
    volume: str = "100"

    @classmethod
    def read(cls, form: FormMultiDict | MultiDict[Any]) -> EmergencyForm:
        def value(name: str, default: str = "") -> str:
            given = form.get(name, default)
            return given.strip() if isinstance(given, str) else default

        return cls(
            title=value("title"),
            source="library" if value("source") == "library" else "text",
            text=value("text"),
            voice=value("voice"),
            audio_asset_id=value("audio_asset_id"),
            wards=[w for w in form.getall("wards", []) if isinstance(w, str) and w],
            volume=value("volume", "100"),
        )

    def request(self, gettext: Gettext, now: datetime) -> BroadcastIn:
        """Played at once, pre-empting everything (the service's emergency, with the wards
        named so the confirmation and the sending reach the same speakers)."""
        found: list[FieldProblem] = []
        if not self.title:
            found.append(FieldProblem("title", gettext("give the announcement a title")))
        elif len(self.title) > 200:
            found.append(FieldProblem("title", gettext("at most 200 characters")))
        found += BroadcastForm(
            source=self.source, text=self.text, audio_asset_id=self.audio_asset_id
        ).audio_problems(gettext, False)
        if not self.wards:
            found.append(FieldProblem("wards", gettext("choose at least one ward")))
        _whole(self.volume, "volume", 0, 100, found, gettext)
        if found:
            raise ValidationFailed(gettext("the form needs changes"), found)
        body: dict[str, Any] = {
            "title": self.title,
            "targets": {"wards": self.wards},
            "starts_at": now,
            "volume": int(self.volume),
            "priority": "emergency",
        }
        return as_request(body, self.source, self.text, self.voice, self.audio_asset_id, gettext)


def upload_ward(principal: Principal, wards: list[str]) -> str | None:
    """The ward an uploaded file belongs to: the one targeted, else one of the uploader's
    (ward staff may see only their wards' recordings), else the district library."""
    if len(wards) == 1 or (principal.ward_ids is not None and wards):
        return wards[0]
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CalendarDay:
    day: date
    entries: list[Any]
    today: bool


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
                "may_schedule": operations.may_schedule(principal),
                **(await _page_helpers(request, rt, principal)),
            },
        )

    @get("/broadcasts/calendar")
    async def calendar_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        week: FromQuery[str] = "",
    ) -> Template:
        """Monday to Sunday on the district's clocks; recurrences expanded by the slice."""
        rt = runtime(request)
        zone = _zone(rt)
        today = utc_now().astimezone(zone).date()
        chosen = forms.parse_day(week) if week else None
        if week and chosen is None:
            raise NotFound(f"no week {week!r}: give its Monday as yyyy-mm-dd")
        monday = forms.week_start(
            datetime.combine(chosen or today, datetime.min.time(), zone), zone
        )
        start = datetime.combine(monday, datetime.min.time(), zone)
        answer = await operations.calendar(rt, principal, start, start + timedelta(days=7), None)
        by_day: dict[date, list[Any]] = {monday + timedelta(days=n): [] for n in range(7)}
        for entry in answer.items:
            by_day.setdefault(entry.starts_at.astimezone(zone).date(), []).append(entry)
        days = [CalendarDay(d, by_day[d], d == today) for d in sorted(by_day) if d in by_day]
        return Template(
            "broadcast_calendar.html",
            context={
                "principal": principal,
                "days": days[:7],
                "monday": monday,
                "sunday": monday + timedelta(days=6),
                "previous_week": (monday - timedelta(days=7)).isoformat(),
                "next_week": (monday + timedelta(days=7)).isoformat(),
                "this_week": forms.week_start(utc_now(), zone).isoformat(),
                "is_this_week": monday == forms.week_start(utc_now(), zone),
                "truncated": answer.truncated,
                "may_schedule": operations.may_schedule(principal),
                **(await _page_helpers(request, rt, principal)),
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
        return await _form_page(request, rt, principal, form)

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
        gettext = gettext_of(request)
        submitted = await request.form()
        form = BroadcastForm.read(submitted)
        upload = submitted.get("file")
        chosen = isinstance(upload, UploadFile) and bool(upload.filename)
        notice = None
        try:
            found = form.problems(gettext, file_chosen=chosen)
            if found:
                raise ValidationFailed(gettext("the form needs changes"), found)
            if form.source == "file" and isinstance(upload, UploadFile):
                asset = await _upload(rt, principal, upload, form)
                # Kept in the library and chosen, so the form need not send the file again.
                form.source, form.audio_asset_id = "library", str(asset.id)
                notice = gettext("%(name)s (%(seconds).0f s) is now in the audio library.") % {
                    "name": asset.name,
                    "seconds": asset.duration_s,
                }
            data = form.request(gettext, _zone(rt))
            if submitted.get("action") == "save":
                created = await operations.create(rt, principal, data)
                return Redirect(f"/broadcasts/{created.broadcast.id}?saved=1", status_code=303)
            plan = await operations.preview(rt, principal, data)
        except HubError as exc:
            return await _form_page(request, rt, principal, form, error=exc, notice=notice)
        return await _form_page(request, rt, principal, form, plan=plan, notice=notice)

    @post("/broadcasts/new/plan", guards=[form_csrf], status_code=200)
    async def plan_fragment(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template:
        """The "Before saving" panel for the form as it stands, nothing saved: the page
        asks for it again as the form changes (a file is not sent until the form is)."""
        operations.require_scheduling(principal)
        rt = runtime(request)
        gettext = gettext_of(request)
        form = BroadcastForm.read(await request.form())
        plan = error = None
        try:
            if form.source == "file":
                raise ValidationFailed(
                    gettext("the form needs changes"),
                    [
                        FieldProblem(
                            "file", gettext("press Preview conflicts to send the file first")
                        )
                    ],
                )
            plan = await operations.preview(rt, principal, form.request(gettext, _zone(rt)))
        except HubError as exc:
            error = exc
        return Template(
            "broadcast_plan.html",
            context=await _plan_context(request, rt, principal, form, plan, error),
        )

    @get("/broadcasts/emergency")
    async def emergency_page(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template:
        """The emergency form; filled in again from its address when "Change" comes back."""
        operations.require_scheduling(principal)
        rt = runtime(request)
        if request.query_params.get("title") is not None:
            form = EmergencyForm.read(request.query_params)
        else:
            wards = await registry.list_wards(principal)
            form = EmergencyForm(voice=rt.settings.tts_voices[0], wards=[w.code for w in wards])
        return await _emergency_page(request, rt, principal, form)

    @get("/broadcasts/emergency/confirm")
    async def emergency_confirm(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template:
        """What sending would do, now: the wards by name, the speakers, what it interrupts
        or pushes aside. Nothing is sent from here (a GET), so it can be looked at again."""
        operations.require_scheduling(principal)
        rt = runtime(request)
        form = EmergencyForm.read(request.query_params)
        try:
            plan = await operations.preview(
                rt, principal, form.request(gettext_of(request), utc_now())
            )
        except HubError as exc:
            return await _emergency_page(request, rt, principal, form, error=exc)
        names = {w.code: w.name for w in await registry.list_wards(principal)}
        now = utc_now()
        preempted = [c for c in plan.conflicts if c.resolution == "preempts"]
        return Template(
            "broadcast_emergency_confirm.html",
            context={
                "principal": principal,
                "form": form,
                "plan": plan,
                "ward_names": [names.get(code, code) for code in plan.wards],
                "preempted": preempted,
                "playing_now": {
                    c.other_broadcast_id for c in preempted if c.other_starts_at <= now
                },
                "change_link": "/broadcasts/emergency?" + str(request.url.query),
                "csrf_field": CSRF_FIELD,
                **(await _page_helpers(request, rt, principal)),
            },
        )

    @post("/broadcasts/emergency", guards=[form_csrf], status_code=200)
    async def emergency_send(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template | Redirect:
        """Confirmed: sent at once, then the speakers' report."""
        operations.require_scheduling(principal)
        rt = runtime(request)
        form = EmergencyForm.read(await request.form())
        try:
            data = form.request(gettext_of(request), utc_now())
            created = await operations.create(rt, principal, data)
        except HubError as exc:
            return await _emergency_page(request, rt, principal, form, error=exc)
        return Redirect(f"/broadcasts/{created.broadcast.id}/report", status_code=303)

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
                "csrf_field": CSRF_FIELD,
                **(await _page_helpers(request, rt, principal)),
            },
        )

    @get("/broadcasts/{broadcast_id:int}/report")
    async def latest_report(
        self, request: Request[Any, Any, Any], principal: CurrentUser, broadcast_id: FromPath[int]
    ) -> Template | Redirect:
        """The report of its latest occurrence, once the scheduler has taken it up (an
        emergency, moments after it is sent); until then a page that looks again."""
        rt = runtime(request)
        broadcast = await operations.get(rt, principal, broadcast_id)
        fired = await operations.occurrences_of(rt, principal, broadcast_id, 1)
        if fired:
            return Redirect(
                f"/broadcasts/{broadcast_id}/occurrences/{fired[0].id}", status_code=303
            )
        return Template(
            "broadcast_waiting.html",
            context={
                "principal": principal,
                "b": broadcast,
                **(await _page_helpers(request, rt, principal)),
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
                **(await _page_helpers(request, rt, principal)),
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
            context={
                "principal": principal,
                "c": answer,
                **(await _page_helpers(request, rt, principal)),
            },
        )


def _zone(rt: Broadcasts) -> ZoneInfo:
    return ZoneInfo(rt.settings.timezone)


async def _page_helpers(
    request: Request[Any, Any, Any], rt: Broadcasts, principal: Principal
) -> dict[str, Any]:
    language = language_of(request)
    names = {w.code: w.name for w in await registry.list_wards(principal)}

    def named_wards(codes: list[str]) -> str:
        """Wards by name (a ward outside the viewer's keeps its code)."""
        return ", ".join(names.get(code, code) for code in codes)

    def day_of(text: str) -> str:
        """A stored local day (ISO) as the page writes days; anything else as it is."""
        day = forms.parse_day(text) if len(text) == 10 else None
        return day.strftime("%d/%m/%Y") if day else text

    zone = _zone(rt)
    gettext = translations(language).gettext

    def rule_words(rrule: str | None) -> str | None:
        return forms.rule_words(rrule, gettext, language, zone)

    return {
        "local": Clock(zone, language),
        "rule_words": rule_words,
        "voice_name": voice_name,
        "named_wards": named_wards,
        "day_of": day_of,
        "timezone": rt.settings.timezone,
    }


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


def _problems(
    request: Request[Any, Any, Any], rt: Broadcasts, error: HubError | None
) -> tuple[str, dict[str, list[str]], list[tuple[str, str]]]:
    """The error's headline, its messages by form field, and (label, message) for the list."""
    if error is None:
        return "", {}, []
    gettext, zone = gettext_of(request), _zone(rt)
    field_errors: dict[str, list[str]] = {}
    problems = []
    for problem in error.errors:
        message = service_message(problem.message, gettext, zone)
        field_errors.setdefault(form_field(problem.field), []).append(message)
        problems.append((FIELD_LABELS.get(form_field(problem.field), problem.field), message))
    return service_message(error.detail, gettext, zone), field_errors, problems


async def _plan_context(
    request: Request[Any, Any, Any],
    rt: Broadcasts,
    principal: Principal,
    form: BroadcastForm,
    plan: PlanOut | None,
    error: HubError | None,
) -> dict[str, Any]:
    zone = _zone(rt)
    headline, field_errors, problems = _problems(request, rt, error)
    rrule = None
    if not form.recurrence.problems(forms.parse_day(form.start_date), forms.no_translation):
        rrule = form.rrule(zone)
    return {
        "plan": plan,
        "plan_error": error,
        "plan_headline": headline,
        "plan_problems": problems,
        "plan_field_errors": field_errors,
        "slots_shown": PLAN_SLOTS_SHOWN,
        "form": form,
        "rule": rrule,
        "rule_ok": rrule is not None or form.recurrence.repeat == "once",
        **(await _page_helpers(request, rt, principal)),
    }


async def _form_page(
    request: Request[Any, Any, Any],
    rt: Broadcasts,
    principal: Principal,
    form: BroadcastForm,
    *,
    error: HubError | None = None,
    plan: PlanOut | None = None,
    notice: str | None = None,
) -> Template:
    headline, field_errors, problems = _problems(request, rt, error)
    s = rt.settings
    language = language_of(request)
    return Template(
        "broadcast_form.html",
        status_code=error.status if error else 200,
        context={
            "principal": principal,
            "form": form,
            "error": error,
            "headline": headline,
            "problems": problems,
            "field_errors": field_errors,
            "notice": notice,
            "wards": await registry.list_wards(principal),
            "assets": await operations.list_assets(rt, principal, LIBRARY_SHOWN),
            "voices": s.tts_voices,
            "repeats": forms.REPEATS,
            "weekdays": list(forms.day_names(language).items()),
            "priorities": PRIORITIES,
            "date_pattern": forms.DATE_INPUT_PATTERN,
            "time_pattern": forms.TIME_INPUT_PATTERN,
            "max_upload_bytes": s.max_audio_bytes,
            "max_upload_mib": s.max_audio_bytes // (1024 * 1024),
            "tts_max_chars": s.tts_max_chars,
            "max_count": forms.MAX_COUNT,
            "csrf_field": CSRF_FIELD,
            **(await _plan_context(request, rt, principal, form, plan, None)),
        },
    )


async def _emergency_page(
    request: Request[Any, Any, Any],
    rt: Broadcasts,
    principal: Principal,
    form: EmergencyForm,
    *,
    error: HubError | None = None,
) -> Template:
    headline, field_errors, problems = _problems(request, rt, error)
    s = rt.settings
    return Template(
        "broadcast_emergency.html",
        status_code=error.status if error else 200,
        context={
            "principal": principal,
            "form": form,
            "error": error,
            "headline": headline,
            "problems": problems,
            "field_errors": field_errors,
            "wards": await registry.list_wards(principal),
            "assets": await operations.list_assets(rt, principal, LIBRARY_SHOWN),
            "voices": s.tts_voices,
            "tts_max_chars": s.tts_max_chars,
            "csrf_field": CSRF_FIELD,
            **(await _page_helpers(request, rt, principal)),
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
