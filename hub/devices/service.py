"""The device registry: every query is scoped to the wards the caller serves."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from hub.auth import Permission, Principal, audit
from hub.devices.boundaries import check_boundary, positions
from hub.devices.models import Device, DeviceGroup, Lifecycle, Ward
from hub.devices.schemas import (
    DeviceIn,
    DeviceOut,
    DevicePage,
    DevicePatch,
    GroupFilter,
    GroupIn,
    GroupOut,
    WardOut,
)
from hub.errors import BadRequest, Conflict, FieldProblem, NotFound, ValidationFailed

MAX_PAGE = 500
LIFECYCLE_ORDER = {Lifecycle.PENDING: 0, Lifecycle.ACTIVE: 1, Lifecycle.DECOMMISSIONED: 2}


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    kind: str | None = None
    wards: Sequence[str] = ()
    status: str | None = None
    lifecycle: str | None = None
    tag: str | None = None
    q: str | None = None
    uids: Sequence[str] = field(default_factory=tuple)


class WardDirectory:
    """The wards by id and by code; there are few, so one query per request."""

    def __init__(self, wards: Iterable[Ward]) -> None:
        self.by_id = {w.id: w for w in wards}
        self.by_code = {w.code: w for w in self.by_id.values()}

    @classmethod
    async def load(cls) -> WardDirectory:
        return cls(await Ward.all())

    def code(self, ward_id: int | None) -> str | None:
        return self.by_id[ward_id].code if ward_id is not None else None

    def ids(self, codes: Iterable[str], field_name: str = "ward") -> list[int]:
        unknown = sorted(set(codes) - set(self.by_code))
        if unknown:
            raise ValidationFailed(
                "unknown ward",
                [FieldProblem(field_name, f"no ward with code {c!r}") for c in unknown],
            )
        return [self.by_code[c].id for c in codes]


def to_out(device: Device, wards: WardDirectory) -> DeviceOut:
    return DeviceOut(
        uid=device.uid,
        kind=device.kind,
        name=device.name,
        serial=device.serial,
        vendor=device.vendor,
        model=device.model,
        firmware_version=device.firmware_version,
        ward=wards.code(device.ward_id),
        latitude=device.latitude,
        longitude=device.longitude,
        endpoint=device.endpoint,
        tags=list(device.tags or []),
        lifecycle=device.lifecycle,
        status=device.status,
        status_reason=device.status_reason,
        last_seen=device.last_seen,
        discovered_from=device.discovered_from,
        created_at=device.created_at,
        updated_at=device.updated_at,
        backfill_days=device.backfill_days,
    )


def snapshot(device: Device, wards: WardDirectory) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(to_out(device, wards))
    return data


def scoped(principal: Principal) -> QuerySet[Device]:
    principal.require(Permission.DEVICES_READ)
    devices = Device.all()
    if principal.ward_ids is not None:
        devices = devices.filter(ward_id__in=sorted(principal.ward_ids))
    return devices


def apply_query(
    devices: QuerySet[Device], query: DeviceQuery, wards: WardDirectory
) -> QuerySet[Device]:
    if query.kind:
        devices = devices.filter(kind=query.kind)
    if query.wards:
        devices = devices.filter(ward_id__in=wards.ids(query.wards))
    if query.status:
        devices = devices.filter(status=query.status)
    if query.lifecycle:
        devices = devices.filter(lifecycle=query.lifecycle)
    if query.tag:
        devices = devices.filter(tags__contains=[query.tag])
    if query.uids:
        devices = devices.filter(uid__in=list(query.uids))
    if query.q:
        text = query.q.strip()
        devices = devices.filter(
            Q(uid__icontains=text)
            | Q(name__icontains=text)
            | Q(model__icontains=text)
            | Q(vendor__icontains=text)
            | Q(serial__icontains=text)
        )
    return devices


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"d:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "d":
            raise ValueError(prefix)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(
            "the cursor is not one this API gave out",
            [FieldProblem("cursor", "pass next_cursor from the previous page unchanged")],
        ) from exc


async def list_devices(
    principal: Principal, query: DeviceQuery, limit: int = 100, cursor: str | None = None
) -> DevicePage:
    wards = await WardDirectory.load()
    devices = apply_query(scoped(principal), query, wards)
    if cursor:
        devices = devices.filter(id__gt=decode_cursor(cursor))
    page = await devices.order_by("id").limit(min(limit, MAX_PAGE) + 1)
    more = len(page) > limit
    page = page[:limit]
    return DevicePage(
        items=[to_out(d, wards) for d in page],
        next_cursor=encode_cursor(page[-1].id) if more and page else None,
    )


async def iter_devices(
    principal: Principal, query: DeviceQuery, chunk: int = 1000
) -> AsyncIterator[DeviceOut]:
    """Every matching device, in id order, a chunk at a time (for exports).

    The query is checked here, before the first row: a stream that has started cannot
    turn into an error response any more.
    """
    wards = await WardDirectory.load()
    devices = apply_query(scoped(principal), query, wards)
    return _stream(devices, wards, chunk)


async def _stream(
    devices: QuerySet[Device], wards: WardDirectory, chunk: int
) -> AsyncIterator[DeviceOut]:
    last_id = 0
    while True:
        rows = await devices.filter(id__gt=last_id).order_by("id").limit(chunk)
        if not rows:
            return
        for device in rows:
            yield to_out(device, wards)
        last_id = rows[-1].id


async def get_scoped(principal: Principal, uid: str) -> Device:
    # Outside the caller's wards a device does not exist: no leak through 403 vs 404.
    device = await scoped(principal).get_or_none(uid=uid)
    if device is None:
        raise NotFound(f"no device {uid!r}")
    return device


async def get_device(principal: Principal, uid: str) -> DeviceOut:
    return to_out(await get_scoped(principal, uid), await WardDirectory.load())


def check_location(latitude: float | None, longitude: float | None) -> list[FieldProblem]:
    if (latitude is None) != (longitude is None):
        missing = "longitude" if longitude is None else "latitude"
        return [FieldProblem(missing, "give latitude and longitude together, or neither")]
    return []


def new_device_fields(data: DeviceIn, wards: WardDirectory) -> dict[str, Any]:
    ward_id = wards.ids([data.ward])[0] if data.ward else None
    problems = check_location(data.latitude, data.longitude)
    if data.lifecycle == "active" and ward_id is None:
        problems.append(FieldProblem("ward", "an active device must belong to a ward"))
    if problems:
        raise ValidationFailed("the device cannot be saved as given", problems)
    fields = msgspec.structs.asdict(data)
    fields.pop("ward")
    fields["tags"] = sorted(set(data.tags))
    fields["ward_id"] = ward_id
    return fields


async def create_device(principal: Principal, data: DeviceIn) -> DeviceOut:
    principal.require(Permission.DEVICES_WRITE)
    wards = await WardDirectory.load()
    fields = new_device_fields(data, wards)
    principal.require_wards([fields["ward_id"]])
    if await Device.filter(uid=data.uid).exists():
        raise Conflict(
            f"a device with uid {data.uid!r} exists already",
            [FieldProblem("uid", "choose another uid")],
        )
    try:
        async with in_transaction() as conn:
            device = await Device.create(**fields, using_db=conn)
            await audit.record(
                principal,
                "device.create",
                "device",
                device.uid,
                ward_id=device.ward_id,
                after=snapshot(device, wards),
                connection=conn,
            )
    except IntegrityError as exc:
        raise Conflict(f"the device clashes with an existing one: {exc}") from exc
    return to_out(device, wards)


async def update_device(principal: Principal, uid: str, patch: DevicePatch) -> DeviceOut:
    principal.require(Permission.DEVICES_WRITE)
    wards = await WardDirectory.load()
    device = await get_scoped(principal, uid)
    before = snapshot(device, wards)
    changes = patch.changes()
    if "ward" in changes:
        code = changes.pop("ward")
        changes["ward_id"] = wards.ids([code])[0] if code else None
        principal.require_wards([changes["ward_id"]])
    if "tags" in changes:
        changes["tags"] = sorted(set(changes["tags"]))
    problems = check_location(
        changes.get("latitude", device.latitude), changes.get("longitude", device.longitude)
    )
    if "lifecycle" in changes:
        target = Lifecycle(changes["lifecycle"])
        if LIFECYCLE_ORDER[target] < LIFECYCLE_ORDER[Lifecycle(device.lifecycle)]:
            problems.append(
                FieldProblem(
                    "lifecycle",
                    f"a device moves pending → active → decommissioned, not "
                    f"{device.lifecycle} → {target.value}",
                )
            )
    if (
        changes.get("lifecycle", device.lifecycle) == Lifecycle.ACTIVE
        and changes.get("ward_id", device.ward_id) is None
    ):
        problems.append(FieldProblem("ward", "an active device must belong to a ward"))
    if problems:
        raise ValidationFailed("the device cannot be saved as given", problems)
    for name, value in changes.items():
        setattr(device, name, value)
    try:
        async with in_transaction() as conn:
            await device.save(using_db=conn)
            await audit.record(
                principal,
                "device.update",
                "device",
                device.uid,
                ward_id=device.ward_id,
                before=before,
                after=snapshot(device, wards),
                connection=conn,
            )
    except IntegrityError as exc:
        raise Conflict(f"the change clashes with another device: {exc}") from exc
    return to_out(device, wards)


async def remove_device(principal: Principal, uid: str) -> DeviceOut | None:
    """Decommission a device; a pending one (never approved) is rejected and deleted."""
    principal.require(Permission.DEVICES_WRITE)
    wards = await WardDirectory.load()
    device = await get_scoped(principal, uid)
    before = snapshot(device, wards)
    async with in_transaction() as conn:
        if device.lifecycle == Lifecycle.PENDING:
            await device.delete(using_db=conn)
            await audit.record(
                principal, "device.reject", "device", uid, before=before, connection=conn
            )
            return None
        device.lifecycle = Lifecycle.DECOMMISSIONED.value
        await device.save(using_db=conn)
        await audit.record(
            principal,
            "device.decommission",
            "device",
            uid,
            ward_id=device.ward_id,
            before=before,
            after=snapshot(device, wards),
            connection=conn,
        )
    return to_out(device, wards)


async def bulk_create(
    principal: Principal,
    rows: Sequence[DeviceIn],
    progress: Callable[[int], Awaitable[None] | None] | None = None,
    chunk: int = 500,
) -> int:
    """Create every row or none; rows were validated by the caller."""
    principal.require(Permission.DEVICES_WRITE)
    wards = await WardDirectory.load()
    prepared = [new_device_fields(row, wards) for row in rows]
    principal.require_wards(f["ward_id"] for f in prepared)
    async with in_transaction() as conn:
        for start in range(0, len(prepared), chunk):
            part = prepared[start : start + chunk]
            await Device.bulk_create([Device(**f) for f in part], using_db=conn)
            if progress is not None:
                result = progress(len(part))
                if result is not None:
                    await result
        await audit.record(
            principal,
            "device.import",
            "device",
            f"{len(rows)} devices",
            after={"uids": [r.uid for r in rows][:1000], "count": len(rows)},
            connection=conn,
        )
    return len(prepared)


# Wards and groups


async def list_wards(principal: Principal) -> list[WardOut]:
    principal.require(Permission.DEVICES_READ)
    wards = Ward.all().order_by("code")
    if principal.ward_ids is not None:
        wards = wards.filter(id__in=sorted(principal.ward_ids))
    counts: dict[int, int] = dict(
        await scoped(principal)
        .annotate(count=Count("id"))
        .group_by("ward_id")
        .values_list("ward_id", "count")
    )
    return [
        WardOut(code=w.code, name=w.name, device_count=counts.get(w.id, 0)) for w in await wards
    ]


async def create_ward(principal: Principal, code: str, name: str) -> WardOut:
    principal.require(Permission.USERS_ADMIN)
    if await Ward.filter(code=code).exists():
        raise Conflict(f"a ward with code {code!r} exists already", [FieldProblem("code", "taken")])
    async with in_transaction() as conn:
        ward = await Ward.create(code=code, name=name, using_db=conn)
        await audit.record(
            principal,
            "ward.create",
            "ward",
            code,
            ward_id=ward.id,
            after={"code": code, "name": name},
            connection=conn,
        )
    return WardOut(code=ward.code, name=ward.name)


async def visible_ward(principal: Principal, code: str) -> Ward:
    # Outside the caller's wards a ward does not exist, as devices do not (no 403 vs 404).
    principal.require(Permission.DEVICES_READ)
    ward = await Ward.get_or_none(code=code)
    if ward is None or not principal.sees_ward(ward.id):
        raise NotFound(f"no ward {code!r}")
    return ward


async def ward_boundary(principal: Principal, code: str) -> dict[str, Any]:
    ward = await visible_ward(principal, code)
    if ward.boundary is None:
        raise NotFound(f"ward {code!r} has no boundary yet")
    boundary: dict[str, Any] = ward.boundary
    return boundary


async def set_ward_boundary(principal: Principal, code: str, geometry: Any) -> dict[str, Any]:
    """Set (or replace) a ward's outline; administrators keep the wards, as they create them."""
    principal.require(Permission.USERS_ADMIN)
    ward = await visible_ward(principal, code)
    stored = check_boundary(geometry)
    before = ward.boundary
    async with in_transaction() as conn:
        ward.boundary = stored
        await ward.save(using_db=conn, update_fields=["boundary"])
        await audit.record(
            principal,
            "ward.boundary",
            "ward",
            code,
            ward_id=ward.id,
            before={"type": before["type"]} if before else None,
            after={"type": stored["type"], "positions": positions(stored)},
            connection=conn,
        )
    return stored


