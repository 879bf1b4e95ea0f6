"""Sensor payloads: plain JSON, SenML JSON and SenML CBOR (RFC 8428), and status messages.

Every decoder turns bytes into contract objects or raises ``DecodeError`` with
the reason; units are passed through as given (the hub normalises them).
The wire format is specified in docs/protocol/sensors.md.
"""

from __future__ import annotations

import base64
import codecs
import enum
import functools
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, NoReturn, Protocol

import cbor2

from drivers.contract import DecodeError, Reading
from drivers.json_fields import json_type, repeated_key

__all__ = [
    "DEFAULT_LIMITS",
    "PayloadFormat",
    "PayloadLimits",
    "StatusReport",
    "decode_json",
    "decode_senml_cbor",
    "decode_senml_json",
    "decode_status",
    "decode_telemetry",
    "format_for_content_type",
    "sniff_format",
]


class PayloadFormat(enum.StrEnum):
    JSON = "application/json"
    SENML_JSON = "application/senml+json"
    SENML_CBOR = "application/senml+cbor"


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """What a payload may carry; anything beyond is a DecodeError."""

    max_bytes: int = 16_384
    max_records: int = 256
    max_age: timedelta = timedelta(days=7)
    max_future: timedelta = timedelta(minutes=5)


DEFAULT_LIMITS: Final = PayloadLimits()

# RFC 8428 section 4.5.3: smaller times are relative to "now".
SENML_RELATIVE_TIME_LIMIT: Final = 2**28
SENML_VERSION: Final = 10

# RFC 8428 section 6, Table 4: CBOR integer labels.
_CBOR_LABELS: Final[Mapping[int, str]] = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}
_SENML_LABELS: Final = frozenset(_CBOR_LABELS.values())
_BASE_LABELS: Final = frozenset(("bver", "bn", "bt", "bu", "bv", "bs"))
# RFC 8428 section 4.2: a record carries exactly one of these (or none, with a sum).
_VALUE_LABELS: Final = ("v", "vs", "vb", "vd")
_OTHER_VALUES: Final = frozenset(("vs", "vb", "vd"))
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")

# RFC 8428 section 4.5.1: the characters a resolved SenML name may use.
_SENML_NAME: Final = re.compile(r"[A-Za-z0-9][-:./A-Za-z0-9_]*")
_METRIC_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})"
)
# Epoch seconds beyond the year 5138 are almost always milliseconds.
_EPOCH_MILLISECONDS_HINT: Final = 1e11

_RECORD_FIELD: Final = "SenML record {} {}"

_JSON_TOP_LEVEL: Final = frozenset(("ts", "uid", "readings"))
_JSON_VALUE_KEYS: Final = frozenset(("v", "u"))
_STATUS_KEYS: Final = frozenset(("state", "ts", "battery", "rssi", "firmware"))


def sniff_format(payload: bytes) -> PayloadFormat:
    """Tell the three telemetry formats apart by their first significant byte.

    A JSON object is plain JSON, a JSON array is SenML JSON, and a CBOR array
    (major type 4) is SenML CBOR; no valid payload of one format starts like another.
    """
    text = payload.removeprefix(codecs.BOM_UTF8)
    for byte in text:
        if byte in b" \t\r\n":
            continue
        if byte == 0x7B:  # "{"
            return PayloadFormat.JSON
        if byte == 0x5B:  # "["
            return PayloadFormat.SENML_JSON
        if 0x80 <= byte <= 0x9F:
            return PayloadFormat.SENML_CBOR
        break
    raise DecodeError("payload is neither a JSON object, a SenML JSON array nor a SenML CBOR array")


