"""Ward scope on every route: ward staff of ward-a never read, change or learn of ward-b's
objects. Each operation of the OpenAPI document has a case here (a new route without one
fails `test_every_operation_has_a_scope_case`), and each case is run against real objects
of ward-b: the same request by an admin proves the object is there to be hidden."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from hub.broadcasts import BROADCASTS
from hub.devices import DIRECTORY
from hub.health import HEALTH
from hub.server.app import create_app
from tests.conftest import Clients, reset_database
from tests.support.broadcasts import tomorrow_local, tone, upload
from tests.support.hub import RunningHub

# Every foreign object carries one of these in its names, so a leak shows in any answer
# (JSON, CSV or GeoJSON).
MARKERS = ("ward-b", "b-sensor", "b-speaker", "b-camera", "b-group", "b-rule", "b-audio", "b-bc")


@dataclass(frozen=True)
class Hidden:
    """The route names a foreign object: ward staff get 404 (or 403), nothing changes."""

    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    control: bool = True
    """Whether an admin's same request reads the object (False where this test's stand-in
    object cannot serve it: a camera with no stream, a device with no broker login)."""


@dataclass(frozen=True)
class Filtered:
    """A listing: ward staff see only their wards, even when they ask for ward-b."""

    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    control: bool = True
    """Whether an admin's same request shows ward-b's objects (proof there is something
    to hide); False where this test makes none of what the route lists."""


@dataclass(frozen=True)
class Refused:
    """Creating or acting on something of ward-b: refused (403, 404 or 422), nothing made."""

    body: Any = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotWardData:
    """Carries nothing of any ward; why is said once, here."""

    reason: str


Case = Hidden | Filtered | Refused | NotWardData
ADMIN_ONLY = NotWardData("admins only: ward staff are refused (403) before anything is read")
OWN = NotWardData("the caller's own identity, session or tokens")
TARGETS_B = {"wards": ["ward-b"]}
# A threshold the readings never reach: the engine raises nothing while the cases run.
RULE_B = {
    "name": "b-rule",
    "kind": "threshold",
    "severity": "minor",
    "metric": "pm2_5",
    "comparison": ">",
    "threshold": 900,
    "clear_threshold": 900,
    "scope": {"type": "ward", "value": "ward-b"},
}

CASES: dict[tuple[str, str], Case] = {
    ("GET", "/healthz"): NotWardData("liveness probe"),
    ("GET", "/readyz"): NotWardData("readiness probe"),
    ("GET", "/api/v1/auth/tokens"): OWN,
    ("POST", "/api/v1/auth/tokens"): OWN,
    ("POST", "/api/v1/auth/login"): OWN,
    ("POST", "/api/v1/auth/logout"): OWN,
    ("GET", "/api/v1/auth/me"): OWN,
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): Hidden(),
    ("GET", "/api/v1/users"): ADMIN_ONLY,
    ("POST", "/api/v1/users"): ADMIN_ONLY,
    ("GET", "/api/v1/users/{username}"): ADMIN_ONLY,
    ("GET", "/api/v1/users/{username}/tokens"): ADMIN_ONLY,
    ("DELETE", "/api/v1/users/{username}/tokens"): ADMIN_ONLY,
    ("POST", "/api/v1/devices/{uid}/approve"): Hidden(body={"ward": "ward-a"}),
    ("GET", "/api/v1/devices"): Filtered({"ward": "ward-b"}),
    ("POST", "/api/v1/devices"): Refused(body={"uid": "b-new", "kind": "sensor", "ward": "ward-b"}),
    ("GET", "/api/v1/groups"): Filtered(),
    ("POST", "/api/v1/groups"): Refused(body={"name": "b-group-2", "ward": "ward-b"}),
    ("GET", "/api/v1/wards"): NotWardData("the district's ward list: names, not data"),
    ("POST", "/api/v1/wards"): ADMIN_ONLY,
    # No ward has an outline here: these hold that ward staff neither read nor change ward-b's.
    ("GET", "/api/v1/wards.geojson"): Filtered(control=False),
    ("GET", "/api/v1/wards/{ward}/boundary"): Hidden(control=False),
    ("PUT", "/api/v1/wards/{ward}/boundary"): ADMIN_ONLY,
    ("DELETE", "/api/v1/wards/{ward}/boundary"): ADMIN_ONLY,
    ("GET", "/api/v1/devices/{uid}/credentials"): Hidden(control=False),
    ("POST", "/api/v1/devices/{uid}/credentials"): Hidden(),
    ("GET", "/api/v1/groups/{group_id}"): Hidden(),
    ("DELETE", "/api/v1/groups/{group_id}"): Hidden(),
    ("GET", "/api/v1/devices.csv"): Filtered({"ward": "ward-b"}),
    ("GET", "/api/v1/devices.geojson"): Filtered({"ward": "ward-b"}),
    ("GET", "/api/v1/devices/{uid}"): Hidden(),
    ("DELETE", "/api/v1/devices/{uid}"): Hidden(),
    ("PATCH", "/api/v1/devices/{uid}"): Hidden(body={"name": "taken"}),
    ("GET", "/api/v1/groups/{group_id}/devices"): Hidden(),
    ("POST", "/api/v1/devices/import"): Refused(
        body=[{"uid": "b-imported", "kind": "sensor", "ward": "ward-b"}]
    ),
    ("GET", "/api/v1/devices/{uid}/coap-credentials"): Hidden(),
    ("POST", "/api/v1/devices/{uid}/coap-credentials"): Hidden(),
    ("DELETE", "/api/v1/devices/{uid}/coap-credentials"): Hidden(),
    ("GET", "/api/v1/audit"): Filtered(),
    ("GET", "/api/v1/telemetry/aqi"): Filtered({"ward": "ward-b"}),
    ("GET", "/api/v1/telemetry/metrics"): NotWardData("the metric catalog"),
    ("GET", "/api/v1/telemetry/export.csv"): Filtered({"device": "b-sensor"}),
    ("GET", "/api/v1/telemetry/latest"): Filtered({"device": "b-sensor"}),
    ("GET", "/api/v1/telemetry/series"): Hidden(query={"device": "b-sensor", "metric": "pm2_5"}),
    ("GET", "/api/v1/telemetry/wards"): Filtered(),
    ("GET", "/api/v1/devices/{uid}/health"): Hidden(),
    ("PUT", "/api/v1/devices/{uid}/maintenance"): Hidden(
        body={"until": "2999-01-01T00:00:00Z", "reason": "b"}
    ),
    ("DELETE", "/api/v1/devices/{uid}/maintenance"): Hidden(),
    ("GET", "/api/v1/health/availability"): Filtered(),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): Hidden(),
    ("GET", "/api/v1/alerts/{alert_id}/comments"): Hidden(),
    ("POST", "/api/v1/alerts/{alert_id}/comments"): Hidden(body={"text": "seen"}),
    ("POST", "/api/v1/alerts/{alert_id}/assign"): Hidden(body={"assignee": None}),
    ("GET", "/api/v1/alerts/{alert_id}"): Hidden(),
    ("GET", "/api/v1/alerts"): Filtered({"ward": "ward-b"}),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): Hidden(),
    ("GET", "/api/v1/alert-rules"): Filtered(),
    ("POST", "/api/v1/alert-rules"): Refused(
        body={
            "name": "b-rule-2",
            "kind": "offline",
            "severity": "minor",
            "scope": {"type": "ward", "value": "ward-b"},
        }
    ),
    ("GET", "/api/v1/alert-rules/{rule_id}"): Hidden(),
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): Hidden(),
    ("PATCH", "/api/v1/alert-rules/{rule_id}"): Hidden(body={"enabled": False}),
    ("POST", "/api/v1/alert-rules/dry-run"): Filtered(
        body={"rule": RULE_B | {"threshold": 1, "clear_threshold": 1}}
    ),
    ("GET", "/api/v1/quarantine/{item_id}"): Hidden(),
    ("GET", "/api/v1/quarantine"): Filtered({"device": "b-sensor"}),
    ("GET", "/api/v1/webhooks"): ADMIN_ONLY,
    ("POST", "/api/v1/webhooks"): ADMIN_ONLY,
    ("GET", "/api/v1/webhooks/{subscription_id}"): ADMIN_ONLY,
    ("DELETE", "/api/v1/webhooks/{subscription_id}"): ADMIN_ONLY,
    ("PATCH", "/api/v1/webhooks/{subscription_id}"): ADMIN_ONLY,
    ("GET", "/api/v1/webhooks/{subscription_id}/deliveries/{delivery_id}"): ADMIN_ONLY,
    ("GET", "/api/v1/webhooks/{subscription_id}/deliveries"): ADMIN_ONLY,
    (
        "POST",
        "/api/v1/webhooks/{subscription_id}/deliveries/{delivery_id}/redeliver",
    ): ADMIN_ONLY,
    ("POST", "/api/v1/webhooks/{subscription_id}/deliveries/redeliver-dead"): ADMIN_ONLY,
    ("POST", "/api/v1/webhooks/{subscription_id}/rotate-secret"): ADMIN_ONLY,
    ("POST", "/api/v1/webhooks/{subscription_id}/test"): ADMIN_ONLY,
    ("GET", "/api/v1/grafana/deliveries/{delivery_id}"): ADMIN_ONLY,
    ("GET", "/api/v1/grafana/deliveries"): ADMIN_ONLY,
    ("POST", "/api/v1/grafana/deliveries/{delivery_id}/redeliver"): ADMIN_ONLY,
    ("POST", "/api/v1/grafana/deliveries/redeliver-dead"): ADMIN_ONLY,
    ("GET", "/api/v1/audio/{asset_id}/content"): Hidden(),
    ("GET", "/api/v1/audio/{asset_id}"): Hidden(),
    ("GET", "/api/v1/audio"): Filtered(),
    ("POST", "/api/v1/audio"): Refused(query={"name": "b-audio-2", "ward": "ward-b"}),
    ("POST", "/api/v1/tts/preview"): NotWardData("speech from text; nothing is stored"),
    ("GET", "/api/v1/broadcasts/calendar"): Filtered({"ward": "ward-b"}),
    ("GET", "/api/v1/broadcasts/{broadcast_id}"): Hidden(),
    ("DELETE", "/api/v1/broadcasts/{broadcast_id}"): Hidden(),
    ("POST", "/api/v1/broadcasts/conflicts"): Refused(body="broadcast"),
    ("GET", "/api/v1/broadcasts"): Filtered(),
    ("POST", "/api/v1/broadcasts"): Refused(body="broadcast"),
    ("POST", "/api/v1/broadcasts/emergency"): Refused(
        body={"title": "b-bc-now", "wards": ["ward-b"], "text": "Khẩn cấp"}
    ),
    ("GET", "/api/v1/broadcasts/occurrences/{occurrence_id}"): Hidden(),
    ("GET", "/api/v1/broadcasts/{broadcast_id}/occurrences"): Hidden(),
    ("GET", "/api/v1/broadcasts/quiet-hours"): Filtered(),
    ("PUT", "/api/v1/broadcasts/quiet-hours/{ward}"): ADMIN_ONLY,
    ("POST", "/api/v1/speaker-controls"): Refused(body={"action": "stop", "targets": TARGETS_B}),
    ("GET", "/api/v1/speaker-controls/{request_id}"): Hidden(),
    ("GET", "/api/v1/speaker-audio/{asset_id}"): NotWardData(
        "speakers fetch audio with a signed link; the signature is the authorisation"
    ),
    ("GET", "/api/v1/cameras/{uid}"): Hidden(),
    ("DELETE", "/api/v1/cameras/{uid}"): Hidden(control=False),
    ("POST", "/api/v1/cameras/discover"): NotWardData(
        "technicians only: ward staff are refused (403)"
    ),
    ("POST", "/api/v1/cameras/candidates/{candidate_id}/dismiss"): NotWardData(
        "technicians only: ward staff are refused (403)"
    ),
    ("GET", "/api/v1/cameras"): Filtered({"ward": "ward-b"}),
    ("POST", "/api/v1/cameras"): Refused(
        body={"host": "127.0.0.1", "port": 9, "username": "u", "password": "p", "ward": "ward-b"}
    ),
    ("GET", "/api/v1/cameras/candidates"): NotWardData(
        "technicians only: ward staff are refused (403)"
    ),
    ("GET", "/api/v1/cameras/{uid}/live.mjpeg"): Hidden(control=False),
    ("GET", "/api/v1/cameras/{uid}/live/{stream}/index.m3u8"): Hidden(control=False),
    ("GET", "/api/v1/cameras/{uid}/live/{stream}/{segment}"): Hidden(control=False),
    ("GET", "/api/v1/cameras/near"): Filtered({"device": "b-sensor"}),
    ("POST", "/api/v1/cameras/{uid}/probe"): Hidden(),
    ("GET", "/api/v1/cameras/{uid}/snapshot"): Hidden(control=False),
    ("PUT", "/api/v1/cameras/{uid}/credentials"): Hidden(body={"username": "u", "password": "p"}),
    ("GET", "/api/v1/firmware/catalog"): NotWardData("the firmware catalog: models, releases"),
    ("GET", "/api/v1/firmware/artifacts/{release_id}"): NotWardData(
        "devices fetch firmware with a signed link; the signature is the authorisation"
    ),
    ("PUT", "/api/v1/firmware/windows/{ward}"): Hidden(body={"starts": "01:00", "ends": "02:00"}),
    ("DELETE", "/api/v1/firmware/windows/{ward}"): Hidden(),
    ("GET", "/api/v1/firmware/windows"): Filtered(),
    ("GET", "/api/v1/firmware/devices/{uid}"): Hidden(control=False),
    ("GET", "/api/v1/firmware/devices"): Filtered({"ward": "ward-b"}),
    ("GET", "/api/v1/firmware/summary"): Filtered(),
    # No campaign is made here (it needs a signed release): these cases only hold that
    # ward staff cannot start or steer one, and see none listed.
    ("GET", "/api/v1/firmware/campaigns"): Filtered(control=False),
    ("POST", "/api/v1/firmware/campaigns"): Refused(
        body={"name": "b-campaign", "release_id": 1, "wards": ["ward-b"]}
    ),
    ("GET", "/api/v1/firmware/campaigns/{campaign_id}"): Hidden(control=False),
    ("GET", "/api/v1/firmware/campaigns/{campaign_id}/devices"): Hidden(control=False),
    ("POST", "/api/v1/firmware/campaigns/{campaign_id}/approve"): Hidden(),
    ("POST", "/api/v1/firmware/campaigns/{campaign_id}/cancel"): Hidden(),
    ("POST", "/api/v1/firmware/campaigns/{campaign_id}/pause"): Hidden(),
    ("POST", "/api/v1/firmware/campaigns/{campaign_id}/resume"): Hidden(),
    ("POST", "/api/v1/firmware/campaigns/{campaign_id}/retry"): Hidden(),
}


def operations() -> set[tuple[str, str]]:
    document = create_app().openapi_schema.to_schema()
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }


def test_every_operation_has_a_scope_case() -> None:
    missing = sorted(operations() - CASES.keys())
    assert not missing, (
        "routes without a ward-scope case (add each to CASES in tests/integration/auth/"
        f"test_ward_scope.py): {missing}"
    )
    assert not sorted(CASES.keys() - operations()), "cases for routes that no longer exist"


@dataclass
class Foreign:
    """Objects of ward-b, by path parameter name."""

    path: dict[str, str]
    camera_uid: str
    audio_id: int


@pytest.fixture(scope="module")
async def scope_clients(hub: RunningHub, tokens: dict[str, str]) -> AsyncIterator[Clients]:
    """One set of clients and one set of ward-b objects for the whole module: the cases
    change nothing (that is what they check), so they need not be rebuilt per case."""
    async with contextlib.AsyncExitStack() as stack:
        made = {}
        for name, token in tokens.items():
            made[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=hub.base_url, headers={"authorization": f"Bearer {token}"}, timeout=30
                )
            )
        anonymous = await stack.enter_async_context(httpx.AsyncClient(base_url=hub.base_url))
        yield Clients(anonymous=anonymous, **made)


@pytest.fixture(scope="module")
async def foreign(hub: RunningHub, scope_clients: Clients, database_url: str) -> Foreign:
    db = await asyncpg.connect(database_url)
    try:
        await reset_database(db)
        runtime = hub.runtime
        runtime.get(DIRECTORY).forget_all()
        runtime.get(HEALTH).forget_all()
        runtime.get(BROADCASTS).forget_all()
        return await make_foreign(scope_clients, db)
    finally:
        await db.close()


async def make_foreign(clients: Clients, db: asyncpg.Connection) -> Foreign:
    admin = clients.admin
    for uid, kind in (("b-sensor", "sensor"), ("b-speaker", "speaker"), ("b-camera", "camera")):
        made = await admin.post(
            "/api/v1/devices", json={"uid": uid, "kind": kind, "ward": "ward-b"}
        )
        assert made.status_code == 201, made.text
    window = await admin.put(
        "/api/v1/firmware/windows/ward-b", json={"starts": "01:00", "ends": "03:00"}
    )
    assert window.status_code < 300, window.text
    coap = await admin.post("/api/v1/devices/b-sensor/coap-credentials")
    assert coap.status_code < 300, coap.text
    await db.execute(
        "INSERT INTO camera (device_id, host, port, username) "
        "SELECT id, '127.0.0.1', 9, 'b' FROM device WHERE uid = 'b-camera'"
    )
    group = await admin.post(
        "/api/v1/groups", json={"name": "b-group", "ward": "ward-b", "members": ["b-sensor"]}
    )
    assert group.status_code == 201, group.text
    rule = await admin.post(
        "/api/v1/alert-rules",
        json=RULE_B,
    )
    assert rule.status_code == 201, rule.text
    alert_id = await db.fetchval(
        "INSERT INTO alert (fingerprint, rule_id, rule_name, device_id, ward_id, severity, "
        "state, message, started_at) SELECT 'b-rule:b-sensor', $1, 'b-rule', d.id, d.ward_id, "
        "'minor', 'firing', 'b-sensor offline', now() FROM device d WHERE d.uid = 'b-sensor' "
        "RETURNING id",
        rule.json()["id"],
    )
    await db.execute(
        "INSERT INTO alert_comment (alert_id, author, text) VALUES ($1, 'admin', 'b-rule')",
        alert_id,
    )
    item_id = await db.fetchval(
        "INSERT INTO quarantine (source, device_uid, reason, raw, size) "
        "VALUES ('mqtt', 'b-sensor', 'b-sensor sent junk', '\\x00'::bytea, 1) RETURNING id"
    )
    for table in ("reading", "reading_latest"):
        await db.execute(
            f"INSERT INTO {table} (device_id, metric, time, value) "
            "SELECT id, 'pm2_5', now() - interval '1 minute', 42 FROM device WHERE uid = 'b-sensor'"
        )
    audio = await upload(admin, tone(1.0), name="b-audio", ward="ward-b")
    assert audio.status_code == 201, audio.text
    made = await admin.post(
        "/api/v1/broadcasts",
        json={
            "title": "b-bc",
            "targets": TARGETS_B,
            "starts_at": tomorrow_local(10),
            "audio_asset_id": audio.json()["id"],
        },
    )
    assert made.status_code == 201, made.text
    occurrence = await db.fetchval(
        "INSERT INTO broadcast_occurrence (broadcast_id, scheduled_at, status, claimed_by) "
        "VALUES ($1, now() - interval '1 day', 'missed', 'tests') RETURNING id",
        made.json()["broadcast"]["id"],
    )
    control = await admin.post(
        "/api/v1/speaker-controls", json={"action": "stop", "targets": {"speakers": ["b-speaker"]}}
    )
    assert control.status_code in (200, 201, 202, 503), control.text
    admin_token = await db.fetchval(
        "SELECT t.id FROM api_token t JOIN hub_user u ON u.id = t.user_id "
        "WHERE u.username = 'admin' ORDER BY t.id LIMIT 1"
    )
    return Foreign(
        path={
            "uid": "b-sensor",
            "group_id": str(group.json()["id"]),
            "alert_id": str(alert_id),
            "rule_id": str(rule.json()["id"]),
            "item_id": str(item_id),
            "asset_id": str(audio.json()["id"]),
            "broadcast_id": str(made.json()["broadcast"]["id"]),
            "occurrence_id": str(occurrence),
            "request_id": control.json().get("request_id", "none")
            if control.status_code < 300
            else "none",
            "token_id": str(admin_token),
            "stream": "sub",
            "segment": "seg00000.ts",
            "ward": "ward-b",
            "campaign_id": "1",
        },
        camera_uid="b-camera",
        audio_id=audio.json()["id"],
    )


def url_for(path: str, foreign: Foreign) -> str:
    values = dict(foreign.path)
    if path.startswith("/api/v1/cameras/"):
        values["uid"] = foreign.camera_uid
    for name, value in values.items():
        path = path.replace(f"{{{name}}}", value)
    return path


def body_for(case: Hidden | Refused | Filtered, foreign: Foreign) -> Any:
    if case.body == "broadcast":
        return {
            "title": "b-bc-2",
            "targets": TARGETS_B,
            "starts_at": tomorrow_local(11),
            "audio_asset_id": foreign.audio_id,
        }
    return case.body


async def database_state(db: asyncpg.Connection) -> dict[str, Any]:
    tables = [
        r[0]
        for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        if r[0] not in ("login_session", "api_token")  # touched by authenticating
    ]
    counts = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    state: dict[str, Any] = {r[0]: r[1] for r in await db.fetch(counts)}
    state["devices"] = [
        tuple(r)
        for r in await db.fetch(
            "SELECT id, uid, name, ward_id, tags, lifecycle FROM device ORDER BY id"
        )
    ]
    state["rules"] = [tuple(r) for r in await db.fetch("SELECT * FROM alert_rule ORDER BY id")]
    state["alerts"] = [
        tuple(r) for r in await db.fetch("SELECT id, state, assignee FROM alert ORDER BY id")
    ]
    return state


def leaks(text: str, asked: str = "") -> list[str]:
    """Markers in an answer that the request did not name itself (echoing a name back in
    "no device 'b-sensor'" tells the caller nothing they did not know)."""
    return [marker for marker in MARKERS if marker in text and marker not in asked]


SCOPED = sorted((key for key, case in CASES.items() if not isinstance(case, NotWardData)))


@pytest.mark.parametrize(("method", "path"), SCOPED, ids=[f"{m} {p}" for m, p in SCOPED])
async def test_ward_staff_cannot_reach_another_wards_objects(
    scope_clients: Clients, db: asyncpg.Connection, foreign: Foreign, method: str, path: str
) -> None:
    clients = scope_clients
    case = CASES[(method, path)]
    url = url_for(path, foreign)
    assert not isinstance(case, NotWardData)
    body = body_for(case, foreign)
    content = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    if path == "/api/v1/audio" and method == "POST":
        content, headers = tone(1.0), {"content-type": "audio/wav"}
    before = await database_state(db)
    answer = await clients.staff_a.request(
        method, url, params=case.query or None, content=content, headers=headers
    )
    text = answer.text
    asked = f"{url} {case.query} {content!r}"
    if isinstance(case, Filtered):
        assert answer.status_code < 300 or answer.status_code in (403, 404), text
    else:
        assert answer.status_code in (403, 404, 422), (answer.status_code, text)
    assert not leaks(text, asked), f"{method} {path} shows {leaks(text, asked)} to ward-a: {text}"
    assert await database_state(db) == before
    if method == "GET" and getattr(case, "control", True):
        # The control: the object is there, an admin reads it.
        control = await clients.admin.get(url, params=case.query or None)
        if isinstance(case, Filtered) and case.control:
            assert leaks(control.text), f"an admin sees no ward-b object there: {control.text}"
        assert control.status_code < 300 or isinstance(case, Filtered), (
            control.status_code,
            control.text,
        )
