"""Broker identities in the database (migration 0017) grant what the dynamic-security roles
grant, and pass the check EMQX's PostgreSQL authenticator makes.

EMQX cannot be installed here; its documented rules are applied to the very rows it would
read (``SELECT password_hash, salt, is_superuser FROM broker_authn WHERE username = ...``
and ``SELECT permission, action, topic FROM broker_acl WHERE username = ...``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from drivers.contract import DeviceKind, Topics
from hub.devices.broker import (
    DEVICE_PERMISSIONS,
    BrokerAccessError,
    DatabaseIdentities,
    NoBrokerAccess,
    hash_device_secret,
    new_device_secret,
)
from hub.devices.broker.mosquitto_dynsec import HUB_ACLS, device_acls
from hub.devices.wiring import broker_access
from hub.server.settings import MqttSettings, Settings
from tests.conftest import reset_database
from tests.support.hub import RunningHub, migrated_database

# EMQX's PostgreSQL authenticator example (docs, "Integrate with PostgreSQL"): password
# "public", salt "slat_foo123", sha256 with salt_position = suffix.
EMQX_EXAMPLE = (
    "public",
    "slat_foo123",
    "44edc2d57cde8d79c98145003e105b90a14f1460b79186ea9cfe83942fc5abb5",
)


def emqx_accepts(password: str, row: asyncpg.Record | None) -> bool:
    """EMQX sha256 with salt_position = prefix: hex(sha256(salt || password)), any case."""
    if row is None:
        return False
    digest = hashlib.sha256((row["salt"] + password).encode()).hexdigest()
    return bool(digest == row["password_hash"].lower())


def test_salt_positions_read_as_emqx_documents_them() -> None:
    password, salt, expected = EMQX_EXAMPLE
    assert hashlib.sha256((password + salt).encode()).hexdigest() == expected  # suffix


@pytest.fixture(scope="module")
async def fresh_db() -> AsyncIterator[asyncpg.Connection]:
    async with migrated_database("postgres") as url:
        conn = await asyncpg.connect(url)
        try:
            yield conn
        finally:
            await conn.close()


async def add_device(
    fresh_db: asyncpg.Connection, uid: str, kind: DeviceKind, secret: str, **state: object
) -> None:
    device_id = await fresh_db.fetchval(
        "INSERT INTO device (uid, kind, lifecycle) VALUES ($1, $2, $3) RETURNING id",
        uid,
        kind.value,
        state.get("lifecycle", "active"),
    )
    await fresh_db.execute(
        "INSERT INTO device_credential (device_id, username, secret_hash, revoked_at)"
        " VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)",
        device_id,
        uid,
        hash_device_secret(secret),
        bool(state.get("revoked", False)),
    )


async def authn(fresh_db: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    return await fresh_db.fetchrow(
        "SELECT password_hash, salt, is_superuser FROM broker_authn WHERE username = $1 LIMIT 1",
        username,
    )


async def acl(fresh_db: asyncpg.Connection, username: str) -> set[tuple[str, str, str]]:
    rows = await fresh_db.fetch(
        "SELECT permission, action, topic FROM broker_acl WHERE username = $1", username
    )
    return {(r["permission"], r["action"], r["topic"]) for r in rows}


def from_dynsec(acls: tuple[object, ...]) -> set[tuple[str, str, str]]:
    """Mosquitto's ACL types in EMQX's terms: subscribe* and publishClientReceive both
    become EMQX's subscribe (which lets a client receive what it subscribed to)."""
    action = {
        "publishClientSend": "publish",
        "subscribeLiteral": "subscribe",
        "subscribePattern": "subscribe",
    }
    return {
        ("allow", action[a.acltype], a.topic)  # type: ignore[attr-defined]
        for a in acls
        if a.acltype in action  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("kind", list(DeviceKind))
async def test_each_kind_gets_its_dynamic_security_grants(
    fresh_db: asyncpg.Connection, kind: DeviceKind
) -> None:
    uid, secret = f"{kind.value}-acl-1", new_device_secret()
    await add_device(fresh_db, uid, kind, secret)
    assert await acl(fresh_db, uid) == from_dynsec(device_acls(uid, kind))
    assert DEVICE_PERMISSIONS[kind].publish  # every kind publishes at least its status


async def test_the_hub_account_gets_the_hub_role(fresh_db: asyncpg.Connection) -> None:
    secret = new_device_secret()
    await fresh_db.execute(
        "INSERT INTO broker_account (username, role, secret_hash) VALUES ('iochub-hub', 'hub', $1)",
        hash_device_secret(secret),
    )
    granted = await acl(fresh_db, "iochub-hub")
    assert granted == from_dynsec(HUB_ACLS)
    assert ("allow", "subscribe", f"$share/+/{Topics.ROOT}/#") in granted
    row = await authn(fresh_db, "iochub-hub")
    assert emqx_accepts(secret, row) and row is not None and not row["is_superuser"]


async def test_emqx_accepts_the_secret_and_nothing_else(fresh_db: asyncpg.Connection) -> None:
    secret = new_device_secret()
    await add_device(fresh_db, "aq-authn-1", DeviceKind.SENSOR, secret)
    row = await authn(fresh_db, "aq-authn-1")
    assert emqx_accepts(secret, row)
    assert not emqx_accepts(secret + "x", row)
    assert not emqx_accepts(new_device_secret(), row)


async def test_revoked_or_decommissioned_devices_cannot_connect(
    fresh_db: asyncpg.Connection,
) -> None:
    secret = new_device_secret()
    await add_device(fresh_db, "spk-revoked", DeviceKind.SPEAKER, secret, revoked=True)
    await add_device(fresh_db, "spk-gone", DeviceKind.SPEAKER, secret, lifecycle="decommissioned")
    for uid in ("spk-revoked", "spk-gone"):
        assert await authn(fresh_db, uid) is None
        assert await acl(fresh_db, uid) == set()


async def test_a_device_cannot_take_the_hubs_identity(fresh_db: asyncpg.Connection) -> None:
    hub_secret, device_secret = new_device_secret(), new_device_secret()
    await fresh_db.execute(
        "INSERT INTO broker_account (username, role, secret_hash) VALUES ('hub-twin', 'hub', $1)",
        hash_device_secret(hub_secret),
    )
    await add_device(fresh_db, "hub-twin", DeviceKind.SENSOR, device_secret)
    rows = await fresh_db.fetch("SELECT * FROM broker_authn WHERE username = 'hub-twin'")
    assert len(rows) == 1 and emqx_accepts(hub_secret, rows[0])
    assert not emqx_accepts(device_secret, rows[0])
    assert await acl(fresh_db, "hub-twin") == from_dynsec(HUB_ACLS)


async def test_the_broker_role_reads_only_its_views(fresh_db: asyncpg.Connection) -> None:
    can = await fresh_db.fetchrow(
        "SELECT has_table_privilege('iochub_broker', 'broker_authn', 'SELECT') AS authn,"
        " has_table_privilege('iochub_broker', 'broker_acl', 'SELECT') AS acl,"
        " has_table_privilege('iochub_broker', 'device_credential', 'SELECT') AS raw,"
        " has_table_privilege('iochub_broker', 'hub_user', 'SELECT') AS users"
    )
    assert dict(can) == {"authn": True, "acl": True, "raw": False, "users": False}


async def test_the_hub_writes_its_own_identity_once(
    hub: RunningHub, db: asyncpg.Connection
) -> None:
    """DatabaseIdentities, on the running hub's database (its ORM connection)."""
    await reset_database(db)
    access = DatabaseIdentities()
    assert "database" in access.describe()
    secret = new_device_secret()
    await access.ensure_hub_client("iochub-hub", secret)
    first = await db.fetchrow("SELECT * FROM broker_account WHERE username = 'iochub-hub'")
    await access.ensure_hub_client("iochub-hub", secret)  # a restart changes nothing
    again = await db.fetchrow("SELECT * FROM broker_account WHERE username = 'iochub-hub'")
    assert first == again
    row = await db.fetchrow("SELECT * FROM broker_authn WHERE username = 'iochub-hub'")
    assert emqx_accepts(secret, row)
    rotated = new_device_secret()
    await access.ensure_hub_client("iochub-hub", rotated)
    row = await db.fetchrow("SELECT * FROM broker_authn WHERE username = 'iochub-hub'")
    assert emqx_accepts(rotated, row) and not emqx_accepts(secret, row)
    with pytest.raises(BrokerAccessError):
        await access.ensure_hub_client("bad/name", secret)


async def test_devices_listed_as_the_broker_sees_them(
    hub: RunningHub, db: asyncpg.Connection
) -> None:
    await reset_database(db)
    await add_device(db, "spk-listed", DeviceKind.SPEAKER, new_device_secret())
    await add_device(db, "aq-revoked", DeviceKind.SENSOR, new_device_secret(), revoked=True)
    listed = await DatabaseIdentities().list_devices()
    assert [(d.uid, d.kind, d.enabled) for d in listed] == [
        ("spk-listed", DeviceKind.SPEAKER, True)
    ]


def test_the_hub_picks_database_identities_when_told() -> None:
    settings = Settings(mqtt=MqttSettings(identities="database", admin_username="x"))
    assert isinstance(broker_access(settings.mqtt), DatabaseIdentities)
    assert isinstance(broker_access(Settings(mqtt=MqttSettings()).mqtt), NoBrokerAccess)
