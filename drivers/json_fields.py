"""What the device protocols' JSON decoders share: naming a value's JSON type in an error,
and finding a repeated key (RFC 8259 section 4: with repeated names, receivers disagree on
the value, so both the sensor payloads and the speaker protocol refuse them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def json_type(value: object) -> str:
    """ "a string", "an array", ...: the JSON type of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def repeated_key(pairs: list[tuple[str, Any]]) -> str | None:
    """The first key that an object's (key, value) pairs name twice, if any."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None
