"""Who is asking, and what their role lets them do, scoped to wards."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from litestar.di import NamedDependency

from hub.auth.models import Role
from hub.errors import Forbidden


class Permission(enum.StrEnum):
    DEVICES_READ = "devices:read"
    DEVICES_WRITE = "devices:write"
    GROUPS_WRITE = "groups:write"
    USERS_ADMIN = "users:admin"
    AUDIT_READ = "audit:read"
    ALERTS_HANDLE = "alerts:handle"
    RULES_WRITE = "rules:write"
    MAINTENANCE_WRITE = "maintenance:write"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.TECHNICIAN: frozenset(
        {
            Permission.DEVICES_READ,
            Permission.DEVICES_WRITE,
            Permission.GROUPS_WRITE,
            Permission.AUDIT_READ,
            Permission.ALERTS_HANDLE,
            Permission.RULES_WRITE,
            Permission.MAINTENANCE_WRITE,
        }
    ),
    Role.WARD_STAFF: frozenset(
        {Permission.DEVICES_READ, Permission.GROUPS_WRITE, Permission.ALERTS_HANDLE}
    ),
    Role.VIEWER: frozenset({Permission.DEVICES_READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    # None means every ward; ward staff carry the set of wards they serve.
    ward_ids: frozenset[int] | None
    via: Literal["session", "token"]
    csrf_token: str | None = None

    def has(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.has(permission):
            raise Forbidden(f"the {self.role.value} role may not {permission.value}")

    def sees_ward(self, ward_id: int | None) -> bool:
        if self.ward_ids is None:
            return True
        return ward_id is not None and ward_id in self.ward_ids

    def require_wards(self, ward_ids: Iterable[int | None]) -> None:
        for ward_id in ward_ids:
            if not self.sees_ward(ward_id):
                raise Forbidden("that is outside the wards you serve")


def scope_for(role: Role, ward_ids: Iterable[int]) -> frozenset[int] | None:
    return frozenset(ward_ids) if role == Role.WARD_STAFF else None


# Handlers declare `principal: CurrentUser`; the app provides it from the authenticated request.
CurrentUser: TypeAlias = NamedDependency[Principal]
