"""The seam between device protocols and the hub.

Drivers decode bytes on the wire into these objects and hand them to a
``DriverSink``; the hub never sees protocol details and drivers never import
the hub. Every object is immutable and carries UTC timestamps.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

CONTRACT_VERSION = 1


class DeviceKind(enum.StrEnum):
    CAMERA = "camera"
    SPEAKER = "speaker"
    SENSOR = "sensor"


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value, with its unit as the device gave it (the hub normalises).

    ``metric`` is a catalog metric name, or with ``senml`` the record's resolved SenML
    name (RFC 8428 section 4.6), which the hub maps to a metric through the device's
    profile. A value is a number, or a string, boolean or bytes (SenML vs, vb, vd).
    """

    device_uid: str
    metric: str
    value: float | str | bool | bytes
    time: datetime
    unit: str | None = None
    senml: bool = False


@dataclass(frozen=True, slots=True)
class StoreReport:
    """What the hub did with one call's readings: stored, or kept aside with a reason.

    Readings kept aside are quarantined (never silently dropped); a driver that can
    answer the device (CoAP) tells it that not everything was stored, and why.
    """

    stored: int
    total: int
    refused: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.refused


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Connectivity of a device as a transport sees it.

    ``connected`` is False for a Last Will or a failed probe: a disconnect is
    news about the device, never proof that it is alive.
    """

    device_uid: str
    time: datetime
    connected: bool
    source: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something a device reported: a fault, motion, tamper, a status change."""

    device_uid: str
    time: datetime
    kind: str
    active: bool = True
    data: Mapping[str, Any] = field(default_factory=dict)


class AckStage(enum.StrEnum):
    RECEIVED = "received"
    DOWNLOADING = "downloading"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    PREEMPTED = "preempted"


@dataclass(frozen=True, slots=True)
class Command:
    """An instruction for one device; ``command_id`` ties acknowledgements to it."""

    command_id: str
    device_uid: str
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack:
    command_id: str
    device_uid: str
    stage: AckStage
    time: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Discovered:
    """A device found on the network but not yet onboarded."""

    kind: DeviceKind
    endpoint_ref: str
    addresses: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    serial: str | None = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Bytes that could not be turned into contract objects, kept with the reason."""

    source: str
    raw: bytes
    reason: str
    device_uid: str | None = None
    time: datetime | None = None


class DecodeError(ValueError):
    """A payload that is not what the device protocol allows; the message says why."""


class UnknownDevice(LookupError):
    """The hub does not know this device (it is now pending a technician's approval)."""


class RefusedDevice(PermissionError):
    """The device is known but may not speak: decommissioned, or not who it claims to be."""


class Topics:
    """The MQTT topic layout every MQTT device follows (docs/device-protocol.md).

    One subtree per device, so a broker ACL can confine each device to its own
    uid: it publishes telemetry, status, events and acks, and subscribes to cmd
    (and, for speakers, to the retained list of groups it belongs to). Group command
    topics sit beside the device tree: one publish there reaches every member.
    """

    ROOT = "iochub/v1/dev"
    GROUP_ROOT = "iochub/v1/grp"
    TELEMETRY = "telemetry"
    STATUS = "status"
    EVENT = "event"
    ACK = "ack"
    COMMAND = "cmd"
    GROUPS = "groups"
    FIRMWARE = "fw"
    """Firmware update commands, hub to device (docs/device-protocol.md, "Firmware")."""
    FIRMWARE_STATE = "fwstate"
    """A device's firmware update progress, device to hub, retained."""

    @classmethod
    def for_device(cls, device_uid: str, channel: str) -> str:
        return f"{cls.ROOT}/{device_uid}/{channel}"

    @classmethod
    def all_devices(cls, channel: str) -> str:
        return f"{cls.ROOT}/+/{channel}"

    @classmethod
    def for_group(cls, group: str) -> str:
        """Where commands for every member of a group are published."""
        return f"{cls.GROUP_ROOT}/{group}/{cls.COMMAND}"

    @classmethod
    def all_groups(cls) -> str:
        return f"{cls.GROUP_ROOT}/+/{cls.COMMAND}"

    @classmethod
    def parse_group(cls, topic: str) -> str | None:
        """The group a group command topic names, or None for any other topic."""
        prefix = cls.GROUP_ROOT + "/"
        suffix = "/" + cls.COMMAND
        if not (topic.startswith(prefix) and topic.endswith(suffix)):
            return None
        group = topic[len(prefix) : -len(suffix)]
        return group if group and "/" not in group else None

    @classmethod
    def parse(cls, topic: str) -> tuple[str, str]:
        """Split a device topic into (device_uid, channel); DecodeError if it is not one."""
        prefix = cls.ROOT + "/"
        if not topic.startswith(prefix):
            raise DecodeError(f"topic {topic!r} is outside {cls.ROOT}/")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise DecodeError(f"topic {topic!r} is not {cls.ROOT}/<device uid>/<channel>")
        return parts[0], parts[1]


def status_dialect(payload: bytes) -> str:
    """Which kind of device wrote a status payload: "sensor", "speaker" or "unknown".

    Every MQTT device publishes its status on the same channel, and each driver
    subscribes to all of them; a driver leaves the other kinds' statuses to their own
    driver instead of calling them malformed. Sensors write `online`/`offline` or an
    object with "state" (docs/protocol/sensors.md); speakers an object with "online"
    (docs/protocol/speakers.md).
    """
    text = payload.strip()
    if text.lower() in (b"online", b"offline"):
        return "sensor"
    if text.startswith(b"{"):
        head = text[:4096]
        if b'"state"' in head:
            return "sensor"
        if b'"online"' in head:
            return "speaker"
    return "unknown"


@runtime_checkable
class DriverSink(Protocol):
    """What the hub offers a running driver."""

    async def readings(self, items: list[Reading], source: str) -> StoreReport | None:
        """Return once the readings are durably stored (or quarantined with a reason).

        A driver acknowledges to the device only after this returns, so nothing
        acknowledged is lost. Raises UnknownDevice or RefusedDevice to refuse them.
        The report (None: all stored) says which readings were kept aside, and why.
        """
        ...

    async def heartbeat(self, item: Heartbeat) -> None: ...

    async def event(self, item: DeviceEvent) -> None: ...

    async def ack(self, item: Ack) -> None: ...

    async def rejected(self, item: Rejected) -> None: ...


@runtime_checkable
class Driver(Protocol):
    """A long-running protocol adapter owned by the hub's lifespan."""

    name: str

    async def run(self, sink: DriverSink) -> None:
        """Run until cancelled; reconnect with back-off on transport failures."""
        ...


@runtime_checkable
class CommandChannel(Protocol):
    """How the hub sends commands to devices of one protocol."""

    async def send(self, command: Command) -> None: ...
