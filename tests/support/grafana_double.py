"""A strict double of Grafana's annotations HTTP API, served by uvicorn on loopback.

It follows Grafana's own handler (pkg/api/annotations.go): the body binds to
PostAnnotationsCmd with Go's encoding/json rules (numbers must be integer literals for
int64 fields, null leaves a field at its zero value, unknown fields are ignored, names
match case-insensitively), a bind failure is 400 "bad request data", an empty text is 400
"Failed to save annotation", and success is {"message": "Annotation added", "id": N}.
Requests need `Authorization: Bearer <token>` (401 otherwise).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support.asgi import Receive, Scope, Send, read_body, serving
from tests.support.brokers import free_port

INT64 = (-(2**63), 2**63 - 1)
# PostAnnotationsCmd: json name -> Go type.
FIELDS = {
    "dashboardid": "int64",
    "dashboarduid": "string",
    "panelid": "int64",
    "time": "int64",
    "timeend": "int64",
    "text": "string",
    "tags": "[]string",
    "data": "json",
}


class BindError(Exception):
    pass


def bind(raw: bytes) -> dict[str, Any]:
    """Decode like Go's json.Unmarshal into PostAnnotationsCmd; BindError where Go fails."""
    try:
        # Floats stay floats (Go refuses 1.0 or 1e3 for int64); NaN and Infinity are not JSON.
        document = json.loads(raw, parse_constant=_reject)
    except (ValueError, BindError) as exc:
        raise BindError(f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BindError("cannot unmarshal into Go value of type dtos.PostAnnotationsCmd")
    command: dict[str, Any] = {
        "dashboardId": 0,
        "dashboardUID": "",
        "panelId": 0,
        "time": 0,
        "timeEnd": 0,
        "text": "",
        "tags": [],
        "data": None,
    }
    canonical = {name.lower(): name for name in command}
    for key, value in document.items():
        kind = FIELDS.get(key.lower())
        if kind is None or value is None:
            continue  # unknown fields are ignored; null keeps the zero value
        name = canonical[key.lower()]
        if kind == "int64":
            if isinstance(value, bool) or not isinstance(value, int):
                raise BindError(
                    f"cannot unmarshal {_json_kind(value)} into field {name} of type int64"
                )
            if not INT64[0] <= value <= INT64[1]:
                raise BindError(f"number {value} overflows int64 in field {name}")
        elif kind == "string" and not isinstance(value, str):
            raise BindError(
                f"cannot unmarshal {_json_kind(value)} into field {name} of type string"
            )
        elif kind == "[]string":
            if not isinstance(value, list):
                raise BindError(
                    f"cannot unmarshal {_json_kind(value)} into field {name} of type []string"
                )
            for item in value:
                if item is not None and not isinstance(item, str):
                    raise BindError(
                        f"cannot unmarshal {_json_kind(item)} into field {name} of type string"
                    )
            value = [item or "" for item in value]
        command[name] = value
    return command


def _reject(text: str) -> None:
    raise BindError(f"invalid character in {text}")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass
class GrafanaDouble:
    token: str
    org_id: int = 1
    port: int = field(default_factory=free_port)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    # (method, path, status, message) of every request, in order.
    log: list[tuple[str, str, int, str]] = field(default_factory=list)
    refuse_next: list[int] = field(default_factory=list)
    """Answer the next POSTs with these statuses (e.g. 500 while Grafana's DB is locked)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, answer = self.handle(
            scope["method"], scope["path"], scope["query_string"].decode(), headers, body
        )
        payload = json.dumps(answer).encode()
        self.log.append(
            (
                scope["method"],
                scope["path"],
                status,
                answer.get("message", "") if isinstance(answer, dict) else "",
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if path == "/api/health" and method == "GET":
            return 200, {"commit": "double", "database": "ok", "version": "11.3.0"}
        authorization = headers.get("authorization", "")
        if not authorization:
            return 401, {"message": "Unauthorized"}
        if authorization != f"Bearer {self.token}":
            return 401, {"message": "Invalid API key"}
        if headers.get("x-grafana-org-id", str(self.org_id)) != str(self.org_id):
            return 401, {"message": "User is not a member of the organization"}
        if path == "/api/annotations" and method == "POST":
            return self.post_annotation(headers, body)
        if path == "/api/annotations" and method == "GET":
            return 200, self.find_annotations(parse_qs(query))
        return 404, {"message": "Not found"}

    def post_annotation(self, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 400, {"message": "bad request data"}
        try:
            command = bind(body)
        except BindError:
            return 400, {"message": "bad request data"}
        if self.refuse_next:
            status = self.refuse_next.pop(0)
            return status, {"message": "Failed to save annotation"}
        if command["text"] == "":
            return 400, {"message": "Failed to save annotation"}
        now = int(time.time() * 1000)
        annotation = {
            "id": len(self.annotations) + 1,
            "alertId": 0,
            "dashboardId": command["dashboardId"],
            "dashboardUID": command["dashboardUID"],
            "panelId": command["panelId"],
            "userId": 1,
            "newState": "",
            "prevState": "",
            "created": now,
            "updated": now,
            "time": command["time"] or now,
            "timeEnd": command["timeEnd"] or command["time"] or now,
            "text": command["text"],
            "tags": command["tags"],
            "login": "sa-iochub",
            "email": "",
            "avatarUrl": "",
            "data": command["data"] or {},
        }
        self.annotations.append(annotation)
        return 200, {"message": "Annotation added", "id": annotation["id"]}

    def find_annotations(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted = set(query.get("tags", []))
        found = [a for a in self.annotations if wanted <= set(a["tags"])]
        if "from" in query:
            found = [a for a in found if a["time"] >= int(query["from"][0])]
        if "to" in query:
            found = [a for a in found if a["time"] <= int(query["to"][0])]
        found.sort(key=lambda a: a["time"], reverse=True)
        return found[: int(query.get("limit", ["100"])[0])]


@contextlib.asynccontextmanager
async def grafana_double(token: str, org_id: int = 1) -> AsyncIterator[GrafanaDouble]:
    double = GrafanaDouble(token=token, org_id=org_id)
    async with serving(double, double.port):
        yield double
