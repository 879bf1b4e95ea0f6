"""Wire format v1 of the smart loudspeakers: commands, acknowledgements, status and events.

docs/protocol/speakers.md is the normative description; this module is its
executable form. Every decoder is strict and raises ``DecodeError`` with a reason
that names the offending field.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeVar

from drivers.contract import Ack, AckStage, Command, DecodeError, DeviceEvent
from drivers.json_fields import json_type, repeated_key

PROTOCOL_VERSION = 1

MAX_COMMAND_BYTES = 8192
MAX_ACK_BYTES = 1024
MAX_STATUS_BYTES = 2048
MAX_EVENT_BYTES = 4096
MAX_GROUPS_BYTES = 2048
MAX_GROUPS = 16
MAX_URL_LENGTH = 2048
MAX_ID_LENGTH = 128
MAX_AUDIO_DURATION_S = 4 * 3600.0

# A command stays playable this long after its start unless the hub says otherwise:
# long enough to ride out a short reconnect, short enough that nobody hears
# yesterday's announcement.
DEFAULT_COMMAND_TTL = timedelta(minutes=5)

STOP_ALL = "all"
LAST_WILL_PAYLOAD = b'{"online":false}'
EXTENSION_KEY_PREFIX = "x_"

_E = TypeVar("_E", bound=enum.StrEnum)

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_EVENT_KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RFC3339_PATTERN = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


class Action(enum.StrEnum):
    PLAY = "play"
    STOP = "stop"
    SET_VOLUME = "set_volume"
    PING = "ping"
    REBOOT = "reboot"


class Priority(enum.StrEnum):
    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"


class FailureReason(enum.StrEnum):
    DOWNLOAD_FAILED = "download_failed"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    BUSY = "busy"
    REJECTED = "rejected"
    EXPIRED = "expired"
    AMPLIFIER_FAULT = "amplifier_fault"
    UNSUPPORTED = "unsupported"


class InvalidCommand(ValueError):
    """The hub asked for a command the protocol cannot express; retrying will not help."""


class CommandRejected(DecodeError):
    """A command payload a speaker must refuse.

    ``command_id`` is set when the payload carried a usable one, so the speaker can
    answer with a ``failed`` ack carrying ``failure``.
    """

    def __init__(
        self,
        reason: str,
        command_id: str | None = None,
        failure: FailureReason = FailureReason.REJECTED,
    ) -> None:
        super().__init__(reason)
        self.command_id = command_id
        self.failure = failure


@dataclass(frozen=True, slots=True)
class _Command:
    """What every command carries: its id, when it was issued, when it stops being valid."""

    command_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PlayCommand(_Command):
    audio_url: str
    sha256: str
    duration_s: float
    volume: int
    priority: Priority
    broadcast_id: str
    start_at: datetime | None = None
    action: ClassVar[Action] = Action.PLAY


@dataclass(frozen=True, slots=True)
class StopCommand(_Command):
    target: str
    """A command id, or ``STOP_ALL``."""
    action: ClassVar[Action] = Action.STOP


@dataclass(frozen=True, slots=True)
class SetVolumeCommand(_Command):
    volume: int
    action: ClassVar[Action] = Action.SET_VOLUME


@dataclass(frozen=True, slots=True)
class PingCommand(_Command):
    action: ClassVar[Action] = Action.PING


@dataclass(frozen=True, slots=True)
class RebootCommand(_Command):
    action: ClassVar[Action] = Action.REBOOT


SpeakerCommand = PlayCommand | StopCommand | SetVolumeCommand | PingCommand | RebootCommand


@dataclass(frozen=True, slots=True)
class SpeakerStatus:
    """A speaker's self-report. Only ``online`` is guaranteed: a Last Will carries nothing else."""

    online: bool
    volume: int | None = None
    playing: str | None = None
    amplifier_fault: bool | None = None
    speaker_fault: bool | None = None
    temperature_c: float | None = None
    rssi_dbm: float | None = None
    firmware_version: str | None = None
    uptime_s: float | None = None
    at: datetime | None = None
    groups: tuple[str, ...] | None = None
    """The groups whose commands it listens to; None from firmware without groups."""


