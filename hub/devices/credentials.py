"""Per-device broker credentials: issued once, stored hashed, rotated, revoked.

The broker enforces them (hub.devices.broker: one client and role per device); the hub
keeps an argon2 hash so it can tell who holds a valid secret without storing it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from tortoise.transactions import in_transaction

from drivers.contract import DeviceKind
from hub.auth import Permission, Principal, audit
from hub.devices.broker import (
    BrokerAccess,
    BrokerAccessError,
    hash_device_secret,
    new_device_secret,
)
from hub.devices.models import Device, DeviceCredential, Lifecycle
from hub.devices.service import get_scoped
from hub.errors import Conflict, HubError, NotFound
from hub.runtime.context import RuntimeKey

log = logging.getLogger("hub.devices.credentials")


class BrokerUnavailable(HubError):
    status = 503
    slug = "broker-unavailable"
    title = "The MQTT broker could not apply the change"
    retryable = True


class CredentialsOut(msgspec.Struct):
    device: str
    username: str
    state: str
    """active, or revoked"""
    created_at: datetime
    rotated_at: datetime | None
    secret: str | None = None
    """Shown once, when issued or rotated; the hub keeps only a hash."""


def out(credential: DeviceCredential, uid: str, secret: str | None = None) -> CredentialsOut:
    return CredentialsOut(
        uid,
        credential.username,
        "revoked" if credential.revoked_at else "active",
        credential.created_at,
        credential.rotated_at,
        secret,
    )


@dataclass
class DeviceCredentials:
    broker: BrokerAccess

    async def _broker(self, action: str, call: object) -> None:
        try:
            await call  # type: ignore[misc]
        except BrokerAccessError as exc:
            raise BrokerUnavailable(f"{action}: {exc}") from exc

    async def issue(self, principal: Principal, uid: str) -> CredentialsOut:
        """Create credentials, or rotate existing ones; the new secret is returned once."""
        principal.require(Permission.DEVICES_WRITE)
        device = await get_scoped(principal, uid)
        if device.lifecycle != Lifecycle.ACTIVE:
            raise Conflict(
                f"device {uid!r} is {device.lifecycle}; only active devices get credentials"
            )
        secret = new_device_secret()
        existing = await DeviceCredential.get_or_none(device_id=device.id)
        if existing is None or existing.revoked_at is not None:
            await self._broker(
                "provisioning", self.broker.provision_device(uid, DeviceKind(device.kind), secret)
            )
        else:
            await self._broker("rotation", self.broker.rotate_secret(uid, secret))
        secret_hash = hash_device_secret(secret)
        async with in_transaction() as conn:
            if existing is None:
                credential = await DeviceCredential.create(
                    device_id=device.id, username=uid, secret_hash=secret_hash, using_db=conn
                )
                action = "credentials.issue"
            else:
                existing.secret_hash = secret_hash
                existing.rotated_at = datetime.now(UTC)
                existing.revoked_at = None
                await existing.save(using_db=conn)
                credential, action = existing, "credentials.rotate"
            await audit.record(
                principal,
                action,
                "device",
                uid,
                ward_id=device.ward_id,
                after={"username": uid},
                connection=conn,
            )
        return out(credential, uid, secret)

    async def revoke(self, principal: Principal | None, device: Device) -> None:
        """Cut the device off the broker (it is disconnected at once) and mark it revoked."""
        credential = await DeviceCredential.get_or_none(device_id=device.id)
        await self._broker("revocation", self.broker.remove_device(device.uid))
        if credential is not None and credential.revoked_at is None:
            async with in_transaction() as conn:
                credential.revoked_at = datetime.now(UTC)
                await credential.save(using_db=conn)
                await audit.record(
                    principal,
                    "credentials.revoke",
                    "device",
                    device.uid,
                    ward_id=device.ward_id,
                    connection=conn,
                )

    async def status(self, principal: Principal, uid: str) -> CredentialsOut:
        device = await get_scoped(principal, uid)
        credential = await DeviceCredential.get_or_none(device_id=device.id)
        if credential is None:
            raise NotFound(f"device {uid!r} has no broker credentials")
        return out(credential, uid)


CREDENTIALS: RuntimeKey[DeviceCredentials] = RuntimeKey("device broker credentials")
