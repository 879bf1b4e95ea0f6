"""The integrations slice's SQL: the outbox, deliveries, webhook subscriptions and their
secrets, and what the Grafana sync last wrote.

All delivery state lives here, so any hub process may crash at any point: an event is
fanned out in one transaction, a delivery is claimed under a lease (its next_attempt_at)
with a fencing token, and a claim whose worker vanished is retried when the lease ends.
Rows become the slice's structs in `_as` (msgspec.convert: the columns are named after
the fields).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias, TypeVar

import asyncpg
import msgspec

from hub.integrations.events import (
    DELIVERY_CHANNEL,
    GRAFANA_EVENT_TYPES,
    OUTBOX_CHANNEL,
    WEBHOOK_TEST,
)
from hub.integrations.schemas import AttemptOut, DeliveryOut, SubscriptionOut
from hub.storage.migrations import Connection

Destination = Literal["webhook", "grafana"]
Status = Literal["pending", "delivered", "dead"]
RedeliverResult = Literal["queued", "in_flight", "not_found"]
GRAFANA_LANE = "grafana"
_FAN_OUT_LOCK = "iochub.outbox.fan_out"
Executor: TypeAlias = "Connection | asyncpg.Pool"
T = TypeVar("T")


def _as(row: asyncpg.Record, kind: type[T], **extra: Any) -> T:
    """The one row-to-struct mapping of the slice."""
    return msgspec.convert({**dict(row.items()), **extra}, kind)


def webhook_lane(subscription_id: int) -> str:
    return f"webhook:{subscription_id}"


@dataclass(frozen=True, slots=True)
class FanOut:
    events: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed delivery with what it takes to send it."""

    delivery_id: int
    claim: uuid.UUID
    destination: Destination
    subscription_id: int | None
    webhook_id: str
    attempt: int
    event_type: str
    subject: str
    occurred_at: datetime
    enqueued_at: datetime
    data_json: str
    ward_code: str | None
    url: str | None
    # The secret box's tokens, newest first.
    sealed_secrets: Sequence[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    delivered: bool
    started_at: datetime
    latency_ms: int
    status_code: int | None = None
    error: str | None = None
    external_id: str | None = None
    # The receiver answered 410 Gone: it wants no more deliveries at this URL.
    gone: bool = False


async def _notify(conn: Executor, channel: str) -> None:
    await conn.execute("SELECT pg_notify($1, '')", channel)


# ---- the outbox ----


# event_type, subject, ordering_key, ward_id, data, occurred_at (None: now)
NewEvent = tuple[str, str, str, int | None, dict[str, Any], datetime | None]


async def insert_event(conn: Connection | asyncpg.Connection[Any], event: NewEvent) -> int:
    """An outbox row, and the NOTIFY that wakes the workers at commit."""
    event_type, subject, ordering_key, ward_id, data, occurred_at = event
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


async def notify_all(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "SELECT pg_notify($1, ''), pg_notify($2, '')", OUTBOX_CHANNEL, DELIVERY_CHANNEL
    )


async def fan_out(
    pool: asyncpg.Pool, *, batch: int, grafana: bool, give_up_after_s: float
) -> FanOut | None:
    """Turn a batch of new outbox events into deliveries; None if another hub is at it.

    One fan-out runs at a time across hubs, so deliveries are numbered in the order their
    events became visible: that number is the order within each lane and ordering key.
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", _FAN_OUT_LOCK):
            return None
        row = await conn.fetchrow(
            """
            WITH batch AS (
                SELECT id, event_type, ward_id, ordering_key FROM outbox
                WHERE fanned_out_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE
            ), webhooks AS (
                INSERT INTO outbox_delivery
                    (outbox_id, destination, subscription_id, lane, ordering_key, deadline_at)
                SELECT b.id, 'webhook', s.id, 'webhook:' || s.id, b.ordering_key,
                       now() + make_interval(secs => $4)
                FROM batch b JOIN webhook_subscription s ON s.active
                    AND (cardinality(s.event_types) = 0 OR b.event_type = ANY (s.event_types))
                    AND (cardinality(s.ward_ids) = 0 OR b.ward_id = ANY (s.ward_ids))
                ORDER BY b.id, s.id
                ON CONFLICT DO NOTHING
                RETURNING 1
            ), annotations AS (
                INSERT INTO outbox_delivery
                    (outbox_id, destination, subscription_id, lane, ordering_key, deadline_at)
                SELECT b.id, 'grafana', NULL, 'grafana', b.ordering_key,
                       now() + make_interval(secs => $4)
                FROM batch b WHERE $2 AND b.event_type = ANY ($3::text[])
                ORDER BY b.id
                ON CONFLICT DO NOTHING
                RETURNING 1
            ), done AS (
                UPDATE outbox SET fanned_out_at = now() FROM batch WHERE outbox.id = batch.id
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM done) AS events,
                   (SELECT count(*) FROM webhooks) + (SELECT count(*) FROM annotations)
                       AS deliveries
            """,
            batch,
            grafana,
            list(GRAFANA_EVENT_TYPES),
            give_up_after_s,
        )
        assert row is not None
        if row["deliveries"]:
            await _notify(conn, DELIVERY_CHANNEL)
        return _as(row, FanOut)


async def outbox_lag_s(pool: asyncpg.Pool) -> float:
    lag = await pool.fetchval(
        """
        SELECT extract(epoch FROM now() - created_at) FROM outbox
        WHERE fanned_out_at IS NULL ORDER BY id LIMIT 1
        """
    )
    return float(lag or 0.0)


# ---- the workers' deliveries ----


async def claim_due(pool: asyncpg.Pool, *, limit: int, lease_s: float, grafana: bool) -> list[Job]:
    """Claim up to `limit` due deliveries, each the head of its lane and ordering key."""
    claim = uuid.uuid4()
    rows = await pool.fetch(
        """
        WITH due AS (
            SELECT d.id FROM outbox_delivery d
            WHERE d.status = 'pending' AND d.next_attempt_at <= now()
              AND CASE WHEN d.destination = 'grafana' THEN $3
                       ELSE EXISTS (SELECT 1 FROM webhook_subscription s
                                    WHERE s.id = d.subscription_id AND s.active) END
              AND NOT EXISTS (
                  SELECT 1 FROM outbox_delivery e
                  WHERE e.status = 'pending' AND e.lane = d.lane
                    AND e.ordering_key = d.ordering_key AND e.id < d.id)
            ORDER BY d.next_attempt_at, d.id
            LIMIT $1
            FOR UPDATE OF d SKIP LOCKED
        ), claimed AS (
            UPDATE outbox_delivery d
            SET attempts = d.attempts + 1, claim = $4, last_attempt_at = now(),
                next_attempt_at = now() + make_interval(secs => $2)
            FROM due WHERE d.id = due.id
            RETURNING d.*
        )
        SELECT c.id AS delivery_id, c.destination, c.subscription_id, c.webhook_id,
               c.attempts AS attempt, o.event_type, o.subject, o.occurred_at,
               o.created_at AS enqueued_at, o.data::text AS data_json,
               w.code AS ward_code, s.url,
               ARRAY(SELECT k.sealed FROM webhook_secret k
                     WHERE k.subscription_id = c.subscription_id
                       AND (k.expires_at IS NULL OR k.expires_at > now())
                     ORDER BY k.id DESC) AS sealed_secrets
        FROM claimed c
        JOIN outbox o ON o.id = c.outbox_id
        LEFT JOIN ward w ON w.id = o.ward_id
        LEFT JOIN webhook_subscription s ON s.id = c.subscription_id
        ORDER BY c.id
        """,
        limit,
        lease_s,
        grafana,
        claim,
    )
    return [_as(r, Job, claim=claim) for r in rows]


async def seconds_until_next_due(pool: asyncpg.Pool) -> float | None:
    wait = await pool.fetchval(
        """
        SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM outbox_delivery
        WHERE status = 'pending' AND next_attempt_at > now()
        """
    )
    return None if wait is None else float(wait)


async def record(
    pool: asyncpg.Pool, job: Job, outcome: Outcome, retry_in_s: float
) -> Status | None:
    """Store an attempt's outcome; None if the claim was lost (its lease ended meanwhile)."""
    async with pool.acquire() as conn, conn.transaction():
        if outcome.delivered:
            status: Status | None = await conn.fetchval(
                """
                UPDATE outbox_delivery
                SET status = 'delivered', delivered_at = now(), claim = NULL,
                    last_status_code = $3, last_error = NULL, last_latency_ms = $4,
                    external_id = $5
                WHERE id = $1 AND claim = $2 AND status = 'pending'
                RETURNING status
                """,
                job.delivery_id,
                job.claim,
                outcome.status_code,
                outcome.latency_ms,
                outcome.external_id,
            )
        else:
            status = await conn.fetchval(
                """
                UPDATE outbox_delivery
                SET status = CASE WHEN $6 OR now() >= deadline_at THEN 'dead' ELSE 'pending' END,
                    next_attempt_at = least(now() + make_interval(secs => $5), deadline_at),
                    claim = NULL, last_status_code = $3, last_error = $4, last_latency_ms = $7
                WHERE id = $1 AND claim = $2 AND status = 'pending'
                RETURNING status
                """,
                job.delivery_id,
                job.claim,
                outcome.status_code,
                outcome.error,
                retry_in_s,
                outcome.gone,
                outcome.latency_ms,
            )
            if status is not None and outcome.gone and job.subscription_id is not None:
                await conn.execute(
                    """
                    UPDATE webhook_subscription
                    SET active = false, updated_at = now(),
                        deactivated_reason = 'the receiver answered 410 Gone at ' || now()
                    WHERE id = $1
                    """,
                    job.subscription_id,
                )
        if status is not None:
            await _log_attempt(conn, job, outcome)
        return status


async def release(pool: asyncpg.Pool, job: Job, outcome: Outcome) -> None:
    """Hand back a claim cut short (the hub is stopping): due again at once, elsewhere."""
    async with pool.acquire() as conn, conn.transaction():
        released = await conn.fetchval(
            """
            UPDATE outbox_delivery SET next_attempt_at = now(), claim = NULL
            WHERE id = $1 AND claim = $2 AND status = 'pending'
            RETURNING id
            """,
            job.delivery_id,
            job.claim,
        )
        if released is not None:
            await _log_attempt(conn, job, outcome)
            await _notify(conn, DELIVERY_CHANNEL)


async def _log_attempt(conn: Connection, job: Job, outcome: Outcome) -> None:
    await conn.execute(
        """
        INSERT INTO outbox_delivery_attempt
            (delivery_id, attempt, attempted_at, status_code, latency_ms, error)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        job.delivery_id,
        job.attempt,
        outcome.started_at,
        outcome.status_code,
        outcome.latency_ms,
        outcome.error,
    )


async def pending_counts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT destination, count(*) AS n FROM outbox_delivery WHERE status = 'pending' "
        "GROUP BY destination"
    )
    return {r["destination"]: r["n"] for r in rows}


async def prune(pool: asyncpg.Pool, *, retention_days: int) -> int:
    """Forget finished events older than the retention, with their deliveries and logs."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM webhook_secret WHERE expires_at IS NOT NULL AND expires_at < now()"
        )
        deleted: str = await conn.execute(
            """
            DELETE FROM outbox o
            WHERE o.created_at < now() - make_interval(days => $1)
              AND o.fanned_out_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM outbox_delivery d
                              WHERE d.outbox_id = o.id AND d.status = 'pending')
            """,
            retention_days,
        )
    return int(deleted.split()[-1])


# ---- the delivery log, for the API ----

_DELIVERY_COLUMNS = """
    d.id, d.destination, d.subscription_id, d.webhook_id, d.status, d.attempts,
    CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
    d.claim IS NOT NULL AND d.next_attempt_at > now() AS in_flight,
    d.last_attempt_at, d.last_status_code, d.last_error, d.last_latency_ms,
    d.delivered_at, d.external_id, d.created_at, o.event_type, o.subject, o.occurred_at
"""


async def list_deliveries(
    pool: asyncpg.Pool,
    *,
    lane: str,
    status: Status | None,
    before_id: int | None,
    limit: int,
) -> list[DeliveryOut]:
    rows = await pool.fetch(
        f"""
        SELECT {_DELIVERY_COLUMNS}
        FROM outbox_delivery d JOIN outbox o ON o.id = d.outbox_id
        WHERE d.lane = $1 AND ($2::text IS NULL OR d.status = $2)
          AND ($3::bigint IS NULL OR d.id < $3)
        ORDER BY d.id DESC
        LIMIT $4
        """,
        lane,
        status,
        before_id,
        limit,
    )
    return [_as(r, DeliveryOut) for r in rows]


async def get_delivery(
    pool: asyncpg.Pool, *, lane: str, delivery_id: int
) -> tuple[DeliveryOut, str, list[AttemptOut]] | None:
    """A delivery, its event's data (JSON text) and its attempt log, oldest first."""
    row = await pool.fetchrow(
        f"""
        SELECT {_DELIVERY_COLUMNS}, o.data::text AS data
        FROM outbox_delivery d JOIN outbox o ON o.id = d.outbox_id
        WHERE d.lane = $1 AND d.id = $2
        """,
        lane,
        delivery_id,
    )
    if row is None:
        return None
    attempts = await pool.fetch(
        """
        SELECT attempt, attempted_at, status_code, latency_ms, error
        FROM outbox_delivery_attempt WHERE delivery_id = $1 ORDER BY id
        """,
        delivery_id,
    )
    return _as(row, DeliveryOut), row["data"], [_as(a, AttemptOut) for a in attempts]


async def redeliver(
    pool: asyncpg.Pool, *, lane: str, delivery_id: int, give_up_after_s: float
) -> RedeliverResult:
    """Send a delivery again now, with its webhook-id, and a fresh retry window."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT claim IS NOT NULL AND next_attempt_at > now() AND status = 'pending'
                AS in_flight
            FROM outbox_delivery WHERE id = $1 AND lane = $2 FOR UPDATE
            """,
            delivery_id,
            lane,
        )
        if row is None:
            return "not_found"
        if row["in_flight"]:
            return "in_flight"
        await _requeue(conn, "id = $2", delivery_id, give_up_after_s)
    return "queued"


