"""The transactional outbox: an event is written in the same transaction as the change it tells.

Committing the transaction also notifies the delivery workers (PostgreSQL NOTIFY is
delivered at commit, and not at all on rollback), so they start at once instead of polling.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from hub.storage.migrations import Connection

EVENT_PREFIX: Final = "vn.iochub."
ALERT_FIRING: Final = "vn.iochub.alert.firing"
ALERT_ACKNOWLEDGED: Final = "vn.iochub.alert.acknowledged"
ALERT_RESOLVED: Final = "vn.iochub.alert.resolved"
ALERT_SEVERITY_RAISED: Final = "vn.iochub.alert.severity_raised"
ALERT_ASSIGNED: Final = "vn.iochub.alert.assigned"
ALERT_COMMENTED: Final = "vn.iochub.alert.commented"
WEBHOOK_TEST: Final = "vn.iochub.webhook.test"
# What a subscription may filter on; an empty filter means all of these.
ALERT_EVENT_TYPES: Final = (
    ALERT_FIRING,
    ALERT_ACKNOWLEDGED,
    ALERT_RESOLVED,
    ALERT_SEVERITY_RAISED,
    ALERT_ASSIGNED,
    ALERT_COMMENTED,
)
# Grafana shows when alerts fire and resolve; the rest of an alert's life is IOC business.
GRAFANA_EVENT_TYPES: Final = (ALERT_FIRING, ALERT_RESOLVED)

OUTBOX_CHANNEL: Final = "iochub_outbox"
DELIVERY_CHANNEL: Final = "iochub_delivery"

_EVENT_TYPE = re.compile(r"^vn\.iochub\.[a-z0-9_]+(\.[a-z0-9_]+)*$")


class OutboxMisuse(RuntimeError):
    """enqueue() was called in a way that would lose the all-or-nothing guarantee."""


async def enqueue(
    conn: Connection | asyncpg.Connection[Any],
    *,
    event_type: str,
    subject: str,
    ordering_key: str,
    ward_id: int | None,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
) -> int:
    """Record an event inside the caller's open transaction; return its outbox id.

    `subject` is what the event is about (an alert's fingerprint); events sharing an
    `ordering_key` (a device uid) reach every receiver in commit order. `data` may hold
    datetimes, UUIDs, enums and Decimals: it is stored as JSON.
    """
    if not conn.is_in_transaction():
        raise OutboxMisuse("enqueue() must run inside the transaction that makes the change")
    if not _EVENT_TYPE.match(event_type):
        raise ValueError(f"event type {event_type!r} is not a {EVENT_PREFIX}* type")
    if event_type == WEBHOOK_TEST:
        raise ValueError("test events are sent to one subscription, through the API")
    if not subject or not ordering_key:
        raise ValueError("an event needs a subject and an ordering key")
    outbox_id: int = await conn.fetchval(
        """
        INSERT INTO outbox (event_type, subject, ordering_key, ward_id, data, occurred_at)
        VALUES ($1, $2, $3, $4, $5::jsonb, coalesce($6, now()))
        RETURNING id
        """,
        event_type,
        subject,
        ordering_key,
        ward_id,
        msgspec.json.encode(data).decode(),
        occurred_at,
    )
    await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return outbox_id


async def notify_new(pool: asyncpg.Pool) -> None:
    """Wake every hub's delivery workers (enqueue already does this at commit)."""
    await pool.execute(
        "SELECT pg_notify($1, ''), pg_notify($2, '')", OUTBOX_CHANNEL, DELIVERY_CHANNEL
    )
