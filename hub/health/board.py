"""The technician's board: every device in the caller's wards, the unhealthy first, with
why and since when, and how many there are per ward, kind and status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from hub.auth import Permission, Principal

# What needs a technician first: gone, then broken, then slow; quiet ones last.
STATUS_ORDER: Final = ("offline", "degraded", "late", "unknown", "maintenance", "online")
_RANK = (
    "CASE d.status "
    + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STATUS_ORDER))
    + f" ELSE {len(STATUS_ORDER)} END"
)
_FILTER = (
    "($1::int[] IS NULL OR d.ward_id = ANY($1)) AND ($2::text IS NULL OR d.kind = $2) "
    "AND ($3::int IS NULL OR d.ward_id = $3) AND ($4::text IS NULL OR d.status = $4) "
    "AND ($5::text IS NULL OR d.uid ILIKE $5 OR d.name ILIKE $5 OR d.model ILIKE $5 "
    "OR d.vendor ILIKE $5 OR d.serial ILIKE $5)"
)


@dataclass(frozen=True, slots=True)
class BoardQuery:
    kind: str | None = None
    ward_id: int | None = None
    status: str | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class BoardRow:
    uid: str
    name: str
    kind: str
    ward_id: int | None
    status: str
    reason: str
    since: datetime | None
    """When the device entered its status (None: it never changed since registration)."""
    last_seen: datetime | None
    flapping: bool
    vendor: str
    model: str
    firmware_version: str
    faults: tuple[str, ...]
    maintenance_until: datetime | None


@dataclass(frozen=True, slots=True)
class BoardCount:
    ward_id: int | None
    kind: str
    status: str
    devices: int


def _args(principal: Principal, query: BoardQuery) -> list[object]:
    principal.require(Permission.DEVICES_READ)
    text = (query.q or "").strip()
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return [
        sorted(principal.ward_ids) if principal.ward_ids is not None else None,
        query.kind,
        query.ward_id,
        query.status,
        pattern if text else None,
    ]


async def health_board(
    pool: asyncpg.Pool, principal: Principal, query: BoardQuery, limit: int, offset: int = 0
) -> tuple[list[BoardRow], bool]:
    """A page of devices, unhealthy first and the latest change first within a status;
    whether more follow."""
    rows = await pool.fetch(
        "SELECT d.uid, d.name, d.kind, d.ward_id, d.status, d.status_reason, "
        "d.status_changed_at, d.last_seen, d.flapping_since IS NOT NULL AS flapping, "
        "d.vendor, d.model, d.firmware_version, d.faults, d.maintenance_until "
        f"FROM device d WHERE {_FILTER} "
        f"ORDER BY {_RANK}, d.status_changed_at DESC NULLS LAST, d.id LIMIT $6 OFFSET $7",
        *_args(principal, query),
        limit + 1,
        offset,
    )
    return [
        BoardRow(
            r["uid"],
            r["name"],
            r["kind"],
            r["ward_id"],
            r["status"],
            r["status_reason"],
            r["status_changed_at"],
            r["last_seen"],
            r["flapping"],
            r["vendor"],
            r["model"],
            r["firmware_version"],
            tuple(r["faults"] or ()),
            r["maintenance_until"],
        )
        for r in rows[:limit]
    ], len(rows) > limit


async def board_counts(pool: asyncpg.Pool, principal: Principal) -> list[BoardCount]:
    """Devices per ward, kind and status in the caller's wards (filters aside)."""
    rows = await pool.fetch(
        "SELECT d.ward_id, d.kind, d.status, count(*)::int AS devices FROM device d "
        f"WHERE {_FILTER} GROUP BY 1, 2, 3",
        *_args(principal, BoardQuery()),
    )
    return [BoardCount(r["ward_id"], r["kind"], r["status"], r["devices"]) for r in rows]
