"""What the hub may ask of the MQTT broker about device identities."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from drivers.contract import DeviceKind, Topics

logger = logging.getLogger(__name__)

# The registry's own constraint on device.uid. It also keeps MQTT wildcards
# (+ #), topic separators and '$' out of usernames that become ACL topics.
DEVICE_UID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class DevicePermissions:
    """The channels of its own topic subtree a device of one kind may use."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    group_commands: bool = False
    """May read every group command topic. Group commands are public announcements
    (they are played aloud), and only the hub may publish them; scoping a device to
    its own groups would tie its broker role to registry edits for no secret kept."""


DEVICE_PERMISSIONS: Mapping[DeviceKind, DevicePermissions] = MappingProxyType(
    {
        DeviceKind.SENSOR: DevicePermissions(
            publish=(Topics.TELEMETRY, Topics.STATUS, Topics.EVENT, Topics.FIRMWARE_STATE),
            subscribe=(Topics.FIRMWARE,),
        ),
        DeviceKind.SPEAKER: DevicePermissions(
            publish=(Topics.STATUS, Topics.EVENT, Topics.ACK, Topics.FIRMWARE_STATE),
            subscribe=(Topics.COMMAND, Topics.GROUPS, Topics.FIRMWARE),
            group_commands=True,
        ),
        DeviceKind.CAMERA: DevicePermissions(publish=(Topics.STATUS, Topics.EVENT), subscribe=()),
    }
)


@dataclass(frozen=True, slots=True)
class BrokerDevice:
    """A device identity as the broker holds it."""

    uid: str
    kind: DeviceKind
    enabled: bool


class BrokerAccessError(Exception):
    """The broker did not do what the hub asked.

    ``retryable`` is True when trying again later may succeed (broker down,
    no reply in time), False when it will not (refused, bad input).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeviceNotProvisioned(BrokerAccessError):
    """The broker has no identity for this device."""

    def __init__(self, uid: str) -> None:
        super().__init__(f"the broker has no identity for device {uid!r}", retryable=False)
        self.uid = uid


def checked_device_uid(uid: str) -> str:
    """The uid itself if it can safely be a broker username and a topic level."""
    if not DEVICE_UID_PATTERN.fullmatch(uid):
        raise BrokerAccessError(
            f"device uid {uid!r} cannot be a broker identity: it must match "
            f"{DEVICE_UID_PATTERN.pattern}",
            retryable=False,
        )
    return uid


@runtime_checkable
class BrokerAccess(Protocol):
    """Device identities and their topic permissions on the MQTT broker.

    This is all the hub sees of broker security. Each device gets its own
    username (its uid) and secret and may touch only its own topic subtree
    (``DEVICE_PERMISSIONS``); the hub's own client may read every device topic
    and send commands. Implementations: ``MosquittoDynsec`` (Mosquitto's
    dynamic-security plugin) and ``NoBrokerAccess`` (a broker that cannot
    enforce any of it). Another broker plugs in here without touching callers:
    an EMQX implementation would map the same calls onto its HTTP API for the
    built-in authentication database (users) and authorization rules, where
    ``${username}`` placeholders let one rule set per kind serve every device.

    Every call is idempotent where its name says ``ensure``, and safe to
    retry after a ``BrokerAccessError`` whose ``retryable`` is True.
    """

    def describe(self) -> str:
        """One line for the logs: which broker, and whether device identity is enforced."""
        ...

    async def ensure_base_roles(self) -> None:
        """Create what every device identity builds on: kind roles, default deny."""
        ...

    async def ensure_hub_client(self, username: str, secret: str) -> None:
        """The hub's own client: read all device topics (also shared), send commands."""
        ...

    async def provision_device(self, uid: str, kind: DeviceKind, secret: str) -> None:
        """Give a device its identity, confined to its own topics; safe to repeat.

        Repeating it makes the broker's record match (kind, secret) again but
        never re-enables a disabled device.
        """
        ...

    async def rotate_secret(self, uid: str, new_secret: str) -> None:
        """Replace a device's secret; the old one stops working at once."""
        ...

    async def disable_device(self, uid: str) -> None:
        """Refuse the device from now on and cut its live connection."""
        ...

    async def enable_device(self, uid: str) -> None: ...

    async def remove_device(self, uid: str) -> None:
        """Delete the device's identity and cut its live connection; safe to repeat."""
        ...

    async def list_devices(self) -> list[BrokerDevice]:
        """Every device identity the hub manages on the broker."""
        ...


class NoBrokerAccess(BrokerAccess):
    """A broker that cannot enforce device identity (e.g. the embedded dev broker).

    Every call does nothing; the first one logs, once, that device
    authentication is off and why.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._warned = False

    def __repr__(self) -> str:
        return f"NoBrokerAccess(reason={self.reason!r})"

    def describe(self) -> str:
        return f"no device authentication on this broker ({self.reason})"

    def _warn_once(self) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "device authentication is OFF on this broker: %s. Any client that reaches it "
            "can publish readings for any device and fake a speaker's acknowledgement; "
            "use Mosquitto with the dynamic-security plugin in production.",
            self.reason,
        )

    async def ensure_base_roles(self) -> None:
        self._warn_once()

    async def ensure_hub_client(self, username: str, secret: str) -> None:
        self._warn_once()

    async def provision_device(self, uid: str, kind: DeviceKind, secret: str) -> None:
        self._warn_once()

    async def rotate_secret(self, uid: str, new_secret: str) -> None:
        self._warn_once()

    async def disable_device(self, uid: str) -> None:
        self._warn_once()

    async def enable_device(self, uid: str) -> None:
        self._warn_once()

    async def remove_device(self, uid: str) -> None:
        self._warn_once()

    async def list_devices(self) -> list[BrokerDevice]:
        self._warn_once()
        return []
