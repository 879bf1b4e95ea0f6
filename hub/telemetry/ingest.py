"""Readings from drivers into the store: resolve the device, normalise, quarantine, write."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from drivers.contract import Reading, RefusedDevice, Rejected, UnknownDevice
from hub.storage.migrations import Connection
from hub.telemetry import metrics
from hub.telemetry.catalog import CatalogError, normalise
from hub.telemetry.directory import DeviceDirectory
from hub.telemetry.store import Conflict, ReadingWriter, Row

log = logging.getLogger("hub.telemetry.ingest")
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Quarantine:
    pool: asyncpg.Pool
    max_raw_bytes: int = 64 * 1024

    async def keep(self, item: Rejected) -> None:
        metrics.QUARANTINED.labels(reason=reason_label(item.reason)).inc()
        raw = item.raw[: self.max_raw_bytes]
        await self.pool.execute(
            "INSERT INTO quarantine (source, device_uid, reason, raw, size, received_at) "
            "VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))",
            item.source[:500],
            item.device_uid,
            item.reason[:2000],
            raw,
            len(item.raw),
            item.time,
        )

    async def keep_conflicts(self, conn: Connection, conflicts: Sequence[Conflict]) -> None:
        """Quarantine conflicting values in the transaction that refused them."""
        metrics.QUARANTINED.labels(reason="conflicting value").inc(len(conflicts))
        await conn.execute(
            "INSERT INTO quarantine (source, device_uid, reason, raw, size) "
            "SELECT 'ingest', d.uid, c.reason, c.raw, length(c.raw) "
            "FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS c (device_id, reason, raw) "
            "LEFT JOIN device d ON d.id = c.device_id",
            [c.row[1] for c in conflicts],
            [c.reason for c in conflicts],
            [_conflict_bytes(c) for c in conflicts],
        )


def _conflict_bytes(conflict: Conflict) -> bytes:
    time, device_id, metric, offered = conflict.row
    return json.dumps(
        {
            "device_id": device_id,
            "metric": metric,
            "time": time.isoformat(),
            "value": offered,
            "stored": conflict.stored,
        }
    ).encode()


def reason_label(reason: str) -> str:
    """A low-cardinality label for the counter: the reason's first words."""
    head = reason.split(":", 1)[0].split("(", 1)[0].strip().lower()
    return " ".join(head.split()[:4])[:40] or "unknown"


@dataclass
class TelemetryIngest:
    directory: DeviceDirectory
    writer: ReadingWriter
    quarantine: Quarantine

    def __post_init__(self) -> None:
        if self.writer.on_conflict is None:
            self.writer.on_conflict = self.quarantine.keep_conflicts

    async def readings(self, items: list[Reading], source: str) -> None:
        """Store every reading of known, active devices; all or nothing per call.

        An unknown device becomes pending (a technician approves it) and the call is
        refused with UnknownDevice; a decommissioned one with RefusedDevice.
        """
        uids = {r.device_uid for r in items}
        refs = await self.directory.resolve_many(uids)
        for uid in sorted(uids):
            ref = refs[uid]
            if ref is None:
                if _UID.match(uid) and await self.directory.register_pending(uid, "sensor", source):
                    log.info("unknown device %s from %s is pending approval", uid, source)
                raise UnknownDevice(f"device {uid!r} is not registered; it awaits approval")
            if ref.lifecycle == "pending":
                raise UnknownDevice(f"device {uid!r} awaits a technician's approval")
            if ref.lifecycle == "decommissioned":
                raise RefusedDevice(f"device {uid!r} is decommissioned")
        rows: list[Row] = []
        for reading in items:
            try:
                value, _unit = normalise(reading.metric, reading.value, reading.unit)
            except CatalogError as exc:
                await self.quarantine.keep(
                    Rejected(
                        source=source,
                        raw=reading_bytes(reading),
                        reason=str(exc),
                        device_uid=reading.device_uid,
                        time=reading.time,
                    )
                )
                continue
            ref = refs[reading.device_uid]
            assert ref is not None
            rows.append((reading.time, ref.id, reading.metric, value))
        metrics.RECEIVED.labels(source=source).inc(len(items))
        await self.writer.write(rows)

    async def rejected(self, item: Rejected) -> None:
        await self.quarantine.keep(item)


def reading_bytes(reading: Reading) -> bytes:
    return json.dumps(
        {
            "device": reading.device_uid,
            "metric": reading.metric,
            "value": reading.value,
            "unit": reading.unit,
            "time": reading.time.isoformat(),
        },
        allow_nan=True,
    ).encode()