async def redeliver_dead(pool: asyncpg.Pool, *, lane: str, give_up_after_s: float) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await _requeue(conn, "lane = $2 AND status = 'dead'", lane, give_up_after_s)


async def _requeue(conn: Connection, where: str, key: Any, give_up_after_s: float) -> int:
    done: str = await conn.execute(
        f"""
        UPDATE outbox_delivery
        SET status = 'pending', attempts = 0, next_attempt_at = now(), claim = NULL,
            delivered_at = NULL, deadline_at = now() + make_interval(secs => $1)
        WHERE {where}
        """,
        give_up_after_s,
        key,
    )
    count = int(done.split()[-1])
    if count:
        await _notify(conn, DELIVERY_CHANNEL)
    return count


async def add_test_event(
    pool: asyncpg.Pool,
    *,
    subscription_id: int,
    data: dict[str, Any],
    give_up_after_s: float,
) -> int:
    """A test event for one subscription only: written as already fanned out, with its one
    delivery; returns the delivery's id."""
    async with pool.acquire() as conn, conn.transaction():
        delivery_id: int = await conn.fetchval(
            """
            WITH event AS (
                INSERT INTO outbox (event_type, subject, ordering_key, data, fanned_out_at)
                VALUES ($1, $2, $2, $3::jsonb, now())
                RETURNING id, ordering_key
            )
            INSERT INTO outbox_delivery
                (outbox_id, destination, subscription_id, lane, ordering_key, deadline_at)
            SELECT event.id, 'webhook', $4, $5, event.ordering_key,
                   now() + make_interval(secs => $6)
            FROM event
            RETURNING id
            """,
            WEBHOOK_TEST,
            f"webhook-{subscription_id}",
            msgspec.json.encode(data).decode(),
            subscription_id,
            webhook_lane(subscription_id),
            give_up_after_s,
        )
        await _notify(conn, DELIVERY_CHANNEL)
    return delivery_id


