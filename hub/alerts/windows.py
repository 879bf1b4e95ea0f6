"""Active windows: the local times of day (and days of the week) in which a rule may open
alerts, such as the night of QCVN 26:2010/BTNMT (21:00 to 06:00).

A window is written in the hub's local time (IOCHUB_ALERTS__TIMEZONE, Asia/Ho_Chi_Minh by
default). An end before the start crosses midnight: 21:00-06:00 opens at 21:00 and closes
at 06:00 the next morning. Days name the day a window *opens* on, so a Friday night window
(days ["fri"]) still holds at 03:00 on Saturday and not at 03:00 on Friday.

Instants are compared in UTC, never as wall times: Python compares two datetimes of the same
tzinfo by their wall clock, which is wrong across a daylight-saving change (none in Vietnam,
but the zone is a setting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from hub.errors import FieldProblem

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names in ISO order (Monday is 1)."""
_HH_MM = re.compile(r"^(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)$")


class ActiveWindow(msgspec.Struct, forbid_unknown_fields=True):
    start: Annotated[str, msgspec.Meta(max_length=16)]
    """Local time the window opens, HH:MM (24-hour clock)."""
    end: Annotated[str, msgspec.Meta(max_length=16)]
    """Local time it closes, HH:MM; before the start, it closes the next day."""
    days: Annotated[list[str], msgspec.Meta(max_length=7)] = msgspec.field(default_factory=list)
    """Days it opens on (mon, tue, wed, thu, fri, sat, sun); empty: every day."""


class ActiveWindowPatch(msgspec.Struct, forbid_unknown_fields=True):
    start: Annotated[str, msgspec.Meta(max_length=16)] | msgspec.UnsetType = msgspec.UNSET
    end: Annotated[str, msgspec.Meta(max_length=16)] | msgspec.UnsetType = msgspec.UNSET
    days: Annotated[list[str], msgspec.Meta(max_length=7)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )


def parse_hh_mm(text: str) -> time | None:
    match = _HH_MM.match(text)
    return time(int(match["hour"]), int(match["minute"])) if match else None


def problems(window: ActiveWindow, at: str = "window") -> list[FieldProblem]:
    found = []
    opens, closes = parse_hh_mm(window.start), parse_hh_mm(window.end)
    for name, text, parsed in (("start", window.start, opens), ("end", window.end, closes)):
        if parsed is None:
            found.append(
                FieldProblem(
                    f"{at}.{name}",
                    f"{text!r} is not a local time: write HH:MM from 00:00 to 23:59, e.g. 21:00",
                )
            )
    if opens is not None and opens == closes:
        found.append(
            FieldProblem(
                f"{at}.end",
                "the window would be empty: give an end other than its start "
                "(to watch all day, leave the window out)",
            )
        )
    seen: set[str] = set()
    for n, day in enumerate(window.days):
        if day not in DAYS:
            found.append(
                FieldProblem(f"{at}.days[{n}]", f"unknown day {day!r}: use {', '.join(DAYS)}")
            )
        elif day in seen:
            found.append(FieldProblem(f"{at}.days[{n}]", f"{day} is named twice"))
        seen.add(day)
    return found


class Occurrence(NamedTuple):
    """One opening of a window, as instants in UTC: open from ``opens``, until ``closes``."""

    opens: datetime
    closes: datetime


@dataclass(frozen=True, slots=True)
class LocalWindow:
    opens: time
    closes: time
    days: frozenset[int]
    """ISO weekdays the window opens on; empty: every day."""
    zone: ZoneInfo

    @classmethod
    def of(cls, window: ActiveWindow, zone: ZoneInfo) -> LocalWindow:
        opens, closes = parse_hh_mm(window.start), parse_hh_mm(window.end)
        if opens is None or closes is None or opens == closes:
            raise ValueError(f"not a valid window: {window!r}")
        return cls(opens, closes, frozenset(DAYS.index(d) + 1 for d in window.days), zone)

    @property
    def crosses_midnight(self) -> bool:
        return self.closes < self.opens

    @property
    def length(self) -> timedelta:
        """Its length on the wall clock (a daylight-saving night may differ by the shift)."""
        return wall_length(self.opens, self.closes)

    def opening_on(self, day: date) -> Occurrence:
        closing_day = day + timedelta(days=1) if self.crosses_midnight else day
        return Occurrence(
            datetime.combine(day, self.opens, self.zone).astimezone(UTC),
            datetime.combine(closing_day, self.closes, self.zone).astimezone(UTC),
        )

    def occurrence(self, at: datetime) -> Occurrence | None:
        """The opening of the window that ``at`` falls in, or None when it is closed then."""
        today = at.astimezone(self.zone).date()
        moment = at.astimezone(UTC)
        # Only an opening today or, for a window crossing midnight, yesterday can hold it.
        for day in (today, today - timedelta(days=1)):
            if self.days and day.isoweekday() not in self.days:
                continue
            opening = self.opening_on(day)
            if opening.opens <= moment < opening.closes:
                return opening
        return None

    def describe(self) -> str:
        span = f"{self.opens:%H:%M}-{self.closes:%H:%M}"
        if not self.days:
            return span
        return f"{span} ({', '.join(DAYS[d - 1] for d in sorted(self.days))})"

    def closed_reason(self) -> str:
        """``resolved_reason`` of an alert resolved because this window closed."""
        return f"active window {self.describe()} closed"


def wall_length(opens: time, closes: time) -> timedelta:
    span = datetime.combine(date.min, closes) - datetime.combine(date.min, opens)
    return span + timedelta(days=1) if closes < opens else span


def length(window: ActiveWindow) -> timedelta | None:
    """A valid window's length on the wall clock; None if its times are not valid."""
    opens, closes = parse_hh_mm(window.start), parse_hh_mm(window.end)
    if opens is None or closes is None or opens == closes:
        return None
    return wall_length(opens, closes)


def compiled(
    start: time | None, end: time | None, days: list[str], zone: ZoneInfo
) -> LocalWindow | None:
    """A stored rule's window (its columns), or None for a rule active at every hour."""
    if start is None or end is None:
        return None
    return LocalWindow(start, end, frozenset(DAYS.index(d) + 1 for d in days), zone)
