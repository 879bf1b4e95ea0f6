"""The console: server-rendered pages for technicians, ward staff and operators."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from msgspec import Struct

from hub.auth import (
    CurrentUser,
    Principal,
    login,
    logins_of,
    logout,
    session_cookie,
)
from hub.devices import registry
from hub.errors import HubError
from hub.web.i18n import DEFAULT_LANGUAGE, LANGUAGE_COOKIE, LANGUAGES

STATUSES = ("online", "late", "offline", "degraded", "maintenance", "unknown")


class LoginForm(Struct):
    username: str = ""
    password: str = ""
    next: FromQuery[str] = "/"


def safe_next(target: str) -> str:
    # Only paths on this site: never an open redirect to another host.
    return target if target.startswith("/") and not target.startswith("//") else "/"


class ConsoleController(Controller):
    include_in_schema = False

    @get("/language/{language:str}", exclude_from_auth=True)
    async def choose_language(
        self, language: FromPath[str], next: FromQuery[str] = "/"
    ) -> Redirect:
        """The header's language switch: kept in a cookie for a year."""
        chosen = language if language in LANGUAGES else DEFAULT_LANGUAGE
        return Redirect(
            safe_next(next),
            status_code=303,
            cookies=[
                Cookie(
                    key=LANGUAGE_COOKIE,
                    value=chosen,
                    max_age=365 * 24 * 3600,
                    httponly=True,
                    samesite="lax",
                    path="/",
                )
            ],
        )

    @get("/login", exclude_from_auth=True)
    async def login_page(self, next: FromQuery[str] = "/", error: FromQuery[str] = "") -> Template:
        return Template("login.html", context={"next": safe_next(next), "error": error})

    @post("/login", exclude_from_auth=True, status_code=303)
    async def login_submit(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect:
        target = safe_next(data.next)
        logins = logins_of(request)
        try:
            logins.throttle.check(request.client.host if request.client else "?")
            session = await login(data.username, data.password, logins.policy)
        except HubError as exc:
            query = urlencode({"next": target, "error": exc.detail})
            return Redirect(f"/login?{query}", status_code=303)
        policy = logins.policy
        return Redirect(
            target,
            status_code=303,
            cookies=[
                session_cookie(
                    session.token,
                    int(policy.session_ttl.total_seconds()),
                    logins.cookie_secure,
                )
            ],
        )

    @get("/")
    async def devices_page(
        self,
        principal: CurrentUser,
        kind: FromQuery[str] = "",
        ward: FromQuery[str] = "",
        status: FromQuery[str] = "",
        q: Annotated[str, QueryParameter(max_length=200)] = "",
        cursor: FromQuery[str] = "",
    ) -> Template:
        query = registry.DeviceQuery(
            kind=kind or None, wards=(ward,) if ward else (), status=status or None, q=q or None
        )
        page = await registry.list_devices(principal, query, 100, cursor or None)
        wards = await registry.list_wards(principal)
        counts: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        for row_status, row_kind in await registry.scoped(principal).values_list("status", "kind"):
            counts[row_status] += 1
            kinds[row_kind] += 1
        filters = {"kind": kind, "ward": ward, "status": status, "q": q}
        next_link = (
            "/?" + urlencode({**filters, "cursor": page.next_cursor}) if page.next_cursor else None
        )
        return Template(
            "devices.html",
            context={
                "principal": principal,
                "page": page,
                "wards": wards,
                "counts": counts,
                "kinds": kinds,
                "statuses": STATUSES,
                "filters": filters,
                "next_link": next_link,
                "total": sum(kinds.values()),
            },
        )

    @get("/map")
    async def map_page(self, principal: CurrentUser, kind: FromQuery[str] = "") -> Template:
        devices = registry.scoped(principal).filter(latitude__isnull=False)
        if kind:
            devices = devices.filter(kind=kind)
        points = await devices.values_list("uid", "kind", "status", "latitude", "longitude")
        return Template(
            "map.html",
            context={
                "principal": principal,
                "points": points,
                "kind": kind,
                "bounds": bounds(points),
            },
        )

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Principal, Any, Any]) -> Redirect:
        cookie = request.cookies.get("iochub_session")
        if cookie:
            await logout(cookie)
        return Redirect(
            "/login",
            status_code=303,
            cookies=[session_cookie("", 0, logins_of(request).cookie_secure)],
        )


def bounds(points: list[tuple[Any, ...]]) -> dict[str, float]:
    if not points:
        return {"min_lat": 20.84, "max_lat": 20.87, "min_lon": 106.68, "max_lon": 106.72}
    lats = [p[3] for p in points]
    lons = [p[4] for p in points]
    pad = 0.002
    return {
        "min_lat": min(lats) - pad,
        "max_lat": max(lats) + pad,
        "min_lon": min(lons) - pad,
        "max_lon": max(lons) + pad,
    }
