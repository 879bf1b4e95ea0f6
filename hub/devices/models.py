"""Registry tables (schema in hub/storage/migrations/0001_registry.sql)."""

from __future__ import annotations

import enum
from typing import Any

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.models import Model


class Lifecycle(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DECOMMISSIONED = "decommissioned"


class Status(enum.StrEnum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    LATE = "late"
    OFFLINE = "offline"
    DEGRADED = "degraded"
    MAINTENANCE = "maintenance"


class Ward(Model):
    id = fields.IntField(primary_key=True)
    code = fields.TextField()
    name = fields.TextField()
    # GeoJSON Polygon or MultiPolygon (hub.devices.boundaries checks it), or None.
    boundary: Any = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ward"


class Device(Model):
    id = fields.BigIntField(primary_key=True)
    uid = fields.TextField()
    kind = fields.TextField()
    name = fields.TextField(default="")
    serial = fields.TextField(null=True)
    vendor = fields.TextField(default="")
    model = fields.TextField(default="")
    firmware_version = fields.TextField(default="")
    ward: fields.ForeignKeyNullableRelation[Ward] = fields.ForeignKeyField(
        "hub.Ward", related_name="devices", null=True, on_delete=fields.RESTRICT
    )
    ward_id: int | None
    latitude = fields.FloatField(null=True)
    longitude = fields.FloatField(null=True)
    endpoint = fields.TextField(default="")
    tags = ArrayField("text", default=list)
    lifecycle = fields.TextField(default=Lifecycle.ACTIVE.value)
    status = fields.TextField(default=Status.UNKNOWN.value)
    status_reason = fields.TextField(default="")
    last_seen = fields.DatetimeField(null=True)
    discovered_from = fields.TextField(default="")
    backfill_days = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "device"


class DeviceGroup(Model):
    id = fields.IntField(primary_key=True)
    name = fields.TextField()
    ward: fields.ForeignKeyNullableRelation[Ward] = fields.ForeignKeyField(
        "hub.Ward", related_name="groups", null=True, on_delete=fields.RESTRICT
    )
    ward_id: int | None
    saved_filter: Any = fields.JSONField(null=True, source_field="filter")
    created_at = fields.DatetimeField(auto_now_add=True)
    members: fields.ManyToManyRelation[Device] = fields.ManyToManyField(
        "hub.Device",
        related_name="groups",
        through="device_group_member",
        forward_key="device_id",
        backward_key="group_id",
    )

    class Meta:
        table = "device_group"


class DeviceCredential(Model):
    device: fields.OneToOneRelation[Device] = fields.OneToOneField(
        "hub.Device", related_name="credential", primary_key=True, on_delete=fields.CASCADE
    )
    device_id: int
    username = fields.TextField()
    secret_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    rotated_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "device_credential"
