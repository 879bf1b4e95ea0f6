"""The delivery log as the API sees it: pages of deliveries, one with its attempts,
redelivery, and test events (the SQL is in hub/integrations/store.py)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from hub.errors import Conflict, NotFound
from hub.integrations import store
from hub.integrations.schemas import DeliveryDetail, DeliveryOut
from hub.integrations.store import (
    GRAFANA_LANE,
    Destination,
    FanOut,
    Job,
    Outcome,
    Status,
    webhook_lane,
)

__all__ = [
    "GRAFANA_LANE",
    "Destination",
    "FanOut",
    "Job",
    "Outcome",
    "Status",
    "detail",
    "page",
    "redeliver",
    "redeliver_dead",
    "send_test_event",
    "webhook_lane",
]


async def detail(pool: asyncpg.Pool, lane: str, delivery_id: int) -> DeliveryDetail:
    found = await store.get_delivery(pool, lane=lane, delivery_id=delivery_id)
    if found is None:
        raise NotFound(f"no delivery {delivery_id} here")
    delivery, data, attempts = found
    return DeliveryDetail(delivery=delivery, data=json.loads(data), log=attempts)


async def page(
    pool: asyncpg.Pool, lane: str, status: Status | None, before: int | None, limit: int
) -> list[DeliveryOut]:
    return await store.list_deliveries(
        pool, lane=lane, status=status, before_id=before, limit=limit
    )


async def redeliver(
    pool: asyncpg.Pool, lane: str, delivery_id: int, *, give_up_after_s: float
) -> DeliveryOut:
    """Send a delivery again now (same webhook-id), with a fresh retry window."""
    result = await store.redeliver(
        pool, lane=lane, delivery_id=delivery_id, give_up_after_s=give_up_after_s
    )
    if result == "not_found":
        raise NotFound(f"no delivery {delivery_id} here")
    if result == "in_flight":
        raise Conflict(f"delivery {delivery_id} is being sent right now")
    return (await detail(pool, lane, delivery_id)).delivery


async def redeliver_dead(pool: asyncpg.Pool, *, lane: str, give_up_after_s: float) -> int:
    """Queue every dead-lettered delivery of a lane again; how many."""
    return await store.redeliver_dead(pool, lane=lane, give_up_after_s=give_up_after_s)


async def send_test_event(
    pool: asyncpg.Pool,
    subscription_id: int,
    data: dict[str, Any],
    *,
    give_up_after_s: float,
) -> int:
    """A test event for one subscription only; its delivery's id."""
    return await store.add_test_event(
        pool, subscription_id=subscription_id, data=data, give_up_after_s=give_up_after_s
    )
