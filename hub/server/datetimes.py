"""Date-time query parameters are RFC 3339 date-times, nothing looser.

Litestar converts query strings leniently, and msgspec's lenient datetime conversion reads a
number as a Unix timestamp: `?start=0.5` meant 1970-01-01T00:00:00.5Z. The OpenAPI document
says `format: date-time` (RFC 3339, section 5.6), so anything that does not look like one is
refused at the boundary with a 400 naming the parameter. Whether an offset is required is the
operation's own rule (a broadcast calendar reads local time; telemetry wants an offset).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from litestar.exceptions import ValidationException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?"
)
MESSAGE = "must be an RFC 3339 date-time, e.g. 2026-01-31T07:00:00+07:00"


def is_datetime(field: Any) -> bool:
    types = [t.annotation for t in field.inner_types] if field.is_optional else []
    return datetime in (field.annotation, *types)


def datetime_query_names(handler: Any) -> frozenset[str]:
    names = set()
    for name, field in handler.parsed_fn_signature.parameters.items():
        if is_datetime(field):
            alias = getattr(field.kwarg_definition, "query", None)
            names.add(alias or name)
    return frozenset(names)


class StrictDateTimeQuery(ASGIMiddleware):
    def __init__(self) -> None:
        self.names: dict[int, frozenset[str]] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler = scope.get("route_handler")
        if handler is not None and scope.get("query_string"):
            key = id(handler)
            if key not in self.names:
                self.names[key] = datetime_query_names(handler)
            if self.names[key]:
                pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                for name, value in pairs:
                    if name in self.names[key] and not DATE_TIME.fullmatch(value):
                        raise ValidationException(
                            f"{name}: {MESSAGE}",
                            extra=[{"key": name, "message": MESSAGE, "source": "query"}],
                        )
        await next_app(scope, receive, send)
