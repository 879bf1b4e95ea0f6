"""Device identities on Mosquitto's dynamic-security plugin, over its MQTT control API.

Mosquitto 2.0 does not substitute ``%u``/``%c`` in dynamic-security ACLs
(only 2.1 will), so each device gets its own role stamped from its kind's
template in ``DEVICE_PERMISSIONS``; one group per kind records the kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from drivers.contract import DeviceKind, Topics

from .access import (
    DEVICE_PERMISSIONS,
    BrokerAccess,
    BrokerAccessError,
    BrokerDevice,
    DeviceNotProvisioned,
    checked_device_uid,
)

logger = logging.getLogger(__name__)

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"

HUB_ROLE: Final = "iochub-hub"
DEVICE_ROLE_PREFIX: Final = "iochub-device-"
KIND_GROUP_PREFIX: Final = "iochub-kind-"

# CONNACK codes meaning "these credentials are refused" (MQTT 3.1.1, then 5).
_REFUSED_CONNECT_CODES: Final = frozenset({4, 5, 134, 135})
_LIST_PAGE_SIZE: Final = 500

# What no role grants is denied; devices must not even receive what they
# happen to subscribe to. Unsubscribing is harmless.
_DEFAULT_ACL_ACCESS: Final[Mapping[str, bool]] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


@dataclass(frozen=True, slots=True)
class Acl:
    """One dynamic-security ACL entry."""

    acltype: str
    topic: str
    allow: bool = True
    priority: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "acltype": self.acltype,
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }


def device_role(uid: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{uid}"


def kind_group(kind: DeviceKind) -> str:
    return f"{KIND_GROUP_PREFIX}{kind.value}"


def device_acls(uid: str, kind: DeviceKind) -> tuple[Acl, ...]:
    """The ACLs that confine one device to the channels of its own subtree."""
    permissions = DEVICE_PERMISSIONS[kind]
    acls = [Acl("publishClientSend", Topics.for_device(uid, ch)) for ch in permissions.publish]
    for channel in permissions.subscribe:
        topic = Topics.for_device(uid, channel)
        acls += [Acl("subscribeLiteral", topic), Acl("publishClientReceive", topic)]
    if permissions.group_commands:
        topic = Topics.all_groups()
        acls += [Acl("subscribePattern", topic), Acl("publishClientReceive", topic)]
    return tuple(acls)


HUB_ACLS: Final = (
    Acl("subscribePattern", f"{Topics.ROOT}/#"),
    Acl("subscribePattern", f"$share/+/{Topics.ROOT}/#"),
    Acl("publishClientReceive", f"{Topics.ROOT}/#"),
    Acl("publishClientSend", Topics.all_devices(Topics.COMMAND)),
    Acl("publishClientSend", Topics.all_devices(Topics.GROUPS)),
    Acl("publishClientSend", Topics.all_devices(Topics.FIRMWARE)),
    Acl("publishClientSend", Topics.all_groups()),
)

_KIND_BY_GROUP: Final = {kind_group(kind): kind for kind in DeviceKind}


@dataclass(frozen=True, slots=True)
class _Reply:
    error: str | None
    data: Mapping[str, Any]

    @property
    def already_exists(self) -> bool:
        return self.error is not None and "already exists" in self.error

    @property
    def not_found(self) -> bool:
        return self.error is not None and "not found" in self.error


def _describe_command(command: Mapping[str, Any]) -> str:
    """The command and what it is about, never its password."""
    target = next((command[k] for k in ("username", "rolename", "groupname") if k in command), None)
    name = str(command["command"])
    return f"{name} {target!r}" if target is not None else name


def _raise_for(command: Mapping[str, Any], reply: _Reply) -> None:
    if reply.error is None:
        return
    # Even the plugin's "Internal error" is deterministic (e.g. adding a role a
    # client already has), so no command error is worth retrying as is.
    raise BrokerAccessError(
        f"broker refused {_describe_command(command)}: {reply.error}", retryable=False
    )


class _ControlSession:
    """One admin connection; sends command batches and matches their replies."""

    def __init__(self, client: aiomqtt.Client, timeout: float, admin_username: str) -> None:
        self._client = client
        self._timeout = timeout
        self._admin_username = admin_username

    async def execute(self, *commands: Mapping[str, Any]) -> list[_Reply]:
        """Run the commands in order, one reply each; errors are left to the caller."""
        if not commands:
            return []
        correlation = [uuid.uuid4().hex for _ in commands]
        payload = json.dumps(
            {
                "commands": [
                    {**command, "correlationData": cid}
                    for command, cid in zip(commands, correlation, strict=True)
                ]
            }
        )
        pending = {cid: index for index, cid in enumerate(correlation)}
        replies: dict[int, _Reply] = {}
        await self._client.publish(CONTROL_TOPIC, payload, qos=1)
        try:
            async with asyncio.timeout(self._timeout):
                async for message in self._client.messages:
                    for item in _responses(message.payload):
                        index = pending.pop(str(item.get("correlationData")), None)
                        if index is not None:
                            replies[index] = _Reply(
                                error=None if item.get("error") is None else str(item["error"]),
                                data=item.get("data") or {},
                            )
                    if not pending:
                        break
        except TimeoutError:
            raise BrokerAccessError(
                f"no reply from the dynamic-security plugin within {self._timeout:g}s to "
                f"{', '.join(_describe_command(c) for c in commands)}; is the plugin "
                f"loaded, and may {self._admin_username!r} use {CONTROL_TOPIC}/#?",
                retryable=True,
            ) from None
        return [replies[index] for index in range(len(commands))]

    async def check(self, *commands: Mapping[str, Any]) -> list[_Reply]:
        """Like execute, raising BrokerAccessError for the first failed command."""
        replies = await self.execute(*commands)
        for command, reply in zip(commands, replies, strict=True):
            _raise_for(command, reply)
        return replies


def _responses(payload: Any) -> list[Mapping[str, Any]]:
    """The response objects in a reply message; other admins' noise is skipped."""
    try:
        document = json.loads(payload)
    except (TypeError, ValueError):
        logger.debug("ignoring a non-JSON message on %s", RESPONSE_TOPIC)
        return []
    responses = document.get("responses") if isinstance(document, dict) else None
    if not isinstance(responses, list):
        return []
    return [item for item in responses if isinstance(item, dict)]


