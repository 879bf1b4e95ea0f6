"""The scheduling form's words and numbers: day-first dates and 24-hour times typed by hand,
recurrence chosen in plain words and turned into an RFC 5545 RRULE, and a rule read back
in words.

Messages are English source strings translated through the ``gettext`` the caller passes
(the request's language); Babel extracts them from the ``gettext("...")`` calls here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, get_day_names
from litestar.datastructures import FormMultiDict

from hub.errors import FieldProblem

Gettext = Callable[[str], str]

# RFC 5545 section 3.3.10 weekday codes, Monday first (ISO 8601 and Vietnamese calendars).
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WORKDAYS = WEEKDAYS[:5]
REPEATS = ("once", "daily", "weekdays", "weekly", "monthly", "custom")
ENDS = ("never", "until", "count")
MAX_COUNT = 1000
DATE_PATTERN = r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$"
TIME_PATTERN = r"^\s*([01]?\d|2[0-3])[:hH.]([0-5]\d)(?::([0-5]\d))?\s*$"
# The same patterns for the browser's `pattern` attribute (no anchors, no spaces).
DATE_INPUT_PATTERN = r"\d{1,2}/\d{1,2}/\d{4}"
TIME_INPUT_PATTERN = r"([01]?\d|2[0-3])[:hH.][0-5]\d(:[0-5]\d)?"


def no_translation(message: str) -> str:
    return message


def parse_day(text: str) -> date | None:
    """A day typed as dd/mm/yyyy (Vietnamese order); ISO yyyy-mm-dd is taken too."""
    found = re.match(DATE_PATTERN, text)
    try:
        if found:
            return date(int(found[3]), int(found[2]), int(found[1]))
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def parse_clock(text: str) -> time | None:
    """A 24-hour wall-clock time: 06:30, 6:30, 18h30; seconds when given (06:30:15)."""
    found = re.match(TIME_PATTERN, text)
    return time(int(found[1]), int(found[2]), int(found[3] or 0)) if found else None


def parse_seconds(text: str) -> time:
    """HH:MM:SS as the service writes it."""
    return time.fromisoformat(text)


def day_problem(text: str, gettext: Gettext) -> str | None:
    if re.match(DATE_PATTERN, text) and parse_day(text) is None:
        return gettext("there is no such day in the calendar")
    if parse_day(text) is None:
        return gettext("write the date as dd/mm/yyyy, e.g. 25/12/2026")
    return None


def day_names(language: str) -> dict[str, str]:
    """RFC 5545 weekday code -> the day's name in the language (Thứ Hai, Monday)."""
    names = get_day_names("wide", locale=language)
    return {code: str(names[index]) for index, code in enumerate(WEEKDAYS)}


@dataclass
class Recurrence:
    """How a broadcast repeats, as chosen in the form."""

    repeat: str = "once"
    days: list[str] = field(default_factory=list)
    month_day: str = ""
    ends: str = "never"
    until: str = ""
    count: str = ""
    rrule: str = ""

    def problems(self, first_day: date | None, gettext: Gettext) -> list[FieldProblem]:
        found: list[FieldProblem] = []
        if self.repeat not in REPEATS:
            return [FieldProblem("repeat", gettext("choose how it repeats"))]
        if self.repeat == "once":
            return found
        if self.repeat == "custom":
            if not self.rrule:
                found.append(
                    FieldProblem(
                        "rrule",
                        gettext("type a rule such as FREQ=DAILY;BYHOUR=6;BYMINUTE=30, or a preset"),
                    )
                )
            return found
        if self.repeat == "weekly" and not self.days:
            found.append(FieldProblem("days", gettext("choose at least one day of the week")))
        if any(d not in WEEKDAYS for d in self.days):
            found.append(FieldProblem("days", gettext("choose days of the week")))
        if self.repeat == "monthly" and not (
            self.month_day.isdigit() and 1 <= int(self.month_day) <= 31
        ):
            found.append(FieldProblem("month_day", gettext("a day of the month from 1 to 31")))
        if self.ends not in ENDS:
            found.append(FieldProblem("ends", gettext("choose when it stops")))
        elif self.ends == "until":
            problem = (
                day_problem(self.until, gettext)
                if self.until
                else gettext("give the last day, as dd/mm/yyyy")
            )
            if problem is None and first_day is not None:
                last = parse_day(self.until)
                if last is not None and last < first_day:
                    problem = gettext("the last day comes before the first")
            if problem:
                found.append(FieldProblem("until", problem))
        elif self.ends == "count" and not (
            self.count.isdigit() and 1 <= int(self.count) <= MAX_COUNT
        ):
            found.append(
                FieldProblem(
                    "count",
                    gettext("a whole number of times from 1 to %(most)d") % {"most": MAX_COUNT},
                )
            )
        return found

    def to_rrule(self, zone: ZoneInfo) -> str | None:
        """The RFC 5545 section 3.3.10 RRULE value; None for a one-off. Call after problems()
        found nothing."""
        if self.repeat == "once":
            return None
        if self.repeat == "custom":
            return self.rrule
        if self.repeat == "daily":
            parts = ["FREQ=DAILY"]
        elif self.repeat == "weekdays":
            parts = ["FREQ=WEEKLY", "BYDAY=" + ",".join(WORKDAYS)]
        elif self.repeat == "weekly":
            chosen = [d for d in WEEKDAYS if d in self.days]
            parts = ["FREQ=WEEKLY", "BYDAY=" + ",".join(chosen)]
        else:
            parts = ["FREQ=MONTHLY", f"BYMONTHDAY={int(self.month_day)}"]
        if self.ends == "until":
            last = parse_day(self.until)
            assert last is not None
            # RFC 5545 3.3.10: with a DTSTART in a time zone, UNTIL is given in UTC. The
            # whole last day counts: up to its final second on the ward's clocks.
            end = datetime.combine(last, time(23, 59, 59), zone).astimezone(UTC)
            parts.append(f"UNTIL={end:%Y%m%dT%H%M%SZ}")
        elif self.ends == "count":
            parts.append(f"COUNT={int(self.count)}")
        return ";".join(parts)


