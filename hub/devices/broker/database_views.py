"""Device identities for a broker that reads them from the hub's database (EMQX).

EMQX's PostgreSQL authenticator and authorizer read the views ``broker_authn`` and
``broker_acl`` (migration 0017), which derive every device's identity and ACLs from its
credentials in ``device_credential`` (written by ``hub.devices.credentials``) and grant
what ``MosquittoDynsec`` grants. So provisioning, rotating and revoking need no call to the
broker here: they take effect at the device's next connection. The hub's own identity is
the one row this class writes, in ``broker_account``.

What this cannot do that the plugin does: cut a live connection at once. EMQX keeps a
connected client until it reconnects, and re-checks its ACLs when its authorization cache
entry expires (1 minute in deploy/kubernetes/emqx.yaml); kick a device by hand in EMQX's
dashboard or API for an immediate cut.
"""

from __future__ import annotations

import logging

from tortoise import Tortoise

from drivers.contract import DeviceKind

from .access import BrokerAccess, BrokerAccessError, BrokerDevice, checked_device_uid
from .credentials import hash_device_secret, verify_device_secret

logger = logging.getLogger(__name__)


class DatabaseIdentities(BrokerAccess):
    def describe(self) -> str:
        return (
            "the broker reads device identities from this database "
            "(views broker_authn, broker_acl: EMQX PostgreSQL authentication and ACLs)"
        )

    async def ensure_base_roles(self) -> None:
        """Nothing to create: the views are the roles (migration 0017)."""

    async def ensure_hub_client(self, username: str, secret: str) -> None:
        checked_device_uid(username)
        conn = Tortoise.get_connection("default")
        rows = await conn.execute_query_dict(
            "SELECT secret_hash FROM broker_account WHERE username = $1", [username]
        )
        if rows and verify_device_secret(secret, rows[0]["secret_hash"]):
            return  # a repeated start changes nothing
        await conn.execute_query(
            "INSERT INTO broker_account (username, role, secret_hash) VALUES ($1, 'hub', $2)"
            " ON CONFLICT (username) DO UPDATE"
            " SET secret_hash = EXCLUDED.secret_hash, updated_at = now()",
            [username, hash_device_secret(secret)],
        )
        logger.info("the hub's broker identity %s is set in broker_account", username)

    async def provision_device(self, uid: str, kind: DeviceKind, secret: str) -> None:
        checked_device_uid(uid)  # the credential row the caller writes is the identity

    async def rotate_secret(self, uid: str, new_secret: str) -> None:
        checked_device_uid(uid)

    async def disable_device(self, uid: str) -> None:
        raise BrokerAccessError(
            "a broker reading identities from the database has no per-device switch: "
            "revoke the device's credentials instead",
            retryable=False,
        )

    async def enable_device(self, uid: str) -> None:
        await self.disable_device(uid)

    async def remove_device(self, uid: str) -> None:
        checked_device_uid(uid)  # refused from the next connection on, once revoked

    async def list_devices(self) -> list[BrokerDevice]:
        conn = Tortoise.get_connection("default")
        rows = await conn.execute_query_dict(
            "SELECT d.uid, d.kind FROM broker_authn a JOIN device d ON d.uid = a.username"
            " ORDER BY d.uid"
        )
        return [BrokerDevice(r["uid"], DeviceKind(r["kind"]), True) for r in rows]
