"""Loudspeaker broadcasts: audio, text-to-speech, schedules, conflicts, dispatch, delivery.

Other slices use what is named here and nothing else of the package (the layering
contracts in pyproject.toml check it): `operations` (list, schedule, cancel and report
broadcasts; upload and synthesise audio) over the running `Broadcasts` (BROADCASTS in
the hub's runtime), and the schemas the console fills. `wiring` (hub.broadcasts.wiring)
is the composition root's hook.

The names load on first use (PEP 562): the RRULE expansion runs in a child process that
imports hub.broadcasts.schedule, and should not pay for the whole slice to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.lazy import exports

if TYPE_CHECKING:
    from hub.broadcasts import controls as speaker_controls
    from hub.broadcasts import service as operations
    from hub.broadcasts import speaker_plays as speaker_history
    from hub.broadcasts.api import MULTIPART_OVERHEAD
    from hub.broadcasts.dispatch import SPEAKERS
    from hub.broadcasts.occurrences import OPEN as OPEN_OCCURRENCES
    from hub.broadcasts.occurrences import Status as OccurrenceStatus
    from hub.broadcasts.schemas import AssetOut, BroadcastIn, PlanOut, SpeakerDelivery, TargetsIn
    from hub.broadcasts.service import BROADCASTS, Broadcasts, may_schedule
    from hub.broadcasts.settings import BroadcastSettings

_WHERE = {
    "operations": ("hub.broadcasts.service", None),
    "speaker_controls": ("hub.broadcasts.controls", None),
    "speaker_history": ("hub.broadcasts.speaker_plays", None),
    "SPEAKERS": ("hub.broadcasts.dispatch", "SPEAKERS"),
    "TargetsIn": ("hub.broadcasts.schemas", "TargetsIn"),
    "may_schedule": ("hub.broadcasts.service", "may_schedule"),
    "MULTIPART_OVERHEAD": ("hub.broadcasts.api", "MULTIPART_OVERHEAD"),
    "OPEN_OCCURRENCES": ("hub.broadcasts.occurrences", "OPEN"),
    "OccurrenceStatus": ("hub.broadcasts.occurrences", "Status"),
    "AssetOut": ("hub.broadcasts.schemas", "AssetOut"),
    "BroadcastIn": ("hub.broadcasts.schemas", "BroadcastIn"),
    "PlanOut": ("hub.broadcasts.schemas", "PlanOut"),
    "SpeakerDelivery": ("hub.broadcasts.schemas", "SpeakerDelivery"),
    "BROADCASTS": ("hub.broadcasts.service", "BROADCASTS"),
    "Broadcasts": ("hub.broadcasts.service", "Broadcasts"),
    "BroadcastSettings": ("hub.broadcasts.settings", "BroadcastSettings"),
}

__all__ = [
    "BROADCASTS",
    "MULTIPART_OVERHEAD",
    "OPEN_OCCURRENCES",
    "SPEAKERS",
    "AssetOut",
    "BroadcastIn",
    "BroadcastSettings",
    "Broadcasts",
    "OccurrenceStatus",
    "PlanOut",
    "SpeakerDelivery",
    "TargetsIn",
    "may_schedule",
    "operations",
    "speaker_controls",
    "speaker_history",
]


__getattr__ = exports(__name__, _WHERE)
