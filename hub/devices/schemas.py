"""The registry's API shapes (msgspec: strict, fast, and described in the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Uid = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Stable device id: letters, digits, . _ - (max 128).",
        examples=["spk-maychai-001"],
    ),
]
WardCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", examples=["may-chai"])]
Kind = Literal["camera", "speaker", "sensor"]
LifecycleName = Literal["pending", "active", "decommissioned"]
StatusName = Literal["unknown", "online", "late", "offline", "degraded", "maintenance"]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
Tag = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=32)]
BackfillDays = Annotated[int, msgspec.Meta(ge=1, le=366)]


class WardIn(msgspec.Struct, forbid_unknown_fields=True):
    code: WardCode
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class WardOut(msgspec.Struct):
    code: str
    name: str
    device_count: int = 0


class DeviceIn(msgspec.Struct, forbid_unknown_fields=True):
    uid: Uid
    kind: Kind
    name: ShortText = ""
    serial: ShortText | None = None
    vendor: ShortText = ""
    model: ShortText = ""
    firmware_version: ShortText = ""
    ward: WardCode | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    endpoint: Annotated[str, msgspec.Meta(max_length=500)] = ""
    tags: Tags = msgspec.field(default_factory=list)
    lifecycle: Literal["pending", "active"] = "active"
    backfill_days: BackfillDays | None = None
    """How far back the device may deliver readings (after an outage); null: the hub's limit."""


class DevicePatch(msgspec.Struct, forbid_unknown_fields=True):
    name: ShortText | msgspec.UnsetType = msgspec.UNSET
    serial: ShortText | msgspec.UnsetType | None = msgspec.UNSET
    vendor: ShortText | msgspec.UnsetType = msgspec.UNSET
    model: ShortText | msgspec.UnsetType = msgspec.UNSET
    firmware_version: ShortText | msgspec.UnsetType = msgspec.UNSET
    ward: WardCode | msgspec.UnsetType | None = msgspec.UNSET
    latitude: Latitude | msgspec.UnsetType | None = msgspec.UNSET
    longitude: Longitude | msgspec.UnsetType | None = msgspec.UNSET
    endpoint: Annotated[str, msgspec.Meta(max_length=500)] | msgspec.UnsetType = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET
    lifecycle: LifecycleName | msgspec.UnsetType = msgspec.UNSET
    backfill_days: BackfillDays | msgspec.UnsetType | None = msgspec.UNSET

    def changes(self) -> dict[str, Any]:
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not msgspec.UNSET
        }


class DeviceOut(msgspec.Struct):
    uid: str
    kind: str
    name: str
    serial: str | None
    vendor: str
    model: str
    firmware_version: str
    ward: str | None
    latitude: float | None
    longitude: float | None
    endpoint: str
    tags: list[str]
    lifecycle: str
    status: str
    status_reason: str
    last_seen: datetime | None
    discovered_from: str
    created_at: datetime
    updated_at: datetime
    backfill_days: int | None = None


class DevicePage(msgspec.Struct):
    items: list[DeviceOut]
    next_cursor: str | None
    """Pass as `cursor` to get the next page; null on the last page."""


class GroupFilter(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    kind: Kind | None = None
    wards: list[WardCode] = msgspec.field(default_factory=list)
    status: StatusName | None = None
    tag: Tag | None = None
    q: ShortText | None = None


class GroupIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    ward: WardCode | None = None
    members: Annotated[list[Uid], msgspec.Meta(max_length=20_000)] = msgspec.field(
        default_factory=list
    )
    filter: GroupFilter | None = None
    """A saved filter instead of static members: the group is whatever matches it."""


class GroupOut(msgspec.Struct):
    id: int
    name: str
    ward: str | None
    filter: GroupFilter | None
    member_count: int


class ImportReport(msgspec.Struct):
    created: int
    rows: int


class RowError(msgspec.Struct):
    row: int
    field: str
    message: str
