"""The metric catalog: every metric the hub stores, its unit, valid range and accepted units."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "METRICS",
    "CatalogError",
    "Metric",
    "accepted_units",
    "normalise",
]


class CatalogError(ValueError):
    """A value the catalog cannot accept: unknown metric or unit, not finite, or out of range."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    min_value: float
    max_value: float
    description: str


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
)

METRICS: Mapping[str, Metric] = MappingProxyType({metric.name: metric for metric in _METRICS})

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
}


def accepted_units(metric: str) -> frozenset[str]:
    """The unit spellings ``normalise`` accepts for ``metric``."""
    return frozenset(_ACCEPTED_UNITS[_metric(metric).name])


def normalise(metric: str, value: float, unit: str | None) -> tuple[float, str]:
    """Convert ``value`` in ``unit`` to the catalog unit of ``metric`` and check its range.

    A missing unit means the catalog unit. Raises CatalogError for an unknown
    metric or unit, a value that is not a finite number, or one outside the
    metric's valid range.
    """
    definition = _metric(metric)
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


def _metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise CatalogError(
            f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})"
        ) from None
