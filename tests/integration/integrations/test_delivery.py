"""Outbox to webhook over real HTTP: once per webhook-id, per-device order, outages survived."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence

import pytest

from hub.integrations import (
    ALERT_ACKNOWLEDGED,
    ALERT_FIRING,
    ALERT_RESOLVED,
    OutboxMisuse,
    deliveries,
    enqueue,
    subscriptions,
)
from hub.integrations import store as outbox_store
from hub.integrations.schemas import EventTypeName, SubscriptionIn
from hub.storage.migrations import Connection
from tests.integration.integrations.conftest import (
    HUB_ID,
    DeliveryStore,
    alert_data,
    enqueue_alert,
    fast_settings,
)
from tests.support.webhook_receiver import ReceivedRequest, WebhookReceiver, webhook_receiver


async def subscribe(
    store: DeliveryStore,
    url: str,
    name: str = "ioc",
    event_types: Sequence[EventTypeName] = (),
    wards: Sequence[str] = (),
) -> tuple[int, str]:
    wanted = SubscriptionIn(name=name, url=url, event_types=[*event_types], wards=[*wards])
    created, secret = await subscriptions.create(store.pool, store.box, wanted)
    return created.id, secret


def sequences(requests: list[ReceivedRequest]) -> dict[str, list[int]]:
    """Per device, the seq of each request's event in arrival order."""
    by_device: dict[str, list[int]] = defaultdict(list)
    for request in requests:
        data = request.json()["data"]
        by_device[data["device_uid"]].append(data["seq"])
    return dict(by_device)


def assert_one_id_per_event(receiver: WebhookReceiver, events: int) -> None:
    """Retries reuse the webhook-id and body, so a de-duplicating receiver takes each once."""
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for request in receiver.requests:
        by_id[request.webhook_id].add(request.body)
    assert len(by_id) == events, f"{len(by_id)} webhook-ids for {events} events"
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a retry changed its body"
    assert len(receiver.accepted) == events
    seqs = {
        (r.json()["data"]["device_uid"], r.json()["data"]["seq"])
        for r in receiver.accepted.values()
    }
    assert len(seqs) == events, "two webhook-ids carried the same event"


class ChangeFailed(Exception):
    pass


async def failing_change(conn: Connection, ward_id: int) -> None:
    """An alert change whose transaction rolls back after its event was enqueued."""
    async with conn.transaction():
        await enqueue(
            conn,
            event_type=ALERT_FIRING,
            subject="fp-ghost",
            ordering_key="sen-ghost",
            ward_id=ward_id,
            data=alert_data("sen-ghost", 0),
        )
        raise ChangeFailed("the alert change failed; its event must not go out")


