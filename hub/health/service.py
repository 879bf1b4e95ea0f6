"""A device's health as people read it (status, why, history, events) and its maintenance
windows, audited: the API and the console both come through here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec

from hub.auth import Permission, Principal, audit
from hub.devices import registry
from hub.errors import FieldProblem, NotFound, ValidationFailed
from hub.health.monitor import HealthMonitor

HISTORY_SHOWN = 100


class MaintenanceIn(msgspec.Struct, forbid_unknown_fields=True):
    until: datetime
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class HealthEventOut(msgspec.Struct):
    at: datetime
    from_status: str
    to_status: str
    reason: str


class DeviceEventOut(msgspec.Struct):
    at: datetime
    kind: str
    active: bool
    data: Any


class DeviceHealthOut(msgspec.Struct):
    device: str
    status: str
    """The state machine's status; "flapping" while it keeps changing (see assessed)."""
    reason: str
    connected: bool | None
    last_seen: datetime | None
    last_data_at: datetime | None
    faults: list[str]
    maintenance_until: datetime | None
    maintenance_reason: str
    history: list[HealthEventOut]
    events: list[DeviceEventOut]
    assessed_status: str = ""
    """What the state machine says right now, flapping or not."""
    flapping_since: datetime | None = None
    flapping_reason: str = ""
    """Why it counts as flapping (how many changes in how long); empty when it is not."""


async def device_health(pool: asyncpg.Pool, principal: Principal, uid: str) -> DeviceHealthOut:
    """Why a device has its status: connectivity, last contact, faults, history."""
    device = await registry.get_scoped(principal, uid)
    row = await pool.fetchrow("SELECT * FROM device WHERE id = $1", device.id)
    if row is None:
        raise NotFound(f"no device {uid!r}")
    history = await pool.fetch(
        "SELECT * FROM health_event WHERE device_id = $1 ORDER BY at DESC LIMIT $2",
        device.id,
        HISTORY_SHOWN,
    )
    events = await pool.fetch(
        "SELECT * FROM device_event WHERE device_id = $1 ORDER BY at DESC LIMIT $2",
        device.id,
        HISTORY_SHOWN,
    )
    flapping = row["flapping_since"] is not None
    assessed = row["status"] + (f" ({row['status_reason']})" if row["status_reason"] else "")
    return DeviceHealthOut(
        uid,
        "flapping" if flapping else row["status"],
        f"{row['flapping_reason']}; now {assessed}" if flapping else row["status_reason"],
        row["connected"],
        row["last_seen"],
        row["last_data_at"],
        list(row["faults"]),
        row["maintenance_until"],
        row["maintenance_reason"],
        [HealthEventOut(h["at"], h["from_status"], h["to_status"], h["reason"]) for h in history],
        [
            DeviceEventOut(e["at"], e["kind"], e["active"], msgspec.json.decode(e["data"]))
            for e in events
        ],
        row["status"],
        row["flapping_since"],
        row["flapping_reason"] if flapping else "",
    )


def may_set_maintenance(principal: Principal) -> bool:
    return principal.has(Permission.MAINTENANCE_WRITE)


async def start_maintenance(
    monitor: HealthMonitor, principal: Principal, uid: str, data: MaintenanceIn
) -> None:
    """Put a device in maintenance until a time: no alerts from it meanwhile."""
    principal.require(Permission.MAINTENANCE_WRITE)
    device = await registry.get_scoped(principal, uid)
    if data.until.tzinfo is None:
        raise ValidationFailed("time without zone", [FieldProblem("until", "give an offset")])
    if data.until <= monitor.clock():
        raise ValidationFailed(
            "maintenance must end in the future",
            [FieldProblem("until", "give a time in the future")],
        )
    await monitor.set_maintenance(device.id, data.until, data.reason)
    await audit.record(
        principal,
        "device.maintenance",
        "device",
        uid,
        ward_id=device.ward_id,
        after={"until": data.until.isoformat(), "reason": data.reason},
    )
    for hook in monitor.on_maintenance:
        await hook()


async def end_maintenance(monitor: HealthMonitor, principal: Principal, uid: str) -> None:
    principal.require(Permission.MAINTENANCE_WRITE)
    device = await registry.get_scoped(principal, uid)
    await monitor.set_maintenance(device.id, None, "")
    await audit.record(principal, "device.maintenance_end", "device", uid, ward_id=device.ward_id)
    for hook in monitor.on_maintenance:
        await hook()
