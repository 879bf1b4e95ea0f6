"""Health routes: per-ward availability, a device's health history, maintenance windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from hub.auth import CurrentUser, Permission
from hub.devices import registry
from hub.health import service
from hub.health.availability import availability
from hub.health.monitor import HEALTH, HealthMonitor
from hub.health.service import DeviceHealthOut, MaintenanceIn
from hub.runtime import runtime_of


class AvailabilityOut(msgspec.Struct):
    ward: str | None
    devices: int
    percent: float | None
    """Share of device-time online or degraded; maintenance time is left out."""


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
        return await service.device_health(runtime_of(request).database.pool, principal, uid)

    @put("/devices/{uid:str}/maintenance")
    async def start_maintenance(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        uid: FromPath[str],
        data: JSONBody[MaintenanceIn],
    ) -> DeviceHealthOut:
        """Put a device in maintenance until a time: no alerts from it meanwhile."""
        await service.start_maintenance(monitor_of(request), principal, uid, data)
        return await service.device_health(runtime_of(request).database.pool, principal, uid)

    @delete("/devices/{uid:str}/maintenance", status_code=200)
    async def end_maintenance(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> DeviceHealthOut:
        await service.end_maintenance(monitor_of(request), principal, uid)
        return await service.device_health(runtime_of(request).database.pool, principal, uid)
