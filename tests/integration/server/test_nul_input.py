"""NUL (U+0000) in any text input is refused at the boundary: for every string parameter and
every string body field of every operation in the OpenAPI document, a 400 problem+json that
names the field, and nothing written. Control characters never reach the logs raw."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from hub.server.app import create_app
from tests.support.hub import RunningHub

NUL_TEXT = "a\x00b"
MAX_DEPTH = 3


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    source: str  # path, query, body
    name: str  # the field the answer must name
    path_values: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path} {self.source}:{self.name}"


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def variants(doc: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = resolve(doc, schema)
    found = [schema]
    for key in ("oneOf", "anyOf", "allOf"):
        for inner in schema.get(key, []):
            found += variants(doc, inner)
    return found


def text_slots(
    doc: dict[str, Any], schema: dict[str, Any], depth: int = 0
) -> list[tuple[str, Any]]:
    """(field name, a value holding NUL in that field) for every text slot of a schema."""
    slots: list[tuple[str, Any]] = []
    for variant in variants(doc, schema):
        kind = variant.get("type")
        if kind == "string":
            slots.append(("", NUL_TEXT))
        elif kind == "array" and "items" in variant and depth < MAX_DEPTH:
            for name, value in text_slots(doc, variant["items"], depth + 1):
                slots.append((f"[0]{'.' if name and name[0] != '[' else ''}{name}", [value]))
        elif kind == "object" and depth < MAX_DEPTH:
            for prop, inner in variant.get("properties", {}).items():
                for name, value in text_slots(doc, inner, depth + 1):
                    joined = f"{prop}{'.' if name and name[0] != '[' else ''}{name}"
                    slots.append((joined, {prop: value}))
    unique: dict[str, Any] = {}
    for name, value in slots:
        unique.setdefault(name, value)
    return list(unique.items())


def is_text(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    return any(name in ("", "[0]") for name, _ in text_slots(doc, schema))


def sample(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    kinds = {v.get("type") for v in variants(doc, schema)}
    return "1" if kinds & {"integer", "number"} else "x"


def cases() -> list[Case]:
    doc = create_app().openapi_schema.to_schema()
    found = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = operation.get("parameters", [])
            fill = {p["name"]: sample(doc, p["schema"]) for p in params if p["in"] == "path"}
            for param in params:
                if param["in"] not in ("path", "query") or not is_text(doc, param["schema"]):
                    continue
                name = param["name"]
                if param["in"] == "path":
                    found.append(Case(method.upper(), path, "path", name, fill | {name: NUL_TEXT}))
                else:
                    found.append(Case(method.upper(), path, "query", name, fill, {name: NUL_TEXT}))
            content = operation.get("requestBody", {}).get("content", {})
            for media, body in content.items():
                if "json" not in media:
                    continue
                for name, value in text_slots(doc, body["schema"]):
                    if name:
                        found.append(Case(method.upper(), path, "body", name, fill, body=value))
    return found


CASES = cases()


def test_the_cases_cover_the_reported_routes() -> None:
    ids = {c.id for c in CASES}
    for expected in (
        "POST /api/v1/auth/login body:username",
        "GET /api/v1/telemetry/latest query:device",
        "GET /api/v1/telemetry/series query:device",
        "GET /api/v1/telemetry/export.csv query:device",
        "GET /api/v1/devices query:q",
        "GET /api/v1/devices query:tag",
        "GET /api/v1/devices/{uid} path:uid",
        "GET /api/v1/users/{username} path:username",
        "POST /api/v1/groups body:name",
        "POST /api/v1/alert-rules body:scope.value",
        "POST /api/v1/users body:wards[0]",
    ):
        assert expected in ids
    assert len(CASES) > 150


@pytest.fixture(scope="module")
async def admin(hub: RunningHub, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=hub.base_url, headers={"authorization": f"Bearer {tokens['admin']}"}, timeout=30
    ) as client:
        yield client


async def database_rows(db: asyncpg.Connection) -> dict[str, int]:
    tables = [
        r[0] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    counts = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    return {r[0]: r[1] for r in await db.fetch(counts)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_nul_in_any_text_input_is_refused_naming_the_field(
    admin: httpx.AsyncClient, db: asyncpg.Connection, case: Case
) -> None:
    path = case.path
    for name, value in case.path_values.items():
        path = path.replace(f"{{{name}}}", quote(value, safe=""))
    before = await database_rows(db)
    response = await admin.request(
        case.method,
        path,
        params=case.query or None,
        json=case.body if case.body is not None else None,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == case.name, problem
    assert problem["errors"][0]["source"] == case.source, problem
    assert "NUL" in problem["detail"]
    assert await database_rows(db) == before


async def test_nul_in_a_form_field_is_refused(
    hub: RunningHub, admin: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    before = await database_rows(db)
    async with httpx.AsyncClient(base_url=hub.base_url) as browser:
        login = await browser.post("/login", data={"username": NUL_TEXT, "password": "x"})
    assert login.status_code == 400, login.text
    assert login.json()["errors"][0] == {
        "field": "username",
        "message": "must not contain the NUL character (U+0000)",
        "source": "body",
    }
    # Multipart: text fields are checked, the file's bytes (NUL is common in audio) are not.
    upload = await admin.post(
        "/api/v1/audio", files={"file": ("a.wav", b"RIFF\x00\x00")}, data={"title": NUL_TEXT}
    )
    assert upload.status_code == 400, upload.text
    assert upload.json()["errors"][0]["field"] == "title"
    assert await database_rows(db) == before


async def test_control_characters_are_escaped_in_the_logs(
    admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.addHandler(caplog.handler)  # uvicorn's access logger does not propagate
    access.setLevel(logging.INFO)
    try:
        await admin.get("/api/v1/devices/a%00b%0d%0aforged%1b[31m")
        logging.getLogger("hub.test").warning("value %s", "x\x00y\nz")
    finally:
        access.removeHandler(caplog.handler)
        access.setLevel(level)
    assert any("forged" in r.getMessage() for r in caplog.records if r.name == "uvicorn.access")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "x\\x00y\\x0az" in text
    for record in caplog.records:
        assert not any(ch in record.getMessage() for ch in "\x00\r\n\x1b")
        for arg in record.args if isinstance(record.args, tuple) else ():
            assert not (isinstance(arg, str) and any(ch in arg for ch in "\x00\r\n\x1b"))
