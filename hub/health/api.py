"""Health routes: per-ward availability, a device's health history, maintenance windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from hub.auth import CurrentUser, Permission, audit
from hub.devices import registry
from hub.errors import FieldProblem, NotFound, ValidationFailed
from hub.health.availability import availability
from hub.health.monitor import HEALTH, HealthMonitor
from hub.runtime import runtime_of


class AvailabilityOut(msgspec.Struct):
    ward: str | None
    devices: int
    percent: float | None
    """Share of device-time online or degraded; maintenance time is left out."""


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


def monitor_of(request: Request[Any, Any, Any]) -> HealthMonitor:
    return runtime_of(request).get(HEALTH)


class HealthController(Controller):
    path = "/api/v1"
    tags = ["health"]

    @get("/health/availability")
    async def ward_availability(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        hours: Annotated[int, QueryParameter(ge=1, le=24 * 90)] = 24,
    ) -> list[AvailabilityOut]:
        """Per ward, the share of device-time up over the last `hours`."""
        principal.require(Permission.DEVICES_READ)
        end = datetime.now(UTC)
        wards = await registry.WardDirectory.load()
        rows = await availability(
            runtime_of(request).database.pool, end - timedelta(hours=hours), end, principal.ward_ids
        )
        return [AvailabilityOut(wards.code(r.ward_id), r.devices, r.percent) for r in rows]

    @get("/devices/{uid:str}/health")
    async def device_health(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> DeviceHealthOut:
        """Why a device has its status: connectivity, last contact, faults, history."""
        device = await registry.get_scoped(principal, uid)
        pool = runtime_of(request).database.pool
        row = await pool.fetchrow("SELECT * FROM device WHERE id = $1", device.id)
        if row is None:
            raise NotFound(f"no device {uid!r}")
        history = await pool.fetch(
            "SELECT * FROM health_event WHERE device_id = $1 ORDER BY at DESC LIMIT 100", device.id
        )
        events = await pool.fetch(
            "SELECT * FROM device_event WHERE device_id = $1 ORDER BY at DESC LIMIT 100", device.id
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
            [
                HealthEventOut(h["at"], h["from_status"], h["to_status"], h["reason"])
                for h in history
            ],
            [
                DeviceEventOut(e["at"], e["kind"], e["active"], msgspec.json.decode(e["data"]))
                for e in events
            ],
            row["status"],
            row["flapping_since"],
        )

    @put("/devices/{uid:str}/maintenance")
    async def start_maintenance(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        uid: FromPath[str],
        data: JSONBody[MaintenanceIn],
    ) -> DeviceHealthOut:
        """Put a device in maintenance until a time: no alerts from it meanwhile."""
        principal.require(Permission.MAINTENANCE_WRITE)
        device = await registry.get_scoped(principal, uid)
        if data.until.tzinfo is None:
            raise ValidationFailed("time without zone", [FieldProblem("until", "give an offset")])
        if data.until <= datetime.now(UTC):
            raise ValidationFailed(
                "maintenance must end in the future",
                [FieldProblem("until", "give a time in the future")],
            )
        await monitor_of(request).set_maintenance(device.id, data.until, data.reason)
        await audit.record(
            principal,
            "device.maintenance",
            "device",
            uid,
            ward_id=device.ward_id,
            after={"until": data.until.isoformat(), "reason": data.reason},
        )
        for hook in monitor_of(request).on_maintenance:
            await hook()
        return await self.device_health.fn(self, request, principal, uid)  # type: ignore[no-any-return]

    @delete("/devices/{uid:str}/maintenance", status_code=200)
    async def end_maintenance(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> DeviceHealthOut:
        principal.require(Permission.MAINTENANCE_WRITE)
        device = await registry.get_scoped(principal, uid)
        await monitor_of(request).set_maintenance(device.id, None, "")
        await audit.record(
            principal, "device.maintenance_end", "device", uid, ward_id=device.ward_id
        )
        for hook in monitor_of(request).on_maintenance:
            await hook()
        return await self.device_health.fn(self, request, principal, uid)  # type: ignore[no-any-return]
