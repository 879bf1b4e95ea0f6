"""One mapping from every error to RFC 9457 problem+json (HTML pages get a login redirect)."""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template

from hub.errors import HubError, NotAuthenticated

log = logging.getLogger("hub.server")
PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(
    request: Request[Any, Any, Any],
    status: int,
    slug: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"urn:iochub:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def wants_page(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith("/api/v1")
        and "text/html" in request.headers.get("accept", "")
    )


def handle_hub_error(request: Request[Any, Any, Any], exc: HubError) -> Response[Any]:
    if isinstance(exc, NotAuthenticated) and wants_page(request):
        return Redirect(f"/login?next={request.url.path}")
    if exc.status in (403, 404) and wants_page(request):
        # People follow links to these: a page with the console's navigation, not JSON.
        return Template(
            "error.html",
            status_code=exc.status,
            context={
                "principal": request.scope.get("user"),
                "status": exc.status,
                "title": exc.title,
                "detail": exc.detail,
            },
        )
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    headers = {"www-authenticate": 'Bearer realm="iochub"'} if exc.status == 401 else None
    return problem(
        request,
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        [e.as_dict() for e in exc.errors],
        headers,
    )


_FIELD = re.compile(r"`\$\.?(?P<field>[\w.\[\]]*)`")
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `(?P<field>[^`]+)`")


def validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid"))
        field = item.get("key") or ""
        if field in ("", "data"):
            # The body as a whole failed: name the field inside it that did.
            match = _NAMED_FIELD.search(message) or _FIELD.search(message)
            field = match["field"] if match else "body"
        errors.append(
            {"field": field or "body", "message": message, "source": item.get("source", "body")}
        )
    return errors


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or exc.detail
        return problem(request, 400, "invalid-request", "Invalid request", detail, errors)
    status = exc.status_code
    slug = _TITLES.get(status, "error").lower().replace(" ", "-")
    return problem(
        request, status, slug, _TITLES.get(status, "Error"), exc.detail, headers=exc.headers
    )


def handle_data_error(request: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[Any]:
    # Values the API let through but the database cannot hold: an id beyond its column's
    # range, a number too large. The request was wrong; nothing was written.
    log.info("%s %s: value refused by the database: %s", request.method, request.url.path, exc)
    return problem(
        request,
        400,
        "value-out-of-range",
        "Value out of range",
        "a value in the request is out of the range the hub stores",
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(
        request,
        500,
        "internal-error",
        "Internal error",
        "the hub failed to handle this request; the error is in its log",
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HubError: handle_hub_error,
    HTTPException: handle_http_exception,
    asyncpg.DataError: handle_data_error,
    Exception: handle_unexpected,
}
