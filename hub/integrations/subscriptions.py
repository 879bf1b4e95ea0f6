"""Webhook subscriptions: validation, and their signing secrets (sealed at rest); the SQL is
in hub/integrations/store.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec

from hub.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from hub.integrations import signing, store
from hub.integrations.schemas import SubscriptionIn, SubscriptionOut, SubscriptionPatch
from hub.integrations.webhooks import secret_context
from hub.storage.crypto import SecretBox
from hub.storage.migrations import Connection


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
    found = await store.ward_ids_by_code(conn, wanted)
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise ValidationFailed(
            "unknown ward", [FieldProblem("wards", f"no ward with code {c!r}") for c in unknown]
        )
    return sorted(found.values())


def public(subscription: SubscriptionOut) -> dict[str, Any]:
    """What the audit log keeps of a subscription (never a secret)."""
    fields = msgspec.to_builtins(subscription)
    return {k: fields[k] for k in ("name", "url", "event_types", "wards", "active")}


async def _fetch(conn: Connection | asyncpg.Pool, subscription_id: int) -> SubscriptionOut:
    found = await store.subscription(conn, subscription_id)
    if found is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return found


async def _store_secret(conn: Connection, box: SecretBox, subscription_id: int) -> str:
    secret = signing.new_secret()
    await store.insert_secret(
        conn, subscription_id, box.seal(secret, secret_context(subscription_id))
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
            subscription_id = await store.insert_subscription(
                conn,
                name=data.name,
                url=url,
                event_types=sorted(set(data.event_types)),
                ward_ids=wards,
                active=data.active,
            )
        except asyncpg.UniqueViolationError as exc:
            raise _name_taken(data.name) from exc
        secret = await _store_secret(conn, box, subscription_id)
        return await _fetch(conn, subscription_id), secret


async def list_all(pool: asyncpg.Pool) -> list[SubscriptionOut]:
    return await store.all_subscriptions(pool)


async def get(pool: asyncpg.Pool, subscription_id: int) -> SubscriptionOut:
    return await _fetch(pool, subscription_id)


async def update(
    pool: asyncpg.Pool, subscription_id: int, patch: SubscriptionPatch
) -> tuple[SubscriptionOut, SubscriptionOut]:
    """(before, after) of a changed subscription."""
    async with pool.acquire() as conn, conn.transaction():
        await store.lock_subscription(conn, subscription_id)
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
            try:
                await store.update_subscription(conn, subscription_id, changes)
            except asyncpg.UniqueViolationError as exc:
                raise _name_taken(str(changes.get("name"))) from exc
        return before, await _fetch(conn, subscription_id)


async def delete(pool: asyncpg.Pool, subscription_id: int) -> SubscriptionOut:
    """Remove a subscription with its secrets and deliveries; returns what it was."""
    async with pool.acquire() as conn, conn.transaction():
        before = await _fetch(conn, subscription_id)
        await store.delete_subscription(conn, subscription_id)
        return before


async def rotate_secret(
    pool: asyncpg.Pool, box: SecretBox, subscription_id: int, overlap_hours: float
) -> tuple[str, datetime | None]:
    """A new secret; the current one keeps signing beside it for `overlap_hours`."""
    async with pool.acquire() as conn, conn.transaction():
        await _fetch(conn, subscription_id)
        await store.expire_secrets(conn, subscription_id, overlap_hours * 3600)
        secret = await _store_secret(conn, box, subscription_id)
        await store.touch_subscription(conn, subscription_id)
        return secret, await store.previous_secret_expiry(conn, subscription_id)


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"a webhook subscription named {name!r} exists",
        [FieldProblem("name", "is taken by another subscription")],
    )
