"""People, sessions, tokens and the audit log (schema in migrations/0002_auth.sql)."""

from __future__ import annotations

import enum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class Role(enum.StrEnum):
    ADMIN = "admin"
    TECHNICIAN = "technician"
    WARD_STAFF = "ward_staff"
    VIEWER = "viewer"


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.TextField()
    display_name = fields.TextField(default="")
    password_hash = fields.TextField()
    role = fields.TextField()
    is_active = fields.BooleanField(default=True)
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # The console's language the person chose; None: Vietnamese, the console's default.
    language = fields.TextField(null=True)
    # Wards belong to the registry (hub.devices), which sits above auth: a user names them
    # through the relation "hub.Ward" that tortoise resolves at start, not by an import.
    wards: fields.ManyToManyRelation[Any] = fields.ManyToManyField(
        "hub.Ward",
        related_name="users",
        through="hub_user_ward",
        forward_key="ward_id",
        backward_key="user_id",
    )

    class Meta:
        table = "hub_user"

    @classmethod
    def ward_model(cls) -> Any:
        """The registry's ward model, as tortoise resolved the relation."""
        field: Any = cls._meta.fields_map["wards"]
        return field.related_model


class LoginSession(Model):
    id = fields.BigIntField(primary_key=True)
    token_hash = fields.BinaryField()
    csrf_token = fields.TextField()
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "hub.User", related_name="sessions", on_delete=fields.CASCADE
    )
    user_id: int
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "login_session"


class ApiToken(Model):
    id = fields.IntField(primary_key=True)
    name = fields.TextField()
    token_hash = fields.BinaryField()
    prefix = fields.TextField()
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "hub.User", related_name="tokens", on_delete=fields.CASCADE
    )
    user_id: int
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class AuditEntry(Model):
    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True)
    actor_id = fields.IntField(null=True)
    actor = fields.TextField()
    action = fields.TextField()
    object_type = fields.TextField()
    object_id = fields.TextField()
    ward_id = fields.IntField(null=True)
    before: Any = fields.JSONField(null=True)
    after: Any = fields.JSONField(null=True)

    class Meta:
        table = "audit_log"