# ---- webhook subscriptions and their secrets ----

_SUBSCRIPTION = """
    SELECT s.id, s.name, s.url, s.event_types, s.active, s.deactivated_reason,
           s.created_at, s.updated_at,
           ARRAY(SELECT w.code FROM ward w WHERE w.id = ANY (s.ward_ids) ORDER BY w.code)
               AS wards,
           (SELECT max(k.expires_at) FROM webhook_secret k
            WHERE k.subscription_id = s.id AND k.expires_at > now())
               AS previous_secret_expires_at,
           (SELECT count(*) FROM outbox_delivery d
            WHERE d.subscription_id = s.id AND d.status = 'pending') AS pending_deliveries,
           (SELECT count(*) FROM outbox_delivery d
            WHERE d.subscription_id = s.id AND d.status = 'dead') AS dead_deliveries
    FROM webhook_subscription s
"""


async def ward_ids_by_code(conn: Executor, codes: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT id, code FROM ward WHERE code = ANY ($1::text[])", codes)
    return {r["code"]: r["id"] for r in rows}


async def subscription(conn: Executor, subscription_id: int) -> SubscriptionOut | None:
    row = await conn.fetchrow(_SUBSCRIPTION + " WHERE s.id = $1", subscription_id)
    return None if row is None else _as(row, SubscriptionOut)


async def all_subscriptions(pool: asyncpg.Pool) -> list[SubscriptionOut]:
    return [_as(r, SubscriptionOut) for r in await pool.fetch(_SUBSCRIPTION + " ORDER BY s.id")]


async def lock_subscription(conn: Connection, subscription_id: int) -> None:
    await conn.execute(
        "SELECT 1 FROM webhook_subscription WHERE id = $1 FOR UPDATE", subscription_id
    )


async def insert_subscription(
    conn: Connection,
    *,
    name: str,
    url: str,
    event_types: Sequence[str],
    ward_ids: Sequence[int],
    active: bool,
) -> int:
    """The new subscription's id; asyncpg.UniqueViolationError if the name is taken."""
    subscription_id: int = await conn.fetchval(
        """
        INSERT INTO webhook_subscription (name, url, event_types, ward_ids, active)
        VALUES ($1, $2, $3, $4, $5) RETURNING id
        """,
        name,
        url,
        event_types,
        ward_ids,
        active,
    )
    return subscription_id


async def update_subscription(
    conn: Connection, subscription_id: int, changes: Mapping[str, Any]
) -> None:
    """Set the given columns (names from the service, never from a request)."""
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, 2))
    await conn.execute(
        f"UPDATE webhook_subscription SET {assignments}, updated_at = now() WHERE id = $1",
        subscription_id,
        *changes.values(),
    )


