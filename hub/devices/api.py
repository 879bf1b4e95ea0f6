"""Registry routes under /api/v1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.params import Body, FromPath, FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.response import Stream

from hub import merge_patch
from hub.auth import CurrentUser, Permission, Principal
from hub.devices import service, transfer
from hub.devices.coap_keys import COAP_KEYS
from hub.devices.credentials import CREDENTIALS, CredentialsOut, DeviceCredentials
from hub.devices.directory import DIRECTORY
from hub.devices.schemas import (
    DeviceIn,
    DeviceOut,
    DevicePage,
    DevicePatch,
    GroupIn,
    GroupOut,
    ImportReport,
    Kind,
    Latitude,
    LifecycleName,
    Longitude,
    ShortText,
    StatusName,
    WardCode,
    WardIn,
    WardOut,
)
from hub.errors import BadRequest, Conflict, FieldProblem
from hub.runtime import runtime_of

UidParam = Annotated[str, PathParameter(max_length=128, description="The device's uid.")]


def device_query(
    kind: FromQuery[Kind | None] = None,
    ward: Annotated[
        list[str] | None, QueryParameter(description="Ward code; repeat for several.")
    ] = None,
    status: FromQuery[StatusName | None] = None,
    lifecycle: FromQuery[LifecycleName | None] = None,
    tag: Annotated[str | None, QueryParameter(max_length=64)] = None,
    q: Annotated[
        str | None,
        QueryParameter(max_length=200, description="Text in uid, name, model, vendor or serial."),
    ] = None,
) -> service.DeviceQuery:
    return service.DeviceQuery(
        kind=kind, wards=tuple(ward or ()), status=status, lifecycle=lifecycle, tag=tag, q=q
    )


class DeviceController(Controller):
    path = "/api/v1"
    tags = ["devices"]

    @get("/devices")
    async def list_devices(
        self,
        principal: CurrentUser,
        kind: FromQuery[Kind | None] = None,
        ward: Annotated[
            list[str] | None, QueryParameter(description="Ward code; repeat for several.")
        ] = None,
        status: FromQuery[StatusName | None] = None,
        lifecycle: FromQuery[LifecycleName | None] = None,
        tag: Annotated[str | None, QueryParameter(max_length=64)] = None,
        q: Annotated[
            str | None,
            QueryParameter(
                max_length=200, description="Text in uid, name, model, vendor or serial."
            ),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=service.MAX_PAGE)] = 100,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> DevicePage:
        """Devices in the wards you serve, filtered, a page at a time (follow next_cursor)."""
        query = device_query(kind, ward, status, lifecycle, tag, q)
        return await service.list_devices(principal, query, limit, cursor)

    @post("/devices", status_code=201)
    async def create_device(self, principal: CurrentUser, data: JSONBody[DeviceIn]) -> DeviceOut:
        return await service.create_device(principal, data)

    @get("/devices/{uid:str}")
    async def get_device(self, principal: CurrentUser, uid: UidParam) -> DeviceOut:
        return await service.get_device(principal, uid)

    @patch("/devices/{uid:str}")
    async def update_device(
        self,
        request: Request[Principal, Any, Any],
        principal: CurrentUser,
        uid: UidParam,
        data: Annotated[DevicePatch, Body(media_type=merge_patch.MEDIA_TYPE)],
    ) -> DeviceOut:
        """Change some fields; the lifecycle only moves forward."""
        updated = await service.update_device(principal, uid, data)
        # Ingest reads model, serial and backfill allowance from its cache: take the change now.
        runtime_of(request).get(DIRECTORY).forget(uid)
        return updated

    @delete("/devices/{uid:str}", status_code=200)
    async def remove_device(
        self, request: Request[Principal, Any, Any], principal: CurrentUser, uid: UidParam
    ) -> DeviceOut | None:
        """Decommission a device (it keeps its history and is cut off the broker at once);
        a pending device is rejected outright."""
        device = await service.get_scoped(principal, uid)
        result = await service.remove_device(principal, uid)
        if result is not None:
            await credentials_of(request).revoke(principal, device)
            await runtime_of(request).get(COAP_KEYS).revoke_device(principal, device)
        runtime_of(request).get(DIRECTORY).forget(uid)
        return result

    @post("/devices/{uid:str}/approve", status_code=200)
    async def approve_device(
        self,
        request: Request[Principal, Any, Any],
        principal: CurrentUser,
        uid: UidParam,
        data: JSONBody[ApprovalIn],
    ) -> ApprovalOut:
        """Approve a pending device: it joins a ward, becomes active and gets its broker
        credentials (the secret is in this answer only)."""
        device = await service.get_scoped(principal, uid)
        if device.lifecycle != "pending":
            raise Conflict(f"device {uid!r} is {device.lifecycle}, not pending")
        patch_fields = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
        updated = await service.update_device(
            principal, uid, msgspec.convert(patch_fields | {"lifecycle": "active"}, DevicePatch)
        )
        runtime_of(request).get(DIRECTORY).forget(uid)
        issued = None
        if updated.kind in ("sensor", "speaker"):
            issued = await credentials_of(request).issue(principal, uid)
        return ApprovalOut(updated, issued)

    @get("/devices/{uid:str}/credentials")
    async def credential_status(
        self, request: Request[Principal, Any, Any], principal: CurrentUser, uid: UidParam
    ) -> CredentialsOut:
        """The device's broker username and whether its credentials are active (no secret)."""
        return await credentials_of(request).status(principal, uid)

    @post("/devices/{uid:str}/credentials", status_code=201)
    async def issue_credentials(
        self, request: Request[Principal, Any, Any], principal: CurrentUser, uid: UidParam
    ) -> CredentialsOut:
        """Issue (or rotate) the device's MQTT credentials; the secret is in this answer only.

        Rotation takes effect at once: the device must reconnect with the new secret."""
        return await credentials_of(request).issue(principal, uid)

    @post("/devices/import", status_code=201, request_max_body_size=5 * 1024 * 1024)
    async def import_devices(
        self,
        principal: CurrentUser,
        request: Request[Principal, Any, Any],
        dry_run: FromQuery[bool] = False,
    ) -> ImportReport:
        """Create devices from a CSV (text/csv) or JSON (application/json) body: all or nothing.

        A problem in any row rejects the whole file with a per-row report in `errors`.
        """
        principal.require(Permission.DEVICES_WRITE)
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type in ("text/csv", "application/csv"):
            rows = transfer.parse_csv(body)
            strict = False
        elif content_type == "application/json":
            rows = transfer.parse_json(body)
            strict = True
        else:
            raise BadRequest(
                "send the import as text/csv or application/json",
                [FieldProblem("content-type", f"{content_type or 'none'} is neither")],
            )
        wards = await service.WardDirectory.load()
        devices = await transfer.validate_rows(rows, wards.by_code, strict_types=strict)
        created = 0 if dry_run else await service.bulk_create(principal, devices)
        return ImportReport(created=created, rows=len(devices))

    @get("/devices.csv", media_type="text/csv")
    async def export_csv(
        self,
        principal: CurrentUser,
        kind: FromQuery[Kind | None] = None,
        ward: FromQuery[list[str] | None] = None,
        status: FromQuery[StatusName | None] = None,
        lifecycle: FromQuery[LifecycleName | None] = None,
        tag: Annotated[str | None, QueryParameter(max_length=64)] = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Stream:
        """Every matching device as CSV (the import format plus status columns), streamed."""
        query = device_query(kind, ward, status, lifecycle, tag, q)
        devices = await service.iter_devices(principal, query)

        async def lines() -> AsyncIterator[str]:
            yield transfer.csv_header()
            async for device in devices:
                yield transfer.csv_record(device)

        return Stream(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="devices.csv"'},
        )

    @get("/devices.geojson", media_type="application/geo+json")
    async def export_geojson(
        self,
        request: Request[Principal, Any, Any],
        principal: CurrentUser,
        kind: FromQuery[Kind | None] = None,
        ward: FromQuery[list[str] | None] = None,
        status: FromQuery[StatusName | None] = None,
        lifecycle: FromQuery[LifecycleName | None] = None,
        tag: Annotated[str | None, QueryParameter(max_length=64)] = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Stream:
        """A GeoJSON FeatureCollection of matching devices with their status, for the IOC map."""
        query = device_query(kind, ward, status, lifecycle, tag, q)
        devices = await service.iter_devices(principal, query)
        base = str(request.base_url).rstrip("/")

        async def chunks() -> AsyncIterator[str]:
            yield '{"type":"FeatureCollection","features":['
            first = True
            async for device in devices:
                yield ("" if first else ",") + json.dumps(transfer.geojson_feature(device, base))
                first = False
            yield "]}"

        return Stream(chunks(), media_type="application/geo+json")

    @get("/wards")
    async def list_wards(self, principal: CurrentUser) -> list[WardOut]:
        return await service.list_wards(principal)

    @post("/wards", status_code=201)
    async def create_ward(self, principal: CurrentUser, data: JSONBody[WardIn]) -> WardOut:
        return await service.create_ward(principal, data.code, data.name)

    @get("/wards.geojson", media_type="application/geo+json")
    async def wards_geojson(self, principal: CurrentUser) -> dict[str, Any]:
        """The outlines of the wards you serve (those that have one), for the IOC map."""
        features = await service.ward_features(principal)
        return {"type": "FeatureCollection", "features": features}

    @get("/wards/{ward:str}/boundary", media_type="application/geo+json")
    async def get_ward_boundary(self, principal: CurrentUser, ward: FromPath[str]) -> Any:
        """A ward's outline: a GeoJSON Polygon or MultiPolygon (404 until one is set)."""
        return await service.ward_boundary(principal, ward)

    @put("/wards/{ward:str}/boundary", media_type="application/geo+json")
    async def set_ward_boundary(
        self,
        principal: CurrentUser,
        ward: FromPath[str],
        data: Annotated[
            dict[str, Any],
            Body(
                description="A GeoJSON Polygon or MultiPolygon (RFC 7946), [longitude, latitude]."
            ),
        ],
    ) -> Any:
        """Set or replace a ward's outline (administrators); each ring is checked."""
        return await service.set_ward_boundary(principal, ward, data)

    @delete("/wards/{ward:str}/boundary", status_code=204)
    async def clear_ward_boundary(self, principal: CurrentUser, ward: FromPath[str]) -> None:
        await service.clear_ward_boundary(principal, ward)

    @get("/groups")
    async def list_groups(self, principal: CurrentUser) -> list[GroupOut]:
        return await service.list_groups(principal)

    @post("/groups", status_code=201)
    async def create_group(self, principal: CurrentUser, data: JSONBody[GroupIn]) -> GroupOut:
        """A named set of devices: static members, or a saved filter that stays current."""
        return await service.create_group(principal, data)

    @get("/groups/{group_id:int}")
    async def get_group(self, principal: CurrentUser, group_id: FromPath[int]) -> GroupOut:
        return (await service.get_group(principal, group_id))[1]

    @get("/groups/{group_id:int}/devices")
    async def group_devices(
        self, principal: CurrentUser, group_id: FromPath[int]
    ) -> list[DeviceOut]:
        group, _ = await service.get_group(principal, group_id)
        wards = await service.WardDirectory.load()
        members = await service.group_members(principal, group)
        return [service.to_out(d, wards) for d in await members.order_by("id")]

    @delete("/groups/{group_id:int}", status_code=204)
    async def delete_group(self, principal: CurrentUser, group_id: FromPath[int]) -> None:
        await service.delete_group(principal, group_id)


class ApprovalIn(msgspec.Struct, forbid_unknown_fields=True):
    ward: WardCode
    name: ShortText | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None


class ApprovalOut(msgspec.Struct):
    device: DeviceOut
    credentials: CredentialsOut | None


def credentials_of(request: Request[Any, Any, Any]) -> DeviceCredentials:
    return runtime_of(request).get(CREDENTIALS)