async def test_committed_events_arrive_once_in_device_order(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    await subscribe(store, receiver.url)
    ward_a = store.wards["ward-a"]
    # A long poll interval: only the commit's notification can make delivery fast.
    async with store.engine(fast_settings(poll_interval_s=30)):
        async with store.pool.acquire() as conn:
            for seq in range(8):
                async with conn.transaction():
                    for device in ("sen-1", "sen-2", "sen-3"):
                        await enqueue(
                            conn,
                            event_type=ALERT_FIRING if seq % 2 == 0 else ALERT_ACKNOWLEDGED,
                            subject=f"fp-{device}",
                            ordering_key=device,
                            ward_id=ward_a,
                            data=alert_data(device, seq),
                        )
            with pytest.raises(ChangeFailed):
                await failing_change(conn, ward_a)
        committed_at = time.monotonic()
        await enqueue_alert(store.pool, "sen-4", 0, ward_id=ward_a)
        await receiver.wait_accepted(25)
        (last,) = [r for r in receiver.requests if r.json()["data"]["device_uid"] == "sen-4"]
        latency = last.received_at - committed_at
        await asyncio.sleep(0.3)

    assert latency < 0.5, f"{latency:.3f} s from commit to webhook"
    assert len(receiver.requests) == 25 and not receiver.duplicates
    assert_one_id_per_event(receiver, 25)
    order = sequences(receiver.requests)
    assert "sen-ghost" not in order
    assert order == {
        "sen-1": list(range(8)),
        "sen-2": list(range(8)),
        "sen-3": list(range(8)),
        "sen-4": [0],
    }

    event = receiver.requests[0]
    assert event.method == "POST" and event.path == "/hooks/iochub"
    assert event.headers["content-type"].startswith("application/cloudevents+json")
    cloud_event = event.json()
    assert cloud_event["specversion"] == "1.0"
    assert cloud_event["id"] == event.webhook_id and event.webhook_id.startswith("msg_")
    assert cloud_event["source"] == f"/iochub/{HUB_ID}"
    assert cloud_event["type"] == ALERT_FIRING
    assert cloud_event["subject"] == "fp-sen-1"
    assert cloud_event["datacontenttype"] == "application/json"
    assert cloud_event["time"].endswith("Z")
    assert cloud_event["data"]["started_at"] == "2025-03-01T08:00:00Z"
    assert cloud_event["data"]["message"] == "PM2.5 80.5 µg/m³ above 75"
    rows = await store.deliveries()
    assert {r["status"] for r in rows} == {"delivered"} and len(rows) == 25
    assert all(r["last_status_code"] == 200 and r["attempts"] == 1 for r in rows)


async def test_enqueue_refuses_to_run_outside_a_transaction(store: DeliveryStore) -> None:
    async with store.pool.acquire() as conn:
        with pytest.raises(OutboxMisuse):
            await enqueue(
                conn,
                event_type=ALERT_FIRING,
                subject="fp",
                ordering_key="sen-1",
                ward_id=None,
                data={},
            )
        async with conn.transaction():
            with pytest.raises(ValueError, match=r"vn\.iochub"):
                await enqueue(
                    conn,
                    event_type="alert.firing",
                    subject="fp",
                    ordering_key="k",
                    ward_id=None,
                    data={},
                )
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_filters_by_event_type_and_ward(store: DeliveryStore) -> None:
    async with (
        webhook_receiver() as firing_only,
        webhook_receiver() as ward_b_only,
        webhook_receiver() as everything,
    ):
        await subscribe(store, firing_only.url, "firing", event_types=[ALERT_FIRING])
        await subscribe(store, ward_b_only.url, "ward-b", wards=["ward-b"])
        await subscribe(store, everything.url, "all")
        inactive, _ = await subscribe(store, everything.url, "inactive")
        await store.pool.execute(
            "UPDATE webhook_subscription SET active = false WHERE id = $1", inactive
        )
        async with store.engine():
            await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
            await enqueue_alert(
                store.pool,
                "sen-2",
                1,
                event_type=ALERT_RESOLVED,
                ward="ward-b",
                ward_id=store.wards["ward-b"],
            )
            await enqueue_alert(store.pool, "sen-3", 2, event_type=ALERT_ACKNOWLEDGED, ward=None)
            await everything.wait_accepted(3)
            await firing_only.wait_accepted(1)
            await ward_b_only.wait_accepted(1)
            await asyncio.sleep(0.3)

    def seqs(receiver: WebhookReceiver) -> list[int]:
        return sorted(r.json()["data"]["seq"] for r in receiver.requests)

    assert seqs(firing_only) == [0]
    assert seqs(ward_b_only) == [1]
    assert seqs(everything) == [0, 1, 2]
    assert len(everything.requests) == 3, "the inactive subscription got events"
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM outbox_delivery WHERE subscription_id = $1", inactive
        )
        == 0
    )


async def test_receiver_outage_500s_slowness_and_dropped_connections_lose_nothing(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    subscription_id, _ = await subscribe(store, receiver.url)
    await receiver.down()
    devices = ("sen-1", "sen-2", "spk-1")
    async with store.engine(fast_settings(request_timeout_s=0.3)):
        for seq in range(5):
            for device in devices:
                await enqueue_alert(store.pool, device, seq, ward_id=store.wards["ward-a"])
        # A long stretch down: every head of line keeps failing and backing off.
        await store.wait_until(
            "SELECT min(attempts) >= 4 FROM outbox_delivery d WHERE status = 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM outbox_delivery e WHERE e.lane = d.lane "
            "AND e.ordering_key = d.ordering_key AND e.id < d.id AND e.status = 'pending')"
        )
        assert receiver.requests == []
        receiver.delay_s = 0.6
        receiver.plan(["error", "slow", "drop", "error", "slow", "drop", "error"])
        await receiver.up()
        await receiver.wait_accepted(15)
        await asyncio.sleep(0.3)

    assert_one_id_per_event(receiver, 15)
    assert {"error", "slow", "drop"} <= {r.mode for r in receiver.requests}
    # Strict order: a device's next event never left before the previous one was accepted.
    for device, seqs in sequences(receiver.requests).items():
        assert seqs == sorted(seqs), f"{device} out of order: {seqs}"
        assert set(seqs) == set(range(5))
    rows = await store.deliveries(subscription_id=subscription_id)
    assert {r["status"] for r in rows} == {"delivered"}
    log = await store.pool.fetch("SELECT status_code, error FROM outbox_delivery_attempt")
    errors = " | ".join(str(r["error"]) for r in log)
    assert "cannot connect" in errors
    assert "HTTP 500: receiver says no" in errors
    assert "no answer within 0.3 s" in errors
    assert any(r["status_code"] == 500 for r in log)


async def test_dead_letter_after_the_retry_window_then_the_line_moves_on(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    subscription_id, _ = await subscribe(store, receiver.url)
    receiver.mode = "error"
    async with store.engine(fast_settings(give_up_after_s=0.6)):
        await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
        await store.wait_until("SELECT bool_and(status = 'dead') FROM outbox_delivery")
        dead = (await store.deliveries())[0]
        receiver.mode = "ok"
        await enqueue_alert(store.pool, "sen-1", 1, ward_id=store.wards["ward-a"])
        await receiver.wait_accepted(1)

        assert dead["attempts"] >= 3 and dead["last_status_code"] == 500
        attempts = await store.pool.fetch(
            "SELECT attempt, status_code FROM outbox_delivery_attempt WHERE delivery_id = $1 ORDER BY id",
            dead["id"],
        )
        assert [a["attempt"] for a in attempts] == list(range(1, dead["attempts"] + 1))
        assert {a["status_code"] for a in attempts} == {500}
        assert [r.json()["data"]["seq"] for r in receiver.accepted.values()] == [1]

        # Redelivery sends the dead event again under the same webhook-id.
        lane = deliveries.webhook_lane(subscription_id)
        assert await deliveries.redeliver_dead(store.pool, lane=lane, give_up_after_s=60) == 1
        await receiver.wait_accepted(2)
    assert dead["webhook_id"] in receiver.accepted
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM outbox_delivery WHERE status <> 'delivered'"
        )
        == 0
    )


