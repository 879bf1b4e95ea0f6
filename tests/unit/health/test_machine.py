"""The health state machine as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.health.machine import Observed, Timing, assess
from hub.health.settings import HealthSettings

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
TIMING = Timing(timedelta(seconds=60))


def seen(
    seconds_ago: float,
    connected: bool | None = True,
    faults: tuple[str, ...] = (),
    maintenance_until: datetime | None = None,
) -> Observed:
    return Observed(NOW - timedelta(seconds=seconds_ago), connected, faults, maintenance_until)


@pytest.mark.parametrize(
    ("observed", "status"),
    [
        (Observed(None, None, (), None), "unknown"),
        (seen(10), "online"),
        (seen(89), "online"),
        (seen(91), "late"),
        (seen(181), "offline"),
        (seen(5, connected=False), "offline"),
        (seen(5, faults=("amplifier_fault",)), "degraded"),
        (seen(100, faults=("amplifier_fault",)), "late"),
        (seen(1000, maintenance_until=NOW + timedelta(hours=1)), "maintenance"),
        (seen(1000, maintenance_until=NOW - timedelta(hours=1)), "offline"),
    ],
)
def test_status(observed: Observed, status: str) -> None:
    assert assess(observed, TIMING, NOW).status == status


def test_reasons_say_why() -> None:
    assert assess(seen(600), TIMING, NOW).reason == "silent for 10 min"
    assert assess(seen(5, connected=False), TIMING, NOW).reason == "disconnected"
    assert "low_battery" in assess(seen(5, faults=("low_battery",)), TIMING, NOW).reason


@given(st.floats(min_value=0, max_value=1e6))
def test_a_disconnect_is_never_taken_as_activity(seconds_ago: float) -> None:
    assert assess(seen(seconds_ago, connected=False), TIMING, NOW).status == "offline"


@given(st.floats(min_value=0, max_value=1e5), st.floats(min_value=0, max_value=1e5))
def test_longer_silence_is_never_healthier(a: float, b: float) -> None:
    order = ["online", "late", "offline"]
    first = assess(seen(min(a, b)), TIMING, NOW).status
    second = assess(seen(max(a, b)), TIMING, NOW).status
    assert order.index(first) <= order.index(second)


def test_check_interval_must_stay_well_below_the_timeout() -> None:
    with pytest.raises(ValueError, match="check_interval_s"):
        HealthSettings(sensor_interval_s=10, check_interval_s=8)
    assert HealthSettings().check_interval_s < HealthSettings().sensor_interval_s * 0.5


def test_flapping_starts_and_stops_at_two_thresholds() -> None:
    from hub.health.machine import Flapping, flap_reason, flaps

    rule = Flapping(timedelta(minutes=10), enter_changes=10, leave_changes=4)
    assert not flaps(9, False, rule)
    assert flaps(10, False, rule)
    # Once flapping, it takes a calm window to stop: no flapping in and out of flapping.
    assert flaps(5, True, rule)
    assert not flaps(4, True, rule)
    assert flap_reason(12, rule) == "12 state changes in 10 min"
