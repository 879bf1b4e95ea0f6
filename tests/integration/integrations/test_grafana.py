"""Alert firings and resolutions as Grafana annotations, through a strict Grafana double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from hub.integrations import ALERT_ACKNOWLEDGED, ALERT_FIRING, ALERT_RESOLVED
from hub.integrations.settings import DeliverySettings
from tests.integration.integrations.conftest import DeliveryStore, enqueue_alert, fast_settings
from tests.support.grafana_double import GrafanaDouble, grafana_double

TOKEN = "glsa_iochub_test_token"
ORG = 3
STARTED = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
RESOLVED = datetime(2025, 3, 1, 8, 25, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
async def grafana() -> AsyncIterator[GrafanaDouble]:
    async with grafana_double(TOKEN, org_id=ORG) as double:
        yield double


def with_grafana(double: GrafanaDouble, token: str = TOKEN) -> DeliverySettings:
    return fast_settings(
        grafana={
            "url": double.url,
            "token": token,
            "org_id": ORG,
            "dashboard_uid": "iochub-alerts",
            "panel_id": 4,
            "timeout_s": 2,
        }
    )


async def test_firings_and_resolutions_become_tagged_annotations(
    store: DeliveryStore, grafana: GrafanaDouble
) -> None:
    ward_a = store.wards["ward-a"]
    async with store.engine(with_grafana(grafana)):
        await enqueue_alert(store.pool, "sen-1", 0, ward_id=ward_a)
        await enqueue_alert(store.pool, "sen-1", 1, event_type=ALERT_ACKNOWLEDGED, ward_id=ward_a)
        await enqueue_alert(
            store.pool,
            "sen-1",
            2,
            event_type=ALERT_RESOLVED,
            ward_id=ward_a,
            state="resolved",
            started_at=STARTED,
            resolved_at=RESOLVED,
        )
        await store.wait_until(
            "SELECT count(*) = 2 FROM outbox_delivery WHERE status = 'delivered'"
        )

    firing, resolved = grafana.annotations
    expected_tags = {"ward:ward-a", "device:sen-1", "kind:sensor", "severity:warning"}
    assert set(firing["tags"]) == expected_tags | {"alert:firing"}
    assert set(resolved["tags"]) == expected_tags | {"alert:resolved"}
    assert firing["time"] == ms(STARTED) and firing["timeEnd"] == firing["time"]
    assert (resolved["time"], resolved["timeEnd"]) == (ms(STARTED), ms(RESOLVED))
    assert firing["text"] == "Firing: pm25_high on sen-1 — PM2.5 80.5 µg/m³ above 75"
    assert resolved["text"].startswith("Resolved: pm25_high on sen-1")
    assert firing["dashboardUID"] == "iochub-alerts" and firing["panelId"] == 4

    rows = await store.deliveries(destination="grafana")
    assert [r["event_type"] for r in rows] == [ALERT_FIRING, ALERT_RESOLVED]
    assert [r["external_id"] for r in rows] == [str(firing["id"]), str(resolved["id"])]
    assert all(r["attempts"] == 1 and r["last_status_code"] == 200 for r in rows)

    async with httpx.AsyncClient(
        base_url=grafana.url, headers={"authorization": f"Bearer {TOKEN}"}
    ) as client:
        found = (await client.get("/api/annotations", params={"tags": "alert:resolved"})).json()
    assert [a["id"] for a in found] == [resolved["id"]]


async def test_the_double_rejects_what_grafana_rejects(grafana: GrafanaDouble) -> None:
    good: dict[str, Any] = {"time": ms(STARTED), "tags": ["device:sen-1"], "text": "Firing"}
    auth = {"authorization": f"Bearer {TOKEN}"}
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        ({}, good, 401, "Unauthorized"),
        ({"authorization": "Bearer wrong"}, good, 401, "Invalid API key"),
        ({**auth, "x-grafana-org-id": "9"}, good, 401, "User is not a member of the organization"),
        (auth, {**good, "time": "2025-03-01T08:00:00Z"}, 400, "bad request data"),
        (auth, {**good, "time": 1740816000000.5}, 400, "bad request data"),
        (auth, {**good, "timeEnd": True}, 400, "bad request data"),
        (auth, {**good, "tags": "device:sen-1"}, 400, "bad request data"),
        (auth, {**good, "tags": ["device:sen-1", 7]}, 400, "bad request data"),
        (auth, [good], 400, "bad request data"),
        (auth, {"time": ms(STARTED), "tags": []}, 400, "Failed to save annotation"),
        (auth, {**good, "text": ""}, 400, "Failed to save annotation"),
    ]
    async with httpx.AsyncClient(base_url=grafana.url) as client:
        for headers, body, status, message in cases:
            answer = await client.post("/api/annotations", json=body, headers=headers)
            assert (answer.status_code, answer.json()) == (status, {"message": message}), body
        assert grafana.annotations == []

        not_json = await client.post(
            "/api/annotations", content=b"time=1", headers={**auth, "content-type": "text/plain"}
        )
        assert not_json.status_code == 400
        # What grafana-client sends (nulls for unset ids) and fields Grafana does not know pass.
        tolerated = await client.post(
            "/api/annotations",
            json={**good, "panelId": None, "timeEnd": None, "color": "red", "Text": "Case"},
            headers=auth,
        )
        assert tolerated.json() == {"message": "Annotation added", "id": 1}
        assert grafana.annotations[0]["text"] == "Case"
        assert (await client.get("/api/health")).json()["database"] == "ok"
        assert (await client.get("/api/annotations")).status_code == 401


async def test_grafana_refusals_are_logged_and_retried(
    store: DeliveryStore, grafana: GrafanaDouble
) -> None:
    grafana.refuse_next = [400, 500]
    async with store.engine(with_grafana(grafana)):
        await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
        await store.wait_until("SELECT bool_and(status = 'delivered') FROM outbox_delivery")
    log = await store.pool.fetch(
        "SELECT status_code, error FROM outbox_delivery_attempt ORDER BY id"
    )
    assert [r["status_code"] for r in log] == [400, 500, 200]
    assert log[0]["error"].startswith("Grafana refused: Bad Input")
    assert "Failed to save annotation" in log[1]["error"]
    assert log[2]["error"] is None
    assert len(grafana.annotations) == 1


async def test_a_wrong_token_is_surfaced_and_the_annotation_waits_for_the_fix(
    store: DeliveryStore, grafana: GrafanaDouble
) -> None:
    async with store.engine(with_grafana(grafana, token="glsa_revoked")):
        await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
        await store.wait_until("SELECT count(*) >= 2 FROM outbox_delivery_attempt")
    (row,) = await store.deliveries(destination="grafana")
    assert row["status"] == "pending" and row["last_status_code"] == 401
    assert row["last_error"] == "Grafana refused: Unauthorized"
    assert grafana.annotations == []

    async with store.engine(with_grafana(grafana)):
        await store.wait_until("SELECT bool_and(status = 'delivered') FROM outbox_delivery")
    assert len(grafana.annotations) == 1
    assert [m for m in grafana.log if m[2] == 401] and grafana.log[-1][2] == 200
