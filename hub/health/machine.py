"""The health state machine of one device, as a pure function of what the hub knows.

unknown → online → late → offline, plus degraded (the device reports a fault) and
maintenance (set by a technician, until an end time). Connectivity ("connected", from
MQTT status and Last Will, CoAP activity, ONVIF probes) is kept apart from activity
("last_seen"): an explicit disconnect makes a device offline at once, but nothing but
real activity ever makes it online.

Flapping (as Nagios and Icinga detect it) is judged beside the status, not instead of it:
a device whose status changed too often within a window flaps until the changes in the
window fall low enough again (two thresholds, so it does not flap in and out of
flapping). While it flaps its status keeps following the facts; the health API shows
"flapping" with its reason, and alerts on its transitions are held back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Timing:
    expected_interval: timedelta
    late_factor: float = 1.5
    offline_factor: float = 3.0

    @property
    def late_after(self) -> timedelta:
        return self.expected_interval * self.late_factor

    @property
    def offline_after(self) -> timedelta:
        return self.expected_interval * self.offline_factor


@dataclass(frozen=True, slots=True)
class Observed:
    last_seen: datetime | None
    connected: bool | None
    faults: Sequence[str]
    maintenance_until: datetime | None


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    reason: str


def assess(observed: Observed, timing: Timing, now: datetime) -> Verdict:
    if observed.maintenance_until is not None and observed.maintenance_until > now:
        return Verdict(
            "maintenance", f"maintenance until {observed.maintenance_until:%Y-%m-%d %H:%M} UTC"
        )
    if observed.connected is False:
        return Verdict("offline", "disconnected")
    if observed.last_seen is None:
        return Verdict("unknown", "never heard from")
    silent = now - observed.last_seen
    if silent > timing.offline_after:
        return Verdict("offline", f"silent for {describe(silent)}")
    if silent > timing.late_after:
        return Verdict("late", f"silent for {describe(silent)}")
    if observed.faults:
        return Verdict("degraded", ", ".join(sorted(observed.faults)))
    return Verdict("online", "")


def describe(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@dataclass(frozen=True, slots=True)
class Flapping:
    window: timedelta
    enter_changes: int
    leave_changes: int


def flaps(changes: int, flapping: bool, rule: Flapping) -> bool:
    """Whether a device with ``changes`` state changes in the window flaps (it did:
    ``flapping``): it starts at ``enter_changes`` and stops at ``leave_changes`` or fewer."""
    if flapping:
        return changes > rule.leave_changes
    return changes >= rule.enter_changes


def flap_reason(changes: int, rule: Flapping) -> str:
    return f"{changes} state changes in {describe(rule.window)}"
