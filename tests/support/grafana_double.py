"""A strict double of the parts of Grafana's HTTP API the hub uses, served by uvicorn on
loopback: annotations (the alert outbox), and folders, data sources, dashboards and search
(``iochub grafana sync``).

It follows Grafana's own handler (pkg/api/annotations.go): the body binds to
PostAnnotationsCmd with Go's encoding/json rules (numbers must be integer literals for
int64 fields, null leaves a field at its zero value, unknown fields are ignored, names
match case-insensitively), a bind failure is 400 "bad request data", an empty text is 400
"Failed to save annotation", and success is {"message": "Annotation added", "id": N}.
Requests need `Authorization: Bearer <token>` (401 otherwise).

Provisioning follows Grafana 11's handlers (pkg/api/folder.go, datasources.go,
dashboard.go and pkg/services/dashboards/service): a token carries a role, and a Viewer
may write nothing, an Editor no data source (403); folders and data sources are found by
uid (404 otherwise), need their required fields (400) and are unique by uid and, data
sources, by name (409); a data source provisioned from a file is read-only (403).
``POST /api/dashboards/db`` needs a title and an existing folder (400), answers 412
"version-mismatch" when, without ``overwrite``, the version sent is not the stored one,
412 "name-exists" for another dashboard of the same title in the folder, 400 for a
file-provisioned dashboard, and stores version 1 for a new dashboard, one more on each
save. Search finds dashboards by ``dashboardUIDs``.
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


ROLES = ("Viewer", "Editor", "Admin")
UID_MAX = 40


@dataclass
class GrafanaDouble:
    token: str
    org_id: int = 1
    port: int = field(default_factory=free_port)
    role: str = "Admin"
    """The role of ``token`` (a service account's)."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Further tokens and their roles."""
    annotations: list[dict[str, Any]] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    """uid -> {"dashboard": model, "folderUid": ..., "version": n, "provisioned": bool}"""
    _ids: int = 0
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
        roles = {self.token: self.role, **self.tokens}
        role = roles.get(authorization.removeprefix("Bearer "))
        if not authorization.startswith("Bearer ") or role is None:
            return 401, {"message": "Invalid API key"}
        if headers.get("x-grafana-org-id", str(self.org_id)) != str(self.org_id):
            return 401, {"message": "User is not a member of the organization"}
        if path == "/api/annotations" and method == "POST":
            return self.post_annotation(headers, body)
        if path == "/api/annotations" and method == "GET":
            return 200, self.find_annotations(parse_qs(query))
        if method != "GET":
            needed = self._permission(path)
            if needed and ROLES.index(role) < ROLES.index(needed[0]):
                return 403, {
                    "message": "You'll need additional permissions to perform this action. "
                    f"Permissions needed: {needed[1]}"
                }
            if headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return 400, {"message": "bad request data"}
            try:
                document = json.loads(body or b"null")
            except ValueError:
                return 400, {"message": "bad request data"}
            if not isinstance(document, dict):
                return 400, {"message": "bad request data"}
        else:
            document = {}
        return self.provision(method, path, parse_qs(query), document)

    @staticmethod
    def _permission(path: str) -> tuple[str, str] | None:
        if path.startswith("/api/datasources"):
            return "Admin", "datasources:write"
        if path.startswith("/api/folders"):
            return "Editor", "folders:write"
        if path.startswith("/api/dashboards"):
            return "Editor", "dashboards:write"
        return None

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def provision(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "folders"]:
            return self.folder(method, parts[2] if len(parts) == 3 else None, body)
        if parts[:3] == ["api", "datasources", "uid"] and len(parts) == 4:
            return self.datasource(method, parts[3], body)
        if parts == ["api", "datasources"] and method == "POST":
            return self.create_datasource(body)
        if parts == ["api", "dashboards", "db"] and method == "POST":
            return self.save_dashboard(body)
        if parts[:3] == ["api", "dashboards", "uid"] and len(parts) == 4 and method == "GET":
            return self.get_dashboard(parts[3])
        if parts == ["api", "search"] and method == "GET":
            return 200, self.search(query)
        return 404, {"message": "Not found"}

    # --- folders (pkg/api/folder.go) ----------------------------------------------

    def folder(self, method: str, uid: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and uid is not None:
            found = self.folders.get(uid)
            return (200, found) if found else (404, {"message": "folder not found"})
        if method == "POST" and uid is None:
            title = body.get("title")
            if not isinstance(title, str) or not title.strip():
                return 400, {"message": "folder title cannot be empty"}
            new_uid = body.get("uid") or f"f{self._next_id()}"
            if not isinstance(new_uid, str) or len(new_uid) > UID_MAX:
                return 400, {"message": "uid too long, max 40 characters"}
            if new_uid in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            if any(f["title"] == title for f in self.folders.values()):
                return 409, {"message": "a folder with the same name already exists"}
            self.folders[new_uid] = {
                "id": self._next_id(),
                "uid": new_uid,
                "title": title,
                "url": f"/dashboards/f/{new_uid}/",
                "version": 1,
            }
            return 200, self.folders[new_uid]
        if method == "PUT" and uid is not None:
            found = self.folders.get(uid)
            if found is None:
                return 404, {"message": "folder not found"}
            title = body.get("title")
            if not isinstance(title, str) or not title.strip():
                return 400, {"message": "folder title cannot be empty"}
            if not body.get("overwrite") and body.get("version") != found["version"]:
                return 412, {
                    "message": "the folder has been changed by someone else",
                    "status": "version-mismatch",
                }
            found.update(title=title, version=found["version"] + 1)
            return 200, found
        return 405, {"message": "Method not allowed"}

    # --- data sources (pkg/api/datasources.go) --------------------------------------

    REQUIRED_DATASOURCE = ("name", "type", "access")

    def _datasource_problem(self, body: dict[str, Any]) -> str | None:
        for name in self.REQUIRED_DATASOURCE:
            if not isinstance(body.get(name), str) or not body[name]:
                return f"Required field {name!r} is missing"
        if body["access"] not in ("proxy", "direct"):
            return "access must be proxy or direct"
        for name in ("jsonData", "secureJsonData"):
            if name in body and not isinstance(body[name], dict):
                return "bad request data"
        return None

    def _stored_datasource(self, body: dict[str, Any], uid: str, ds_id: int, version: int) -> None:
        secure = body.get("secureJsonData") or {}
        previous = self.datasources.get(uid, {})
        fields = {**previous.get("secureJsonFields", {}), **dict.fromkeys(secure, True)}
        self.datasources[uid] = {
            "id": ds_id,
            "uid": uid,
            "orgId": self.org_id,
            "name": body["name"],
            "type": body["type"],
            "access": body["access"],
            "url": body.get("url", ""),
            "user": body.get("user", ""),
            "database": body.get("database", ""),
            "basicAuth": bool(body.get("basicAuth", False)),
            "isDefault": bool(body.get("isDefault", False)),
            "jsonData": body.get("jsonData") or {},
            "secureJsonFields": fields,
            "version": version,
            "readOnly": previous.get("readOnly", False),
        }
        # The stored secrets, which Grafana never answers with.
        self.datasources[uid]["_secure"] = {**previous.get("_secure", {}), **secure}

    def _public_datasource(self, uid: str) -> dict[str, Any]:
        return {k: v for k, v in self.datasources[uid].items() if not k.startswith("_")}

    def create_datasource(self, body: dict[str, Any]) -> tuple[int, Any]:
        problem = self._datasource_problem(body)
        if problem:
            return 400, {"message": problem}
        uid = body.get("uid") or f"ds{self._next_id()}"
        if not isinstance(uid, str) or len(uid) > UID_MAX:
            return 400, {"message": "uid too long"}
        if uid in self.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        self._stored_datasource(body, uid, self._next_id(), 1)
        public = self._public_datasource(uid)
        return 200, {
            "datasource": public,
            "id": public["id"],
            "message": "Datasource added",
            "name": public["name"],
        }

    def datasource(self, method: str, uid: str, body: dict[str, Any]) -> tuple[int, Any]:
        found = self.datasources.get(uid)
        if found is None:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, self._public_datasource(uid)
        if method != "PUT":
            return 405, {"message": "Method not allowed"}
        if found["readOnly"]:
            return 403, {"message": "Cannot update read-only data source"}
        problem = self._datasource_problem(body)
        if problem:
            return 400, {"message": problem}
        if "version" in body and body["version"] != found["version"]:
            return 409, {"message": "Datasource has already been updated by someone else"}
        if any(d["name"] == body["name"] and u != uid for u, d in self.datasources.items()):
            return 409, {"message": "data source with the same name already exists"}
        self._stored_datasource(body, uid, found["id"], found["version"] + 1)
        public = self._public_datasource(uid)
        return 200, {
            "datasource": public,
            "id": public["id"],
            "message": "Datasource updated",
            "name": public["name"],
        }

    # --- dashboards (pkg/api/dashboard.go, pkg/services/dashboards) -----------------

    def save_dashboard(self, body: dict[str, Any]) -> tuple[int, Any]:
        model = body.get("dashboard")
        if not isinstance(model, dict):
            return 400, {"message": "bad request data"}
        title = model.get("title")
        if not isinstance(title, str) or not title.strip():
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        uid = model.get("uid") or f"d{self._next_id()}"
        if not isinstance(uid, str) or len(uid) > UID_MAX:
            return 400, {"message": "uid too long, max 40 characters"}
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            return 400, {"message": "folder not found"}
        overwrite = bool(body.get("overwrite"))
        existing = self.dashboards.get(uid)
        if model.get("id") not in (None, 0) and (
            existing is None or existing["dashboard"]["id"] != model["id"]
        ):
            return 404, {"message": "Dashboard not found", "status": "not-found"}
        if existing is not None:
            if existing["provisioned"]:
                return 400, {"message": "Cannot save provisioned dashboard"}
            if not overwrite and model.get("version") != existing["version"]:
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
        same_name = [
            other
            for other_uid, other in self.dashboards.items()
            if other_uid != uid
            and other["folderUid"] == folder_uid
            and other["dashboard"]["title"].lower() == title.lower()
        ]
        if same_name and not overwrite:
            return 412, {
                "message": "A dashboard with the same name in the folder already exists",
                "status": "name-exists",
            }
        version = existing["version"] + 1 if existing else 1
        dashboard_id = existing["dashboard"]["id"] if existing else self._next_id()
        stored = {**model, "id": dashboard_id, "uid": uid, "version": version}
        self.dashboards[uid] = {
            "dashboard": stored,
            "folderUid": folder_uid,
            "version": version,
            "provisioned": False,
        }
        slug = title.lower().replace(" ", "-")
        return 200, {
            "id": dashboard_id,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
            "folderUid": folder_uid,
        }

    def edit_in_ui(self, uid: str, **changes: Any) -> None:
        """Someone saves the dashboard in Grafana's UI: new content, one version more."""
        stored = self.dashboards[uid]
        stored["version"] += 1
        stored["dashboard"] = {**stored["dashboard"], **changes, "version": stored["version"]}

    def get_dashboard(self, uid: str) -> tuple[int, Any]:
        found = self.dashboards.get(uid)
        if found is None:
            return 404, {"message": "Dashboard not found"}
        folder = self.folders.get(found["folderUid"], {})
        return 200, {
            "dashboard": found["dashboard"],
            "meta": {
                "type": "db",
                "slug": found["dashboard"]["title"].lower().replace(" ", "-"),
                "version": found["version"],
                "folderUid": found["folderUid"],
                "folderTitle": folder.get("title", "General"),
                "provisioned": found["provisioned"],
                "canSave": True,
            },
        }

    def search(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        uids = set(query.get("dashboardUIDs", []))
        kinds = query.get("type", ["dash-db"])
        if "dash-db" not in kinds:
            return []
        return [
            {
                "id": found["dashboard"]["id"],
                "uid": uid,
                "title": found["dashboard"]["title"],
                "type": "dash-db",
                "url": f"/d/{uid}",
                "tags": found["dashboard"].get("tags", []),
                "folderUid": found["folderUid"],
            }
            for uid, found in sorted(self.dashboards.items())
            if not uids or uid in uids
        ]

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
async def grafana_double(
    token: str, org_id: int = 1, role: str = "Admin"
) -> AsyncIterator[GrafanaDouble]:
    double = GrafanaDouble(token=token, org_id=org_id, role=role)
    async with serving(double, double.port):
        yield double
