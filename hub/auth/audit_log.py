"""The audit log: who changed what, when, with the object before and after."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from hub.auth.models import AuditEntry
from hub.auth.principal import Principal


async def record(
    actor: Principal | None,
    action: str,
    object_type: str,
    object_id: str | int,
    *,
    ward_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    connection: BaseDBAsyncClient | None = None,
) -> None:
    """Write one entry; pass the change's transaction so both land or neither does."""
    await AuditEntry.create(
        actor_id=actor.user_id if actor and actor.user_id > 0 else None,
        actor=actor.username if actor else "system",
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        ward_id=ward_id,
        before=before,
        after=after,
        using_db=connection,
    )
