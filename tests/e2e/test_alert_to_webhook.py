"""The whole alert path on the wire: a sensor publishes over MQTT, the hub stores and
evaluates the reading, and the IOC receives a signed CloudEvent it can verify."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiomqtt
import pytest

from drivers.contract import Topics
from tests.conftest import Clients
from tests.support.brokers import PrivateBroker
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    await hook.up()
    yield hook
    await hook.down()


async def test_threshold_breach_over_mqtt_reaches_the_ioc_signed(
    clients: Clients, broker: PrivateBroker, receiver: WebhookReceiver
) -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    assert (
        await clients.admin.post(
            "/api/v1/devices", json={"uid": "aq-e2e-1", "kind": "sensor", "ward": "ward-a"}
        )
    ).status_code == 201
    rule = await clients.technician.post(
        "/api/v1/alert-rules",
        json={
            "name": "Water rising",
            "kind": "threshold",
            "severity": "major",
            "metric": "water_level",
            "comparison": ">=",
            "threshold": 120,
            "clear_threshold": 100,
            "message": "water at {device}: {value:.0f} cm",
        },
    )
    assert rule.status_code == 201, rule.text
    created = await clients.admin.post(
        "/api/v1/webhooks",
        json={"name": "IOC", "url": receiver.url, "event_types": ["vn.iochub.alert.firing"]},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="aq-e2e-1") as sensor:
        reading = {"ts": datetime.now(UTC).isoformat(), "readings": {"water_level": 131.5}}
        await sensor.publish(
            Topics.for_device("aq-e2e-1", Topics.TELEMETRY), json.dumps(reading), qos=1
        )

    await receiver.wait_accepted(1, within_s=20)
    (request,) = receiver.accepted.values()
    event = request.json()
    assert event["specversion"] == "1.0" and event["type"] == "vn.iochub.alert.firing"
    assert event["data"]["device_uid"] == "aq-e2e-1" and event["data"]["severity"] == "major"
    assert event["data"]["message"] == "water at aq-e2e-1: 132 cm"
    # Verified with the reference implementation of the Standard Webhooks scheme.
    standardwebhooks.Webhook(secret).verify(request.body, request.headers)
