"""Which device a uid on the wire is, cached briefly: the ingest path asks per message."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from hub.runtime.context import RuntimeKey


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    uid: str
    kind: str
    lifecycle: str
    ward_id: int | None
    model: str = ""
    serial: str | None = None
    backfill_days: int | None = None


class DeviceDirectory:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 5.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, DeviceRef | None]] = {}

    async def resolve_many(self, uids: set[str]) -> dict[str, DeviceRef | None]:
        now = time.monotonic()
        found: dict[str, DeviceRef | None] = {}
        missing = []
        for uid in uids:
            hit = self._cache.get(uid)
            if hit is not None and now - hit[0] < self.ttl_s:
                found[uid] = hit[1]
            else:
                missing.append(uid)
        if missing:
            rows = await self.pool.fetch(
                "SELECT id, uid, kind, lifecycle, ward_id, model, serial, backfill_days FROM device "
                "WHERE uid = ANY($1::text[])",
                missing,
            )
            refs = {row["uid"]: DeviceRef(**dict(row)) for row in rows}
            for uid in missing:
                ref = refs.get(uid)
                self._cache[uid] = (now, ref)
                found[uid] = ref
        return found

    async def resolve(self, uid: str) -> DeviceRef | None:
        return (await self.resolve_many({uid}))[uid]

    def forget(self, uid: str) -> None:
        self._cache.pop(uid, None)

    def forget_all(self) -> None:
        self._cache.clear()

    async def register_pending(self, uid: str, kind: str, source: str) -> bool:
        """Record an unknown device for a technician to approve; True if it is new."""
        status = await self.pool.execute(
            "INSERT INTO device (uid, kind, lifecycle, discovered_from) "
            "VALUES ($1, $2, 'pending', $3) ON CONFLICT DO NOTHING",
            uid,
            kind,
            source[:200],
        )
        self.forget(uid)
        return status.endswith(" 1")


DIRECTORY: RuntimeKey[DeviceDirectory] = RuntimeKey("the device directory")