async def clear_ward_boundary(principal: Principal, code: str) -> None:
    principal.require(Permission.USERS_ADMIN)
    ward = await visible_ward(principal, code)
    async with in_transaction() as conn:
        ward.boundary = None
        await ward.save(using_db=conn, update_fields=["boundary"])
        await audit.record(
            principal, "ward.boundary_clear", "ward", code, ward_id=ward.id, connection=conn
        )


async def ward_features(principal: Principal) -> list[dict[str, Any]]:
    """The wards the caller serves that have an outline, as GeoJSON Features (id: the code)."""
    principal.require(Permission.DEVICES_READ)
    wards = Ward.filter(boundary__isnull=False).order_by("code")
    if principal.ward_ids is not None:
        wards = wards.filter(id__in=sorted(principal.ward_ids))
    return [
        {
            "type": "Feature",
            "id": w.code,
            "geometry": w.boundary,
            "properties": {"code": w.code, "name": w.name},
        }
        for w in await wards
    ]


def group_out(group: DeviceGroup, wards: WardDirectory, member_count: int) -> GroupOut:
    return GroupOut(
        id=group.id,
        name=group.name,
        ward=wards.code(group.ward_id),
        filter=msgspec.convert(group.saved_filter, GroupFilter) if group.saved_filter else None,
        member_count=member_count,
    )