def format_for_content_type(content_type: str) -> PayloadFormat:
    """Map a MIME content type (parameters ignored) to a payload format; DecodeError if unknown."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        return PayloadFormat(media_type)
    except ValueError:
        raise DecodeError(
            f"content type {content_type!r} is not one of "
            f"{', '.join(fmt.value for fmt in PayloadFormat)}"
        ) from None


def decode_telemetry(
    payload: bytes,
    device_uid: str,
    *,
    payload_format: PayloadFormat | None = None,
    now: datetime | None = None,
    limits: PayloadLimits = DEFAULT_LIMITS,
    claim_location: str = "topic",
) -> list[Reading]:
    """Decode a telemetry payload in ``payload_format``, or in the format its bytes show."""
    _check_size(payload, limits)
    chosen = payload_format or sniff_format(payload)
    if chosen is PayloadFormat.JSON:
        return decode_json(
            payload, device_uid, now=now, limits=limits, claim_location=claim_location
        )
    return _SENML_DECODERS[chosen](payload, device_uid, now=now, limits=limits)


def decode_json(
    payload: bytes,
    device_uid: str,
    *,
    now: datetime | None = None,
    limits: PayloadLimits = DEFAULT_LIMITS,
    claim_location: str = "topic",
) -> list[Reading]:
    """Decode the plain JSON format: ``{"ts": ..., "readings": {metric: value | {"v", "u"}}}``."""
    _check_size(payload, limits)
    document = _load_json(payload)
    if type(document) is not dict:
        raise DecodeError(f"JSON payload must be an object, not {json_type(document)}")
    if not _JSON_TOP_LEVEL.issuperset(document):
        unknown = document.keys() - _JSON_TOP_LEVEL
        raise DecodeError(f"unknown field(s) {_listing(unknown)}; allowed: ts, uid, readings")
    if "uid" in document:
        _check_claim(_string(document["uid"], '"uid"'), device_uid, claim_location)
    if "ts" not in document:
        raise DecodeError('missing time: "ts" (RFC 3339 or epoch seconds) is required')
    time = _parse_timestamp(document["ts"], _utc_now(now), limits)
    readings = document.get("readings")
    if type(readings) is not dict:
        if readings is None:
            raise DecodeError('"readings" is missing')
        raise DecodeError(f'"readings" must be an object, not {json_type(readings)}')
    if not readings:
        raise DecodeError('"readings" is empty')
    if len(readings) > limits.max_records:
        raise DecodeError(f"{len(readings)} readings exceed the limit of {limits.max_records}")
    decoded: list[Reading] = []
    for metric, entry in readings.items():
        _check_metric_name(metric)
        unit: str | None = None
        if type(entry) is dict:
            if not _JSON_VALUE_KEYS.issuperset(entry):
                unknown = entry.keys() - _JSON_VALUE_KEYS
                raise DecodeError(f"{metric}: unknown field(s) {_listing(unknown)}; allowed: v, u")
            if "v" not in entry:
                raise DecodeError(f'{metric}: "v" is missing')
            if "u" in entry:
                unit = _string(entry["u"], '{}: "u"', metric)
            entry = entry["v"]
        decoded.append(Reading(device_uid, metric, _number(entry, "{} value", metric), time, unit))
    return decoded


def decode_senml_json(
    payload: bytes,
    device_uid: str,
    *,
    now: datetime | None = None,
    limits: PayloadLimits = DEFAULT_LIMITS,
) -> list[Reading]:
    """Decode a SenML JSON pack (application/senml+json) into readings named by SenML name.

    The pack is checked against RFC 8428 (structure, version, values, name characters);
    what its names mean (which device, which metric) is the hub's question.
    """
    _check_size(payload, limits)
    pack = _load_json(payload, senml=True)
    if not isinstance(pack, list):
        raise DecodeError(f"SenML JSON must be an array of records, not {json_type(pack)}")
    for index, record in enumerate(pack):
        if type(record) is not dict:
            raise DecodeError(f"SenML record {index} must be an object, not {json_type(record)}")
    return _resolve_pack(pack, device_uid, _utc_now(now), limits, binary=False)


def decode_senml_cbor(
    payload: bytes,
    device_uid: str,
    *,
    now: datetime | None = None,
    limits: PayloadLimits = DEFAULT_LIMITS,
) -> list[Reading]:
    """Decode a SenML CBOR pack (application/senml+cbor, integer labels)."""
    _check_size(payload, limits)
    stream = io.BytesIO(payload)
    try:
        pack = cbor2.CBORDecoder(stream).decode()
    except Exception as error:  # cbor2 raises a variety of types on hostile input
        raise DecodeError(f"invalid CBOR: {error}") from None
    if stream.tell() != len(payload):
        raise DecodeError(f"{len(payload) - stream.tell()} bytes after the CBOR data item")
    if not isinstance(pack, list):
        raise DecodeError(f"SenML CBOR must be an array of records, not {type(pack).__name__}")
    records: list[Mapping[str, Any]] = []
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            raise DecodeError(f"SenML record {index} must be a map, not {type(record).__name__}")
        records.append(_cbor_record(record, index))
    return _resolve_pack(records, device_uid, _utc_now(now), limits, binary=True)


class _Decoder(Protocol):
    def __call__(
        self,
        payload: bytes,
        device_uid: str,
        *,
        now: datetime | None,
        limits: PayloadLimits,
    ) -> list[Reading]: ...


_SENML_DECODERS: Final[Mapping[PayloadFormat, _Decoder]] = {
    PayloadFormat.SENML_JSON: decode_senml_json,
    PayloadFormat.SENML_CBOR: decode_senml_cbor,
}


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a status message says: connectivity, and battery/RSSI when the device sends them."""

    connected: bool
    time: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)
    readings: list[Reading] = field(default_factory=list)


