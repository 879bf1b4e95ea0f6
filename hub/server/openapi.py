"""The OpenAPI document tells the whole truth about errors.

Litestar documents only the answers a handler returns and its own validation error (as
`application/json`). Every error of the hub is an RFC 9457 problem (`application/problem+json`,
mapped once in the error mapping), and any operation can give some of them: this adds those
answers to every operation, from what the operation is (authenticated or open, reads or
writes, has a body, reaches cameras), so that the document and the responses agree.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute

PROBLEM_JSON = "application/problem+json"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}

PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    description="An RFC 9457 problem: what went wrong, and which fields to fix.",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="urn:iochub:problem:<slug>"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "instance": Schema(type=OpenAPIType.STRING, description="the request's path"),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["field", "message"],
                properties={
                    "field": Schema(type=OpenAPIType.STRING),
                    "message": Schema(type=OpenAPIType.STRING),
                    "source": Schema(
                        type=OpenAPIType.STRING, description="path, query, header or body"
                    ),
                    "row": Schema(type=OpenAPIType.INTEGER),
                },
            ),
        ),
    },
)

MEANINGS = {
    400: "The request is malformed: a parameter or body field is missing, of the wrong type "
    "or holds NUL; `errors` names the fields.",
    401: "No valid session or API token.",
    403: "Your role may not do this (or a session write lacks its CSRF token).",
    404: "Nothing by that name in your wards, or a referenced object does not exist.",
    409: "The change conflicts with the current state (a duplicate name, a finished broadcast).",
    413: "The body is larger than this operation accepts.",
    422: "Well-formed but not acceptable: `errors` says which values to change and why.",
    429: "Too many attempts; wait before trying again.",
    502: "The camera answered, but not as ONVIF requires.",
    503: "A service the hub needs (the database, the network) is unavailable; retry later.",
    504: "The camera did not answer in time.",
}


def problem_response(status: int) -> OpenAPIResponse:
    headers: dict[str, OpenAPIHeader | Reference] | None = None
    if status == 401:
        headers = {
            "WWW-Authenticate": OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING), description="Bearer realm"
            )
        }
    return OpenAPIResponse(
        description=MEANINGS[status],
        content={PROBLEM_JSON: OpenAPIMediaType(schema=Reference("#/components/schemas/Problem"))},
        headers=headers,
    )


def error_statuses(path: str, method: str, is_open: bool, query_names: set[str]) -> set[int]:
    statuses = {400, 503}
    if path.startswith("/api/v1/"):
        statuses |= {404, 422}
    if not is_open:
        statuses |= {401, 403}
    if method in WRITES:
        statuses |= {409, 413}
    if path == "/api/v1/auth/login":
        statuses |= {401, 429}
    if is_open and "sig" in query_names:
        statuses.add(403)  # a signed link (speaker audio, firmware): the signature authorises
    if path.startswith("/api/v1/cameras"):
        statuses |= {502, 504}
    return statuses


def query_names(operation: Operation) -> set[str]:
    return {
        p.name
        for p in operation.parameters or ()
        if isinstance(p, Parameter) and p.param_in == ParamType.QUERY
    }


def open_operations(app: Litestar) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.opt.get("exclude_from_auth"):
                found |= {(route.path_format, str(m)) for m in handler.http_methods}
    return found


def document_problems(app: Litestar) -> None:
    """Add the hub's problem answers to every operation of the app's OpenAPI document."""
    spec = app.openapi_schema
    assert spec.components is not None
    schemas: dict[str, Any] = dict(spec.components.schemas or {})
    schemas["Problem"] = PROBLEM
    spec.components.schemas = schemas
    unauthenticated = open_operations(app)
    for path, item in (spec.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(item, method)
            if operation is None:
                continue
            is_open = (path, method.upper()) in unauthenticated
            responses = dict(operation.responses or {})
            for status in sorted(
                error_statuses(path, method.upper(), is_open, query_names(operation))
            ):
                # Litestar's own 400 says application/json; the hub answers problem+json.
                responses[str(status)] = problem_response(status)
            operation.responses = responses
            if is_open:
                operation.security = []  # the document says who may call it, truthfully