def read_recurrence(form: FormMultiDict | dict[str, Any]) -> Recurrence:
    def value(name: str, default: str = "") -> str:
        given = form.get(name, default)
        return given.strip() if isinstance(given, str) else default

    days = form.getall("days", []) if isinstance(form, FormMultiDict) else form.get("days", [])
    return Recurrence(
        repeat=value("repeat", "once"),
        days=[d for d in days if isinstance(d, str) and d],
        month_day=value("month_day"),
        ends=value("ends", "never"),
        until=value("until"),
        count=value("count"),
        rrule=value("rrule"),
    )


def _parts(rrule: str) -> dict[str, str] | None:
    parts: dict[str, str] = {}
    for piece in rrule.upper().removeprefix("RRULE:").split(";"):
        name, equals, value = piece.partition("=")
        if not equals or name in parts:
            return None
        parts[name] = value
    return parts


def _join(items: Sequence[str], gettext: Gettext) -> str:
    if len(items) <= 1:
        return "".join(items)
    return gettext("%(first)s and %(last)s") % {
        "first": ", ".join(items[:-1]),
        "last": items[-1],
    }


def rule_words(rrule: str | None, gettext: Gettext, language: str, zone: ZoneInfo) -> str | None:
    """A rule in words ("every week on Monday and Thursday, 10 times"); None for a rule the
    form cannot write (shown as its code instead)."""
    if rrule is None:
        return gettext("once")
    parts = _parts(rrule)
    if parts is None:
        return None
    freq = parts.pop("FREQ", "")
    if parts.pop("INTERVAL", "1") != "1":
        return None
    until, count = parts.pop("UNTIL", None), parts.pop("COUNT", None)
    byday = parts.pop("BYDAY", None)
    bymonthday = parts.pop("BYMONTHDAY", None)
    if parts or (until and count):
        return None
    names = day_names(language)
    if freq == "DAILY" and byday is None and bymonthday is None:
        words = gettext("every day")
    elif freq == "WEEKLY" and bymonthday is None:
        days = byday.split(",") if byday else []
        if any(d not in WEEKDAYS for d in days):
            return None
        if days == list(WORKDAYS):
            words = gettext("on weekdays (Monday to Friday)")
        elif not days:
            words = gettext("every week, on the first day's weekday")
        else:
            ordered = [names[d] for d in WEEKDAYS if d in days]
            words = gettext("every week on %(days)s") % {"days": _join(ordered, gettext)}
    elif freq == "MONTHLY" and byday is None and bymonthday and bymonthday.isdigit():
        words = gettext("every month on day %(day)s") % {"day": int(bymonthday)}
    else:
        return None
    if count is not None:
        if not count.isdigit():
            return None
        words += gettext(", %(n)s times") % {"n": int(count)}
    elif until is not None:
        try:
            end = datetime.strptime(until, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        last = end.astimezone(zone).date()
        words += gettext(", until %(day)s") % {
            "day": format_date(last, "dd/MM/yyyy", locale=language)
        }
    return words


def week_start(moment: datetime, zone: ZoneInfo) -> date:
    """The Monday of the local week an instant falls in."""
    day = moment.astimezone(zone).date()
    return day - timedelta(days=day.weekday())
