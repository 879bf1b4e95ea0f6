"""Active windows: their arithmetic in local time, their validation, and how a windowed rule
steps through readings (QCVN 26:2010/BTNMT's night, 21:00-06:00, is the running example)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pydantic
import pytest

from hub.alerts import AlertSettings
from hub.alerts.rules import RuleIn, ThresholdRule, Track, step, validate
from hub.alerts.windows import ActiveWindow, LocalWindow, Occurrence
from hub.broadcasts import BroadcastSettings

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
NIGHT = LocalWindow.of(ActiveWindow("21:00", "06:00"), HANOI)
DAY = LocalWindow.of(ActiveWindow("06:00", "21:00"), HANOI)
# 7 December 2026 is a Monday.


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=HANOI)


def at_local(moment: datetime) -> datetime:
    """The same instant as the hub receives it: in UTC."""
    return moment.astimezone(UTC)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (local(7, 20, 59, 59), False),
        (local(7, 21, 0), True),  # opens on the minute
        (local(7, 23, 59, 59), True),
        (local(8, 0, 0), True),  # across midnight
        (local(8, 5, 59, 59), True),
        (local(8, 6, 0), False),  # closes on the minute
        (local(8, 12, 0), False),
    ],
)
def test_a_night_window_crosses_midnight(moment: datetime, inside: bool) -> None:
    assert (NIGHT.occurrence(at_local(moment)) is not None) is inside
    assert (DAY.occurrence(at_local(moment)) is not None) is not inside


def test_an_opening_runs_from_its_start_to_the_next_morning() -> None:
    opening = NIGHT.occurrence(at_local(local(8, 3, 0)))
    assert opening == Occurrence(at_local(local(7, 21, 0)), at_local(local(8, 6, 0)))
    # 21:00 local is 14:00 UTC: the instants are UTC, whatever the zone of the question.
    assert opening.opens == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert NIGHT.length == timedelta(hours=9) and DAY.length == timedelta(hours=15)


def test_the_local_date_not_the_utc_date_picks_the_opening() -> None:
    # 00:30 UTC on the 8th is 07:30 local on the 8th: in the day window of the 8th.
    opening = DAY.occurrence(datetime(2026, 12, 8, 0, 30, tzinfo=UTC))
    assert opening == Occurrence(at_local(local(8, 6, 0)), at_local(local(8, 21, 0)))
    # 16:30 UTC on the 7th is 23:30 local on the 7th: the night opened that evening.
    assert NIGHT.occurrence(datetime(2026, 12, 7, 16, 30, tzinfo=UTC)) == Occurrence(
        at_local(local(7, 21, 0)), at_local(local(8, 6, 0))
    )


def test_days_name_the_day_a_night_window_opens_on() -> None:
    friday_night = LocalWindow.of(ActiveWindow("21:00", "06:00", ["fri"]), HANOI)
    # 11 December 2026 is a Friday.
    assert friday_night.occurrence(at_local(local(11, 22, 0))) is not None
    assert friday_night.occurrence(at_local(local(12, 3, 0))) is not None  # Saturday morning
    assert friday_night.occurrence(at_local(local(12, 22, 0))) is None  # Saturday night
    assert friday_night.occurrence(at_local(local(11, 3, 0))) is None  # Thursday's night
    assert friday_night.occurrence(at_local(local(13, 3, 0))) is None
    weekdays = LocalWindow.of(ActiveWindow("21:00", "06:00", ["mon", "tue"]), HANOI)
    # Wednesday 03:00 belongs to Tuesday's night; Thursday 03:00 to Wednesday's (not listed).
    assert weekdays.occurrence(at_local(local(9, 3, 0))) is not None
    assert weekdays.occurrence(at_local(local(10, 3, 0))) is None
    assert weekdays.describe() == "21:00-06:00 (mon, tue)"


def test_instants_are_compared_in_utc_across_a_daylight_saving_change() -> None:
    # Vietnam keeps no daylight-saving time, but the zone is a setting: in Berlin the clocks
    # go from 02:00 to 03:00 on 29 March 2026, so that night's 21:00-06:00 lasts 8 hours.
    berlin = ZoneInfo("Europe/Berlin")
    night = LocalWindow.of(ActiveWindow("21:00", "06:00"), berlin)
    opening = night.occurrence(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 local
    assert opening is not None
    assert opening.closes - opening.opens == timedelta(hours=8)
    assert opening.closes == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    # (Subtracting the two as Berlin times would give the wall clock's 9 hours.)
    assert night.occurrence(datetime(2026, 3, 29, 3, 59, tzinfo=UTC)) is not None  # 05:59
    assert night.occurrence(datetime(2026, 3, 29, 4, 30, tzinfo=UTC)) is None
    # In autumn the night is an hour longer (25 October 2026, 03:00 back to 02:00).
    autumn = night.occurrence(datetime(2026, 10, 25, 3, 0, tzinfo=UTC))
    assert autumn is not None and autumn.closes - autumn.opens == timedelta(hours=10)


def threshold_rule(**overrides: object) -> RuleIn:
    base = {
        "name": "noise at night",
        "kind": "threshold",
        "severity": "warning",
        "metric": "noise",
        "comparison": ">",
        "threshold": 55.0,
        "window": {"start": "21:00", "end": "06:00"},
    }
    return msgspec.convert(base | overrides, RuleIn)


def messages(rule: RuleIn) -> dict[str, str]:
    return {p.field: p.message for p in validate(rule)}


def test_a_valid_window_passes() -> None:
    assert validate(threshold_rule()) == []
    assert validate(threshold_rule(window={"start": "06:00", "end": "21:00", "days": []})) == []
    assert validate(threshold_rule(window={"start": "00:00", "end": "23:59"})) == []
    assert (
        validate(threshold_rule(window={"start": "21:00", "end": "06:00", "days": ["sat"]})) == []
    )


@pytest.mark.parametrize(
    ("window", "field", "says"),
    [
        ({"start": "21:00", "end": "21:00"}, "window.end", "empty"),
        ({"start": "9pm", "end": "06:00"}, "window.start", "HH:MM"),
        ({"start": "21:00", "end": "24:00"}, "window.end", "HH:MM"),
        ({"start": "21:00", "end": "6:00"}, "window.end", "HH:MM"),
        ({"start": "21:00:00", "end": "06:00"}, "window.start", "HH:MM"),
        ({"start": "21:00", "end": "06:00", "days": ["funday"]}, "window.days[0]", "mon, tue"),
        ({"start": "21:00", "end": "06:00", "days": ["Mon"]}, "window.days[0]", "unknown day"),
        ({"start": "21:00", "end": "06:00", "days": ["fri", "fri"]}, "window.days[1]", "twice"),
    ],
)
def test_a_bad_window_says_what_to_fix(window: dict[str, object], field: str, says: str) -> None:
    found = messages(threshold_rule(window=window))
    assert field in found, found
    assert says in found[field]


def test_the_hold_must_fit_in_the_window() -> None:
    found = messages(threshold_rule(for_seconds=9 * 3600))
    assert "shorter than the window (21:00-06:00, 9 h)" in found["for_seconds"]
    assert validate(threshold_rule(for_seconds=9 * 3600 - 1)) == []


def test_health_rules_take_no_window() -> None:
    offline = msgspec.convert(
        {
            "name": "offline",
            "kind": "offline",
            "severity": "major",
            "window": {"start": "21:00", "end": "06:00"},
        },
        RuleIn,
    )
    assert "only threshold rules" in messages(offline)["window"]


NOISE = ThresholdRule(
    7,
    "noise at night",
    "noise",
    ">",
    55.0,
    52.0,
    "warning",
    (),
    timedelta(minutes=5),
    "",
    NIGHT,
)


def run(
    rule: ThresholdRule,
    readings: list[tuple[datetime, float]],
    now: datetime | None = None,
    track: Track | None = None,
) -> tuple[Track, list[str]]:
    track, actions = track or Track(), []
    for moment, value in readings:
        track, action = step(rule, track, value, at_local(moment), now)
        if action:
            actions.append(f"{action.kind}:{action.reason or action.severity or ''}")
    return track, actions


def test_a_night_rule_opens_nothing_by_day() -> None:
    loud = [(local(8, 12, minute), 80.0) for minute in range(0, 30, 5)]
    assert run(NOISE, loud) == (Track(), [])
    at_night = [(local(7, 22, minute), 60.0) for minute in range(0, 30, 5)]
    assert run(NOISE, at_night)[1] == ["fire:warning"]


def test_the_hold_counts_only_inside_the_window() -> None:
    # Loud from 20:57: only the minutes from the first reading after 21:00 count.
    readings = [(local(7, 20, 57), 60.0), (local(7, 20, 59), 60.0), (local(7, 21, 1), 60.0)]
    track, actions = run(NOISE, [*readings, (local(7, 21, 5), 60.0)])
    assert actions == [] and track.pending_since == at_local(local(7, 21, 1))
    track, actions = run(NOISE, [(local(7, 21, 6), 60.0)], track=track)
    assert actions == ["fire:warning"]


def test_a_pending_duration_does_not_carry_over_to_the_next_night() -> None:
    # Pending since 05:58; the window closes at 06:00 before the 5 minutes are up.
    pending = Track(pending_since=at_local(local(8, 5, 58)))
    assert run(NOISE, [(local(8, 6, 1), 60.0)], track=pending) == (Track(), [])
    # Even a track that missed the morning (another hub process held it) starts again.
    track, actions = run(NOISE, [(local(8, 21, 0), 60.0)], track=pending)
    assert actions == [] and track.pending_since == at_local(local(8, 21, 0))


def test_hysteresis_inside_the_window_and_resolution_when_it_closes() -> None:
    firing = Track(severity="warning")
    # Inside the window it clears only below its clear threshold (52), as any rule.
    assert run(NOISE, [(local(8, 5, 0), 53.0)], track=firing) == (firing, [])
    assert run(NOISE, [(local(8, 5, 0), 51.0)], track=firing) == (Track(), ["resolve:"])
    # The first reading after 06:00 resolves it however loud it is: the window closed.
    assert run(NOISE, [(local(8, 6, 0), 75.0)], track=firing) == (
        Track(),
        ["resolve:active window 21:00-06:00 closed"],
    )


def test_a_reading_that_arrives_after_its_window_closed_opens_nothing() -> None:
    # Measured at 05:59 but received at 06:02 (a device that queued it): the night is over.
    late = [(local(8, 5, 59), 90.0)]
    no_hold = dataclasses.replace(NOISE, hold=timedelta(0))
    assert run(no_hold, late, now=at_local(local(8, 6, 2))) == (Track(), [])
    assert run(no_hold, late, now=at_local(local(8, 5, 59, 30)))[1] == ["fire:warning"]


def test_a_rule_without_a_window_watches_at_every_hour() -> None:
    always = dataclasses.replace(NOISE, window=None, hold=timedelta(0))
    assert run(always, [(local(8, 12, 0), 60.0)])[1] == ["fire:warning"]


def test_the_windows_time_zone_is_a_setting_checked_at_start() -> None:
    assert AlertSettings().timezone == "Asia/Ho_Chi_Minh"
    with pytest.raises(pydantic.ValidationError, match="'Asia/Hanoi' is not an IANA time zone"):
        AlertSettings(timezone="Asia/Hanoi")
    # The broadcasts' zone is checked the same way.
    with pytest.raises(pydantic.ValidationError, match="is not an IANA time zone"):
        BroadcastSettings(timezone="GMT+7")
