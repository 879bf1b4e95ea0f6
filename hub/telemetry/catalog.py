"""The metric catalog: every metric the hub stores, its unit, valid range and accepted units."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CATALOG",
    "METRICS",
    "RAW_PREFIX",
    "CatalogError",
    "Metric",
    "Value",
    "ValueKind",
    "accepted_units",
    "normalise",
]

# A reading's value: a number (SenML "v"), or a string, boolean or bytes (RFC 8428
# section 4.2: "vs", "vb", "vd") for the metrics whose catalog entry takes one.
Value = float | str | bool | bytes
ValueKind = Literal["number", "string", "boolean", "data"]
# Readings kept under a device's own names when its profile says so (raw/<name>).
RAW_PREFIX = "raw/"


class CatalogError(ValueError):
    """A value the catalog cannot accept: unknown metric or unit, not finite, or out of range."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    min_value: float
    max_value: float
    description: str
    kind: ValueKind = "number"


MICROGRAMS_PER_M3 = "µg/m³"
CELSIUS = "°C"
PERCENT = "%"

# Molar volume of an ideal gas at 25 °C and 1 atm, in litres: the reference
# conditions of Vietnam's QCVN 05:2023/BTNMT and of the US EPA conversions.
MOLAR_VOLUME_L = 8.314462618 * 298.15 / 101_325 * 1000

# g/mol, for converting mixing ratios (ppm, ppb) into mass concentrations.
MOLAR_MASS = {"o3": 47.997, "co": 28.010, "no2": 46.0055, "so2": 64.066}

_METRICS: tuple[Metric, ...] = (
    Metric("pm2_5", MICROGRAMS_PER_M3, 0.0, 1000.0, "fine particulate matter, diameter ≤ 2.5 µm"),
    Metric("pm10", MICROGRAMS_PER_M3, 0.0, 2000.0, "particulate matter, diameter ≤ 10 µm"),
    Metric("o3", MICROGRAMS_PER_M3, 0.0, 2000.0, "ozone"),
    Metric("co", MICROGRAMS_PER_M3, 0.0, 150_000.0, "carbon monoxide"),
    Metric("no2", MICROGRAMS_PER_M3, 0.0, 10_000.0, "nitrogen dioxide"),
    Metric("so2", MICROGRAMS_PER_M3, 0.0, 10_000.0, "sulphur dioxide"),
    Metric("temperature", CELSIUS, -40.0, 85.0, "air temperature"),
    Metric("humidity", PERCENT, 0.0, 100.0, "relative humidity"),
    Metric("noise", "dBA", 10.0, 150.0, "A-weighted equivalent sound level"),
    Metric("water_level", "cm", -500.0, 3000.0, "water level above the station's datum"),
    Metric("rainfall", "mm", 0.0, 500.0, "rain fallen since the previous reading"),
    Metric("battery", PERCENT, 0.0, 100.0, "remaining battery charge"),
    Metric("rssi", "dBm", -150.0, 0.0, "received radio signal strength"),
    Metric("pressure", "hPa", 300.0, 1100.0, "barometric air pressure"),
    Metric("illuminance", "lx", 0.0, 200_000.0, "illuminance"),
    Metric("voltage", "V", 0.0, 1000.0, "supply or battery voltage"),
    Metric("current", "A", 0.0, 100.0, "supply current"),
    Metric("power", "W", 0.0, 100_000.0, "electrical power drawn"),
)

# Metrics whose values are not numbers: stored as they are, never converted or ranged.
_VALUE_METRICS: tuple[Metric, ...] = (
    Metric("door_open", "", 0, 0, "door or cabinet contact: true while open", "boolean"),
    Metric("device_state", "", 0, 0, "a state the device reports in words", "string"),
    Metric("tag_data", "", 0, 0, "bytes a reader scanned (NFC or RFID tag)", "data"),
)

# Numeric metrics: what series, rollups, alerts and the AQI work with.
METRICS: Mapping[str, Metric] = MappingProxyType({metric.name: metric for metric in _METRICS})
# Every metric the hub stores, numeric or not.
CATALOG: Mapping[str, Metric] = MappingProxyType(
    {metric.name: metric for metric in (*_METRICS, *_VALUE_METRICS)}
)

Conversion = Callable[[float], float]


def _scale(factor: float) -> Conversion:
    return lambda value: value * factor


def _identity(value: float) -> float:
    return value


def _fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _kelvin_to_celsius(value: float) -> float:
    return value - 273.15


def _dbw_to_dbm(value: float) -> float:
    return value + 30.0


# Spellings of the catalog units, including the SenML symbols (RFC 8428, RFC 8798)
# and the micro sign / Greek mu confusion of hand-written firmware.
_MASS_CONCENTRATION: dict[str, Conversion] = {
    **dict.fromkeys(
        ("µg/m³", "μg/m³", "µg/m3", "μg/m3", "ug/m3", "ug/m³", "ug/m^3"),
        _identity,
    ),
    **dict.fromkeys(("mg/m³", "mg/m3", "mg/m^3"), _scale(1e3)),
    "kg/m3": _scale(1e9),
}