def decode_status(
    payload: bytes,
    device_uid: str,
    *,
    now: datetime | None = None,
    limits: PayloadLimits = DEFAULT_LIMITS,
) -> StatusReport | None:
    """Decode a status message: ``online``, ``offline`` or a JSON object.

    None for an empty payload, which is how a retained status is cleared.
    """
    _check_size(payload, limits)
    clock = _utc_now(now)
    text = payload.strip()
    if not text:
        return None
    word = text.lower()
    if word in (b"online", b"offline"):
        return StatusReport(connected=word == b"online", time=clock)
    if not text.startswith(b"{"):
        raise DecodeError("status must be 'online', 'offline' or a JSON object")
    document = _load_json(text)
    if not isinstance(document, dict):
        raise DecodeError("status must be 'online', 'offline' or a JSON object")
    unknown = document.keys() - _STATUS_KEYS
    if unknown:
        raise DecodeError(
            f"unknown status field(s) {_listing(unknown)}; allowed: {_listing(_STATUS_KEYS)}"
        )
    state = document.get("state")
    if state not in ("online", "offline"):
        raise DecodeError(f'status "state" must be "online" or "offline", not {state!r}')
    time = _parse_timestamp(document["ts"], clock, limits) if "ts" in document else clock
    detail: dict[str, Any] = {}
    readings: list[Reading] = []
    for metric in ("battery", "rssi"):
        if metric in document:
            value = _number(document[metric], "status {}", metric)
            detail[metric] = value
            readings.append(Reading(device_uid, metric, value, time))
    if "firmware" in document:
        detail["firmware"] = _string(document["firmware"], 'status "firmware"')
    return StatusReport(state == "online", time, detail, readings)


