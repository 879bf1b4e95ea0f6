"""Console pages for cameras: the list (ward scope, ONVIF health, clock drift, moves),
discovery and onboarding, a camera's page with its snapshot and live view (an alert's page,
with the live views of the cameras nearest to it, is in hub.web.alerts).

Roles and ward scope are the camera service's to enforce, through the same calls the camera
API makes: these pages turn forms into its requests and its answers (errors included) into
HTML. The players and snapshots fetch from the camera API, which checks them again.
Credentials typed into the onboarding form go to the service only: never back into a page,
never into a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template

from hub.auth import CSRF_FIELD, CurrentUser, Permission, Principal, form_csrf
from hub.cameras import (
    CAMERAS,
    CameraIn,
    CameraService,
    CandidateOut,
    CredentialsIn,
    DiscoverIn,
    DiscoveryOut,
    HealthStateName,
)
from hub.devices import registry
from hub.errors import FieldProblem, HubError, NotAuthenticated, ValidationFailed
from hub.runtime import EXCEPTION_HANDLERS, runtime_of
from hub.web.i18n import gettext_for

PAGE_SIZE = 50
MAX_TARGETS = 64  # DiscoverIn's limit
STATUSES = ("online", "late", "offline", "degraded", "maintenance", "unknown")
HEALTH_STATES: tuple[str, ...] = get_args(HealthStateName)


def _(message: str) -> str:
    """Marks an English message for the catalog; it is translated where it is shown."""
    return message


HEALTH_LABELS = {
    "up_auth": _("Answers ONVIF, credentials accepted"),
    "up_no_auth": _("Answers ONVIF, credentials rejected"),
    "reachable": _("Reachable, but not answering ONVIF"),
    "unreachable": _("Unreachable"),
}
STATUS_LABELS = {
    "online": _("Online"),
    "late": _("Late"),
    "offline": _("Offline"),
    "degraded": _("Degraded"),
    "maintenance": _("Maintenance"),
    "unknown": _("Unknown"),
}
# What went wrong, in the person's language; the service's own words follow it.
SUMMARIES = {
    "camera-credentials-rejected": _(
        "The camera rejected the username or password: check them, and that this user may "
        "use ONVIF."
    ),
    "camera-unavailable": _(
        "The camera could not be reached, or it did not answer as an ONVIF camera."
    ),
    "camera-timeout": _("The camera did not answer in time."),
    "camera-already-onboarded": _("This camera is onboarded already."),
    "forbidden": _("You may not do this: your role does not allow it, or the ward is not yours."),
    "not-found": _("There is no such camera or candidate, or it is in a ward you do not serve."),
    "conflict": _("This clashes with a camera registered already."),
    "validation-failed": _("Some of what was given cannot be used."),
    "bad-request": _("Some of what was given cannot be used."),
    "unavailable": _("The hub cannot do this right now."),
}
FALLBACK_SUMMARY = _("The hub could not do this.")
TITLES = {
    403: _("Not allowed"),
    404: _("Camera not found"),
}
FALLBACK_TITLE = _("Something went wrong")
FIELD_LABELS = {
    "targets": _("Addresses"),
    "wait_s": _("Listen for"),
    "multicast": _("Multicast"),
    "username": _("Username"),
    "password": _("Password"),
    "ward": _("Ward"),
    "name": _("Name"),
    "host": _("Address"),
    "port": _("Port"),
    "candidate": _("Discovered camera"),
    "serial": _("Serial number"),
    "uid": _("Identifier"),
}


def _cameras(request: Request[Any, Any, Any]) -> CameraService:
    return runtime_of(request).get(CAMERAS)


@dataclass(frozen=True, slots=True)
class Trouble:
    """A refused request as a page shows it: a summary to translate, then the details."""

    status: int
    summary: str
    detail: str
    problems: list[tuple[str, str]]

    @classmethod
    def of(cls, error: HubError) -> Trouble:
        problems = [
            (FIELD_LABELS.get(_field_name(p.field), p.field), p.message) for p in error.errors
        ]
        return cls(
            error.status, SUMMARIES.get(error.slug, FALLBACK_SUMMARY), error.detail, problems
        )


def _field_name(api_field: str) -> str:
    """`targets[3]` is about the targets field."""
    return re.split(r"[.\[]", api_field, maxsplit=1)[0]


def _convert(body: dict[str, Any], shape: type[Any]) -> Any:
    """The service's request from a form; ValidationFailed names the field at fault."""
    try:
        return msgspec.convert(body, shape)
    except msgspec.ValidationError as exc:
        message, _sep, where = str(exc).partition(" - at `$.")
        raise ValidationFailed(
            "the form needs changes", [FieldProblem(where.rstrip("`") or "form", message)]
        ) from None


