"""OPTIONS answers list every method a path serves (RFC 9110, section 10.2.1: Allow).

Litestar 2 builds a path's OPTIONS handler with the first handler registered there, so
`OPTIONS /api/v1/devices` answered `Allow: OPTIONS, POST` without GET (litestar#4169, fixed
only in Litestar 3). The router knows every method of a path: the answer is taken from it.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.middleware import ASGIMiddleware
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class AllowEveryMethod(ASGIMiddleware):
    def __init__(self) -> None:
        self.allowed: dict[str, str] | None = None

    def allow_for(self, scope: Scope) -> str | None:
        if self.allowed is None:
            self.allowed = {
                route.path_format: ", ".join(sorted(route.methods))
                for route in scope["app"].routes
                if isinstance(route, HTTPRoute)
            }
        return self.allowed.get(scope.get("path_template", ""))

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        allow = self.allow_for(scope) if scope.get("method") == "OPTIONS" else None
        if allow is None:
            await next_app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if "allow" in headers:
                    headers["allow"] = allow
            await send(message)

        await next_app(scope, receive, send_with_allow)