def _resolve_pack(
    records: list[Mapping[str, Any]],
    device_uid: str,
    now: datetime,
    limits: PayloadLimits,
    *,
    binary: bool,
) -> list[Reading]:
    """Resolve base fields into each record (RFC 8428 section 4.6) and build readings."""
    if not records:
        raise DecodeError("SenML pack is empty")
    if len(records) > limits.max_records:
        raise DecodeError(f"{len(records)} SenML records exceed the limit of {limits.max_records}")
    base_name = ""
    base_time = 0.0
    base_unit: str | None = None
    base_value = 0.0
    times: dict[float, datetime] = {}
    decoded: list[Reading] = []
    version = SENML_VERSION
    for index, record in enumerate(records):
        if not _SENML_LABELS.issuperset(record):
            _check_extension_labels(record, index)
        if not _BASE_LABELS.isdisjoint(record):
            if "bver" in record:
                version = _check_version(record["bver"], index, version)
            if "bn" in record:
                base_name = _string(record["bn"], _RECORD_FIELD, index, "bn")
            if "bt" in record:
                base_time = _number(record["bt"], _RECORD_FIELD, index, "bt")
            if "bu" in record:
                base_unit = _string(record["bu"], _RECORD_FIELD, index, "bu")
            if "bv" in record:
                base_value = _number(record["bv"], _RECORD_FIELD, index, "bv")
        name = (
            base_name + _string(record["n"], _RECORD_FIELD, index, "n")
            if "n" in record
            else base_name
        )
        if "v" in record and _OTHER_VALUES.isdisjoint(record):
            # The common record: one numeric value.
            number = _number(record["v"], _RECORD_FIELD, index, "v")
            if base_value:
                number += base_value
                if not math.isfinite(number):
                    raise DecodeError(f"SenML record {index} ({name}): v + bv overflows")
            value: float | str | bool | bytes = number
        else:
            values = [label for label in _VALUE_LABELS if label in record]
            only_base = not values and "n" not in record and "s" not in record
            if only_base and not _BASE_LABELS.isdisjoint(record):
                continue  # a record that only sets base fields yields no measurement
            if len(values) > 1:
                raise DecodeError(
                    f"SenML record {index} ({name}) carries {' and '.join(values)}; "
                    "a record has exactly one value field (RFC 8428 section 4.2)"
                )
            if not name:
                raise DecodeError("SenML record has no name (neither bn nor n)")
            if not values:
                _raise_missing_value(record, index, name)
            value = _other_value(record, values[0], index, binary)
        if not name:
            raise DecodeError("SenML record has no name (neither bn nor n)")
        _check_senml_name(name)
        unit = _string(record["u"], _RECORD_FIELD, index, "u") if "u" in record else base_unit
        if "t" in record:
            resolved = base_time + _number(record["t"], _RECORD_FIELD, index, "t")
        else:
            resolved = base_time
        time = times.get(resolved)
        if time is None:
            time = times[resolved] = _senml_time(resolved, now, limits, index)
        decoded.append(Reading(device_uid, name, value, time, unit, True))  # senml
    if not decoded:
        raise DecodeError("SenML pack carries no measurement, only base fields")
    return decoded


def _check_extension_labels(record: Mapping[str, Any], index: int) -> None:
    """RFC 8428 section 4.4: unknown labels are ignored unless they end in '_' (must understand)."""
    for label in record:
        if label.endswith("_"):
            raise DecodeError(
                f"SenML record {index}: must-understand field {label!r} is not supported"
            )


def _check_version(version: object, index: int, pack_version: int) -> int:
    """The pack's version after record ``index`` sets ``bver``.

    RFC 8428 section 4.4: every record of a pack has the same version; records
    before the first ``bver`` have the default, 10.
    """
    if type(version) is not int or version > SENML_VERSION:
        raise DecodeError(
            f"SenML record {index}: base version {version!r} is not supported "
            f"(up to {SENML_VERSION})"
        )
    if index > 0 and version != pack_version:
        raise DecodeError(
            f"SenML record {index}: base version {version} differs from the pack's "
            f"{pack_version}; all records of a pack have one version (RFC 8428 section 4.4)"
        )
    return version


def _raise_missing_value(record: Mapping[str, Any], index: int, name: str) -> NoReturn:
    if "s" in record:
        raise DecodeError(f"SenML record {index} ({name}): sums (s) are not stored, only values")
    raise DecodeError(f"SenML record {index} ({name}) has no value")


