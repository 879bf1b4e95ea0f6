"""The simulated Hải Phòng environment: daily rhythms, rain, determinism, and valid payloads."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, date, datetime, timedelta

import pytest

from drivers.contract import DecodeError
from drivers.sensors.payloads import decode_telemetry
from drivers.sensors.simulator import (
    AIR_METRICS,
    HYDRO_METRICS,
    LOCAL_TIME,
    HaiPhongEnvironment,
    PayloadStyle,
    SensorSimulator,
    SimulatedSensor,
    Transport,
    default_fleet,
    encode_telemetry,
    malformed_payload,
)
from hub.devices import NATIVE, DeviceIdentity
from hub.telemetry.catalog import normalise
from hub.telemetry.names import DeviceNames

AIR = SimulatedSensor("hp-aq-0001", "Lê Chân", 20.8449, 106.6881)
GAUGE = SimulatedSensor("hp-wl-0001", "Lê Chân", 20.8449, 106.6881, HYDRO_METRICS)


def local(day: date, hour: float) -> datetime:
    midnight = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TIME)
    return (midnight + timedelta(hours=hour)).astimezone(UTC)


def mean_at(environment: HaiPhongEnvironment, metric: str, hour: float, days: list[date]) -> float:
    rng = random.Random(0)
    return statistics.fmean(
        environment.sample(AIR, local(day, hour), local(day, hour - 0.25), rng)[metric]
        for day in days
    )


DRY_WEEKDAYS = [date(2025, 1, day) for day in range(6, 11)] + [
    date(2025, 1, day) for day in range(13, 18)
]


def test_pm2_5_peaks_at_rush_hours_and_is_lowest_at_night() -> None:
    environment = HaiPhongEnvironment(seed=3)
    at = {hour: mean_at(environment, "pm2_5", hour, DRY_WEEKDAYS) for hour in (3, 8, 13, 18)}
    assert at[8] > at[13] > at[3]
    assert at[18] > at[13]
    # Hải Phòng winter levels: rush hours around 60-75 µg/m³, nights around 25-35.
    assert 50 < at[8] < 90
    assert 15 < at[3] < 40


def test_winter_is_more_polluted_than_summer() -> None:
    environment = HaiPhongEnvironment(seed=3)
    july = [date(2025, 7, day) for day in range(7, 12)]
    assert mean_at(environment, "pm2_5", 8, DRY_WEEKDAYS) > 1.5 * mean_at(
        environment, "pm2_5", 8, july
    )


def test_noise_follows_traffic() -> None:
    environment = HaiPhongEnvironment(seed=3)
    assert (
        mean_at(environment, "noise", 8, DRY_WEEKDAYS)
        > mean_at(environment, "noise", 2, DRY_WEEKDAYS) + 15
    )


def test_temperature_and_humidity_follow_the_day_and_season() -> None:
    environment = HaiPhongEnvironment(seed=3)
    afternoon = mean_at(environment, "temperature", 14, DRY_WEEKDAYS)
    dawn = mean_at(environment, "temperature", 5, DRY_WEEKDAYS)
    assert afternoon - dawn > 5
    assert mean_at(environment, "humidity", 5, DRY_WEEKDAYS) > mean_at(
        environment, "humidity", 14, DRY_WEEKDAYS
    )
    july = [date(2025, 7, day) for day in range(7, 12)]
    assert mean_at(environment, "temperature", 14, july) > afternoon + 8


def test_ozone_peaks_in_the_early_afternoon() -> None:
    environment = HaiPhongEnvironment(seed=3)
    profile = {hour: mean_at(environment, "o3", hour, DRY_WEEKDAYS) for hour in range(0, 24, 2)}
    assert max(profile, key=profile.__getitem__) in (12, 14)


def rainy_day(environment: HaiPhongEnvironment) -> date:
    for offset in range(120):
        day = date(2025, 6, 1) + timedelta(days=offset)
        if max(environment.rain_rate(GAUGE.ward, local(day, hour / 4)) for hour in range(96)) > 5:
            return day
    raise AssertionError("no storm in four wet-season months")


def test_rain_raises_rainfall_then_water_level_with_a_lag() -> None:
    environment = HaiPhongEnvironment(seed=3)
    day = rainy_day(environment)
    dry_ward = next(
        f"dry-{index}"
        for index in range(100)
        if not any(
            environment.rain_rate(f"dry-{index}", local(day + timedelta(days=shift), hour))
            for shift in (-1, 0, 1)
            for hour in range(24)
        )
    )
    # The same gauge (same datum and tide) under a dry sky isolates the runoff.
    dry_gauge = SimulatedSensor(GAUGE.uid, dry_ward, GAUGE.lat, GAUGE.lon, HYDRO_METRICS)
    rng = random.Random(0)
    moments = [local(day, quarter / 4) for quarter in range(36 * 4)]
    rainfall = [
        environment.sample(GAUGE, moment, moment - timedelta(minutes=15), rng)["rainfall"]
        for moment in moments
    ]
    runoff = [
        environment.water_level(GAUGE, moment) - environment.water_level(dry_gauge, moment)
        for moment in moments
    ]
    rain_peak = max(range(len(moments)), key=rainfall.__getitem__)
    level_peak = max(range(len(moments)), key=runoff.__getitem__)
    assert rainfall[rain_peak] > 0
    assert runoff[max(rain_peak - 4, 0)] < runoff[level_peak] - 5  # a rise of several centimetres
    assert 30 <= (level_peak - rain_peak) * 15 <= 4 * 60  # minutes of lag


def test_rainfall_comes_in_tipping_bucket_steps() -> None:
    environment = HaiPhongEnvironment(seed=3)
    day = rainy_day(environment)
    rng = random.Random(0)
    for quarter in range(96):
        moment = local(day, quarter / 4)
        fallen = environment.sample(GAUGE, moment, moment - timedelta(minutes=15), rng)["rainfall"]
        assert round(fallen / 0.2, 6) == round(fallen / 0.2)


def test_same_seed_same_values_other_seed_other_values() -> None:
    moment = local(date(2025, 3, 3), 8)
    first = HaiPhongEnvironment(seed=11).sample(AIR, moment, moment, random.Random(1))
    again = HaiPhongEnvironment(seed=11).sample(AIR, moment, moment, random.Random(1))
    other = HaiPhongEnvironment(seed=12).sample(AIR, moment, moment, random.Random(1))
    assert first == again
    assert first != other


@pytest.mark.parametrize("month", range(1, 13))
def test_every_simulated_value_is_within_the_catalog(month: int) -> None:
    environment = HaiPhongEnvironment(seed=month)
    rng = random.Random(month)
    for sensor in (AIR, GAUGE):
        for day in (1, 15, 28):
            for hour in range(0, 24, 3):
                moment = local(date(2025, month, day), hour)
                values = environment.sample(sensor, moment, moment - timedelta(hours=1), rng)
                assert set(values) == set(sensor.metrics)
                for metric, value in values.items():
                    normalise(metric, value, None)


@pytest.mark.parametrize("style", list(PayloadStyle))
def test_encoded_telemetry_decodes_to_the_sampled_values(style: PayloadStyle) -> None:
    sensor = SimulatedSensor("hp-aq-0002", "Ngô Quyền", 20.86, 106.70, AIR_METRICS, style=style)
    now = datetime.now(UTC)
    values = HaiPhongEnvironment().sample(sensor, now, now, random.Random(0))
    readings = decode_telemetry(encode_telemetry(sensor, values, now), sensor.uid, now=now)
    names = DeviceNames(NATIVE, DeviceIdentity(sensor.uid, "", None))
    metrics = {}
    for reading in readings:
        metric, unit = names.resolve(reading.metric, reading.unit, "topic")
        metrics[metric] = reading.value
        assert abs((reading.time - now).total_seconds()) < 0.01
        normalise(metric, reading.value, unit)
    assert metrics == values


def test_malformed_payloads_are_all_rejected() -> None:
    rng = random.Random(5)
    now = datetime.now(UTC)
    for _ in range(200):
        with pytest.raises(DecodeError):
            decode_telemetry(malformed_payload(AIR, now, rng), AIR.uid, now=now)


def test_default_fleet_is_deterministic_and_mixed() -> None:
    sites = [(f"hp-s-{index:03d}", f"ward-{index % 7}", 20.8, 106.6) for index in range(200)]
    fleet = default_fleet(sites, seed=4, coap_share=0.1, silent_share=0.05)
    assert fleet == default_fleet(sites, seed=4, coap_share=0.1, silent_share=0.05)
    assert [sensor.uid for sensor in fleet] == [site[0] for site in sites]
    styles = {sensor.style for sensor in fleet}
    assert styles == set(PayloadStyle)
    gauges = sum(sensor.metrics == HYDRO_METRICS for sensor in fleet)
    assert 25 < gauges < 75
    coap = [sensor for sensor in fleet if sensor.transport is Transport.COAP]
    assert 5 < len(coap) < 40
    assert all(sensor.style is PayloadStyle.SENML_CBOR for sensor in coap)
    assert 1 <= sum(sensor.silent for sensor in fleet) < 25


def test_time_compression_speeds_up_the_simulated_clock() -> None:
    start = datetime(2025, 1, 15, 0, 0, tzinfo=LOCAL_TIME)
    simulator = SensorSimulator([AIR], "127.0.0.1", time_scale=1440, start=start)
    began = simulator.started_at
    assert simulator.simulated_time(began) == start
    assert simulator.simulated_time(began + timedelta(minutes=1)) == start + timedelta(days=1)


def test_coap_devices_must_speak_senml_to_a_known_server() -> None:
    coap_json = SimulatedSensor("hp-x", "w", 0, 0, transport=Transport.COAP)
    with pytest.raises(ValueError, match="CoAP devices need coap_host"):
        SensorSimulator([coap_json], "127.0.0.1")
    with pytest.raises(ValueError, match="CoAP devices speak SenML"):
        SensorSimulator([coap_json], "127.0.0.1", coap_host="127.0.0.1")
