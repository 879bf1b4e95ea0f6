"""Rule validation and the pure evaluation step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from hub.alerts.rules import RuleIn, ThresholdRule, Track, render, step, validate

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def rule(**overrides: object) -> RuleIn:
    base = {
        "name": "pm",
        "kind": "threshold",
        "severity": "minor",
        "metric": "pm2_5",
        "comparison": ">",
        "threshold": 50.0,
    }
    return msgspec.convert(base | overrides, RuleIn)


def fields(r: RuleIn) -> set[str]:
    return {p.field for p in validate(r)}


def test_valid_rules_pass() -> None:
    assert validate(rule()) == []
    assert (
        validate(rule(clear_threshold=40.0, escalations=[{"threshold": 80, "severity": "major"}]))
        == []
    )
    assert (
        validate(rule(comparison="<", threshold=10.0, clear_threshold=15.0, metric="battery")) == []
    )
    assert (
        validate(
            msgspec.convert(
                {"name": "off", "kind": "offline", "severity": "major", "for_seconds": 300}, RuleIn
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"clear_threshold": 60.0}, "clear_threshold"),  # clears on the alarming side
        ({"comparison": "<", "threshold": 10.0, "clear_threshold": 5.0}, "clear_threshold"),
        ({"metric": "vibes"}, "metric"),
        ({"threshold": None}, "threshold"),
        ({"escalations": [{"threshold": 40, "severity": "major"}]}, "escalations[0].threshold"),
        ({"escalations": [{"threshold": 90, "severity": "warning"}]}, "escalations[0].severity"),
        ({"message": "{device.__class__}"}, "message"),
        ({"message": "{secret}"}, "message"),
        ({"scope": {"type": "kind", "value": "toaster"}}, "scope.value"),
        ({"scope": {"type": "ward"}}, "scope.value"),
    ],
)
def test_invalid_rules_name_the_field(overrides: dict[str, object], field: str) -> None:
    assert field in fields(rule(**overrides))


def test_health_rules_take_no_threshold() -> None:
    bad = msgspec.convert(
        {"name": "x", "kind": "offline", "severity": "major", "threshold": 1.0}, RuleIn
    )
    assert "threshold" in fields(bad)


COMPILED = ThresholdRule(
    1,
    "pm",
    "pm2_5",
    ">",
    50.0,
    40.0,
    "minor",
    ((80.0, "major"), (150.0, "critical")),
    timedelta(minutes=5),
    "",
)


def run(values: list[tuple[int, float]]) -> list[str]:
    track, actions = Track(), []
    for minute, value in values:
        track, action = step(COMPILED, track, value, T0 + timedelta(minutes=minute))
        if action:
            actions.append(f"{action.kind}:{action.severity or ''}")
    return actions


def test_fires_only_after_holding_for_the_duration() -> None:
    assert run([(0, 60), (4, 60)]) == []
    assert run([(0, 60), (5, 60)]) == ["fire:minor"]
    assert run([(0, 60), (3, 45), (6, 60), (10, 60)]) == []  # the dip restarts the clock


def test_hysteresis_escalation_and_resolution() -> None:
    assert run([(0, 60), (5, 60), (6, 45), (7, 90), (8, 200), (9, 100), (10, 40)]) == [
        "fire:minor",
        "raise:major",
        "raise:critical",
        "resolve:",
    ]


def test_an_alert_fires_at_the_severity_of_its_value() -> None:
    assert run([(0, 100), (5, 100)]) == ["fire:major"]


def test_render_tolerates_specs_that_do_not_fit() -> None:
    assert render("{metric} {value:.1f}", {"metric": "pm2_5", "value": 51.26}) == "pm2_5 51.3"
    assert render("{value:.1f}", {"value": "n/a"}) == "n/a"