def _names(items: Any, key: str) -> set[str]:
    return {str(item[key]) for item in items or () if isinstance(item, dict) and key in item}


class MosquittoDynsec(BrokerAccess):
    """``BrokerAccess`` on Mosquitto's dynamic-security plugin.

    Talks to ``$CONTROL/dynamic-security/v1`` as an admin client (created with
    ``mosquitto_ctrl dynsec init``). Each call opens a short admin connection,
    so a broker restart between calls needs no reconnect logic here.

    Verified on Mosquitto 2.0.11: ``disableClient``, ``deleteClient``,
    ``setClientPassword`` and any change of a client's roles or groups
    disconnect that client at once. Calls therefore change only what differs,
    and a password is set only if the given one does not already work.
    """

    def __init__(
        self,
        host: str,
        port: int,
        admin_username: str,
        admin_password: SecretStr | str,
        *,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.admin_username = admin_username
        self._admin_password = (
            admin_password if isinstance(admin_password, SecretStr) else SecretStr(admin_password)
        )
        self._tls_context = tls_context
        self._timeout = timeout
        self._base_ready = False

    def __repr__(self) -> str:
        return (
            f"MosquittoDynsec(host={self.host!r}, port={self.port}, "
            f"admin_username={self.admin_username!r}, admin_password='**********')"
        )

    def describe(self) -> str:
        return (
            f"Mosquitto dynamic-security at {self.host}:{self.port} (admin "
            f"{self.admin_username!r}): per-device credentials and topic ACLs enforced"
        )

    # -- connections ---------------------------------------------------------

    def _client(self, username: str, password: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=username,
            password=password,
            identifier=f"iochub-dynsec-{secrets.token_hex(6)}",
            tls_context=self._tls_context,
            timeout=self._timeout,
        )

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[_ControlSession]:
        client = self._client(self.admin_username, self._admin_password.get_secret_value())
        try:
            async with client:
                await client.subscribe(RESPONSE_TOPIC, qos=1)
                yield _ControlSession(client, self._timeout, self.admin_username)
        except MqttConnectError as exc:
            if _connect_code(exc) in _REFUSED_CONNECT_CODES:
                raise BrokerAccessError(
                    f"broker {self.host}:{self.port} refused the admin credentials of "
                    f"{self.admin_username!r} ({exc})",
                    retryable=False,
                ) from None
            raise BrokerAccessError(
                f"broker {self.host}:{self.port} refused the admin connection ({exc})",
                retryable=True,
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerAccessError(
                f"broker {self.host}:{self.port} unreachable for dynamic-security commands ({exc})",
                retryable=True,
            ) from None

    async def _credentials_work(self, username: str, secret: str) -> bool:
        """Whether the broker accepts this username and secret right now."""
        try:
            async with self._client(username, secret):
                return True
        except MqttConnectError as exc:
            if _connect_code(exc) in _REFUSED_CONNECT_CODES:
                return False
            raise BrokerAccessError(
                f"could not check the credentials of {username!r} ({exc})", retryable=True
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerAccessError(
                f"could not check the credentials of {username!r} ({exc})", retryable=True
            ) from None

    # -- building blocks -----------------------------------------------------

    async def _ensure_role(
        self, session: _ControlSession, rolename: str, acls: Iterable[Acl]
    ) -> None:
        """Create the role or make its ACLs exactly ``acls``."""
        wanted = {(acl.acltype, acl.topic): acl for acl in acls}
        create = {
            "command": "createRole",
            "rolename": rolename,
            "acls": [acl.as_json() for acl in wanted.values()],
        }
        (reply,) = await session.execute(create)
        if not reply.already_exists:
            _raise_for(create, reply)
            return
        (role,) = await session.check({"command": "getRole", "rolename": rolename})
        present: dict[tuple[str, str], Acl] = {}
        for item in role.data.get("role", {}).get("acls", []):
            acl = Acl(
                str(item["acltype"]),
                str(item["topic"]),
                bool(item.get("allow", False)),
                int(item.get("priority", 0)),
            )
            present[(acl.acltype, acl.topic)] = acl
        changes: list[Mapping[str, Any]] = [
            {"command": "removeRoleACL", "rolename": rolename, "acltype": key[0], "topic": key[1]}
            for key, acl in present.items()
            if wanted.get(key) != acl
        ]
        changes += [
            {"command": "addRoleACL", "rolename": rolename, **acl.as_json()}
            for key, acl in wanted.items()
            if present.get(key) != acl
        ]
        if changes:
            await session.check(*changes)
            logger.info(
                "broker role %s brought up to date (%d ACL changes)", rolename, len(changes)
            )

    async def _get_client(
        self, session: _ControlSession, username: str
    ) -> Mapping[str, Any] | None:
        command = {"command": "getClient", "username": username}
        (reply,) = await session.execute(command)
        if reply.not_found:
            return None
        _raise_for(command, reply)
        client = reply.data.get("client")
        return client if isinstance(client, dict) else {}

    async def _get_device(self, session: _ControlSession, uid: str) -> Mapping[str, Any]:
        client = await self._get_client(session, uid)
        if client is None:
            raise DeviceNotProvisioned(uid)
        _require_device_client(client, uid)
        return client

    async def _ensure_memberships(
        self,
        session: _ControlSession,
        username: str,
        client: Mapping[str, Any],
        roles: set[str],
        groups: set[str],
    ) -> None:
        """Make the client's roles and groups exactly these (each change kicks it)."""
        has_roles = _names(client.get("roles"), "rolename")
        has_groups = _names(client.get("groups"), "groupname")
        changes: list[Mapping[str, Any]] = []
        changes += [
            {"command": "removeClientRole", "username": username, "rolename": r}
            for r in sorted(has_roles - roles)
        ]
        changes += [
            {"command": "addClientRole", "username": username, "rolename": r}
            for r in sorted(roles - has_roles)
        ]
        changes += [
            {"command": "removeGroupClient", "groupname": g, "username": username}
            for g in sorted(has_groups - groups)
        ]
        changes += [
            {"command": "addGroupClient", "groupname": g, "username": username}
            for g in sorted(groups - has_groups)
        ]
        if changes:
            await session.check(*changes)
            logger.info("broker client %s: roles and groups brought up to date", username)

    async def _ensure_password(self, username: str, secret: str) -> None:
        if await self._credentials_work(username, secret):
            return
        async with self._session() as session:
            await session.check(
                {"command": "setClientPassword", "username": username, "password": secret}
            )
        logger.info("broker client %s: secret set", username)

    async def _create_or_align(
        self,
        session: _ControlSession,
        username: str,
        secret: str,
        roles: set[str],
        groups: set[str],
        textname: str,
        existing: Mapping[str, Any] | None,
    ) -> None:
        """Create the client, or give the existing one exactly these roles and groups.

        The secret of an existing client is left to ``_ensure_password``.
        """
        if existing is not None:
            await self._ensure_memberships(session, username, existing, roles, groups)
            return
        await session.check(
            {
                "command": "createClient",
                "username": username,
                "password": secret,
                "textname": textname,
                "roles": [{"rolename": r} for r in sorted(roles)],
                "groups": [{"groupname": g} for g in sorted(groups)],
            }
        )
        logger.info("broker client %s created", username)

    # -- BrokerAccess --------------------------------------------------------

    async def ensure_base_roles(self) -> None:
        async with self._session() as session:
            (current,) = await session.check({"command": "getDefaultACLAccess"})
            present = {
                str(item.get("acltype")): bool(item.get("allow"))
                for item in current.data.get("acls", [])
                if isinstance(item, dict)
            }
            if present != dict(_DEFAULT_ACL_ACCESS):
                await session.check(
                    {
                        "command": "setDefaultACLAccess",
                        "acls": [
                            {"acltype": acltype, "allow": allow}
                            for acltype, allow in _DEFAULT_ACL_ACCESS.items()
                        ],
                    }
                )
                logger.info("broker default ACL access set to deny")
            for kind in DeviceKind:
                create = {
                    "command": "createGroup",
                    "groupname": kind_group(kind),
                    "textname": f"iochub {kind.value} devices",
                }
                (reply,) = await session.execute(create)
                if not reply.already_exists:
                    _raise_for(create, reply)
            await self._ensure_role(session, HUB_ROLE, HUB_ACLS)
        self._base_ready = True

    async def _ensure_base_once(self) -> None:
        if not self._base_ready:
            await self.ensure_base_roles()

    async def ensure_hub_client(self, username: str, secret: str) -> None:
        if not username:
            raise BrokerAccessError("the hub's broker username is empty", retryable=False)
        if username == self.admin_username:
            raise BrokerAccessError(
                f"the hub client must not be the dynamic-security admin {username!r}",
                retryable=False,
            )
        await self._ensure_base_once()
        async with self._session() as session:
            existing = await self._get_client(session, username)
            if existing is not None and HUB_ROLE not in _names(existing.get("roles"), "rolename"):
                raise BrokerAccessError(
                    f"broker username {username!r} belongs to a client the hub does not "
                    "manage; choose another username for the hub",
                    retryable=False,
                )
            await self._create_or_align(
                session, username, secret, {HUB_ROLE}, set(), "iochub hub", existing
            )
        if existing is not None:
            await self._ensure_password(username, secret)

    async def provision_device(self, uid: str, kind: DeviceKind, secret: str) -> None:
        uid = checked_device_uid(uid)
        kind = DeviceKind(kind)
        await self._ensure_base_once()
        async with self._session() as session:
            existing = await self._get_client(session, uid)
            if existing is not None:
                _require_device_client(existing, uid)
            await self._ensure_role(session, device_role(uid), device_acls(uid, kind))
            await self._create_or_align(
                session,
                uid,
                secret,
                {device_role(uid)},
                {kind_group(kind)},
                f"iochub {kind.value}",
                existing,
            )
        if existing is not None:
            await self._ensure_password(uid, secret)

    async def rotate_secret(self, uid: str, new_secret: str) -> None:
        uid = checked_device_uid(uid)
        async with self._session() as session:
            await self._get_device(session, uid)
            await session.check(
                {"command": "setClientPassword", "username": uid, "password": new_secret}
            )
        logger.info("device %s: broker secret rotated", uid)

    async def disable_device(self, uid: str) -> None:
        uid = checked_device_uid(uid)
        async with self._session() as session:
            await self._get_device(session, uid)
            await session.check({"command": "disableClient", "username": uid})
        logger.info("device %s: broker identity disabled", uid)

    async def enable_device(self, uid: str) -> None:
        uid = checked_device_uid(uid)
        async with self._session() as session:
            await self._get_device(session, uid)
            await session.check({"command": "enableClient", "username": uid})
        logger.info("device %s: broker identity enabled", uid)

    async def remove_device(self, uid: str) -> None:
        uid = checked_device_uid(uid)
        async with self._session() as session:
            client = await self._get_client(session, uid)
            if client is not None:
                _require_device_client(client, uid)
                await session.check({"command": "deleteClient", "username": uid})
            delete_role = {"command": "deleteRole", "rolename": device_role(uid)}
            (reply,) = await session.execute(delete_role)
            if not reply.not_found:
                _raise_for(delete_role, reply)
        logger.info("device %s: broker identity removed", uid)

    async def list_devices(self) -> list[BrokerDevice]:
        devices: list[BrokerDevice] = []
        async with self._session() as session:
            offset = 0
            while True:
                (page,) = await session.check(
                    {
                        "command": "listClients",
                        "verbose": True,
                        "count": _LIST_PAGE_SIZE,
                        "offset": offset,
                    }
                )
                clients = page.data.get("clients", [])
                for client in clients:
                    kinds = [
                        _KIND_BY_GROUP[g]
                        for g in _names(client.get("groups"), "groupname")
                        if g in _KIND_BY_GROUP
                    ]
                    if len(kinds) == 1:
                        devices.append(
                            BrokerDevice(
                                uid=str(client["username"]),
                                kind=kinds[0],
                                enabled=not client.get("disabled", False),
                            )
                        )
                offset += len(clients)
                if not clients or offset >= int(page.data.get("totalCount", 0)):
                    return devices


def _require_device_client(client: Mapping[str, Any], uid: str) -> None:
    """Refuse to touch a broker client that is not a hub-managed device (e.g. the admin)."""
    ours = device_role(uid) in _names(client.get("roles"), "rolename") or bool(
        _names(client.get("groups"), "groupname") & _KIND_BY_GROUP.keys()
    )
    if not ours:
        raise BrokerAccessError(
            f"broker username {uid!r} belongs to a client the hub does not manage; "
            "refusing to change it",
            retryable=False,
        )


def _connect_code(exc: aiomqtt.MqttCodeError) -> int | None:
    if isinstance(exc.rc, ReasonCode):
        return int(exc.rc.value)
    return exc.rc
