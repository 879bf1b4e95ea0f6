"""The metric catalog: units, conversions and valid ranges."""

from __future__ import annotations

import math

import pytest

from hub.telemetry.catalog import METRICS, CatalogError, Metric, accepted_units, normalise


def test_catalog_covers_the_vn_aqi_pollutants_in_micrograms() -> None:
    for name in ("pm2_5", "pm10", "o3", "co", "no2", "so2"):
        assert METRICS[name].unit == "µg/m³"


def test_catalog_units_of_the_other_metrics() -> None:
    units = {name: metric.unit for name, metric in METRICS.items()}
    assert units["temperature"] == "°C"
    assert units["humidity"] == "%"
    assert units["noise"] == "dBA"
    assert units["water_level"] == "cm"
    assert units["rainfall"] == "mm"
    assert units["battery"] == "%"
    assert units["rssi"] == "dBm"


def test_metrics_are_immutable() -> None:
    with pytest.raises(AttributeError):
        METRICS["pm2_5"].max_value = 5.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        METRICS["extra"] = Metric("extra", "x", 0, 1, "")  # type: ignore[index]


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        ("pm2_5", 35.2, None, 35.2),
        ("pm2_5", 35.2, "ug/m3", 35.2),
        ("pm10", 0.05, "mg/m3", 50.0),
        ("pm10", 42.0, "µg/m³", 42.0),
        ("pm10", 42.0, "μg/m3", 42.0),  # Greek mu instead of the micro sign
        ("temperature", 88.1, "degF", 31.1667),
        ("temperature", 32.0, "°F", 0.0),
        ("temperature", 300.15, "K", 27.0),
        ("temperature", 27.0, "Cel", 27.0),
        ("humidity", 81.0, "%RH", 81.0),
        ("humidity", 0.81, "/", 81.0),
        ("battery", 64.0, "%EL", 64.0),
        ("rssi", -71.0, "dBm", -71.0),
        ("rssi", -101.0, "dBW", -71.0),
        ("water_level", 1.25, "m", 125.0),
        ("water_level", 450.0, "mm", 45.0),
        ("rainfall", 1.2, "cm", 12.0),
        ("noise", 63.0, "dB(A)", 63.0),
    ],
)
def test_normalise_converts_to_the_catalog_unit(
    metric: str, value: float, unit: str | None, expected: float
) -> None:
    converted, canonical = normalise(metric, value, unit)
    assert converted == pytest.approx(expected, abs=1e-3)
    assert canonical == METRICS[metric].unit


@pytest.mark.parametrize(
    ("metric", "unit", "value", "micrograms"),
    [
        # 25 °C, 1 atm: µg/m³ = ppb × M / 24.465
        ("co", "ppm", 1.0, 1144.9),
        ("no2", "ppb", 100.0, 188.0),
        ("so2", "ppb", 10.0, 26.19),
        ("o3", "ppb", 50.0, 98.09),
        ("o3", "ppm", 0.05, 98.09),
    ],
)
def test_mixing_ratios_become_mass_concentrations(
    metric: str, unit: str, value: float, micrograms: float
) -> None:
    converted, _ = normalise(metric, value, unit)
    assert converted == pytest.approx(micrograms, rel=1e-3)


def test_particles_have_no_mixing_ratio() -> None:
    with pytest.raises(CatalogError, match=r"pm2_5: unit 'ppm' is not accepted"):
        normalise("pm2_5", 10.0, "ppm")


def test_senml_symbols_that_mean_something_else_are_refused() -> None:
    # "C" is coulomb and "F" farad in the SenML registry, never a temperature.
    for unit in ("C", "F"):
        with pytest.raises(CatalogError, match="not accepted"):
            normalise("temperature", 20.0, unit)


def test_unknown_metric_is_named() -> None:
    with pytest.raises(CatalogError, match=r"unknown metric 'pm25'"):
        normalise("pm25", 10.0, None)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(value: float) -> None:
    with pytest.raises(CatalogError, match="not a finite number"):
        normalise("humidity", value, None)


def test_huge_integer_is_refused_not_overflowed() -> None:
    with pytest.raises(CatalogError, match="not a finite number"):
        normalise("humidity", 10**400, None)


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(CatalogError, match="not a number"):
        normalise("battery", True, None)


def test_out_of_range_message_names_metric_value_and_range() -> None:
    with pytest.raises(CatalogError) as raised:
        normalise("humidity", 104.0, None)
    assert str(raised.value) == "humidity: 104 is outside the valid range 0..100 %"


def test_range_is_checked_after_conversion() -> None:
    with pytest.raises(CatalogError) as raised:
        normalise("temperature", 500.0, "K")
    message = str(raised.value)
    assert "temperature: 500 K is outside the valid range -40..85 °C" in message
    assert "226.85" in message


def test_range_bounds_are_inclusive() -> None:
    for name, metric in METRICS.items():
        assert normalise(name, metric.min_value, None)[0] == metric.min_value
        assert normalise(name, metric.max_value, None)[0] == metric.max_value


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)


def test_every_metric_accepts_its_own_unit() -> None:
    for name, metric in METRICS.items():
        assert metric.unit in accepted_units(name)
        assert metric.min_value < metric.max_value
