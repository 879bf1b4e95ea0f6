"""Instants the time-of-day-sensitive tests also run at, whatever the hour of the run.

A test marked ``any_hour`` runs once at the real clock and once at each instant below, with
the process clock moved there by time-machine (ticking on from it, so timeouts still work).
The hub under test runs in the same process, so it and its simulated devices see the moved
clock; only PostgreSQL's own ``now()`` does not, which is why the hub takes its clock from
Python for every decision that depends on the hour (docs/architecture.md, "Time").

``pytest --clock-at=INSTANT`` moves the clock for a whole run the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import time_machine

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


def _local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=LOCAL)


INSTANTS: dict[str, datetime] = {
    # Local hours around the district's default quiet hours (22:00-05:00).
    "local-03:00": _local(2026, 12, 8, 3, 0),
    "local-12:00": _local(2026, 12, 8, 12, 0),
    "local-16:30": _local(2026, 12, 8, 16, 30),
    "local-21:59": _local(2026, 12, 8, 21, 59),
    "local-22:00": _local(2026, 12, 8, 22, 0),
    "local-23:30": _local(2026, 12, 8, 23, 30),
    # A month's last seconds (local) and a leap day.
    "month-end": _local(2026, 11, 30, 23, 59),
    "leap-day": _local(2028, 2, 29, 12, 0),
    # Either side of midnight UTC (07:00 local): the UTC date changes, the local one does not.
    "utc-before-midnight": datetime(2026, 12, 7, 23, 59, 58, tzinfo=UTC),
    "utc-after-midnight": datetime(2026, 12, 8, 0, 0, 2, tzinfo=UTC),
}


@contextlib.contextmanager
def clock_at(instant: datetime | None) -> Iterator[time_machine.Coordinates | None]:
    """Move the process clock to ``instant`` (ticking) for the block; None leaves it alone.
    The block may move it on with the coordinates it is given (``move_to``)."""
    if instant is None:
        yield None
        return
    with time_machine.travel(instant, tick=True) as traveller:
        yield traveller
