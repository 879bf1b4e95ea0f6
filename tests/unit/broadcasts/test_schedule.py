"""Recurrence in local time, exceptions, the RRULE checks and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.broadcasts.planning import check_request, expand_isolated
from hub.broadcasts.schedule import (
    QuietHours,
    ScheduleError,
    Series,
    check_rrule,
    expand,
    normalise_rrule,
    parse_exdates,
)
from hub.broadcasts.settings import BroadcastSettings

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ZONE = "Asia/Ho_Chi_Minh"
# 2030-03-01 00:00 local
START = datetime(2030, 3, 1, tzinfo=HCM).astimezone(UTC)

# Local-time rules: checked at fixed hours and dates too (tests/support/clock.py).
pytestmark = pytest.mark.any_hour


def daily(rule: str = "FREQ=DAILY;BYHOUR=6;BYMINUTE=30", exdates: tuple[str, ...] = ()) -> Series:
    return Series(START, ZONE, rule, exdates)


def test_daily_rule_is_local_time_the_utc_evening_before() -> None:
    expansion = expand(daily(), START, START + timedelta(days=3), 100)
    assert expansion.starts == [
        datetime(2030, 2, 28, 23, 30, tzinfo=UTC),
        datetime(2030, 3, 1, 23, 30, tzinfo=UTC),
        datetime(2030, 3, 2, 23, 30, tzinfo=UTC),
    ]
    assert [s.astimezone(HCM).strftime("%d %H:%M") for s in expansion.starts] == [
        "01 06:30",
        "02 06:30",
        "03 06:30",
    ]
    assert not expansion.complete


def test_exdates_remove_a_day_or_one_occurrence() -> None:
    series = daily("FREQ=DAILY;BYHOUR=6,17;BYMINUTE=30", exdates=("2030-03-02", "2030-03-03T17:30"))
    expansion = expand(series, START, START + timedelta(days=3), 100)
    local = [s.astimezone(HCM).strftime("%d %H:%M") for s in expansion.starts]
    assert local == ["01 06:30", "01 17:30", "03 06:30"]
    assert expansion.unmatched_exdates == ()


def test_an_exdate_that_matches_nothing_is_reported() -> None:
    series = daily(exdates=("2030-03-02T07:00", "2030-03-02"))
    expansion = expand(series, START, START + timedelta(days=5), 100)
    assert expansion.unmatched_exdates == (0,)


def test_count_ends_the_series_and_limit_caps_the_expansion() -> None:
    finite = expand(
        daily("FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;COUNT=3"), START, START + timedelta(days=366), 100
    )
    assert len(finite.starts) == 3 and finite.complete
    assert all(s.astimezone(HCM).weekday() == 0 for s in finite.starts)
    capped = expand(daily("FREQ=HOURLY"), START, START + timedelta(days=366), 10)
    assert len(capped.starts) == 10 and not capped.complete


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("FREQ=SOMETIMES", "invalid 'FREQ'"),
        ("FREQ=MINUTELY", "at most hourly"),
        ("BYHOUR=6", "needs a FREQ"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20300401T000000Z", "count"),
        ("FREQ=DAILY;UNTIL=20300401", "UTC"),
        ("FREQ=DAILY;BYHOUR=25", "hour must be in 0..23"),
        ("DTSTART:20300101T000000\nRRULE:FREQ=DAILY", "one RRULE value"),
    ],
)
def test_invalid_rules_say_why(rule: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        check_rrule(Series(START, ZONE, normalise_rrule(rule)))
    assert caught.value.field == "rrule"
    assert message.lower() in caught.value.message.lower()


def test_bad_exdate_is_named_by_index() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_exdates(["2030-03-02", "next tuesday"], HCM)
    assert caught.value.field == "exdates[1]"


def test_a_start_in_the_past_is_refused() -> None:
    settings = BroadcastSettings()
    now = datetime(2030, 2, 1, 9, 30, tzinfo=UTC)  # injected: the test holds at any date
    with pytest.raises(ScheduleError) as caught:
        check_request(now - timedelta(minutes=1), None, [], settings, now)
    assert caught.value.field == "starts_at"
    # Without an offset, a start is local time: 07:00 local is 00:00 UTC.
    series = check_request(datetime(2030, 3, 1, 7, 0), None, [], settings, now)
    assert series.starts_at == datetime(2030, 3, 1, 0, 0, tzinfo=UTC)


async def test_a_rule_that_never_matches_is_stopped_by_the_time_limit() -> None:
    series = daily("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")
    with pytest.raises(ScheduleError) as caught:
        await expand_isolated(series, START, START + timedelta(days=366), 10, timeout_s=1.0)
    assert caught.value.field == "rrule"
    assert "never match" in caught.value.message


async def test_isolated_expansion_gives_what_expand_gives() -> None:
    series = daily(exdates=("2030-03-02",))
    window = (START, START + timedelta(days=4))
    isolated = await expand_isolated(series, *window, 100, timeout_s=10.0)
    assert isolated == expand(series, *window, 100)


def test_quiet_hours_wrap_midnight() -> None:
    quiet = QuietHours(time(22, 0), time(5, 0))

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime(2030, 3, 1, hour, minute, tzinfo=HCM)

    def overlaps(start: datetime, seconds: float) -> bool:
        return quiet.overlaps(start, start + timedelta(seconds=seconds), HCM)

    assert overlaps(at(23), 60)
    assert overlaps(at(2), 60)
    assert not overlaps(at(5), 60)
    assert not overlaps(at(6, 30), 600)
    assert overlaps(at(21, 55), 600)  # runs into the quiet hours
    assert not overlaps(at(21, 50), 300)
    assert not QuietHours(time(0), time(0)).overlaps(at(23), at(23, 30), HCM)
    daytime = QuietHours(time(12), time(13, 30))
    assert daytime.overlaps(at(13), at(13, 5), HCM)
    assert not daytime.overlaps(at(13, 30), at(14), HCM)