def _other_value(
    record: Mapping[str, Any], label: str, index: int, binary: bool
) -> str | bool | bytes:
    """The string, boolean or data value of a record (RFC 8428 section 4.2)."""
    raw = record[label]
    if label == "vs":
        return _string(raw, _RECORD_FIELD, index, "vs")
    if label == "vb":
        if type(raw) is not bool:
            raise DecodeError(f"SenML record {index} vb must be a boolean, not {json_type(raw)}")
        return raw
    # vd: a CBOR byte string, or in JSON base64url without padding (RFC 8428 section 5).
    if binary:
        if type(raw) is not bytes:
            raise DecodeError(
                f"SenML record {index} vd must be a byte string, not {type(raw).__name__}"
            )
        return raw
    text = _string(raw, _RECORD_FIELD, index, "vd")
    if _BASE64URL.fullmatch(text) is None:
        raise DecodeError(f"SenML record {index} vd is not base64url (RFC 4648 section 5)")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=8192)
def _check_senml_name(name: str) -> None:
    """RFC 8428 section 4.5.1: the characters a resolved name may use."""
    if _SENML_NAME.fullmatch(name) is None:
        raise DecodeError(f"SenML name {name!r} has characters RFC 8428 forbids")


def _senml_time(resolved: float, now: datetime, limits: PayloadLimits, index: int) -> datetime:
    if resolved < SENML_RELATIVE_TIME_LIMIT:
        _check_window(resolved, resolved, limits, f"SenML record {index} relative time")
        return now + timedelta(seconds=resolved)
    _check_window(resolved, resolved - now.timestamp(), limits, f"SenML record {index} time")
    return datetime.fromtimestamp(resolved, UTC)


def _cbor_record(record: Mapping[object, Any], index: int) -> dict[str, Any]:
    translated: dict[str, Any] = {}
    for key, value in record.items():
        if type(key) is int:
            label = _CBOR_LABELS.get(key)
            if label is None:
                continue  # integer labels are all assigned by RFC 8428; none are extensions
        elif isinstance(key, str):
            if key in _SENML_LABELS:
                raise DecodeError(f"SenML record {index}: CBOR uses integer labels, not {key!r}")
            label = key
        else:
            raise DecodeError(f"SenML record {index}: label of type {type(key).__name__}")
        translated[label] = value
    return translated


def _check_claim(claimed: str, device_uid: str, claim_location: str) -> None:
    if claimed == device_uid:
        return
    parts = claimed.split(":", 3)
    if len(parts) == 4 and parts[:2] == ["urn", "dev"] and parts[2] and parts[3] == device_uid:
        return
    raise DecodeError(
        f"payload claims device {claimed!r} on device {device_uid!r}'s {claim_location}"
    )


@functools.lru_cache(maxsize=1024)
def _check_metric_name(metric: str) -> None:
    if _METRIC_NAME.fullmatch(metric) is None:
        raise DecodeError(
            f"metric name {metric!r} is not lower-case letters, digits and '_' (e.g. pm2_5)"
        )


def _parse_timestamp(raw: object, now: datetime, limits: PayloadLimits) -> datetime:
    if isinstance(raw, str):
        if _RFC3339.fullmatch(raw) is None:
            raise DecodeError(f"time {raw!r} is not RFC 3339 (e.g. 2025-03-01T07:30:00+07:00)")
        try:
            parsed = datetime.fromisoformat(raw.upper())
        except ValueError as error:
            raise DecodeError(f"time {raw!r} is not a valid date: {error}") from None
        _check_window(raw, (parsed - now).total_seconds(), limits, "time")
        return parsed.astimezone(UTC)
    seconds = _number(raw, "time")
    _check_window(raw, seconds - now.timestamp(), limits, "time")
    return datetime.fromtimestamp(seconds, UTC)