async def test_410_gone_deactivates_the_subscription(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    subscription_id, _ = await subscribe(store, receiver.url)
    receiver.mode = "gone"
    async with store.engine():
        await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
        await store.wait_until("SELECT bool_and(status = 'dead') FROM outbox_delivery")
        await enqueue_alert(store.pool, "sen-1", 1, ward_id=store.wards["ward-a"])
        await store.wait_until("SELECT count(*) = 0 FROM outbox WHERE fanned_out_at IS NULL")
        await asyncio.sleep(0.2)
    subscription = await subscriptions.get(store.pool, subscription_id)
    assert not subscription.active and "410 Gone" in subscription.deactivated_reason
    assert len(receiver.requests) == 1
    rows = await store.deliveries()
    assert len(rows) == 1 and rows[0]["attempts"] == 1 and "410" in rows[0]["last_error"]


async def test_a_hub_stopping_mid_delivery_hands_it_to_the_next(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    await subscribe(store, receiver.url)
    receiver.mode = "slow"
    receiver.delay_s = 2.0
    async with store.engine(fast_settings(request_timeout_s=5)):
        for seq in range(3):
            await enqueue_alert(store.pool, "sen-1", seq, ward_id=store.wards["ward-a"])
        await receiver.wait_requests(1)
        # Leaving the block stops this hub while the receiver still holds the request.
    first = receiver.requests[0].webhook_id
    row = await store.pool.fetchrow("SELECT * FROM outbox_delivery WHERE webhook_id = $1", first)
    assert row is not None
    assert row["status"] == "pending" and row["claim"] is None
    assert "interrupted" in await store.pool.fetchval(
        "SELECT error FROM outbox_delivery_attempt WHERE delivery_id = $1", row["id"]
    )

    receiver.mode = "ok"
    async with store.engine():
        await receiver.wait_accepted(3)
        await asyncio.sleep(0.2)
    assert [r.webhook_id for r in receiver.requests].count(first) == 2
    assert_one_id_per_event(receiver, 3)
    assert sequences(receiver.requests)["sen-1"] == [0, 0, 1, 2]


async def test_a_claim_left_by_a_crashed_hub_is_retried_after_its_lease(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    await subscribe(store, receiver.url)
    await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
    await enqueue_alert(store.pool, "sen-1", 1, ward_id=store.wards["ward-a"])
    fanned = await outbox_store.fan_out(store.pool, batch=10, grafana=False, give_up_after_s=60)
    assert fanned == deliveries.FanOut(events=2, deliveries=2)
    # A worker claims the head, then its process dies before sending or recording anything.
    crashed = await outbox_store.claim_due(store.pool, limit=10, lease_s=0.8, grafana=False)
    assert [job.attempt for job in crashed] == [1], "only the head of the line is claimable"
    started = time.monotonic()
    async with store.engine():
        await receiver.wait_accepted(2)
    assert time.monotonic() - started >= 0.6, "the lease was not honoured"
    assert sequences(receiver.requests)["sen-1"] == [0, 1]
    rows = await store.deliveries()
    assert [r["attempts"] for r in rows] == [2, 1]


async def test_two_hub_processes_share_the_work_without_duplicates(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    await subscribe(store, receiver.url)
    devices = [f"sen-{n}" for n in range(6)]
    async with store.engine(), store.engine():

        async def produce(device: str) -> None:
            for seq in range(10):
                await enqueue_alert(store.pool, device, seq, ward_id=store.wards["ward-a"])

        await asyncio.gather(*(produce(d) for d in devices))
        await receiver.wait_accepted(60)
        await asyncio.sleep(0.3)
    assert len(receiver.requests) == 60 and not receiver.duplicates
    assert sequences(receiver.requests) == {d: list(range(10)) for d in devices}
