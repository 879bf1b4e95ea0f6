"""Turning a requested schedule into planned slots: expansion, exceptions, quiet hours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.broadcasts import schedule
from hub.broadcasts.conflicts import Slot
from hub.broadcasts.schedule import Expansion, QuietHours, ScheduleError, Series
from hub.broadcasts.settings import BroadcastSettings

log = logging.getLogger("hub.broadcasts")

# A request takes a moment to arrive: a start this close to now is "now", not the past.
PAST_TOLERANCE = timedelta(seconds=5)


async def expand_isolated(
    series: Series,
    window_start: datetime,
    window_end: datetime,
    limit: int,
    timeout_s: float,
) -> Expansion:
    """``schedule.expand`` in a child process that is killed if it outlives ``timeout_s``."""
    request = json.dumps(
        {
            "starts_at": series.starts_at.isoformat(),
            "timezone": series.timezone,
            "rrule": series.rrule,
            "exdates": list(series.exdates),
            "window_start": window_start.isoformat(),
            "window_end": window_end.isoformat(),
            "limit": limit,
        }
    ).encode()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        schedule.__name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate(request)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise ScheduleError(
            "rrule",
            f"the rule found no further occurrence within {timeout_s:g} s of searching; "
            "its parts may never match together (such as BYMONTH=2;BYMONTHDAY=30)",
        ) from None
    if process.returncode != 0:
        raise RuntimeError(f"RRULE expansion failed: {err.decode(errors='replace')[-500:]}")
    answer: dict[str, Any] = json.loads(out)
    if "error" in answer:
        raise ScheduleError(answer["field"], answer["error"])
    return Expansion(
        [datetime.fromisoformat(s) for s in answer["starts"]],
        complete=answer["complete"],
        unmatched_exdates=tuple(answer["unmatched_exdates"]),
    )


@dataclass(frozen=True, slots=True)
class Timing:
    series: Series
    slots: list[Slot]
    complete: bool
    planned_through: datetime | None
    """Slots exist before this instant; None when the series is planned whole."""


def check_request(
    starts_at: datetime,
    rrule: str | None,
    exdates: Sequence[str],
    settings: BroadcastSettings,
    now: datetime,
) -> Series:
    """The checks that need no expansion: start not past, rule and exceptions well formed."""
    series = Series(schedule.to_utc(starts_at, zone(settings)), settings.timezone)
    if series.starts_at < now - PAST_TOLERANCE:
        local = series.local_start()
        raise ScheduleError(
            "starts_at", f"{local:%Y-%m-%d %H:%M:%S} ({settings.timezone}) is in the past"
        )
    if rrule is None and exdates:
        raise ScheduleError("exdates", "exceptions apply to a recurring broadcast (give rrule)")
    series = Series(
        series.starts_at,
        settings.timezone,
        schedule.normalise_rrule(rrule) if rrule is not None else None,
        tuple(exdates),
    )
    schedule.parse_exdates(series.exdates, series.zone)
    if series.rrule is not None:
        schedule.check_rrule(series)
    return series


async def plan_timing(
    *,
    starts_at: datetime,
    rrule: str | None,
    exdates: Sequence[str],
    duration_s: float,
    settings: BroadcastSettings,
    now: datetime,
) -> Timing:
    """Validate and expand a schedule; ScheduleError names the field at fault."""
    series = check_request(starts_at, rrule, exdates, settings, now)
    window_end = series.starts_at + timedelta(days=settings.plan_days)
    expansion = await expand_isolated(
        series,
        series.starts_at,
        window_end,
        settings.max_planned_occurrences,
        settings.expansion_timeout_s,
    )
    if expansion.unmatched_exdates:
        index = expansion.unmatched_exdates[0]
        raise ScheduleError(
            f"exdates[{index}]", f"{exdates[index]!r} is not an occurrence of the rule"
        )
    if not expansion.starts:
        raise ScheduleError(
            "rrule",
            f"the rule gives no occurrence within {settings.plan_days} days of starts_at"
            + (" once the exceptions are removed" if exdates else ""),
        )
    duration = timedelta(seconds=duration_s)
    gap = timedelta(seconds=settings.conflict_gap_s)
    for earlier, later in zip(expansion.starts, expansion.starts[1:], strict=False):
        if later - earlier < duration + gap:
            raise ScheduleError(
                "rrule",
                f"occurrences {later - earlier} apart overlap each other: the audio lasts "
                f"{duration_s:.0f} s",
            )
    slots = [Slot(start, start + duration) for start in expansion.starts]
    through = None
    if not expansion.complete:
        through = (
            expansion.starts[-1] + timedelta(microseconds=1)
            if len(expansion.starts) >= settings.max_planned_occurrences
            else window_end
        )
    return Timing(series, slots, expansion.complete, through)


def zone(settings: BroadcastSettings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def quiet_problem(
    slot: Slot,
    quiet: Mapping[int, QuietHours],
    ward_codes: Mapping[int, str],
    settings: BroadcastSettings,
) -> str | None:
    """Why the slot may not play (it touches a ward's quiet hours), or None."""
    local_zone = zone(settings)
    for ward_id, hours in sorted(quiet.items()):
        if hours.overlaps(slot.starts_at, slot.ends_at, local_zone):
            local = slot.starts_at.astimezone(local_zone)
            return (
                f"the occurrence at {local:%Y-%m-%d %H:%M} falls in the quiet hours of "
                f"{ward_codes.get(ward_id, ward_id)} ({hours.label()}); only emergencies "
                "may play then"
            )
    return None


def default_quiet_hours(settings: BroadcastSettings) -> QuietHours:
    return QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)