def _text(form: FormMultiDict, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


@dataclass
class DiscoveryForm:
    """The discovery form as typed, so a refused one comes back filled in."""

    targets: str = ""
    multicast: bool = False
    wait_s: str = ""

    @classmethod
    def read(cls, form: FormMultiDict) -> DiscoveryForm:
        return cls(_text(form, "targets"), _text(form, "multicast") == "on", _text(form, "wait_s"))

    def request(self) -> DiscoverIn:
        targets = [t for t in re.split(r"[\s,;]+", self.targets) if t]
        if len(targets) > MAX_TARGETS:
            raise ValidationFailed(
                "too many targets",
                [FieldProblem("targets", f"at most {MAX_TARGETS} addresses or ranges at once")],
            )
        wait: float | None = None
        if self.wait_s:
            try:
                wait = float(self.wait_s.replace(",", "."))
            except ValueError:
                raise ValidationFailed(
                    "the form needs changes",
                    [FieldProblem("wait_s", "a number of seconds, up to 30")],
                ) from None
        body = {"targets": targets, "multicast": self.multicast, "wait_s": wait}
        request: DiscoverIn = _convert(body, DiscoverIn)
        return request


@dataclass
class OnboardForm:
    """An onboarding form as typed, without its password: that is never shown again."""

    candidate: str = ""
    host: str = ""
    port: str = ""
    name: str = ""
    ward: str = ""
    username: str = ""

    @classmethod
    def read(cls, form: FormMultiDict) -> tuple[OnboardForm, str]:
        password = form.get("password", "")
        return (
            cls(
                candidate=_text(form, "candidate"),
                host=_text(form, "host"),
                port=_text(form, "port"),
                name=_text(form, "name"),
                ward=_text(form, "ward"),
                username=_text(form, "username"),
            ),
            password if isinstance(password, str) else "",
        )

    def request(self, password: str) -> CameraIn:
        problems = []
        if not self.ward:
            problems.append(FieldProblem("ward", "choose the ward the camera is in"))
        if not self.username:
            problems.append(FieldProblem("username", "give the camera's ONVIF username"))
        if not password:
            problems.append(FieldProblem("password", "give the camera's ONVIF password"))
        if not self.candidate and not self.host:
            problems.append(FieldProblem("host", "give the camera's IP address"))
        if self.port and not (self.port.isdigit() and 1 <= int(self.port) <= 65535):
            problems.append(FieldProblem("port", "a port from 1 to 65535"))
        if problems:
            raise ValidationFailed("the form needs changes", problems)
        body: dict[str, Any] = {
            "username": self.username,
            "password": password,
            "ward": self.ward,
            "name": self.name,
        }
        if self.candidate:
            body["candidate"] = self.candidate
        if self.host:
            body["host"] = self.host
        if self.port:
            body["port"] = int(self.port)
        request: CameraIn = _convert(body, CameraIn)
        return request


@dataclass
class Refusal:
    """An onboarding the service refused: which form, as typed, and why."""

    form: OnboardForm
    trouble: Trouble
    fields: set[str] = field(default_factory=set)


def console_error(request: Request[Any, Any, Any], exc: HubError) -> Response[Any]:
    """A refusal that escaped a page (no such camera, another ward's, a stale form's CSRF
    token) as a page in the person's language, not as problem+json."""
    browser = "text/html" in request.headers.get("accept", "")
    if isinstance(exc, NotAuthenticated) or not browser:
        handled: Response[Any] = EXCEPTION_HANDLERS[HubError](request, exc)
        return handled
    trouble = Trouble.of(exc)
    return Template(
        "camera_error.html",
        status_code=exc.status,
        context={
            "principal": request.scope.get("user"),
            "title": gettext_for(request, TITLES.get(exc.status, FALLBACK_TITLE)),
            "trouble": trouble,
        },
    )


class CameraConsoleController(Controller):
    path = "/"
    include_in_schema = False
    exception_handlers = {HubError: console_error}

    @get("/cameras")
    async def cameras_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        ward: Annotated[str, QueryParameter(max_length=64)] = "",
        health: Annotated[str, QueryParameter(max_length=32)] = "",
        status: Annotated[str, QueryParameter(max_length=32)] = "",
        cursor: Annotated[str, QueryParameter(max_length=64)] = "",
    ) -> Template:
        cameras = _cameras(request)
        wards = await registry.list_wards(principal)
        # A filter this person cannot use (another ward, a typo) is dropped, not an error.
        filters = {
            "ward": ward if ward in {w.code for w in wards} else "",
            "health": health if health in HEALTH_STATES else "",
            "status": status if status in STATUSES else "",
        }
        page = await cameras.list_cameras(
            principal,
            wards=(filters["ward"],) if filters["ward"] else (),
            health=filters["health"] or None,
            status=filters["status"] or None,
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
        items = page.items
        applied = {k: v for k, v in filters.items() if v}
        may_onboard = principal.has(Permission.DEVICES_WRITE)
        return Template(
            "cameras.html",
            context={
                "principal": principal,
                "cameras": items,
                "ward_names": {w.code: w.name for w in wards},
                "wards": wards,
                "filters": filters,
                "filtered": bool(applied),
                "next_link": "/cameras?" + urlencode({**applied, "cursor": page.next_cursor})
                if page.next_cursor
                else None,
                "moves": await cameras.last_moves(principal, [c.uid for c in items]),
                "may_onboard": may_onboard,
                "candidates": len(await cameras.list_candidates(principal)) if may_onboard else 0,
                **_labels(cameras),
            },
        )

    @get("/cameras/discover")
    async def discover_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        dismissed: FromQuery[bool] = False,
        hidden: FromQuery[int | None] = None,
    ) -> Template:
        return await _discovery_page(request, principal, show_dismissed=dismissed, hidden=hidden)

    # Forms cannot send the API's X-CSRF-Token header: they carry the session's token.
    @post("/cameras/discover", guards=[form_csrf], status_code=200)
    async def discover_submit(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template:
        form = DiscoveryForm.read(await request.form())
        try:
            report = await _cameras(request).discover(principal, form.request())
        except HubError as exc:
            return await _discovery_page(request, principal, form=form, error=Trouble.of(exc))
        return await _discovery_page(request, principal, form=form, report=report)

    @post("/cameras/onboard", guards=[form_csrf], status_code=303)
    async def onboard_submit(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> Template | Redirect:
        form, password = OnboardForm.read(await request.form())
        try:
            camera, created = await _cameras(request).onboard(principal, form.request(password))
        except HubError as exc:
            refusal = Refusal(form, Trouble.of(exc), {_field_name(p.field) for p in exc.errors})
            return await _discovery_page(request, principal, refusal=refusal)
        outcome = "onboarded" if created else "moved"
        return Redirect(f"/cameras/{camera.uid}?{outcome}=1", status_code=303)

    @post("/cameras/candidates/{candidate_id:int}/dismiss", guards=[form_csrf], status_code=303)
    async def dismiss_submit(
        self, request: Request[Any, Any, Any], principal: CurrentUser, candidate_id: FromPath[int]
    ) -> Redirect:
        await _cameras(request).dismiss_candidate(principal, candidate_id)
        return Redirect(f"/cameras/discover?hidden={candidate_id}", status_code=303)

    @post("/cameras/{uid:str}/probe", guards=[form_csrf], status_code=303)
    async def reprobe_submit(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Template | Redirect:
        try:
            await _cameras(request).reprobe(principal, uid)
        except HubError as exc:
            if exc.status in (403, 404):
                raise  # not a camera this person may touch: the error page says so
            return await _camera_page(request, principal, uid, error=Trouble.of(exc))
        return Redirect(f"/cameras/{uid}?probed=1", status_code=303)

    @post("/cameras/{uid:str}/credentials", guards=[form_csrf], status_code=303)
    async def credentials_submit(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Template | Redirect:
        form = await request.form()
        username, password = _text(form, "username"), form.get("password", "")
        try:
            if not username or not isinstance(password, str) or not password:
                raise ValidationFailed(
                    "give both",
                    [FieldProblem("username" if not username else "password", "required")],
                )
            data: CredentialsIn = _convert(
                {"username": username, "password": password}, CredentialsIn
            )
            await _cameras(request).update_credentials(principal, uid, data)
        except HubError as exc:
            if exc.status in (403, 404):
                raise
            return await _camera_page(
                request, principal, uid, error=Trouble.of(exc), typed_username=username
            )
        return Redirect(f"/cameras/{uid}?credentials=1", status_code=303)

    @get("/cameras/{uid:str}")
    async def camera_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        uid: FromPath[str],
        onboarded: FromQuery[bool] = False,
        moved: FromQuery[bool] = False,
        probed: FromQuery[bool] = False,
        credentials: FromQuery[bool] = False,
    ) -> Template:
        notice = (
            _("The camera is onboarded: the hub checks its health from now on.")
            if onboarded
            else _("The camera was onboarded already: the hub now reaches it at its new address.")
            if moved
            else _("The camera was read again.")
            if probed
            else _("The camera accepted the new credentials; the hub uses them from now on.")
            if credentials
            else None
        )
        return await _camera_page(request, principal, uid, notice=notice)


def _labels(cameras: CameraService) -> dict[str, Any]:
    return {
        "health_labels": HEALTH_LABELS,
        "status_labels": STATUS_LABELS,
        "statuses": STATUSES,
        "health_states": HEALTH_STATES,
        "drift_limit": cameras.settings.drift_threshold_s,
        "csrf_field": CSRF_FIELD,
    }


async def _camera_page(
    request: Request[Any, Any, Any],
    principal: Principal,
    uid: str,
    *,
    notice: str | None = None,
    error: Trouble | None = None,
    typed_username: str | None = None,
) -> Template:
    cameras = _cameras(request)
    camera = await cameras.get_camera(principal, uid)
    near = []
    if camera.latitude is not None and camera.longitude is not None:
        near = (
            await cameras.nearby(
                principal,
                latitude=camera.latitude,
                longitude=camera.longitude,
                device_uid=uid,
                radius_m=None,
            )
        ).items
    wards = {w.code: w.name for w in await registry.list_wards(principal)}
    return Template(
        "camera.html",
        status_code=error.status if error else 200,
        context={
            "principal": principal,
            "camera": camera,
            "nearby": near,
            "ward_name": wards.get(camera.ward or "", camera.ward),
            "move": (await cameras.last_moves(principal, [uid])).get(uid),
            "may_onboard": principal.has(Permission.DEVICES_WRITE),
            "notice": notice,
            "error": error,
            "typed_username": camera.username if typed_username is None else typed_username,
            **_labels(cameras),
        },
    )


async def _discovery_page(
    request: Request[Any, Any, Any],
    principal: Principal,
    *,
    form: DiscoveryForm | None = None,
    report: DiscoveryOut | None = None,
    error: Trouble | None = None,
    refusal: Refusal | None = None,
    show_dismissed: bool = False,
    hidden: int | None = None,
) -> Template:
    cameras = _cameras(request)
    # Technicians only: the service refuses anyone else here (a 403 page).
    candidates = await cameras.list_candidates(principal, include_dismissed=show_dismissed)
    found_now = {c.endpoint_ref for c in report.candidates} if report else set()
    hidden_one: CandidateOut | None = None
    if hidden is not None:
        hidden_one = next(
            (c for c in await cameras.list_candidates(principal, True) if c.id == hidden), None
        )
    settings = cameras.settings
    wards = await registry.list_wards(principal)
    status = refusal.trouble.status if refusal else error.status if error else 200
    return Template(
        "camera_discovery.html",
        status_code=status,
        context={
            "principal": principal,
            "form": form or DiscoveryForm(multicast=bool(settings.discovery_interfaces)),
            "report": report,
            "error": error,
            "refusal": refusal,
            "candidates": sorted(
                candidates,
                key=lambda c: (c.endpoint_ref not in found_now, -c.last_seen.timestamp()),
            ),
            "found_now": found_now,
            "show_dismissed": show_dismissed,
            "hidden": hidden_one,
            "wards": wards,
            "default_ward": wards[0].code if len(wards) == 1 else "",
            "multicast_interfaces": settings.discovery_interfaces,
            "configured_targets": settings.discovery_targets,
            "allowed_subnets": settings.allowed_subnets,
            "default_wait_s": settings.discovery_wait_s,
            "max_targets": MAX_TARGETS,
            **_labels(cameras),
        },
    )