def _gas_units(metric: str) -> dict[str, Conversion]:
    micrograms_per_ppb = MOLAR_MASS[metric] / MOLAR_VOLUME_L
    return {
        **_MASS_CONCENTRATION,
        "ppb": _scale(micrograms_per_ppb),
        "ppm": _scale(micrograms_per_ppb * 1e3),
    }


_PERCENT_UNITS: dict[str, Conversion] = {"%": _identity, "/100": _identity, "/": _scale(100.0)}

_ACCEPTED_UNITS: Mapping[str, Mapping[str, Conversion]] = {
    "pm2_5": _MASS_CONCENTRATION,
    "pm10": _MASS_CONCENTRATION,
    **{gas: _gas_units(gas) for gas in MOLAR_MASS},
    "temperature": {
        **dict.fromkeys(("°C", "Cel", "degC", "℃"), _identity),
        **dict.fromkeys(("°F", "degF", "℉"), _fahrenheit_to_celsius),
        "K": _kelvin_to_celsius,
    },
    "humidity": {**_PERCENT_UNITS, "%RH": _identity},
    # SenML "dB" carries no weighting; sensors on this contract report A-weighted levels.
    "noise": dict.fromkeys(("dBA", "dB(A)", "dB"), _identity),
    "water_level": {"cm": _identity, "m": _scale(100.0), "mm": _scale(0.1)},
    "rainfall": {"mm": _identity, "cm": _scale(10.0), "m": _scale(1000.0)},
    "battery": {**_PERCENT_UNITS, "%EL": _identity},
    "rssi": {"dBm": _identity, "dBW": _dbw_to_dbm},
    # SenML units registry (RFC 8428 section 12.1) and secondary units (RFC 8798).
    "pressure": {"hPa": _identity, "Pa": _scale(0.01), "kPa": _scale(10.0), "bar": _scale(1e3)},
    "illuminance": {"lx": _identity},
    "voltage": {"V": _identity, "mV": _scale(1e-3)},
    "current": {"A": _identity, "mA": _scale(1e-3)},
    "power": {"W": _identity, "kW": _scale(1e3), "mW": _scale(1e-3)},
}

_VALUE_TYPES: Mapping[ValueKind, type] = {"string": str, "boolean": bool, "data": bytes}


def accepted_units(metric: str) -> frozenset[str]:
    """The unit spellings ``normalise`` accepts for ``metric``."""
    return frozenset(_ACCEPTED_UNITS.get(_metric(metric).name, ()))


def normalise(metric: str, value: Value, unit: str | None) -> tuple[Value, str]:
    """Convert ``value`` in ``unit`` to the catalog unit of ``metric`` and check its range.

    A missing unit means the catalog unit. Raises CatalogError for an unknown
    metric or unit, a value that is not a finite number, or one outside the
    metric's valid range. A metric of another kind takes a value of that kind
    (string, boolean, bytes) and no unit.
    """
    definition = _metric(metric)
    if definition.kind != "number":
        return _normalise_value(definition, value, unit)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogError(f"{metric}: value {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise CatalogError(f"{metric}: value {value} is not a finite number") from None
    if not math.isfinite(number):
        raise CatalogError(f"{metric}: value {value} is not a finite number")
    conversions = _ACCEPTED_UNITS[definition.name]
    if unit is None:
        converted = number
    else:
        try:
            converted = conversions[unit](number)
        except KeyError:
            accepted = ", ".join(sorted(conversions))
            raise CatalogError(
                f"{metric}: unit {unit!r} is not accepted (accepted: {accepted})"
            ) from None
    if not definition.min_value <= converted <= definition.max_value:
        given = f"{number:g}" if unit is None else f"{number:g} {unit}"
        message = (
            f"{metric}: {given} is outside the valid range "
            f"{definition.min_value:g}..{definition.max_value:g} {definition.unit}"
        )
        if unit not in (None, definition.unit):
            message += f" (= {converted:g} {definition.unit})"
        raise CatalogError(message)
    return converted, definition.unit


def _normalise_value(definition: Metric, value: Value, unit: str | None) -> tuple[Value, str]:
    expected = _VALUE_TYPES[definition.kind]
    if type(value) is not expected:
        raise CatalogError(
            f"{definition.name}: takes a {definition.kind} value, not {type(value).__name__}"
        )
    if unit is not None:
        raise CatalogError(f"{definition.name}: a {definition.kind} value has no unit ({unit!r})")
    if isinstance(value, str | bytes) and len(value) > MAX_VALUE_BYTES:
        raise CatalogError(f"{definition.name}: value longer than {MAX_VALUE_BYTES} bytes")
    return value, definition.unit


# A string or data value longer than this is refused rather than stored.
MAX_VALUE_BYTES = 1024


def _metric(name: str) -> Metric:
    try:
        return CATALOG[name]
    except KeyError:
        raise CatalogError(
            f"unknown metric {name!r} (known: {', '.join(sorted(CATALOG))})"
        ) from None