async def delete_subscription(conn: Connection, subscription_id: int) -> None:
    await conn.execute("DELETE FROM webhook_subscription WHERE id = $1", subscription_id)


async def insert_secret(conn: Connection, subscription_id: int, sealed: str) -> None:
    await conn.execute(
        "INSERT INTO webhook_secret (subscription_id, sealed) VALUES ($1, $2)",
        subscription_id,
        sealed,
    )


async def expire_secrets(conn: Connection, subscription_id: int, within_s: float) -> None:
    """The subscription's secrets end within `within_s` (sooner if they already did)."""
    await conn.execute(
        """
        UPDATE webhook_secret
        SET expires_at = least(coalesce(expires_at, 'infinity'),
                               now() + make_interval(secs => $2))
        WHERE subscription_id = $1
        """,
        subscription_id,
        within_s,
    )


async def touch_subscription(conn: Connection, subscription_id: int) -> None:
    await conn.execute(
        "UPDATE webhook_subscription SET updated_at = now() WHERE id = $1", subscription_id
    )


async def previous_secret_expiry(conn: Connection, subscription_id: int) -> datetime | None:
    expires_at: datetime | None = await conn.fetchval(
        """
        SELECT max(expires_at) FROM webhook_secret
        WHERE subscription_id = $1 AND expires_at > now()
        """,
        subscription_id,
    )
    return expires_at


