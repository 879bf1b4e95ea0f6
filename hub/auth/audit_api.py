"""Reading the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from hub.auth.models import AuditEntry
from hub.auth.principal import CurrentUser, Permission


class AuditOut(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: Any
    after: Any


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/")
    async def list_entries(
        self,
        principal: CurrentUser,
        object_type: Annotated[str | None, QueryParameter(max_length=64)] = None,
        object_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
        actor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        before_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[AuditOut]:
        """Newest first; page with before_id = the last id you got."""
        principal.require(Permission.AUDIT_READ)
        entries = AuditEntry.all()
        if principal.ward_ids is not None:
            entries = entries.filter(ward_id__in=sorted(principal.ward_ids))
        if object_type:
            entries = entries.filter(object_type=object_type)
        if object_id:
            entries = entries.filter(object_id=object_id)
        if actor:
            entries = entries.filter(actor=actor)
        if before_id:
            entries = entries.filter(id__lt=before_id)
        rows = await entries.order_by("-id").limit(limit)
        return [
            AuditOut(e.id, e.at, e.actor, e.action, e.object_type, e.object_id, e.before, e.after)
            for e in rows
        ]
