"""Console pages for alerts: the list (ward, severity and state in the URL), an alert with
its comments, the actions on it (acknowledge, assign, comment, resolve) and the live views
of the cameras nearest to it; and the alert rules a person may see.

Each action goes through the alerts service, the same call the API makes, so the same
role, ward scope and audit entry apply; the forms carry the session's CSRF token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from hub.alerts import ALERTS, AlertOut, AlertQuery, Alerts
from hub.auth import CSRF_FIELD, CurrentUser, Permission, Principal, form_csrf, users_who_may
from hub.devices import registry
from hub.errors import FieldProblem, HubError, NotFound, ValidationFailed
from hub.runtime import runtime_of

PAGE_SIZE = 50
PLAYERS_PER_ALERT = 4  # side by side on one screen; the cap on streams may allow fewer
SEVERITIES = ("critical", "major", "minor", "warning")
# "open": not resolved yet, what a technician works through; "all" lifts the filter.
STATE_FILTERS = ("open", "firing", "acknowledged", "resolved", "all")
DONE = ("acknowledged", "assigned", "commented", "resolved")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _alerts(request: Request[Any, Any, Any]) -> Alerts:
    return runtime_of(request).get(ALERTS)


def list_link(**filters: str) -> str:
    shown = {k: v for k, v in filters.items() if v}
    return "/alerts?" + urlencode(shown) if shown else "/alerts"


async def ward_names(principal: Principal) -> dict[str, str]:
    return {w.code: w.name for w in await registry.list_wards(principal)}


class AlertConsoleController(Controller):
    include_in_schema = False

    @get("/alerts")
    async def alerts_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        ward: Annotated[str, QueryParameter(max_length=32)] = "",
        severity: Annotated[str, QueryParameter(max_length=16)] = "",
        state_filter: Annotated[str, QueryParameter(name="state", max_length=16)] = "open",
        before: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Template:
        names = await ward_names(principal)
        if ward and ward not in names:
            raise NotFound(f"no ward {ward!r}")
        state = state_filter if state_filter in STATE_FILTERS else "open"
        query = AlertQuery(
            states=[state] if state not in ("open", "all") else None,
            severity=severity if severity in SEVERITIES else None,
            ward=ward or None,
            open_only=state == "open",
            before_id=before,
            limit=PAGE_SIZE,
        )
        page = await _alerts(request).page(principal, query)
        filters = {"ward": ward, "severity": query.severity or "", "state": state}
        return Template(
            "alerts.html",
            context={
                "principal": principal,
                "alerts": page.items,
                "ward_names": names,
                "filters": filters,
                "severities": SEVERITIES,
                "state_filters": STATE_FILTERS,
                "list_link": list_link,
                "next_link": (
                    list_link(**filters, before=str(page.next_before_id))
                    if page.next_before_id
                    else None
                ),
                "now": datetime.now(UTC),
            },
        )

    @get("/alerts/{alert_id:int}")
    async def alert_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        alert_id: FromPath[int],
        done: Annotated[str, QueryParameter(max_length=16)] = "",
    ) -> Template:
        return await detail(request, principal, alert_id, done=done)

    @post("/alerts/{alert_id:int}/acknowledge", guards=[form_csrf], status_code=303)
    async def acknowledge(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> Response[Any]:
        return await act(request, principal, alert_id, "acknowledged")

    @post("/alerts/{alert_id:int}/resolve", guards=[form_csrf], status_code=303)
    async def resolve(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> Response[Any]:
        return await act(request, principal, alert_id, "resolved")

    @post("/alerts/{alert_id:int}/assign", guards=[form_csrf], status_code=303)
    async def assign(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> Response[Any]:
        return await act(request, principal, alert_id, "assigned")

    @post("/alerts/{alert_id:int}/comments", guards=[form_csrf], status_code=303)
    async def comment(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> Response[Any]:
        return await act(request, principal, alert_id, "commented")

    @get("/alerts/rules")
    async def rules_page(self, request: Request[Any, Any, Any], principal: CurrentUser) -> Template:
        alerts = _alerts(request)
        rules = await alerts.rules(principal)
        zone = alerts.engine.zone.key
        return Template(
            "alerts_rules.html",
            context={
                "principal": principal,
                "rules": rules,
                "zone": zone,
                "local_zone": zone == "Asia/Ho_Chi_Minh",
                "ward_names": await ward_names(principal),
                "days": DAYS,
            },
        )


async def assignees(principal: Principal, alert: AlertOut) -> list[str]:
    """Whom an alert may be given to: the active people who handle alerts in its ward."""
    if not principal.has(Permission.ALERTS_HANDLE):
        return []
    wards = await registry.WardDirectory.load()
    ward_id = wards.by_code[alert.ward].id if alert.ward in wards.by_code else None
    return await users_who_may(Permission.ALERTS_HANDLE, ward_id)


async def detail(
    request: Request[Any, Any, Any],
    principal: CurrentUser,
    alert_id: int,
    *,
    done: str = "",
    error: str = "",
    status_code: int = 200,
    draft: str = "",
) -> Template:
    alerts = _alerts(request)
    # The alert as the API gives it (ward scope: another ward's alert does not exist), with
    # the cameras nearest its device.
    alert = await alerts.get(principal, alert_id)
    players = [
        {
            "uid": camera.uid,
            "name": f"{camera.name or camera.uid} · {round(camera.distance_m)} m",
            "snapshot": camera.links.snapshot,
            "health": {"state": camera.health},
        }
        for camera in alert.nearby_cameras[:PLAYERS_PER_ALERT]
    ]
    return Template(
        "alert.html",
        status_code=status_code,
        context={
            "principal": principal,
            "alert": alert,
            "comments": await alerts.comments(principal, alert_id),
            "players": players,
            "assignees": await assignees(principal, alert),
            "may_handle": principal.has(Permission.ALERTS_HANDLE),
            "ward_names": await ward_names(principal),
            "csrf_field": CSRF_FIELD,
            "done": done if done in DONE else "",
            "error": error,
            "draft": draft,
            "now": datetime.now(UTC),
        },
    )


async def act(
    request: Request[Any, Any, Any], principal: Principal, alert_id: int, action: str
) -> Response[Any]:
    """One action from the alert page's forms, through the alerts service (which checks the
    role and the ward, and writes the audit entry); back to the page, saying what happened."""
    alerts = _alerts(request)
    form = await request.form()
    text = str(form.get("text", "")).strip()
    try:
        if action == "acknowledged":
            await alerts.acknowledge(principal, alert_id)
        elif action == "resolved":
            await alerts.resolve(principal, alert_id)
        elif action == "assigned":
            chosen = str(form.get("assignee", "")).strip() or None
            alert = await alerts.get(principal, alert_id)
            if chosen is not None and chosen not in await assignees(principal, alert):
                raise ValidationFailed(
                    "that person does not handle alerts in this ward",
                    [FieldProblem("assignee", f"{chosen!r} may not take this alert")],
                )
            await alerts.assign(principal, alert_id, chosen)
        else:
            if not text or len(text) > 4000:
                raise ValidationFailed(
                    "a comment is 1 to 4000 characters",
                    [FieldProblem("text", "write 1 to 4000 characters")],
                )
            await alerts.comment(principal, alert_id, text)
    except HubError as exc:
        if exc.status in (401, 403, 404):
            # The console's error page: another ward's alert does not exist.
            return Template(
                "error.html",
                status_code=exc.status,
                context={
                    "principal": principal,
                    "status": exc.status,
                    "title": exc.title,
                    "detail": exc.detail,
                },
            )
        return await detail(
            request,
            principal,
            alert_id,
            error=exc.detail,
            status_code=exc.status,
            draft=text if action == "commented" else "",
        )
    return Redirect(f"/alerts/{alert_id}?done={action}", status_code=303)