def _check_window(raw: object, ahead_seconds: float, limits: PayloadLimits, what: str) -> None:
    if ahead_seconds > limits.max_future.total_seconds():
        hint = ""
        if isinstance(raw, int | float) and raw > _EPOCH_MILLISECONDS_HINT:
            hint = "; epoch time is in seconds, not milliseconds"
        raise DecodeError(
            f"{what} {raw!r} is {_duration(ahead_seconds)} in the future "
            f"(at most {limits.max_future} allowed){hint}"
        )
    if -ahead_seconds > limits.max_age.total_seconds():
        raise DecodeError(
            f"{what} {raw!r} is {_duration(-ahead_seconds)} old (at most {limits.max_age} allowed)"
        )


def _duration(seconds: float) -> str:
    if seconds >= timedelta.max.total_seconds():
        return f"{seconds:.3g} s"
    return str(timedelta(seconds=round(seconds)))


def _number(raw: object, what: str, *context: object) -> float:
    """``raw`` as a finite float; ``what`` is formatted with ``context`` only for the error."""
    kind = type(raw)
    if kind is float:
        value: float = raw  # type: ignore[assignment]
    elif kind is int or kind is Decimal:  # CBOR may carry decimal fractions (RFC 8428 section 6)
        try:
            value = float(raw)  # type: ignore[arg-type]
        except OverflowError:
            raise DecodeError(f"{what.format(*context)} {raw} is too large") from None
    else:
        raise DecodeError(f"{what.format(*context)} must be a number, not {json_type(raw)}")
    if value - value != 0.0:  # NaN or infinite
        raise DecodeError(f"{what.format(*context)} is {raw}, not a finite number")
    return value


def _string(raw: object, what: str, *context: object) -> str:
    if type(raw) is not str:
        raise DecodeError(f"{what.format(*context)} must be a string, not {json_type(raw)}")
    return raw


def _load_json(payload: bytes, *, senml: bool = False) -> object:
    """Parse one JSON document; duplicate keys, NaN and Infinity are refused.

    A UTF-8 byte-order mark before the document is skipped: RFC 8259 section 8.1
    lets a parser ignore one, and firmware built on Windows tool chains writes it.
    SenML JSON numbers must also follow RFC 8428 section 5: a lower-case exponent.
    """
    try:
        text = payload.decode("utf-8").removeprefix("\ufeff")
        start = len(text) - len(text.lstrip()) if text[:1].isspace() else 0
        # Only a payload with an "E" somewhere needs the slower strict-number parser.
        decoder = _SENML_JSON if senml and "E" in text else _JSON
        document, end = decoder.raw_decode(text, start)
        if end != len(text) and not text[end:].isspace():
            raise DecodeError(f"invalid JSON: extra data after position {end}")
        return document
    except RecursionError:
        raise DecodeError("invalid JSON: nested too deeply") from None
    except UnicodeDecodeError as error:
        raise DecodeError(f"invalid JSON: not UTF-8 ({error.reason})") from None
    except ValueError as error:
        if isinstance(error, DecodeError):
            raise
        raise DecodeError(f"invalid JSON: {error}") from None


def _reject_constant(name: str) -> object:
    raise DecodeError(f"{name} is not a finite number (JSON has no {name})")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise DecodeError(f"invalid JSON: duplicate key {repeated_key(pairs)!r}")
    return document


def _strict_number(text: str) -> float:
    if "E" in text:
        raise DecodeError(
            f"number {text} has an upper-case exponent; SenML JSON writes 'e' (RFC 8428 section 5)"
        )
    return float(text)


_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
_SENML_JSON: Final = json.JSONDecoder(
    parse_constant=_reject_constant, object_pairs_hook=_unique_keys, parse_float=_strict_number
)


def _check_size(payload: bytes, limits: PayloadLimits) -> None:
    if len(payload) > limits.max_bytes:
        raise DecodeError(
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_bytes}"
        )


def _utc_now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _listing(names: Iterable[object]) -> str:
    return ", ".join(repr(name) for name in sorted(map(str, names)))