def scoped_groups(principal: Principal) -> QuerySet[DeviceGroup]:
    principal.require(Permission.DEVICES_READ)
    groups = DeviceGroup.all()
    if principal.ward_ids is not None:
        groups = groups.filter(ward_id__in=sorted(principal.ward_ids))
    return groups


async def group_members(principal: Principal, group: DeviceGroup) -> QuerySet[Device]:
    if group.saved_filter:
        saved = msgspec.convert(group.saved_filter, GroupFilter)
        query = DeviceQuery(
            kind=saved.kind, wards=saved.wards, status=saved.status, tag=saved.tag, q=saved.q
        )
        members = apply_query(scoped(principal), query, await WardDirectory.load())
    else:
        members = scoped(principal).filter(groups__id=group.id)
    if group.ward_id is not None:
        members = members.filter(ward_id=group.ward_id)
    return members


async def list_groups(principal: Principal) -> list[GroupOut]:
    wards = await WardDirectory.load()
    result = []
    for group in await scoped_groups(principal).order_by("name"):
        result.append(
            group_out(group, wards, await (await group_members(principal, group)).count())
        )
    return result


async def get_group(principal: Principal, group_id: int) -> tuple[DeviceGroup, GroupOut]:
    group = await scoped_groups(principal).get_or_none(id=group_id)
    if group is None:
        raise NotFound(f"no device group {group_id}")
    count = await (await group_members(principal, group)).count()
    return group, group_out(group, await WardDirectory.load(), count)


