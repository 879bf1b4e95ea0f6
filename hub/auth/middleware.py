"""Authentication on every route (but those marked exclude_from_auth) and CSRF for cookies."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from hub.auth import service
from hub.errors import Forbidden, NotAuthenticated

SESSION_COOKIE = "iochub_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
                if method not in SAFE_METHODS and not hmac.compare_digest(
                    connection.headers.get(CSRF_HEADER, ""), principal.csrf_token or ""
                ):
                    raise Forbidden(
                        f"cookie-authenticated writes need the {CSRF_HEADER} header "
                        "(its value is in GET /api/v1/auth/me)"
                    )
                return AuthenticationResult(user=principal, auth="session")
        raise NotAuthenticated(
            "log in (POST /api/v1/auth/login) or send Authorization: Bearer <API token>"
        )
