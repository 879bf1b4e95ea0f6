"""Wire format v1 of firmware updates, shared by speakers and sensors.

docs/device-protocol.md ("Firmware updates") is the normative description. The hub
publishes commands on ``iochub/v1/dev/<uid>/fw`` (QoS 1, MQTT 5 message expiry = the
command's expiry); the device reports each step on ``iochub/v1/dev/<uid>/fwstate``
(QoS 1, retained, so a hub that subscribes later still learns where each device got to).
Decoders are strict and raise DecodeError naming the field.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from drivers.contract import DecodeError
from drivers.speaker.protocol import format_time, parse_time

_E = TypeVar("_E", bound=enum.StrEnum)

MAX_COMMAND_BYTES = 4096
MAX_REPORT_BYTES = 1024
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class UpdateState(enum.StrEnum):
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    UPDATED = "updated"
    """Sent after the reboot, with the version the device now runs."""
    FAILED = "failed"
    CANCELLED = "cancelled"


class UpdateFailure(enum.StrEnum):
    DOWNLOAD_FAILED = "download_failed"
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    WRONG_MODEL = "wrong_model"
    BELOW_MINIMUM = "below_minimum"
    BUSY = "busy"
    EXPIRED = "expired"
    INSTALL_FAILED = "install_failed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class UpdateCommand:
    command_id: str
    issued_at: datetime
    expires_at: datetime
    model: str
    version: str
    min_version: str | None
    url: str
    size: int
    sha256: str
    action: str = "update"


@dataclass(frozen=True, slots=True)
class CancelCommand:
    command_id: str
    issued_at: datetime
    expires_at: datetime
    target: str
    """The command id of the update to abandon (only before it is installing)."""
    action: str = "cancel"


FirmwareCommand = UpdateCommand | CancelCommand


@dataclass(frozen=True, slots=True)
class StateReport:
    command_id: str
    state: UpdateState
    at: datetime
    version: str | None = None
    """The version the device runs (required with ``updated``)."""
    reason: UpdateFailure | None = None
    detail: str | None = None


def _load(payload: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(payload) > limit:
        raise DecodeError(f"{what} is {len(payload)} bytes, more than the {limit} allowed")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"{what} is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise DecodeError(f"{what} must be a JSON object")
    return document


def _text(document: dict[str, Any], key: str, limit: int = 256, *, optional: bool = False) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise DecodeError(f"{key} must be a string of 1 to {limit} characters")
    return value


def _member(document: dict[str, Any], key: str, kind: type[_E], described: str) -> _E:
    try:
        return kind(_text(document, key, 32))
    except ValueError:
        raise DecodeError(f"{key} {document.get(key)!r} is not {described}") from None


def _identifier(document: dict[str, Any], key: str) -> str:
    value: str = _text(document, key, 128)
    if not _ID.fullmatch(value):
        raise DecodeError(f"{key} {value!r} has characters outside [A-Za-z0-9._:@-]")
    return value


def _keys(document: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(k for k in document if k not in allowed and not k.startswith("x_"))
    if unknown:
        raise DecodeError(f"{what}: unknown field {', '.join(unknown)}")


def encode_command(command: FirmwareCommand) -> bytes:
    document: dict[str, Any] = {
        "command_id": command.command_id,
        "action": command.action,
        "issued_at": format_time(command.issued_at),
        "expires_at": format_time(command.expires_at),
    }
    if isinstance(command, UpdateCommand):
        document.update(
            model=command.model,
            version=command.version,
            min_version=command.min_version,
            url=command.url,
            size=command.size,
            sha256=command.sha256,
        )
    else:
        document["target"] = command.target
    return json.dumps(document, separators=(",", ":")).encode()


_UPDATE_KEYS = {
    "command_id",
    "action",
    "issued_at",
    "expires_at",
    "model",
    "version",
    "min_version",
    "url",
    "size",
    "sha256",
}
_CANCEL_KEYS = {"command_id", "action", "issued_at", "expires_at", "target"}


def decode_command(payload: bytes) -> FirmwareCommand:
    document = _load(payload, MAX_COMMAND_BYTES, "firmware command")
    action = document.get("action")
    command_id = _identifier(document, "command_id")
    issued_at = parse_time(_text(document, "issued_at", 40), "issued_at")
    expires_at = parse_time(_text(document, "expires_at", 40), "expires_at")
    if action == "cancel":
        _keys(document, _CANCEL_KEYS, "cancel command")
        return CancelCommand(command_id, issued_at, expires_at, _identifier(document, "target"))
    if action != "update":
        raise DecodeError(f"action {action!r} is not update or cancel")
    _keys(document, _UPDATE_KEYS, "update command")
    url = _text(document, "url", 2048)
    if not url.startswith(("http://", "https://")):
        raise DecodeError("url must be an http or https URL")
    size = document.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise DecodeError("size must be a positive integer")
    sha256 = _text(document, "sha256", 64)
    if not _SHA256.fullmatch(sha256):
        raise DecodeError("sha256 must be 64 lowercase hexadecimal digits")
    return UpdateCommand(
        command_id=command_id,
        issued_at=issued_at,
        expires_at=expires_at,
        model=_text(document, "model", 200),
        version=_text(document, "version", 64),
        min_version=_text(document, "min_version", 64, optional=True),
        url=url,
        size=size,
        sha256=sha256,
    )


def encode_report(report: StateReport) -> bytes:
    if (report.state is UpdateState.FAILED) != (report.reason is not None):
        raise ValueError("a reason goes with, and only with, the failed state")
    if report.state is UpdateState.UPDATED and not report.version:
        raise ValueError("an updated report says which version runs")
    document: dict[str, Any] = {
        "command_id": report.command_id,
        "state": report.state.value,
        "at": format_time(report.at),
    }
    if report.version is not None:
        document["version"] = report.version
    if report.reason is not None:
        document["reason"] = report.reason.value
    if report.detail is not None:
        document["detail"] = report.detail[:200]
    return json.dumps(document, separators=(",", ":")).encode()


def decode_report(payload: bytes) -> StateReport:
    document = _load(payload, MAX_REPORT_BYTES, "firmware report")
    _keys(document, {"command_id", "state", "at", "version", "reason", "detail"}, "report")
    state = _member(document, "state", UpdateState, "a firmware update state")
    reason = None
    if state is UpdateState.FAILED:
        reason = _member(document, "reason", UpdateFailure, "a failure reason")
    elif document.get("reason") is not None:
        raise DecodeError(f"a {state} report takes no reason")
    version = _text(document, "version", 64, optional=True)
    if state is UpdateState.UPDATED and version is None:
        raise DecodeError("an updated report needs version")
    return StateReport(
        command_id=_identifier(document, "command_id"),
        state=state,
        at=parse_time(_text(document, "at", 40), "at"),
        version=version,
        reason=reason,
        detail=_text(document, "detail", 200, optional=True),
    )