# ---- the Grafana sync's records (table grafana_sync, migration 0016) ----


async def sync_record(
    pool: asyncpg.Pool, grafana: str, kind: str, uid: str
) -> tuple[int, str] | None:
    row = await pool.fetchrow(
        "SELECT version, digest FROM grafana_sync WHERE grafana = $1 AND kind = $2 AND uid = $3",
        grafana,
        kind,
        uid,
    )
    return None if row is None else (int(row["version"]), str(row["digest"]))


async def put_sync_record(
    pool: asyncpg.Pool, grafana: str, kind: str, uid: str, version: int, digest: str
) -> None:
    await pool.execute(
        "INSERT INTO grafana_sync (grafana, kind, uid, version, digest) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (grafana, kind, uid) DO UPDATE "
        "SET version = EXCLUDED.version, digest = EXCLUDED.digest, synced_at = now()",
        grafana,
        kind,
        uid,
        version,
        digest,
    )


async def set_login_password(pool: asyncpg.Pool, role: str, password: str) -> None:
    """Let `role` log in with `password`; asyncpg.InsufficientPrivilegeError without
    CREATEROLE."""
    # ALTER ROLE takes no parameters: quote the literal on the server.
    literal = await pool.fetchval("SELECT quote_literal($1::text)", password)
    await pool.execute(f"ALTER ROLE {role} WITH LOGIN PASSWORD {literal}")


async def timeseries_backend(pool: asyncpg.Pool) -> str:
    value = await pool.fetchval("SELECT value FROM hub_meta WHERE key = 'timeseries_backend'")
    return str(value or "postgres")
