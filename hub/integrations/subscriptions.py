"""Webhook subscriptions: validation, storage, and their signing secrets (sealed at rest)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec

from hub.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from hub.integrations import signing
from hub.integrations.schemas import SubscriptionIn, SubscriptionOut, SubscriptionPatch
from hub.integrations.webhooks import secret_context
from hub.storage.crypto import SecretBox
from hub.storage.migrations import Connection

_SELECT = """
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


def check_url(url: str) -> str:
    """The URL if the hub can POST to it; otherwise a ValidationFailed naming `url`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValidationFailed("invalid URL", [FieldProblem("url", str(exc))]) from exc
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = f"must be an http or https URL, not {parts.scheme or 'scheme-less'}"
    elif not parts.hostname:
        problem = "has no host"
    elif parts.username is not None or parts.password is not None:
        # It would be stored and shown in clear; receivers authenticate the signature instead.
        problem = "must not carry a user name or password"
    elif parts.fragment:
        problem = "must not have a #fragment"
    elif port == 0:
        problem = "has port 0"
    if problem:
        raise ValidationFailed(f"url {problem}", [FieldProblem("url", problem)])
    return url.strip()


async def ward_ids(conn: Connection | asyncpg.Pool, codes: Sequence[str]) -> list[int]:
    wanted = sorted(set(codes))
    rows = await conn.fetch("SELECT id, code FROM ward WHERE code = ANY ($1::text[])", wanted)
    found = {r["code"]: r["id"] for r in rows}
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise ValidationFailed(
            "unknown ward", [FieldProblem("wards", f"no ward with code {c!r}") for c in unknown]
        )
    return sorted(found.values())


def to_out(row: asyncpg.Record) -> SubscriptionOut:
    return SubscriptionOut(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        event_types=list(row["event_types"]),
        wards=list(row["wards"]),
        active=row["active"],
        deactivated_reason=row["deactivated_reason"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
        pending_deliveries=row["pending_deliveries"],
        dead_deliveries=row["dead_deliveries"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def public(subscription: SubscriptionOut) -> dict[str, Any]:
    """What the audit log keeps of a subscription (never a secret)."""
    fields = msgspec.to_builtins(subscription)
    return {k: fields[k] for k in ("name", "url", "event_types", "wards", "active")}


async def _fetch(conn: Connection | asyncpg.Pool, subscription_id: int) -> SubscriptionOut:
    row = await conn.fetchrow(_SELECT + " WHERE s.id = $1", subscription_id)
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return to_out(row)


async def _store_secret(conn: Connection, box: SecretBox, subscription_id: int) -> str:
    secret = signing.new_secret()
    await conn.execute(
        "INSERT INTO webhook_secret (subscription_id, sealed) VALUES ($1, $2)",
        subscription_id,
        box.seal(secret, secret_context(subscription_id)),
    )
    return secret


async def create(
    pool: asyncpg.Pool, box: SecretBox, data: SubscriptionIn
) -> tuple[SubscriptionOut, str]:
    """The new subscription and its secret (the only time the secret leaves the hub)."""
    url = check_url(data.url)
    async with pool.acquire() as conn, conn.transaction():
        wards = await ward_ids(conn, data.wards)
        try:
            subscription_id: int = await conn.fetchval(
                """
                INSERT INTO webhook_subscription (name, url, event_types, ward_ids, active)
                VALUES ($1, $2, $3, $4, $5) RETURNING id
                """,
                data.name,
                url,
                sorted(set(data.event_types)),
                wards,
                data.active,
            )
        except asyncpg.UniqueViolationError as exc:
            raise _name_taken(data.name) from exc
        secret = await _store_secret(conn, box, subscription_id)
        return await _fetch(conn, subscription_id), secret


async def list_all(pool: asyncpg.Pool) -> list[SubscriptionOut]:
    return [to_out(r) for r in await pool.fetch(_SELECT + " ORDER BY s.id")]


async def get(pool: asyncpg.Pool, subscription_id: int) -> SubscriptionOut:
    return await _fetch(pool, subscription_id)


async def update(
    pool: asyncpg.Pool, subscription_id: int, patch: SubscriptionPatch
) -> tuple[SubscriptionOut, SubscriptionOut]:
    """(before, after) of a changed subscription."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM webhook_subscription WHERE id = $1 FOR UPDATE", subscription_id
        )
        before = await _fetch(conn, subscription_id)
        changes: dict[str, Any] = {}
        if not isinstance(patch.name, msgspec.UnsetType):
            changes["name"] = patch.name
        if not isinstance(patch.url, msgspec.UnsetType):
            changes["url"] = check_url(patch.url)
        if not isinstance(patch.event_types, msgspec.UnsetType):
            changes["event_types"] = sorted(set(patch.event_types))
        if not isinstance(patch.wards, msgspec.UnsetType):
            changes["ward_ids"] = await ward_ids(conn, patch.wards)
        if not isinstance(patch.active, msgspec.UnsetType):
            changes["active"] = patch.active
            if patch.active:
                changes["deactivated_reason"] = ""
        if changes:
            assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, 2))
            try:
                await conn.execute(
                    f"UPDATE webhook_subscription SET {assignments}, updated_at = now() "
                    "WHERE id = $1",
                    subscription_id,
                    *changes.values(),
                )
            except asyncpg.UniqueViolationError as exc:
                raise _name_taken(str(changes.get("name"))) from exc
        return before, await _fetch(conn, subscription_id)


async def delete(pool: asyncpg.Pool, subscription_id: int) -> SubscriptionOut:
    """Remove a subscription with its secrets and deliveries; returns what it was."""
    async with pool.acquire() as conn, conn.transaction():
        before = await _fetch(conn, subscription_id)
        await conn.execute("DELETE FROM webhook_subscription WHERE id = $1", subscription_id)
        return before


async def rotate_secret(
    pool: asyncpg.Pool, box: SecretBox, subscription_id: int, overlap_hours: float
) -> tuple[str, datetime | None]:
    """A new secret; the current one keeps signing beside it for `overlap_hours`."""
    async with pool.acquire() as conn, conn.transaction():
        await _fetch(conn, subscription_id)
        await conn.execute(
            """
            UPDATE webhook_secret
            SET expires_at = least(coalesce(expires_at, 'infinity'),
                                   now() + make_interval(secs => $2))
            WHERE subscription_id = $1
            """,
            subscription_id,
            overlap_hours * 3600,
        )
        secret = await _store_secret(conn, box, subscription_id)
        await conn.execute(
            "UPDATE webhook_subscription SET updated_at = now() WHERE id = $1", subscription_id
        )
        previous_expires_at: datetime | None = await conn.fetchval(
            """
            SELECT max(expires_at) FROM webhook_secret
            WHERE subscription_id = $1 AND expires_at > now()
            """,
            subscription_id,
        )
        return secret, previous_expires_at


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"a webhook subscription named {name!r} exists",
        [FieldProblem("name", "is taken by another subscription")],
    )
