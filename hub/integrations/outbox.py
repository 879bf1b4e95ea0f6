"""The transactional outbox: an event is written in the same transaction as the change it tells.

Committing the transaction also notifies the delivery workers (PostgreSQL NOTIFY is
delivered at commit, and not at all on rollback), so they start at once instead of polling.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import asyncpg

from hub.integrations import store
from hub.integrations.events import EVENT_PREFIX, WEBHOOK_TEST
from hub.storage.migrations import Connection

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
    return await store.insert_event(
        conn, (event_type, subject, ordering_key, ward_id, data, occurred_at)
    )


async def notify_new(pool: asyncpg.Pool) -> None:
    """Wake every hub's delivery workers (enqueue already does this at commit)."""
    await store.notify_all(pool)
