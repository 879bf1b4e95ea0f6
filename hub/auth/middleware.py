"""Authentication on every route (but those marked exclude_from_auth) and CSRF for cookies."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from hub.auth import service
from hub.auth.principal import Principal
from hub.errors import Forbidden, NotAuthenticated

SESSION_COOKIE = "iochub_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_token(given: str, principal: Principal) -> bool:
    return bool(principal.csrf_token) and hmac.compare_digest(given, principal.csrf_token or "")


async def form_csrf(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the console's HTML forms: the session's CSRF token in a hidden field.

    A form cannot set a header, so it carries the same per-session token the header would;
    the authentication middleware leaves routes with this guard to it.
    """
    principal = connection.user
    if not isinstance(principal, Principal) or principal.via != "session":
        return  # a bearer token is never sent by a browser on its own
    if _same_token(connection.headers.get(CSRF_HEADER, ""), principal):
        return
    given = ""
    if isinstance(connection, Request):
        # Parsed once: the handler reads the same form from the request afterwards.
        value = (await connection.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else ""
    if not _same_token(given, principal):
        raise Forbidden(
            "this form did not come from your console session (or the session changed): "
            "reload the page and submit it again"
        )


def _checks_form_token(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    handler = connection.scope.get("route_handler")
    return handler is not None and any(
        form_csrf in (layer.guards or ()) for layer in handler.ownership_layers
    )


class HubAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        header = connection.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            principal = await service.authenticate_token(credentials.strip())
            if principal is None:
                raise NotAuthenticated("the bearer token is unknown or revoked")
            return AuthenticationResult(user=principal, auth="token")
        cookie = connection.cookies.get(SESSION_COOKIE)
        if cookie:
            principal = await service.authenticate_session(cookie)
            if principal is not None:
                method = connection.scope.get("method", "GET")
                # A cookie rides along with any cross-site form; a header cannot.
                if (
                    method not in SAFE_METHODS
                    and not _checks_form_token(connection)
                    and not hmac.compare_digest(
                        connection.headers.get(CSRF_HEADER, ""), principal.csrf_token or ""
                    )
                ):
                    raise Forbidden(
                        f"cookie-authenticated writes need the {CSRF_HEADER} header "
                        "(its value is in GET /api/v1/auth/me)"
                    )
                return AuthenticationResult(user=principal, auth="session")
        raise NotAuthenticated(
            "log in (POST /api/v1/auth/login) or send Authorization: Bearer <API token>"
        )