async def create_group(principal: Principal, data: GroupIn) -> GroupOut:
    principal.require(Permission.GROUPS_WRITE)
    wards = await WardDirectory.load()
    ward_id = wards.ids([data.ward])[0] if data.ward else None
    if principal.ward_ids is not None and ward_id is None:
        raise ValidationFailed(
            "ward staff groups belong to a ward",
            [FieldProblem("ward", "name one of the wards you serve")],
        )
    principal.require_wards([ward_id])
    if data.filter and data.members:
        raise ValidationFailed(
            "a group has static members or a saved filter, not both",
            [FieldProblem("filter", "drop either filter or members")],
        )
    if data.filter:
        wards.ids(data.filter.wards, "filter.wards")
    members = await scoped(principal).filter(uid__in=data.members) if data.members else []
    missing = sorted(set(data.members) - {d.uid for d in members})
    if missing:
        raise ValidationFailed(
            "unknown members",
            [FieldProblem("members", f"no device {uid!r} in your wards") for uid in missing[:50]],
        )
    outside = [d.uid for d in members if ward_id is not None and d.ward_id != ward_id]
    if outside:
        raise ValidationFailed(
            "members outside the group's ward",
            [FieldProblem("members", f"{uid} is not in ward {data.ward}") for uid in outside[:50]],
        )
    if await DeviceGroup.filter(ward_id=ward_id, name=data.name).exists():
        raise Conflict(
            f"a group named {data.name!r} exists already",
            [FieldProblem("name", "choose another name")],
        )
    saved_filter = msgspec.to_builtins(data.filter) if data.filter else None
    async with in_transaction() as conn:
        group = await DeviceGroup.create(
            name=data.name, ward_id=ward_id, saved_filter=saved_filter, using_db=conn
        )
        if members:
            await group.members.add(*members, using_db=conn)
        await audit.record(
            principal,
            "group.create",
            "device_group",
            group.id,
            ward_id=ward_id,
            after={"name": data.name, "members": sorted(data.members), "filter": saved_filter},
            connection=conn,
        )
    count = (
        len(members) if not data.filter else await (await group_members(principal, group)).count()
    )
    return group_out(group, wards, count)


async def delete_group(principal: Principal, group_id: int) -> None:
    principal.require(Permission.GROUPS_WRITE)
    group, out = await get_group(principal, group_id)
    async with in_transaction() as conn:
        await group.delete(using_db=conn)
        await audit.record(
            principal,
            "group.delete",
            "device_group",
            group_id,
            ward_id=group.ward_id,
            before=msgspec.to_builtins(out),
            connection=conn,
        )


async def ward_lookup() -> Mapping[str, int]:
    return {w.code: w.id for w in await Ward.all()}
