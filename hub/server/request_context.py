"""A request id for every HTTP request: in its log events and in the X-Request-ID header.

A caller's (or a proxy's) X-Request-ID is kept when it is a plain token, so one id follows a
request through the proxy, the hub and the logs; otherwise the hub makes one.
"""

from __future__ import annotations

import re
import uuid

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from hub.server.log_format import request_id

HEADER = "x-request-id"
# No spaces, quotes or control characters: the id lands in logs and headers verbatim.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            given = value.decode("latin-1")
            if _ACCEPTED.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestContext:
    """ASGI middleware: sets the request id for the request's logs and answers with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)[HEADER] = rid
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
