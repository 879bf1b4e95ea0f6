"""When broadcasts play: local start times, RFC 5545 recurrence, exceptions, quiet hours.

Recurrence is python-dateutil's ``rrulestr``, evaluated in local time (Asia/Ho_Chi_Minh
by default), so "FREQ=DAILY;BYHOUR=6;BYMINUTE=30" is 06:30 on the ward's clocks
(23:30 UTC the day before). A rule whose filters can never match makes dateutil scan
to the year 9999, which takes tens of seconds: expansions therefore run in a child
process with a hard time limit (``planning.expand_isolated``), and what they give is
stored as planned slots, so nothing else ever iterates a rule. This module imports only
the standard library and dateutil, to keep that child process quick to start.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, HOURLY, MONTHLY, WEEKLY, YEARLY, rrulestr

ALLOWED_FREQUENCIES = {HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY}
MAX_RRULE_LENGTH = 500


class ScheduleError(ValueError):
    """A schedule that cannot be planned; ``field`` names the part of the request at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Series:
    """A broadcast's timing as stored: first start (UTC), local zone, rule and exceptions."""

    starts_at: datetime
    timezone: str
    rrule: str | None = None
    exdates: tuple[str, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_start(self) -> datetime:
        return self.starts_at.astimezone(self.zone)


@dataclass(frozen=True, slots=True)
class Expansion:
    starts: list[datetime]
    """Occurrences in the window (UTC, ascending), at most the limit."""
    complete: bool
    """True when the series has no occurrence after the ones listed."""
    unmatched_exdates: tuple[int, ...] = ()
    """Indexes of exceptions that fell in the window yet matched no occurrence."""


def to_utc(moment: datetime, zone: ZoneInfo) -> datetime:
    """An instant from a request: naive means local wall-clock time in ``zone``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def normalise_rrule(text: str) -> str:
    """The RRULE value alone (no "RRULE:" prefix), or ScheduleError saying what is wrong."""
    value = text.strip()
    if value.upper().startswith("RRULE:"):
        value = value[len("RRULE:") :]
    if not value:
        raise ScheduleError("rrule", "the RRULE is empty")
    if len(value) > MAX_RRULE_LENGTH:
        raise ScheduleError("rrule", f"the RRULE is longer than {MAX_RRULE_LENGTH} characters")
    if "FREQ=" not in value.upper():
        raise ScheduleError("rrule", "the RRULE needs a FREQ, such as FREQ=DAILY")
    if any(c.isspace() for c in value) or ":" in value:
        raise ScheduleError(
            "rrule",
            "give one RRULE value such as FREQ=DAILY;BYHOUR=6;BYMINUTE=30 (DTSTART comes "
            "from starts_at, exceptions from exdates)",
        )
    return value.upper()


def _rule(series: Series) -> object:
    assert series.rrule is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            rule = rrulestr(series.rrule, dtstart=series.local_start())
    except (ValueError, TypeError, KeyError, IndexError, DeprecationWarning) as exc:
        raise ScheduleError("rrule", f"not a valid RFC 5545 RRULE: {exc}") from None
    # dateutil keeps the frequency only in a private attribute.
    if getattr(rule, "_freq", None) not in ALLOWED_FREQUENCIES:
        raise ScheduleError("rrule", "broadcasts repeat at most hourly (FREQ=HOURLY or slower)")
    return rule


def check_rrule(series: Series) -> None:
    """Parse the rule (cheap and safe: parsing never iterates it)."""
    _rule(series)


@dataclass(frozen=True, slots=True)
class Exceptions:
    """EXDATEs: local dates (no occurrence that day) or instants (that occurrence)."""

    entries: tuple[date | datetime, ...]

    def match(self, start: datetime, zone: ZoneInfo) -> int | None:
        day = start.astimezone(zone).date()
        for index, entry in enumerate(self.entries):
            if entry == start if isinstance(entry, datetime) else entry == day:
                return index
        return None

    def within(self, index: int, start: datetime, end: datetime, zone: ZoneInfo) -> bool:
        entry = self.entries[index]
        if isinstance(entry, datetime):
            return start <= entry < end
        midnight = datetime.combine(entry, time(0), zone)
        return start <= midnight and midnight + timedelta(days=1) <= end


def parse_exdates(values: Sequence[str], zone: ZoneInfo) -> Exceptions:
    """Local dates ("2025-02-10": no occurrence that day) or local date-times (that one)."""
    entries: list[date | datetime] = []
    for index, value in enumerate(values):
        text = value.strip()
        try:
            entries.append(
                date.fromisoformat(text)
                if len(text) == 10
                else to_utc(datetime.fromisoformat(text), zone)
            )
        except ValueError:
            raise ScheduleError(
                f"exdates[{index}]",
                f"{value!r} is neither a date (2025-02-10) nor a local date-time "
                "(2025-02-10T06:30)",
            ) from None
    return Exceptions(tuple(entries))


def expand(series: Series, window_start: datetime, window_end: datetime, limit: int) -> Expansion:
    """Occurrences with window_start <= start < window_end, exceptions removed.

    Iterates the rule: call it only in the child process (``planning.expand_isolated``).
    """
    zone = series.zone
    exceptions = parse_exdates(series.exdates, zone)
    matched: set[int] = set()
    starts: list[datetime] = []
    complete = True
    examined_until = window_end
    candidates: Iterable[datetime]
    if series.rrule is None:
        candidates = [series.starts_at.astimezone(zone)]
    else:
        candidates = _rule(series).xafter(  # type: ignore[attr-defined]
            window_start.astimezone(zone), inc=True
        )
    for local in candidates:
        start = local.astimezone(UTC)
        if start < window_start:
            continue
        if start >= window_end:
            complete = False
            break
        if len(starts) >= limit:
            complete = False
            examined_until = start
            break
        excluded = exceptions.match(start, zone)
        if excluded is None:
            starts.append(start)
        else:
            matched.add(excluded)
    unmatched = tuple(
        index
        for index in range(len(exceptions.entries))
        if index not in matched
        and (complete or exceptions.within(index, window_start, examined_until, zone))
    )
    return Expansion(starts, complete, unmatched)


# --------------------------------------------------------------------------- quiet hours


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A nightly window in local time; it may wrap past midnight. starts == ends: none."""

    starts: time
    ends: time

    @property
    def empty(self) -> bool:
        return self.starts == self.ends

    def overlaps(self, start: datetime, end: datetime, zone: ZoneInfo) -> bool:
        """Does [start, end) touch quiet hours on the local clock?"""
        if self.empty:
            return False
        local_start = start.astimezone(zone).replace(tzinfo=None)
        local_end = end.astimezone(zone).replace(tzinfo=None)
        day = local_start.date() - timedelta(days=1)
        while day <= local_end.date():
            quiet_start = datetime.combine(day, self.starts)
            quiet_end = datetime.combine(
                day if self.starts < self.ends else day + timedelta(days=1), self.ends
            )
            if quiet_start < local_end and local_start < quiet_end:
                return True
            day += timedelta(days=1)
        return False

    def label(self) -> str:
        return f"{self.starts:%H:%M}–{self.ends:%H:%M}"


def first_in_quiet_hours(
    slots: Iterable[tuple[datetime, datetime]], quiet: QuietHours, zone: ZoneInfo
) -> datetime | None:
    for start, end in slots:
        if quiet.overlaps(start, end, zone):
            return start
    return None


def _serve_child() -> None:
    """The child side of ``planning.expand_isolated``: one JSON request in, one answer out."""
    request = json.loads(sys.stdin.buffer.read())
    series = Series(
        starts_at=datetime.fromisoformat(request["starts_at"]),
        timezone=request["timezone"],
        rrule=request["rrule"],
        exdates=tuple(request["exdates"]),
    )
    try:
        expansion = expand(
            series,
            datetime.fromisoformat(request["window_start"]),
            datetime.fromisoformat(request["window_end"]),
            int(request["limit"]),
        )
    except ScheduleError as exc:
        answer: dict[str, object] = {"error": exc.message, "field": exc.field}
    else:
        answer = {
            "starts": [s.isoformat() for s in expansion.starts],
            "complete": expansion.complete,
            "unmatched_exdates": list(expansion.unmatched_exdates),
        }
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _serve_child()
