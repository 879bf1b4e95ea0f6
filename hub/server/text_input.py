"""One rule at the boundary: no text input may hold NUL (U+0000).

PostgreSQL cannot store NUL in text (it answers "invalid byte sequence"), and no name, query
or message of the hub has a use for it. Every request is checked here, before any handler
runs: path parameters, query parameters, headers, JSON bodies and form fields (the text
fields of multipart forms; uploaded files are bytes and may hold anything). A refusal is the
usual 400 problem+json naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.exceptions import ValidationException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send
from multipart import MultipartError, MultipartSegment, PushMultipartParser  # type: ignore[import-untyped]

NUL = "\x00"
MESSAGE = "must not contain the NUL character (U+0000)"


def refuse(field: str, source: str) -> ValidationException:
    return ValidationException(
        f"{field}: {MESSAGE}", extra=[{"key": field, "message": MESSAGE, "source": source}]
    )


def nul_in_document(value: Any, where: str = "") -> str | None:
    """Where in a decoded JSON document a string (or an object key) holds NUL, if anywhere."""
    if isinstance(value, str):
        return where or "body" if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if NUL in str(key):
                return inner
            if (found := nul_in_document(item, inner)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := nul_in_document(item, f"{where}[{index}]")) is not None:
                return found
    return None


def nul_in_pairs(pairs: list[tuple[str, str]]) -> str | None:
    for name, value in pairs:
        if NUL in name or NUL in value:
            return name.replace(NUL, "\\x00")
    return None


def query_pairs(raw: bytes) -> list[tuple[str, str]]:
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8")


def check_envelope(scope: Scope) -> None:
    """Path parameters, query parameters and headers: known before any body is read."""
    for param, value in (scope.get("path_params") or {}).items():
        if isinstance(value, str) and NUL in value:
            raise refuse(param, "path")
    if NUL in scope.get("path", ""):
        raise refuse("path", "path")
    if (query := nul_in_pairs(query_pairs(scope.get("query_string", b"")))) is not None:
        raise refuse(query, "query")
    for raw_name, raw_value in scope.get("headers", ()):
        if b"\x00" in raw_value:
            raise refuse(raw_name.decode("latin-1"), "header")


def media_type(scope: Scope) -> tuple[str, dict[str, str]]:
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name == b"content-type":
            kind, _, rest = raw_value.decode("latin-1").partition(";")
            options = {}
            for item in rest.split(";"):
                key, _, value = item.strip().partition("=")
                if key:
                    options[key.lower()] = value.strip('"')
            return kind.strip().lower(), options
    return "", {}


class JsonBody:
    """Collects a JSON body as the app reads it and checks it once it is whole."""

    def __init__(self) -> None:
        self.body = bytearray()

    def feed(self, chunk: bytes, last: bool) -> None:
        self.body += chunk
        # Only an escape can put NUL in valid JSON (a raw control character is a syntax
        # error, refused by the decoder): decode only bodies that have one.
        if last and b"\\u0000" in self.body:
            try:
                document = msgspec.json.decode(bytes(self.body))
            except msgspec.DecodeError:
                return  # the app's own decoder says what is wrong
            if (field := nul_in_document(document)) is not None:
                raise refuse(field, "body")


class UrlEncodedBody:
    def __init__(self) -> None:
        self.body = bytearray()

    def feed(self, chunk: bytes, last: bool) -> None:
        self.body += chunk
        if last and (name := nul_in_pairs(query_pairs(bytes(self.body)))) is not None:
            raise refuse(name, "body")


class MultipartBody:
    """Checks a multipart form's text fields as they stream by; file parts pass untouched."""

    def __init__(self, boundary: str) -> None:
        self.parser = PushMultipartParser(boundary)
        self.segment: MultipartSegment | None = None
        self.text = bytearray()

    def events(self, chunk: bytes) -> Iterator[Any]:
        try:
            yield from self.parser.parse(chunk)
        except MultipartError:
            return  # malformed: the app's own parser says what is wrong

    def feed(self, chunk: bytes, last: bool) -> None:
        for event in self.events(chunk):
            if isinstance(event, MultipartSegment):
                self.segment, self.text = event, bytearray()
            elif event and self.segment is not None and self.segment.filename is None:
                self.text += event
            elif (
                event is None
                and self.segment is not None
                and self.segment.filename is None
                and NUL in self.text.decode("utf-8", "replace")
            ):
                raise refuse(self.segment.name, "body")


def body_checker(scope: Scope) -> JsonBody | UrlEncodedBody | MultipartBody | None:
    kind, options = media_type(scope)
    if kind == "application/json" or kind.endswith("+json"):
        return JsonBody()
    if kind == "application/x-www-form-urlencoded":
        return UrlEncodedBody()
    if kind == "multipart/form-data" and options.get("boundary"):
        return MultipartBody(options["boundary"])
    return None


class RefuseNulInput(ASGIMiddleware):
    """Refuses NUL in any text input with a 400 naming the field (see the module's doc)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        check_envelope(scope)
        checker = body_checker(scope)
        if checker is None:
            await next_app(scope, receive, send)
            return

        async def checked_receive() -> ReceiveMessage:
            # The check runs as the app reads its body, so it is refused before a handler
            # sees any of it; bodies stay streamed, never read twice.
            message = await receive()
            if message["type"] == "http.request":
                checker.feed(message.get("body", b""), not message.get("more_body", False))
            return message

        await next_app(scope, checked_receive, send)
