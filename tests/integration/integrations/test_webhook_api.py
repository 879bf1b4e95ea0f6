"""The webhook API of a running hub: admins only, secrets shown once, logs, redelivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from hub.integrations import ALERT_FIRING, enqueue
from hub.integrations.runtime import INTEGRATIONS, Integrations
from tests.conftest import Clients
from tests.integration.integrations.conftest import (
    DELIVERY_TABLES,
    alert_data,
    fast_settings,
    verify_standard_webhook,
)
from tests.support.hub import RunningHub
from tests.support.webhook_receiver import WebhookReceiver

BASE = "/api/v1/webhooks"


@pytest.fixture
async def hub_delivery(
    hub: RunningHub, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Integrations]:
    """The running hub's delivery, on a clean slate and a retry schedule of milliseconds."""
    await db.execute(f"TRUNCATE {', '.join(DELIVERY_TABLES)} RESTART IDENTITY CASCADE")
    integrations = hub.runtime.get(INTEGRATIONS)
    assert integrations.engine is not None
    fast = fast_settings(give_up_after_s=0.4)
    monkeypatch.setattr(integrations, "settings", fast)
    monkeypatch.setattr(integrations.engine, "settings", fast)
    yield integrations
    await db.execute(f"TRUNCATE {', '.join(DELIVERY_TABLES)} RESTART IDENTITY CASCADE")


