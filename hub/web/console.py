"""The console: server-rendered pages for technicians, ward staff and operators."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from msgspec import Struct

from hub.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Principal,
    login,
    logins_of,
    logout,
    remember_language,
    session_cookie,
)
from hub.errors import NotAuthenticated, TooManyRequests
from hub.web.i18n import DEFAULT_LANGUAGE, LANGUAGE_COOKIE, LANGUAGES


class LoginForm(Struct):
    username: str = ""
    password: str = ""
    next: FromQuery[str] = "/"
    csrf_token: str = ""


# The login form's CSRF token, before there is a session to hold one: a double-submit
# cookie (OWASP CSRF Prevention Cheat Sheet), a random value set with the form and sent
# back in a hidden field; a page of another site can neither read nor set it.
LOGIN_CSRF_COOKIE = "iochub_login_csrf"


def login_form(
    request: Request[Any, Any, Any],
    target: str,
    error: str = "",
    status_code: int = 200,
    *,
    fresh: bool = False,
) -> Template:
    """The login page, with the form token in its cookie and its hidden field (the one the
    browser holds already, so two open login tabs both work; a new one when ``fresh``)."""
    held = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    token = held if len(held) >= 32 and not fresh else secrets.token_urlsafe(24)
    return Template(
        "login.html",
        status_code=status_code,
        context={"next": target, "error": error, "csrf_field": CSRF_FIELD, "csrf_token": token},
        cookies=[
            Cookie(
                key=LOGIN_CSRF_COOKIE,
                value=token,
                max_age=3600,
                httponly=True,
                samesite="strict",
                secure=logins_of(request).cookie_secure,
                path="/login",
            )
        ],
    )


def same_login_token(request: Request[Any, Any, Any], given: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def safe_next(target: str) -> str:
    # Only paths on this site: never an open redirect to another host.
    return target if target.startswith("/") and not target.startswith("//") else "/"


def language_cookie(language: str) -> Cookie:
    return Cookie(
        key=LANGUAGE_COOKIE,
        value=language,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="lax",
        path="/",
    )


class ConsoleController(Controller):
    include_in_schema = False

    @get("/language/{language:str}", exclude_from_auth=True)
    async def choose_language(
        self, request: Request[Any, Any, Any], language: FromPath[str], next: FromQuery[str] = "/"
    ) -> Redirect:
        """The header's language switch: kept in a cookie, and with the account of a person
        logged in so that it follows them to another browser."""
        chosen = language if language in LANGUAGES else DEFAULT_LANGUAGE
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            await remember_language(session, chosen)
        return Redirect(safe_next(next), status_code=303, cookies=[language_cookie(chosen)])

    @get("/login", exclude_from_auth=True)
    async def login_page(
        self, request: Request[Any, Any, Any], next: FromQuery[str] = "/"
    ) -> Response[Any]:
        return login_form(request, safe_next(next))

    @post("/login", exclude_from_auth=True, status_code=303)
    async def login_submit(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        target = safe_next(data.next)
        # A login form posted from another site would log the browser in to an account
        # of the attacker's choosing (login CSRF): the form must carry this site's token.
        if not same_login_token(request, data.csrf_token):
            return login_form(request, target, "form", status_code=403, fresh=True)
        logins = logins_of(request)
        try:
            logins.throttle.check(request.client.host if request.client else "?")
            session = await login(data.username, data.password, logins.policy)
        except TooManyRequests:
            return login_form(request, target, "throttled", status_code=429)
        except NotAuthenticated as exc:
            error = "locked" if "locked" in exc.detail else "credentials"
            return login_form(request, target, error, status_code=401)
        policy = logins.policy
        return Redirect(
            target,
            status_code=303,
            cookies=[
                session_cookie(
                    session.token,
                    int(policy.session_ttl.total_seconds()),
                    logins.cookie_secure,
                ),
                # Spent: the next login form gets a fresh one.
                Cookie(key=LOGIN_CSRF_COOKIE, value="", max_age=0, path="/login"),
                # The account's language, where the person chose one on another browser.
                *([language_cookie(session.language)] if session.language else []),
            ],
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