async def quiet_hours(
    conn: Any, ward_ids: Sequence[int], settings: BroadcastSettings
) -> dict[int, QuietHours]:
    rows = await conn.fetch(
        "SELECT ward_id, starts, ends FROM ward_quiet_hours WHERE ward_id = ANY($1::int[])",
        list(ward_ids),
    )
    own: dict[int, QuietHours] = {r["ward_id"]: QuietHours(r["starts"], r["ends"]) for r in rows}
    default = default_quiet_hours(settings)
    return {ward_id: own.get(ward_id, default) for ward_id in ward_ids}


def parse_clock(text: str) -> time:
    return time.fromisoformat(text)


OPEN_SERIES = """
SELECT id, starts_at, timezone, rrule, exdates, duration_s, planned_through
FROM broadcast
WHERE state = 'active' AND planned_through IS NOT NULL AND planned_through < $1
ORDER BY planned_through
"""


async def extend_series(pool: Any, settings: BroadcastSettings, now: datetime) -> int:
    """Plan open-ended series further ahead, up to ``plan_days`` from now; return how many.

    New slots are not checked for conflicts (speakers refuse a normal play while another
    plays); quiet hours are enforced again when each occurrence fires.
    """
    horizon = now + timedelta(days=settings.plan_days)
    extended = 0
    for row in await pool.fetch(OPEN_SERIES, horizon - timedelta(days=1)):
        series = Series(row["starts_at"], row["timezone"], row["rrule"], tuple(row["exdates"]))
        try:
            expansion = await expand_isolated(
                series,
                row["planned_through"],
                horizon,
                settings.max_planned_occurrences,
                settings.expansion_timeout_s,
            )
        except ScheduleError as exc:
            log.warning("broadcast %d cannot be planned further: %s", row["id"], exc.message)
            continue
        duration = timedelta(seconds=row["duration_s"])
        through = None
        if not expansion.complete:
            through = (
                expansion.starts[-1] + timedelta(microseconds=1)
                if len(expansion.starts) >= settings.max_planned_occurrences
                else horizon
            )
        async with pool.acquire() as conn, conn.transaction():
            await insert_slots(conn, row["id"], [Slot(s, s + duration) for s in expansion.starts])
            await conn.execute(
                "UPDATE broadcast SET planned_through = $2 WHERE id = $1 AND planned_through = $3",
                row["id"],
                through,
                row["planned_through"],
            )
        extended += 1
    return extended


async def insert_slots(conn: Any, broadcast_id: int, slots: Sequence[Slot]) -> None:
    await conn.execute(
        "INSERT INTO broadcast_slot (broadcast_id, starts_at, ends_at, shifted_from) "
        "SELECT $1, * FROM unnest($2::timestamptz[], $3::timestamptz[], $4::timestamptz[]) "
        "ON CONFLICT DO NOTHING",
        broadcast_id,
        [s.starts_at for s in slots],
        [s.ends_at for s in slots],
        [s.shifted_from for s in slots],
    )
