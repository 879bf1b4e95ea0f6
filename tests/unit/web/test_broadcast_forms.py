"""The scheduling form's words: recurrence chosen in words becomes an RFC 5545 RRULE and is
read back in words; dates are day first and times 24-hour; weeks run Monday to Sunday on
the district's clocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from hub.web import i18n
from hub.web.broadcast_forms import (
    Recurrence,
    day_problem,
    no_translation,
    parse_clock,
    parse_day,
    rule_words,
    week_start,
)

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
VI = i18n.translations("vi").gettext
FIRST = date(2026, 12, 7)  # a Monday

# (what the form says, the rule it makes, the rule read back in Vietnamese, and in English)
TABLE = [
    (Recurrence("once"), None, "một lần", "once"),
    (Recurrence("daily"), "FREQ=DAILY", "hằng ngày", "every day"),
    (
        Recurrence("weekdays"),
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        "các ngày làm việc (thứ Hai đến thứ Sáu)",
        "on weekdays (Monday to Friday)",
    ),
    (
        Recurrence("weekly", days=["TH", "MO"]),
        "FREQ=WEEKLY;BYDAY=MO,TH",
        "hằng tuần vào Thứ Hai và Thứ Năm",
        "every week on Monday and Thursday",
    ),
    (
        Recurrence("weekly", days=["SU", "SA", "WE"]),
        "FREQ=WEEKLY;BYDAY=WE,SA,SU",
        "hằng tuần vào Thứ Tư, Thứ Bảy và Chủ Nhật",
        "every week on Wednesday, Saturday and Sunday",
    ),
    (
        Recurrence("monthly", month_day="15"),
        "FREQ=MONTHLY;BYMONTHDAY=15",
        "hằng tháng vào ngày 15",
        "every month on day 15",
    ),
    (
        Recurrence("daily", ends="count", count="10"),
        "FREQ=DAILY;COUNT=10",
        "hằng ngày, 10 lần",
        "every day, 10 times",
    ),
    # RFC 5545 3.3.10: UNTIL in UTC; the last local day counts to its end (23:59:59 at +07:00).
    (
        Recurrence("weekdays", ends="until", until="31/12/2026"),
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20261231T165959Z",
        "các ngày làm việc (thứ Hai đến thứ Sáu), đến hết ngày 31/12/2026",
        "on weekdays (Monday to Friday), until 31/12/2026",
    ),
    (
        Recurrence("custom", rrule="FREQ=DAILY;BYHOUR=6,18"),
        "FREQ=DAILY;BYHOUR=6,18",
        None,
        None,
    ),
]


@pytest.mark.parametrize(("chosen", "rule", "in_vietnamese", "in_english"), TABLE)
def test_recurrence_in_words_makes_its_rrule_and_reads_back(
    chosen: Recurrence, rule: str | None, in_vietnamese: str | None, in_english: str | None
) -> None:
    assert chosen.problems(FIRST, no_translation) == []
    assert chosen.to_rrule(LOCAL) == rule
    assert rule_words(rule, VI, "vi", LOCAL) == in_vietnamese
    assert rule_words(rule, no_translation, "en", LOCAL) == in_english
    if rule is not None:
        # dateutil (the slice's expansion) reads what the form wrote.
        rrulestr(rule, dtstart=datetime(2026, 12, 7, 6, 30, tzinfo=LOCAL))


def test_the_last_day_of_until_still_plays_and_the_next_does_not() -> None:
    rule = Recurrence("daily", ends="until", until="09/12/2026").to_rrule(LOCAL)
    assert rule is not None
    starts = list(rrulestr(rule, dtstart=datetime(2026, 12, 7, 23, 30, tzinfo=LOCAL)))
    assert [s.date() for s in starts] == [date(2026, 12, 7), date(2026, 12, 8), date(2026, 12, 9)]


@pytest.mark.parametrize(
    ("chosen", "field", "message"),
    [
        (Recurrence("weekly"), "days", "chọn ít nhất một ngày trong tuần"),
        (Recurrence("weekly", days=["XX"]), "days", "chọn các ngày trong tuần"),
        (Recurrence("monthly", month_day="32"), "month_day", "một ngày trong tháng, từ 1 đến 31"),
        (Recurrence("daily", ends="until"), "until", "nhập ngày cuối, theo dạng dd/mm/yyyy"),
        (Recurrence("daily", ends="until", until="06/12/2026"), "until", "ngày cuối đứng trước"),
        (Recurrence("daily", ends="until", until="2026/12/31"), "until", "dd/mm/yyyy"),
        (Recurrence("daily", ends="count", count="0"), "count", "từ 1 đến 1000"),
        (Recurrence("custom"), "rrule", "FREQ=DAILY;BYHOUR=6;BYMINUTE=30"),
        (Recurrence("sometimes"), "repeat", "chọn cách lặp lại"),
    ],
)
def test_a_recurrence_that_cannot_be_written_says_why(
    chosen: Recurrence, field: str, message: str
) -> None:
    problems = chosen.problems(FIRST, VI)
    assert [p.field for p in problems] == [field]
    assert message in problems[0].message


def test_dates_are_day_first_and_times_24_hour() -> None:
    assert parse_day("07/12/2026") == parse_day("7/12/2026") == date(2026, 12, 7)
    assert parse_day("2026-12-07") == date(2026, 12, 7)  # ISO as well
    assert parse_day("12/31/2026") is None  # no month 31: not the American order
    assert day_problem("31/02/2027", VI) == "không có ngày này trên lịch"
    assert day_problem("mai", VI) == "viết ngày theo dạng dd/mm/yyyy, ví dụ 25/12/2026"
    assert parse_clock("06:30") == parse_clock("6:30") == parse_clock("6h30") == time(6, 30)
    assert parse_clock("23:59") == time(23, 59)
    assert parse_clock("06:30:15") == time(6, 30, 15)  # to the second, when one needs it
    for wrong in ("24:00", "6:30 PM", "630", "06:60", "06:30:60", "06:30:", ""):
        assert parse_clock(wrong) is None, wrong


def test_rules_the_form_cannot_write_are_not_put_in_words() -> None:
    for rule in ("FREQ=DAILY;INTERVAL=2", "FREQ=YEARLY", "FREQ=WEEKLY;BYDAY=1MO", "nonsense"):
        assert rule_words(rule, no_translation, "en", LOCAL) is None, rule


@pytest.mark.parametrize(
    ("instant", "monday"),
    [
        # Sunday 23:30 local is 16:30 UTC: still that week.
        (datetime(2026, 12, 13, 16, 30, tzinfo=UTC), date(2026, 12, 7)),
        # Monday 00:30 local is Sunday 17:30 UTC: the new week, though UTC is still Sunday.
        (datetime(2026, 12, 13, 17, 30, tzinfo=UTC), date(2026, 12, 14)),
        (datetime(2026, 12, 7, 0, 0, tzinfo=UTC), date(2026, 12, 7)),
        (datetime(2028, 2, 29, 12, 0, tzinfo=UTC), date(2028, 2, 28)),
    ],
)
def test_a_week_runs_monday_to_sunday_on_the_districts_clocks(
    instant: datetime, monday: date
) -> None:
    assert week_start(instant, LOCAL) == monday