# --------------------------------------------------------------------------- time


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. ``2025-03-01T07:30:00.000Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the protocol only carries UTC instants")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, field_name: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime."""
    match = _RFC3339_PATTERN.fullmatch(text)
    if match is None:
        raise DecodeError(f"{field_name}: {text!r} is not an RFC 3339 timestamp")
    date_part, time_part, fraction, offset = match.groups()
    # datetime.fromisoformat keeps at most microseconds; RFC 3339 allows more digits.
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{date_part}T{time_part}{fraction}{offset}")
    except ValueError as exc:
        raise DecodeError(f"{field_name}: {text!r} is not a valid instant ({exc})") from None
    return parsed.astimezone(UTC)


# --------------------------------------------------------------------------- field readers


def _fail(reason: str) -> NoReturn:
    raise DecodeError(reason)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if (key := repeated_key(pairs)) is not None:
        _fail(f"duplicate key {key!r}")
    return dict(pairs)


def _reject_constant(name: str) -> NoReturn:
    _fail(f"{name} is not a number")


def _load_object(payload: bytes, max_bytes: int, what: str) -> dict[str, Any]:
    if len(payload) > max_bytes:
        _fail(f"{what} is {len(payload)} bytes, more than the {max_bytes} allowed")
    if not payload:
        _fail(f"{what} is empty")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        document = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        _fail(f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except RecursionError:
        _fail(f"{what} nests too deeply")
    if not isinstance(document, dict):
        _fail(f"{what} must be a JSON object, not {json_type(document)}")
    return document


def _check_keys(
    document: Mapping[str, Any], required: frozenset[str], optional: frozenset[str], what: str
) -> None:
    missing = sorted(required - document.keys())
    if missing:
        _fail(f"{what}: missing {', '.join(missing)}")
    unknown = sorted(
        key
        for key in document.keys() - required - optional
        if not key.startswith(EXTENSION_KEY_PREFIX)
    )
    if unknown:
        _fail(f"{what}: unknown field {', '.join(unknown)}")


def _string(document: Mapping[str, Any], key: str, max_length: int) -> str:
    value = document[key]
    if not isinstance(value, str):
        _fail(f"{key} must be a string, not {json_type(value)}")
    if not value:
        _fail(f"{key} must not be empty")
    if len(value) > max_length:
        _fail(f"{key} is longer than {max_length} characters")
    return value


def _identifier(document: Mapping[str, Any], key: str) -> str:
    value = _string(document, key, MAX_ID_LENGTH)
    if not _ID_PATTERN.fullmatch(value):
        _fail(f"{key} {value!r} has characters outside [A-Za-z0-9._:@-]")
    return value


def _boolean(document: Mapping[str, Any], key: str) -> bool:
    value = document[key]
    if not isinstance(value, bool):
        _fail(f"{key} must be a boolean, not {json_type(value)}")
    return value


def _integer(document: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = document[key]
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{key} must be an integer, not {json_type(value)}")
    if not low <= value <= high:
        _fail(f"{key} {value} is outside {low}..{high}")
    return value


def _number(document: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = document[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{key} must be a number, not {json_type(value)}")
    if not math.isfinite(value) or not low <= value <= high:
        _fail(f"{key} {value} is outside {low:g}..{high:g}")
    return float(value)


def _timestamp(document: Mapping[str, Any], key: str) -> datetime:
    value = document[key]
    if not isinstance(value, str):
        _fail(f"{key} must be an RFC 3339 string, not {json_type(value)}")
    return parse_time(value, key)


def _optional_number(
    document: Mapping[str, Any], key: str, low: float, high: float
) -> float | None:
    return _number(document, key, low, high) if _present(document, key) else None


def _optional_timestamp(document: Mapping[str, Any], key: str) -> datetime | None:
    return _timestamp(document, key) if _present(document, key) else None


def _present(document: Mapping[str, Any], key: str) -> bool:
    return document.get(key) is not None


def _enum_value(document: Mapping[str, Any], key: str, kind: type[_E]) -> _E:
    value = document[key]
    if not isinstance(value, str):
        _fail(f"{key} must be a string, not {json_type(value)}")
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        _fail(f"{key} {value!r} is not one of {allowed}")


def _audio_url(document: Mapping[str, Any], key: str) -> str:
    value = _string(document, key, MAX_URL_LENGTH)
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) < 1:
        _fail(f"{key} must be an http or https URL")
    if any(char.isspace() for char in value):
        _fail(f"{key} must not contain whitespace")
    return value


# --------------------------------------------------------------------------- commands

_ACTION_NAMES = frozenset(action.value for action in Action)
_COMMAND_COMMON = frozenset({"command_id", "action", "issued_at", "expires_at"})
_COMMAND_FIELDS: Mapping[Action, tuple[frozenset[str], frozenset[str]]] = {
    Action.PLAY: (
        _COMMAND_COMMON
        | {"audio_url", "sha256", "duration_s", "volume", "priority", "broadcast_id"},
        frozenset({"start_at"}),
    ),
    Action.STOP: (_COMMAND_COMMON | {"target"}, frozenset()),
    Action.SET_VOLUME: (_COMMAND_COMMON | {"volume"}, frozenset()),
    Action.PING: (_COMMAND_COMMON, frozenset()),
    Action.REBOOT: (_COMMAND_COMMON, frozenset()),
}


def _command_from_document(document: Mapping[str, Any]) -> SpeakerCommand:
    if "action" not in document:
        _fail("command: missing action")
    action = _enum_value(document, "action", Action)
    required, optional = _COMMAND_FIELDS[action]
    _check_keys(document, required, optional, f"{action} command")
    command_id = _identifier(document, "command_id")
    issued_at = _timestamp(document, "issued_at")
    expires_at = _timestamp(document, "expires_at")
    if expires_at <= issued_at:
        _fail("expires_at must be later than issued_at")
    if action is Action.PLAY:
        start_at = _timestamp(document, "start_at") if _present(document, "start_at") else None
        if start_at is not None and start_at >= expires_at:
            _fail("start_at must be earlier than expires_at")
        sha256 = _string(document, "sha256", 64)
        if not _SHA256_PATTERN.fullmatch(sha256):
            _fail("sha256 must be 64 lowercase hexadecimal digits")
        duration_s = _number(document, "duration_s", 0.0, MAX_AUDIO_DURATION_S)
        if duration_s <= 0:
            _fail("duration_s must be positive")
        return PlayCommand(
            command_id=command_id,
            issued_at=issued_at,
            expires_at=expires_at,
            audio_url=_audio_url(document, "audio_url"),
            sha256=sha256,
            duration_s=duration_s,
            volume=_integer(document, "volume", 0, 100),
            priority=_enum_value(document, "priority", Priority),
            broadcast_id=_identifier(document, "broadcast_id"),
            start_at=start_at,
        )
    if action is Action.STOP:
        return StopCommand(command_id, issued_at, expires_at, _identifier(document, "target"))
    if action is Action.SET_VOLUME:
        volume = _integer(document, "volume", 0, 100)
        return SetVolumeCommand(command_id, issued_at, expires_at, volume)
    if action is Action.PING:
        return PingCommand(command_id, issued_at, expires_at)
    return RebootCommand(command_id, issued_at, expires_at)


def _command_document(command: SpeakerCommand) -> dict[str, Any]:
    document: dict[str, Any] = {
        "command_id": command.command_id,
        "action": command.action.value,
        "issued_at": format_time(command.issued_at),
        "expires_at": format_time(command.expires_at),
    }
    if isinstance(command, PlayCommand):
        document.update(
            audio_url=command.audio_url,
            sha256=command.sha256,
            duration_s=command.duration_s,
            volume=command.volume,
            priority=command.priority.value,
            broadcast_id=command.broadcast_id,
        )
        if command.start_at is not None:
            document["start_at"] = format_time(command.start_at)
    elif isinstance(command, StopCommand):
        document["target"] = command.target
    elif isinstance(command, SetVolumeCommand):
        document["volume"] = command.volume
    return document


def encode_command(command: SpeakerCommand) -> bytes:
    """Serialise a command; raises InvalidCommand if it breaks a protocol rule."""
    try:
        payload = json.dumps(_command_document(command), separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidCommand(f"{command.action} command {command.command_id!r}: {exc}") from None
    try:
        decode_command(payload)
    except DecodeError as exc:
        raise InvalidCommand(f"{command.action} command {command.command_id!r}: {exc}") from None
    return payload


class CommandEncoder:
    """Encodes many commands, validating each distinct shape once.

    A broadcast sends one command shape to every speaker, differing only in
    ``command_id``; full validation of thousands of identical shapes is waste.
    """

    def __init__(self) -> None:
        self._valid_shapes: set[SpeakerCommand] = set()

    def encode(self, command: SpeakerCommand) -> bytes:
        shape = replace(command, command_id="-")
        if shape not in self._valid_shapes:
            payload = encode_command(command)
            self._valid_shapes.add(shape)
            return payload
        if len(command.command_id) > MAX_ID_LENGTH or not _ID_PATTERN.fullmatch(command.command_id):
            raise InvalidCommand(f"command_id {command.command_id!r} is not a valid identifier")
        return json.dumps(_command_document(command), separators=(",", ":")).encode()


def decode_command(payload: bytes) -> SpeakerCommand:
    """Parse a command as a speaker receives it; CommandRejected says why it must be refused."""
    try:
        document = _load_object(payload, MAX_COMMAND_BYTES, "command")
    except DecodeError as exc:
        raise CommandRejected(str(exc)) from None
    raw_id = document.get("command_id")
    command_id = raw_id if isinstance(raw_id, str) and _ID_PATTERN.fullmatch(raw_id) else None
    if command_id is not None and len(command_id) > MAX_ID_LENGTH:
        command_id = None
    action = document.get("action")
    if isinstance(action, str) and action not in _ACTION_NAMES:
        raise CommandRejected(
            f"action {action!r} is not supported", command_id, FailureReason.UNSUPPORTED
        )
    try:
        return _command_from_document(document)
    except DecodeError as exc:
        raise CommandRejected(str(exc), command_id) from None


def _param_time(params: Mapping[str, Any], key: str) -> datetime | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidCommand(f"{key} must be timezone-aware")
        return value.astimezone(UTC)
    if isinstance(value, str):
        try:
            return parse_time(value, key)
        except DecodeError as exc:
            raise InvalidCommand(str(exc)) from None
    raise InvalidCommand(f"{key} must be a datetime or an RFC 3339 string")


def _param(params: Mapping[str, Any], key: str, action: str) -> Any:
    if key not in params:
        raise InvalidCommand(f"{action} needs {key}")
    return params[key]


def build_command(command: Command, now: datetime) -> SpeakerCommand:
    """Turn the hub's generic Command into a v1 speaker command.

    ``params`` may give ``expires_at``; otherwise it is DEFAULT_COMMAND_TTL after the
    later of ``now`` and ``start_at``. Raises InvalidCommand for anything the
    protocol cannot carry.
    """
    try:
        action = Action(command.action)
    except ValueError:
        allowed = ", ".join(member.value for member in Action)
        raise InvalidCommand(f"action {command.action!r} is not one of {allowed}") from None
    params = command.params
    known = _COMMAND_FIELDS[action][0] | _COMMAND_FIELDS[action][1]
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidCommand(f"{action} command does not take {', '.join(unknown)}")
    issued_at = now.astimezone(UTC)
    start_at = _param_time(params, "start_at") if action is Action.PLAY else None
    expires_at = _param_time(params, "expires_at") or (
        max(issued_at, start_at or issued_at) + DEFAULT_COMMAND_TTL
    )
    speaker_command: SpeakerCommand
    if action is Action.PLAY:
        priority = _param(params, "priority", action)
        try:
            priority = Priority(priority)
        except ValueError:
            raise InvalidCommand(f"priority {priority!r} is not a priority") from None
        speaker_command = PlayCommand(
            command_id=command.command_id,
            issued_at=issued_at,
            expires_at=expires_at,
            audio_url=_param(params, "audio_url", action),
            sha256=_param(params, "sha256", action),
            duration_s=_param(params, "duration_s", action),
            volume=_param(params, "volume", action),
            priority=priority,
            broadcast_id=_param(params, "broadcast_id", action),
            start_at=start_at,
        )
    elif action is Action.STOP:
        target = params.get("target", STOP_ALL)
        speaker_command = StopCommand(command.command_id, issued_at, expires_at, target)
    elif action is Action.SET_VOLUME:
        volume = _param(params, "volume", action)
        speaker_command = SetVolumeCommand(command.command_id, issued_at, expires_at, volume)
    elif action is Action.PING:
        speaker_command = PingCommand(command.command_id, issued_at, expires_at)
    else:
        speaker_command = RebootCommand(command.command_id, issued_at, expires_at)
    return speaker_command


# --------------------------------------------------------------------------- acks

_ACK_REQUIRED = frozenset({"command_id", "stage", "at"})
_ACK_OPTIONAL = frozenset({"reason"})


def encode_ack(
    command_id: str,
    stage: AckStage,
    at: datetime,
    reason: FailureReason | None = None,
) -> bytes:
    """Serialise an acknowledgement; a ``failed`` stage needs a reason, the others take none."""
    if (stage is AckStage.FAILED) != (reason is not None):
        raise ValueError("a reason goes with, and only with, the failed stage")
    document: dict[str, Any] = {
        "command_id": command_id,
        "stage": stage.value,
        "at": format_time(at),
    }
    if reason is not None:
        document["reason"] = reason.value
    return json.dumps(document, separators=(",", ":")).encode()


def decode_ack(payload: bytes, device_uid: str) -> Ack:
    document = _load_object(payload, MAX_ACK_BYTES, "ack")
    _check_keys(document, _ACK_REQUIRED, _ACK_OPTIONAL, "ack")
    command_id = _identifier(document, "command_id")
    stage = _enum_value(document, "stage", AckStage)
    at = _timestamp(document, "at")
    reason = (
        _enum_value(document, "reason", FailureReason) if _present(document, "reason") else None
    )
    if stage is AckStage.FAILED and reason is None:
        _fail("a failed ack needs a reason")
    if stage is not AckStage.FAILED and reason is not None:
        _fail(f"a {stage} ack takes no reason")
    return Ack(
        command_id=command_id,
        device_uid=device_uid,
        stage=stage,
        time=at,
        reason=None if reason is None else str(reason),
    )


# --------------------------------------------------------------------------- status

_STATUS_ONLINE_REQUIRED = frozenset(
    {
        "online",
        "volume",
        "playing",
        "amplifier_fault",
        "speaker_fault",
        "temperature_c",
        "rssi_dbm",
        "firmware_version",
        "uptime_s",
    }
)
_STATUS_OPTIONAL = frozenset({"at", "groups"})


def encode_status(status: SpeakerStatus) -> bytes:
    if not status.online:
        return LAST_WILL_PAYLOAD
    document: dict[str, Any] = {
        "online": True,
        "volume": status.volume,
        "playing": status.playing,
        "amplifier_fault": status.amplifier_fault,
        "speaker_fault": status.speaker_fault,
        "temperature_c": status.temperature_c,
        "rssi_dbm": status.rssi_dbm,
        "firmware_version": status.firmware_version,
        "uptime_s": status.uptime_s,
    }
    if status.at is not None:
        document["at"] = format_time(status.at)
    if status.groups is not None:
        document["groups"] = list(status.groups)
    return json.dumps(document, separators=(",", ":")).encode()


def decode_status(payload: bytes) -> SpeakerStatus:
    """Parse a status; an offline status may carry nothing but ``online`` (the Last Will)."""
    document = _load_object(payload, MAX_STATUS_BYTES, "status")
    if "online" not in document:
        _fail("status: missing online")
    if not _boolean(document, "online"):
        _check_keys(
            document, frozenset({"online"}), _STATUS_ONLINE_REQUIRED | _STATUS_OPTIONAL, "status"
        )
        return SpeakerStatus(online=False, at=_optional_timestamp(document, "at"))
    _check_keys(document, _STATUS_ONLINE_REQUIRED, _STATUS_OPTIONAL, "status")
    playing = None
    if document["playing"] is not None:
        playing = _identifier(document, "playing")
    return SpeakerStatus(
        online=True,
        volume=_integer(document, "volume", 0, 100),
        playing=playing,
        amplifier_fault=_boolean(document, "amplifier_fault"),
        speaker_fault=_boolean(document, "speaker_fault"),
        temperature_c=_optional_number(document, "temperature_c", -40.0, 125.0),
        rssi_dbm=_optional_number(document, "rssi_dbm", -150.0, 0.0),
        firmware_version=_string(document, "firmware_version", 64),
        uptime_s=_number(document, "uptime_s", 0.0, 10.0 * 365 * 86400),
        at=_optional_timestamp(document, "at"),
        groups=_groups(document) if "groups" in document else None,
    )


# --------------------------------------------------------------------------- groups


def _groups(document: Mapping[str, Any]) -> tuple[str, ...]:
    value = document["groups"]
    if not isinstance(value, list):
        _fail(f"groups must be an array, not {json_type(value)}")
    if len(value) > MAX_GROUPS:
        _fail(f"groups has {len(value)} entries, more than the {MAX_GROUPS} allowed")
    names: list[str] = []
    for index, item in enumerate(value):
        name = _identifier({f"groups[{index}]": item}, f"groups[{index}]")
        if name in names:
            _fail(f"groups[{index}] {name!r} is listed twice")
        names.append(name)
    return tuple(sorted(names))


def encode_groups(groups: Sequence[str]) -> bytes:
    """The retained message that tells a speaker which group command topics to follow."""
    names = sorted(set(groups))
    payload = json.dumps({"groups": names}, separators=(",", ":")).encode()
    try:
        decode_groups(payload)
    except DecodeError as exc:
        raise InvalidCommand(f"groups: {exc}") from None
    return payload


def decode_groups(payload: bytes) -> tuple[str, ...]:
    """The groups a speaker belongs to; an empty (cleared) retained message means none."""
    if not payload:
        return ()
    document = _load_object(payload, MAX_GROUPS_BYTES, "groups")
    _check_keys(document, frozenset({"groups"}), frozenset(), "groups")
    return _groups(document)


# --------------------------------------------------------------------------- events

_EVENT_REQUIRED = frozenset({"kind", "at"})
_EVENT_OPTIONAL = frozenset({"active", "data"})


def encode_event(
    kind: str, at: datetime, active: bool = True, data: Mapping[str, Any] | None = None
) -> bytes:
    if not _EVENT_KIND_PATTERN.fullmatch(kind):
        raise ValueError(f"event kind {kind!r} must match {_EVENT_KIND_PATTERN.pattern}")
    document: dict[str, Any] = {"kind": kind, "at": format_time(at), "active": active}
    if data:
        document["data"] = dict(data)
    return json.dumps(document, separators=(",", ":")).encode()


def decode_event(payload: bytes, device_uid: str) -> DeviceEvent:
    document = _load_object(payload, MAX_EVENT_BYTES, "event")
    _check_keys(document, _EVENT_REQUIRED, _EVENT_OPTIONAL, "event")
    kind = _string(document, "kind", 64)
    if not _EVENT_KIND_PATTERN.fullmatch(kind):
        _fail(f"kind {kind!r} must be lowercase letters, digits and underscores")
    active = True if document.get("active") is None else _boolean(document, "active")
    data = document.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        _fail(f"data must be an object, not {json_type(data)}")
    return DeviceEvent(
        device_uid=device_uid,
        time=_timestamp(document, "at"),
        kind=kind,
        active=active,
        data=data,
    )