def problem(
    response: httpx.Response, status: int, field_prefix: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    if field_prefix is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert any(f.startswith(field_prefix) for f in fields), f"{field_prefix} not in {body}"
    return body


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "IOC", "url": "http://127.0.0.1:9/hooks", **fields}
    response = await client.post(BASE, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def poll(client: httpx.AsyncClient, path: str, done: Any, within_s: float = 10.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        body = (await client.get(path)).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"{path} never got there: {body}"
        await asyncio.sleep(0.05)


async def enqueue_in(db: asyncpg.Connection, device: str, seq: int) -> None:
    ward_id = await db.fetchval("SELECT id FROM ward WHERE code = 'ward-a'")
    async with db.transaction():
        await enqueue(
            db,
            event_type=ALERT_FIRING,
            subject=f"fp-{device}",
            ordering_key=device,
            ward_id=ward_id,
            data=alert_data(device, seq),
        )


async def test_only_admins_manage_alert_delivery(
    clients: Clients, hub_delivery: Integrations, db: asyncpg.Connection
) -> None:
    created = await create(clients.admin)
    one = f"{BASE}/{created['subscription']['id']}"
    for role in ("technician", "staff_a", "viewer"):
        client = getattr(clients, role)
        for method, path in (
            ("GET", BASE),
            ("POST", BASE),
            ("GET", one),
            ("PATCH", one),
            ("DELETE", one),
            ("POST", f"{one}/rotate-secret"),
            ("POST", f"{one}/test"),
            ("GET", f"{one}/deliveries"),
            ("POST", f"{one}/deliveries/redeliver-dead"),
            ("GET", "/api/v1/grafana/deliveries"),
        ):
            body = (
                {"name": "x", "url": "http://127.0.0.1:9/"} if method in ("POST", "PATCH") else None
            )
            answer = await client.request(method, path, json=body)
            problem(answer, 403)
    problem(await clients.anonymous.get(BASE), 401)
    annotations = await clients.admin.get("/api/v1/grafana/deliveries")
    assert (annotations.status_code, annotations.json()) == (200, [])
    problem(await clients.admin.post("/api/v1/grafana/deliveries/1/redeliver"), 404)
    assert await db.fetchval("SELECT count(*) FROM webhook_subscription") == 1
    assert await db.fetchval("SELECT count(*) FROM webhook_secret") == 1


async def test_secrets_are_shown_once_and_changes_audited(
    clients: Clients, hub_delivery: Integrations, db: asyncpg.Connection
) -> None:
    created = await create(
        clients.admin, event_types=[ALERT_FIRING], wards=["ward-b", "ward-a", "ward-a"]
    )
    secret = created["secret"]
    subscription = created["subscription"]
    assert secret.startswith("whsec_")
    assert subscription["wards"] == ["ward-a", "ward-b"]
    assert subscription["event_types"] == [ALERT_FIRING] and subscription["active"]
    path = f"{BASE}/{subscription['id']}"

    listed = await clients.admin.get(BASE)
    fetched = await clients.admin.get(path)
    patched = await clients.admin.patch(
        path, json={"name": "IOC main", "wards": [], "event_types": [], "active": False}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "IOC main" and patched.json()["wards"] == []
    assert not patched.json()["active"]
    rotated = await clients.admin.post(f"{path}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    expires = datetime.fromisoformat(rotated.json()["previous_secret_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    after_rotation = (await clients.admin.get(path)).json()
    assert (
        after_rotation["previous_secret_expires_at"] == rotated.json()["previous_secret_expires_at"]
    )

    for response in (listed, fetched, patched, await clients.admin.get(path)):
        assert secret not in response.text and new_secret not in response.text
        assert "whsec_" not in response.text
    assert [s["id"] for s in listed.json()] == [subscription["id"]]
    audit = await db.fetch(
        "SELECT action, before::text, after::text FROM audit_log "
        "WHERE object_type = 'webhook_subscription' ORDER BY id"
    )
    assert [a["action"] for a in audit] == [
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
    ]
    assert all("whsec_" not in f"{a['before']} {a['after']}" for a in audit)

    deleted = await clients.admin.delete(path)
    assert deleted.status_code == 204
    problem(await clients.admin.get(path), 404)
    assert await db.fetchval("SELECT count(*) FROM webhook_secret") == 0
    assert (
        await db.fetchval("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1")
        == "webhook.delete"
    )


async def test_bad_input_is_refused_naming_the_field(
    clients: Clients, hub_delivery: Integrations, db: asyncpg.Connection
) -> None:
    admin = clients.admin
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"url": "ftp://ioc.example.vn/hooks"}, 422, "url"),
        ({"url": "javascript:alert(1)"}, 422, "url"),
        ({"url": "https://user:pw@ioc.example.vn/hooks"}, 422, "url"),
        ({"url": "https:///no-host"}, 422, "url"),
        ({"event_types": ["vn.iochub.alert.exploded"]}, 400, "event_types"),
        ({"wards": ["nowhere"]}, 422, "wards"),
        ({"wards": ["Not A Code"]}, 400, "wards"),
        ({"name": ""}, 400, "name"),
        ({"colour": "red"}, 400, "colour"),
    ]
    for fields, status, field in cases:
        body = {"name": "IOC", "url": "https://ioc.example.vn/hooks", **fields}
        problem(await admin.post(BASE, json=body), status, field)
    assert await db.fetchval("SELECT count(*) FROM webhook_subscription") == 0

    created = await create(admin)
    path = f"{BASE}/{created['subscription']['id']}"
    problem(await admin.post(BASE, json={"name": "IOC", "url": "https://a.vn/"}), 409, "name")
    problem(await admin.patch(path, json={"url": "file:///etc/passwd"}), 422, "url")
    problem(await admin.patch(path, json={"wards": ["nowhere"]}), 422, "wards")
    problem(await admin.post(f"{path}/rotate-secret", params={"overlap_hours": -1}), 400)
    problem(await admin.get(f"{BASE}/999999"), 404)
    problem(await admin.get(f"{path}/deliveries", params={"status": "lost"}), 400)


async def test_a_test_event_is_signed_delivered_and_logged(
    clients: Clients, hub_delivery: Integrations, receiver: WebhookReceiver
) -> None:
    created = await create(clients.admin, url=receiver.url)
    path = f"{BASE}/{created['subscription']['id']}"
    sent = await clients.admin.post(f"{path}/test")
    assert sent.status_code == 202, sent.text
    delivery = sent.json()
    assert delivery["event_type"] == "vn.iochub.webhook.test"

    await receiver.wait_accepted(1)
    request = receiver.requests[0]
    assert request.webhook_id == delivery["webhook_id"]
    assert verify_standard_webhook(created["secret"], request.headers, request.body)
    assert request.json()["data"]["requested_by"] == "admin"

    detail = await poll(
        clients.admin,
        f"{path}/deliveries/{delivery['id']}",
        lambda body: body["delivery"]["status"] == "delivered",
    )
    assert detail["delivery"]["last_status_code"] == 200
    assert detail["delivery"]["last_latency_ms"] is not None
    assert [(a["attempt"], a["status_code"]) for a in detail["log"]] == [(1, 200)]
    listed = (await clients.admin.get(f"{path}/deliveries", params={"status": "delivered"})).json()
    assert [d["id"] for d in listed] == [delivery["id"]]
    assert (await clients.admin.get(f"{path}/deliveries", params={"status": "dead"})).json() == []

    await clients.admin.patch(path, json={"active": False})
    problem(await clients.admin.post(f"{path}/test"), 409)


async def test_dead_letters_are_visible_and_redelivered_by_hand(
    clients: Clients,
    hub_delivery: Integrations,
    receiver: WebhookReceiver,
    db: asyncpg.Connection,
) -> None:
    created = await create(clients.admin, url=receiver.url)
    path = f"{BASE}/{created['subscription']['id']}"
    receiver.mode = "error"
    await enqueue_in(db, "sen-1", 0)
    (dead,) = await poll(
        clients.admin, f"{path}/deliveries?status=dead", lambda body: len(body) == 1
    )
    assert dead["attempts"] >= 2 and dead["last_status_code"] == 500
    assert dead["last_error"].startswith("HTTP 500")
    detail = (await clients.admin.get(f"{path}/deliveries/{dead['id']}")).json()
    assert len(detail["log"]) == dead["attempts"]
    assert {a["status_code"] for a in detail["log"]} == {500}
    assert detail["data"]["device_uid"] == "sen-1"
    assert (await clients.admin.get(path)).json()["dead_deliveries"] == 1

    receiver.mode = "ok"
    redelivered = await clients.admin.post(f"{path}/deliveries/{dead['id']}/redeliver")
    assert redelivered.status_code == 202, redelivered.text
    assert redelivered.json()["webhook_id"] == dead["webhook_id"]
    await receiver.wait_accepted(1)
    assert dead["webhook_id"] in receiver.accepted
    await poll(
        clients.admin,
        f"{path}/deliveries/{dead['id']}",
        lambda body: body["delivery"]["status"] == "delivered",
    )

    receiver.mode = "error"
    await enqueue_in(db, "sen-2", 1)
    await poll(clients.admin, f"{path}/deliveries?status=dead", lambda body: len(body) == 1)
    receiver.mode = "ok"
    report = await clients.admin.post(f"{path}/deliveries/redeliver-dead")
    assert report.json() == {"queued": 1}
    await receiver.wait_accepted(2)
    await poll(clients.admin, f"{path}/deliveries?status=delivered", lambda body: len(body) == 2)
    problem(await clients.admin.post(f"{path}/deliveries/999999/redeliver"), 404)

    metrics = (await clients.admin.get("/metrics")).text
    assert 'iochub_deliveries_dead_total{destination="webhook"}' in metrics
    assert 'iochub_deliveries_succeeded_total{destination="webhook"}' in metrics
