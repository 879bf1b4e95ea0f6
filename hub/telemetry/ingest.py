"""Readings from drivers into the store: resolve the device, name, normalise, quarantine, write."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from drivers.contract import Reading, RefusedDevice, Rejected, StoreReport, UnknownDevice
from hub.devices import DeviceDirectory, DeviceIdentity, DeviceRef, ProfileBook
from hub.storage.migrations import Connection
from hub.telemetry import metrics, store
from hub.telemetry.catalog import RAW_PREFIX, CatalogError, normalise
from hub.telemetry.names import NameRefused, SenmlNames
from hub.telemetry.store import Conflict, ReadingWriter, Row, ValueRow

log = logging.getLogger("hub.telemetry.ingest")
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Quarantine:
    pool: asyncpg.Pool
    max_raw_bytes: int = 64 * 1024

    async def keep(self, item: Rejected) -> None:
        await self.keep_many([item])

    async def keep_many(self, items: Sequence[Rejected]) -> None:
        """Keep payloads or readings aside with their reasons, in one statement."""
        if not items:
            return
        for item in items:
            metrics.QUARANTINED.labels(reason=reason_label(item.reason)).inc()
        await store.quarantine(
            self.pool,
            sources=[item.source[:500] for item in items],
            device_uids=[item.device_uid for item in items],
            reasons=[item.reason[:2000] for item in items],
            raws=[item.raw[: self.max_raw_bytes] for item in items],
            sizes=[len(item.raw) for item in items],
            received_at=[item.time for item in items],
        )

    async def keep_conflicts(self, conn: Connection, conflicts: Sequence[Conflict]) -> None:
        """Quarantine conflicting values in the transaction that refused them."""
        metrics.QUARANTINED.labels(reason="conflicting value").inc(len(conflicts))
        await store.quarantine_conflicts(
            conn,
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


# The oldest reading any device may deliver (device.backfill_days is at most 366): the
# drivers' own age limit, beyond which a payload is refused before the hub sees it.
BACKFILL_LIMIT = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class AgeLimit:
    """How old a reading may be: ``max_age``, or a device's own backfill allowance."""

    max_age: timedelta = timedelta(days=7)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def allowed(self, ref: DeviceRef) -> timedelta:
        if ref.backfill_days is not None:
            return max(self.max_age, timedelta(days=ref.backfill_days))
        return self.max_age

    def problem(self, reading: Reading, ref: DeviceRef, now: datetime) -> str:
        allowed = self.allowed(ref)
        age = now - reading.time
        hint = "" if ref.backfill_days else "; the device is not configured for backfill"
        return (
            f"{reading.metric}: reading of {reading.time.isoformat()} is "
            f"{age.total_seconds() / 86400:.1f} days old "
            f"(at most {allowed.total_seconds() / 86400:g} days allowed{hint})"
        )


@dataclass
class TelemetryIngest:
    directory: DeviceDirectory
    writer: ReadingWriter
    quarantine: Quarantine
    profiles: ProfileBook = field(default_factory=ProfileBook)
    age: AgeLimit = field(default_factory=AgeLimit)

    def __post_init__(self) -> None:
        if self.writer.on_conflict is None:
            self.writer.on_conflict = self.quarantine.keep_conflicts
        self.names = SenmlNames(self.profiles)

    async def readings(self, items: list[Reading], source: str) -> StoreReport:
        """Store every reading of known, active devices; say which were kept aside, and why.

        An unknown device becomes pending (a technician approves it) and the call is
        refused with UnknownDevice; a decommissioned one with RefusedDevice. A reading
        the hub cannot store (unknown name or unit, out of range, too old, another value
        for a stored time) is quarantined with the reason, and the others are stored.
        """
        uids = {r.device_uid for r in items}
        refs = await self.directory.resolve_many(uids)
        for uid in sorted(uids):
            ref = refs[uid]
            if ref is None:
                if _UID.match(uid) and await self.directory.register_pending(uid, "sensor", source):
                    log.info(
                        "unknown device %s from %s is pending approval",
                        uid,
                        source,
                        extra={"device_uid": uid},
                    )
                raise UnknownDevice(f"device {uid!r} is not registered; it awaits approval")
            if ref.lifecycle == "pending":
                raise UnknownDevice(f"device {uid!r} awaits a technician's approval")
            if ref.lifecycle == "decommissioned":
                raise RefusedDevice(f"device {uid!r} is decommissioned")
        location = "resource" if source.startswith("coap") else "topic"
        now = self.age.clock()
        # Per device, once per call: its names and the oldest time it may send.
        devices = {}
        for uid in uids:
            ref = refs[uid]
            assert ref is not None
            names = self.names.for_device(DeviceIdentity(ref.uid, ref.model, ref.serial))
            devices[uid] = (ref, names, now - self.age.allowed(ref))
        rows: list[Row] = []
        value_rows: list[ValueRow] = []
        refused: list[Rejected] = []
        for reading in items:
            ref, names, oldest = devices[reading.device_uid]
            try:
                metric, unit = reading.metric, reading.unit
                if reading.senml:
                    metric, unit = names.resolve(reading.metric, reading.unit, location)
                if reading.time < oldest:
                    raise CatalogError(self.age.problem(reading, ref, now))
                if metric.startswith(RAW_PREFIX):
                    value = reading.value  # kept as sent: raw names have no catalog unit
                else:
                    value, _unit = normalise(metric, reading.value, unit)
            except (CatalogError, NameRefused) as exc:
                refused.append(
                    Rejected(
                        source=source,
                        raw=reading_bytes(reading),
                        reason=str(exc),
                        device_uid=reading.device_uid,
                        time=reading.time,
                    )
                )
                continue
            if type(value) is float or type(value) is int:
                rows.append((reading.time, ref.id, metric, float(value)))
            else:
                value_rows.append(_value_row(reading.time, ref.id, metric, value))
        metrics.RECEIVED.labels(source=source).inc(len(items))
        await self.quarantine.keep_many(refused)
        conflicts = await self.writer.write(rows)
        if value_rows:
            await self._write_values(value_rows)
        reasons = [item.reason for item in refused] + [c.reason for c in conflicts]
        return StoreReport(stored=len(items) - len(reasons), total=len(items), refused=reasons)

    async def _write_values(self, rows: Sequence[ValueRow]) -> None:
        await store.insert_values(self.writer.pool, rows)

    async def rejected(self, item: Rejected) -> None:
        await self.quarantine.keep(item)


def _value_row(time: datetime, device_id: int, metric: str, value: object) -> ValueRow:
    if isinstance(value, bool):
        return (time, device_id, metric, None, value, None)
    if isinstance(value, bytes):
        return (time, device_id, metric, None, None, value)
    return (time, device_id, metric, str(value), None, None)


def reading_bytes(reading: Reading) -> bytes:
    value = reading.value
    return json.dumps(
        {
            "device": reading.device_uid,
            "metric": reading.metric,
            "value": value.hex() if isinstance(value, bytes) else value,
            "unit": reading.unit,
            "time": reading.time.isoformat(),
        },
        allow_nan=True,
    ).encode()
