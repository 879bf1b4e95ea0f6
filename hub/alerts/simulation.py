"""Dry runs: replay stored readings through a rule without storing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from hub.alerts.rules import DEFAULT_MESSAGES, RuleIn, ThresholdRule, Track, step
from hub.alerts.windows import LocalWindow


@dataclass
class SimulatedAlert:
    device: str
    severity: str
    fired_at: datetime
    peak: float
    resolved_at: datetime | None = None


@dataclass
class Simulation:
    readings: int = 0
    devices: int = 0
    events: list[SimulatedAlert] = field(default_factory=list)


def as_threshold_rule(rule: RuleIn, zone: ZoneInfo) -> ThresholdRule:
    assert rule.metric and rule.comparison and rule.threshold is not None
    return ThresholdRule(
        id=0,
        name=rule.name,
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        clear_threshold=rule.clear_threshold
        if rule.clear_threshold is not None
        else rule.threshold,
        severity=rule.severity,
        escalations=tuple((e.threshold, e.severity) for e in rule.escalations),
        hold=timedelta(seconds=rule.for_seconds),
        message=rule.message or DEFAULT_MESSAGES["threshold"],
        window=LocalWindow.of(rule.window, zone) if rule.window else None,
    )


async def dry_run(
    pool: asyncpg.Pool,
    rule: RuleIn,
    start: datetime,
    end: datetime,
    ward_ids: frozenset[int] | None,
    zone: ZoneInfo,
) -> Simulation:
    compiled = as_threshold_rule(rule, zone)
    scope, value = rule.scope.type, rule.scope.value
    rows = await pool.fetch(
        """
        SELECT d.uid, r.time, r.value FROM reading r
        JOIN device d ON d.id = r.device_id LEFT JOIN ward w ON w.id = d.ward_id
        WHERE r.metric = $1 AND r.time >= $2 AND r.time < $3 AND d.lifecycle = 'active'
          AND ($4::int[] IS NULL OR d.ward_id = ANY($4))
          AND ($5 = 'all' OR ($5 = 'kind' AND d.kind = $6) OR ($5 = 'ward' AND w.code = $6)
               OR ($5 = 'device' AND d.uid = $6)
               OR ($5 = 'group' AND d.id IN (SELECT device_id FROM device_group_member
                                             WHERE group_id::text = $6)))
        ORDER BY d.uid, r.time
        """,
        compiled.metric,
        start,
        end,
        sorted(ward_ids) if ward_ids is not None else None,
        scope,
        value,
    )
    result = Simulation(readings=len(rows))
    tracks: dict[str, Track] = {}
    open_alerts: dict[str, SimulatedAlert] = {}
    for row in rows:
        uid = row["uid"]
        track, action = step(compiled, tracks.get(uid, Track()), row["value"], row["time"])
        tracks[uid] = track
        current = open_alerts.get(uid)
        if current is not None:
            current.peak = (
                max(current.peak, row["value"])
                if compiled.comparison in (">", ">=")
                else min(current.peak, row["value"])
            )
        if action is None:
            continue
        if action.kind == "fire":
            alert = SimulatedAlert(
                uid, action.severity or rule.severity, action.since or row["time"], row["value"]
            )
            open_alerts[uid] = alert
            result.events.append(alert)
        elif action.kind == "resolve" and current is not None:
            opening = compiled.window.occurrence(current.fired_at) if compiled.window else None
            # Closed by its window: at the window's end, not at the next reading after it.
            current.resolved_at = opening.closes if action.reason and opening else row["time"]
            del open_alerts[uid]
        elif action.kind == "raise" and current is not None:
            current.severity = action.severity or current.severity
    result.devices = len(tracks)
    return result
