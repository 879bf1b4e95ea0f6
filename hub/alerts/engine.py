"""Evaluation: threshold rules on every stored reading, health rules on every health tick.

Rules and the devices each one covers are compiled in memory (refreshed when rules change
and periodically, for new devices and group members); where a (rule, device) pair stands
is kept in memory and in alert_rule_state, so a restart keeps pending "for" durations.

A rule with an active window judges each reading by the local time it was measured at
(rules.step); the periodic evaluation (health_tick, on the health monitor's clock) resolves
the alerts of windows that have closed, whichever process received their readings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from hub.alerts import lifecycle, windows
from hub.alerts.rules import DEFAULT_MESSAGES, ThresholdRule, Track, render, step
from hub.health import DeviceHealth, FlapChange
from hub.runtime import RuntimeKey
from hub.telemetry import METRICS, Row

log = logging.getLogger("hub.alerts")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    uid: str
    name: str
    kind: str
    ward_id: int | None
    ward: str | None
    in_maintenance: bool


@dataclass(frozen=True, slots=True)
class HealthRule:
    id: int
    name: str
    kind: str  # offline | degraded
    severity: str
    hold: timedelta
    message: str


@dataclass
class MetricIndex:
    """The threshold rules of one metric, sorted by threshold per comparison, so a reading
    finds the rules it breaches by bisection instead of trying every rule."""

    by_comparison: dict[str, tuple[list[float], list[tuple[ThresholdRule, frozenset[int]]]]] = (
        field(default_factory=dict)
    )
    by_id: dict[int, tuple[ThresholdRule, frozenset[int]]] = field(default_factory=dict)

    def add(self, rule: ThresholdRule, covered: frozenset[int]) -> None:
        self.by_id[rule.id] = (rule, covered)

    def seal(self) -> None:
        for comparison in (">", ">=", "<", "<="):
            entries = sorted(
                (e for e in self.by_id.values() if e[0].comparison == comparison),
                key=lambda e: e[0].threshold,
            )
            self.by_comparison[comparison] = ([e[0].threshold for e in entries], entries)

    def breached(self, value: float) -> list[tuple[ThresholdRule, frozenset[int]]]:
        found: list[tuple[ThresholdRule, frozenset[int]]] = []
        for comparison, (thresholds, entries) in self.by_comparison.items():
            if comparison == ">":
                found += entries[: bisect_left(thresholds, value)]
            elif comparison == ">=":
                found += entries[: bisect_right(thresholds, value)]
            elif comparison == "<":
                found += entries[bisect_right(thresholds, value) :]
            else:
                found += entries[bisect_left(thresholds, value) :]
        return found


@dataclass
class AlertEngine:
    pool: asyncpg.Pool
    # A cleared health condition must hold this long before its alert resolves, so a
    # device bouncing on and off raises one alert, not ten.
    health_resolve_hold: timedelta = timedelta(minutes=2)
    refresh_every_s: float = 30.0
    flapping_severity: str = "minor"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    """The local time of the rules' active windows."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """The hub's clock: whether a reading arrived after its window had closed."""
    windowed: list[ThresholdRule] = field(default_factory=list)
    rules_by_metric: dict[str, MetricIndex] = field(default_factory=dict)
    # Per device, the (metric, rule id) pairs whose track is not idle (pending or firing):
    # those see every reading, breaching or not.
    busy: dict[int, set[tuple[str, int]]] = field(default_factory=dict)
    health_rules: list[tuple[HealthRule, frozenset[int]]] = field(default_factory=list)
    devices: dict[int, DeviceInfo] = field(default_factory=dict)
    tracks: dict[tuple[int, int], Track] = field(default_factory=dict)
    _refreshed_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self) -> None:
        """Reload rules, devices, and where every (rule, device) pair stands."""
        async with self._lock:
            devices = await self.pool.fetch(
                "SELECT d.id, d.uid, d.name, d.kind, d.ward_id, w.code AS ward, "
                "coalesce(d.maintenance_until > now(), false) AS in_maintenance "
                "FROM device d LEFT JOIN ward w ON w.id = d.ward_id WHERE d.lifecycle = 'active'"
            )
            self.devices = {
                r["id"]: DeviceInfo(
                    r["uid"], r["name"], r["kind"], r["ward_id"], r["ward"], r["in_maintenance"]
                )
                for r in devices
            }
            rules = await self.pool.fetch("SELECT * FROM alert_rule WHERE enabled ORDER BY id")
            by_metric: dict[str, MetricIndex] = defaultdict(MetricIndex)
            health: list[tuple[HealthRule, frozenset[int]]] = []
            windowed: list[ThresholdRule] = []
            for rule in rules:
                covered = await self._covered(rule)
                if rule["kind"] == "threshold":
                    compiled = compile_threshold(rule, self.zone)
                    by_metric[rule["metric"]].add(compiled, covered)
                    if compiled.window is not None:
                        windowed.append(compiled)
                else:
                    health.append(
                        (
                            HealthRule(
                                rule["id"],
                                rule["name"],
                                rule["kind"],
                                rule["severity"],
                                timedelta(seconds=rule["for_seconds"]),
                                rule["message_template"] or DEFAULT_MESSAGES[rule["kind"]],
                            ),
                            covered,
                        )
                    )
            for index in by_metric.values():
                index.seal()
            self.rules_by_metric, self.health_rules = dict(by_metric), health
            self.windowed = windowed
            tracks: dict[tuple[int, int], Track] = {}
            for row in await self.pool.fetch(
                "SELECT rule_id, device_id, pending_since FROM alert_rule_state"
            ):
                tracks[(row["rule_id"], row["device_id"])] = Track(
                    pending_since=row["pending_since"]
                )
            for row in await self.pool.fetch(
                "SELECT rule_id, device_id, severity FROM alert WHERE state <> 'resolved' "
                "AND rule_id IS NOT NULL"
            ):
                tracks[(row["rule_id"], row["device_id"])] = Track(severity=row["severity"])
            self.tracks = tracks
            metric_of = {
                rule_id: metric for metric, index in by_metric.items() for rule_id in index.by_id
            }
            self.busy = {}
            for (rule_id, device_id), track in tracks.items():
                if rule_id in metric_of and (track.firing or track.pending_since is not None):
                    self.busy.setdefault(device_id, set()).add((metric_of[rule_id], rule_id))
            self._refreshed_at = time.monotonic()

    async def _covered(self, rule: asyncpg.Record) -> frozenset[int]:
        scope, value = rule["scope_type"], rule["scope_value"]
        ids: list[int]
        if scope == "all":
            ids = list(self.devices)
        elif scope == "kind":
            ids = [i for i, d in self.devices.items() if d.kind == value]
        elif scope == "ward":
            ids = [i for i, d in self.devices.items() if d.ward == value]
        elif scope == "device":
            ids = [i for i, d in self.devices.items() if d.uid == value]
        else:
            ids = await group_device_ids(self.pool, int(value))
        return frozenset(i for i in ids if i in self.devices)

    async def maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed_at > self.refresh_every_s:
            await self.refresh()

    async def readings_stored(self, rows: Sequence[Row]) -> None:
        await self.maybe_refresh()
        now = self.clock()
        for at, device_id, metric, value in sorted(rows, key=lambda r: r[0]):
            index = self.rules_by_metric.get(metric)
            if index is None:
                continue
            candidates = index.breached(value)
            for busy_metric, rule_id in self.busy.get(device_id, ()):
                if busy_metric == metric and rule_id in index.by_id:
                    candidates.append(index.by_id[rule_id])
            seen: set[int] = set()
            for rule, covered in candidates:
                if device_id not in covered or rule.id in seen:
                    continue
                seen.add(rule.id)
                device = self.devices[device_id]
                key = (rule.id, device_id)
                before = self.tracks.get(key, Track())
                if device.in_maintenance and not before.firing:
                    continue
                after, action = step(rule, before, value, at, now)
                self.tracks[key] = after
                if after.firing or after.pending_since is not None:
                    self.busy.setdefault(device_id, set()).add((metric, rule.id))
                else:
                    self.busy.get(device_id, set()).discard((metric, rule.id))
                if action is None:
                    if after.pending_since != before.pending_since:
                        await lifecycle.save_pending(
                            self.pool, rule.id, device_id, after.pending_since
                        )
                    continue
                if action.kind == "fire":
                    await lifecycle.fire(
                        self.pool,
                        lifecycle.NewAlert(
                            rule.id,
                            rule.name,
                            device_id,
                            device.ward_id,
                            action.severity or rule.severity,
                            value,
                            rule.threshold,
                            render(
                                rule.message,
                                self._values(
                                    device,
                                    rule.name,
                                    action.severity or rule.severity,
                                    metric=metric,
                                    value=value,
                                    threshold=rule.threshold,
                                ),
                            ),
                            action.since or at,
                        ),
                    )
                elif action.kind == "resolve":
                    await lifecycle.resolve_open(
                        self.pool, rule.id, device_id, "auto", value, action.reason
                    )
                else:
                    await lifecycle.raise_severity(
                        self.pool, rule.id, device_id, action.severity or rule.severity, value
                    )

    def resolved_by_hand(self, rule_id: int, device_id: int, at: datetime) -> None:
        """A person closed the pair's alert: it is pending again from ``at`` (see
        ``lifecycle.resolve_manually``), not firing, so a lasting breach raises a new one."""
        key = (rule_id, device_id)
        self.tracks[key] = Track(pending_since=at)
        for metric, index in self.rules_by_metric.items():
            if rule_id in index.by_id:
                self.busy.setdefault(device_id, set()).add((metric, rule_id))

    async def flapping_changed(self, change: FlapChange) -> None:
        """One alert for a flapping device, open while it flaps (the rules' own alerts on
        its transitions are held back meanwhile, see ``health_tick``)."""
        await self.maybe_refresh()
        device = change.device
        info = self.devices.get(device.id)
        if not change.flapping:
            await lifecycle.resolve_flapping(self.pool, device.id)
            return
        if info is None or info.in_maintenance:
            return
        alert_id = await lifecycle.fire_flapping(
            self.pool,
            device.id,
            device.ward_id,
            self.flapping_severity,
            f"{info.uid} is flapping: {change.reason}",
            change.at,
        )
        if alert_id:
            log.info(
                "alert %s fired: %s flapping (%s)",
                alert_id,
                info.uid,
                change.reason,
                extra={"device_uid": info.uid},
            )

    async def close_windows(self, now: datetime) -> None:
        """Resolve what windowed rules opened in an opening of their window that has ended,
        and forget what was pending then: a night alert does not stay open all day."""
        states: list[lifecycle.WindowState] = []
        openings: dict[int, windows.Occurrence | None] = {}
        for rule in self.windowed:
            assert rule.window is not None
            opening = openings[rule.id] = rule.window.occurrence(now)
            states.append(
                lifecycle.WindowState(
                    rule.id, opening.opens if opening else None, rule.window.closed_reason()
                )
            )
        if not states:
            return
        resolved = set(await lifecycle.close_windows(self.pool, states, now))
        for key, track in list(self.tracks.items()):
            rule_id, device_id = key
            if rule_id not in openings:
                continue
            opening = openings[rule_id]
            stale_pending = track.pending_since is not None and (
                opening is None or track.pending_since < opening.opens
            )
            if key in resolved or stale_pending or (track.firing and opening is None):
                self.tracks[key] = Track()
                for metric, index in self.rules_by_metric.items():
                    if rule_id in index.by_id:
                        self.busy.get(device_id, set()).discard((metric, rule_id))
        for rule_id, device_id in sorted(resolved):
            log.info(
                "alert of rule %s on device %s resolved: its window closed", rule_id, device_id
            )

    async def health_tick(self, assessed: Sequence[DeviceHealth], now: datetime) -> None:
        await self.maybe_refresh()
        await self.close_windows(now)
        for device in assessed:
            info = self.devices.get(device.id)
            if info is None or device.flapping:
                # A flapping device: its one flapping alert instead of one per transition.
                continue
            for rule, covered in self.health_rules:
                if device.id not in covered:
                    continue
                key = (rule.id, device.id)
                track = self.tracks.get(key, Track())
                since = device.status_changed_at or now
                bad = device.status == rule.kind
                resolved_by_hand = None if track.firing else track.pending_since
                if resolved_by_hand is not None:
                    if not bad:
                        # What was resolved by hand has cleared: nothing is pending any more.
                        self.tracks[key] = track = Track()
                        await lifecycle.save_pending(self.pool, rule.id, device.id, None)
                    else:
                        # Resolved by hand while still bad: the duration counts from then.
                        since = max(since, resolved_by_hand)
                if (
                    not track.firing
                    and bad
                    and not info.in_maintenance
                    and now - since >= rule.hold
                ):
                    alert_id = await lifecycle.fire(
                        self.pool,
                        lifecycle.NewAlert(
                            rule.id,
                            rule.name,
                            device.id,
                            device.ward_id,
                            rule.severity,
                            None,
                            None,
                            render(
                                rule.message,
                                self._values(
                                    info,
                                    rule.name,
                                    rule.severity,
                                    status=device.status,
                                    reason=await self._reason(device.id),
                                ),
                            ),
                            since,
                        ),
                    )
                    self.tracks[key] = Track(severity=rule.severity)
                    if alert_id:
                        log.info(
                            "alert %s fired: %s %s",
                            alert_id,
                            info.uid,
                            rule.kind,
                            extra={"device_uid": info.uid},
                        )
                elif (
                    track.firing
                    and not bad
                    and device.status not in ("unknown",)
                    and (device.status == "maintenance" or now - since >= self.health_resolve_hold)
                ):
                    await lifecycle.resolve_open(self.pool, rule.id, device.id, "auto")
                    self.tracks[key] = Track()

    async def _reason(self, device_id: int) -> str:
        return str(
            await self.pool.fetchval("SELECT status_reason FROM device WHERE id = $1", device_id)
            or ""
        )

    @staticmethod
    def _values(device: DeviceInfo, rule: str, severity: str, **extra: Any) -> dict[str, Any]:
        metric = extra.get("metric")
        return {
            "device": device.uid,
            "device_name": device.name or device.uid,
            "ward": device.ward or "",
            "rule": rule,
            "severity": severity,
            "unit": METRICS[metric].unit if isinstance(metric, str) and metric in METRICS else "",
            "metric": "",
            "value": float("nan"),
            "threshold": float("nan"),
            "status": "",
            "reason": "",
            **extra,
        }


def compile_threshold(rule: asyncpg.Record, zone: ZoneInfo) -> ThresholdRule:
    escalations = tuple(
        (float(e["threshold"]), str(e["severity"])) for e in json.loads(rule["escalations"] or "[]")
    )
    return ThresholdRule(
        id=rule["id"],
        name=rule["name"],
        metric=rule["metric"],
        comparison=rule["comparison"],
        threshold=rule["threshold"],
        clear_threshold=rule["clear_threshold"],
        severity=rule["severity"],
        escalations=escalations,
        hold=timedelta(seconds=rule["for_seconds"]),
        message=rule["message_template"] or DEFAULT_MESSAGES["threshold"],
        window=windows.compiled(
            rule["window_start"], rule["window_end"], rule["window_days"], zone
        ),
    )


async def group_device_ids(pool: asyncpg.Pool, group_id: int) -> list[int]:
    group = await pool.fetchrow("SELECT * FROM device_group WHERE id = $1", group_id)
    if group is None:
        return []
    if group["filter"] is None:
        rows = await pool.fetch(
            "SELECT device_id FROM device_group_member WHERE group_id = $1", group_id
        )
        return [r["device_id"] for r in rows]
    saved = json.loads(group["filter"])
    rows = await pool.fetch(
        "SELECT d.id FROM device d LEFT JOIN ward w ON w.id = d.ward_id WHERE "
        "($1::text IS NULL OR d.kind = $1) AND (cardinality($2::text[]) = 0 OR w.code = ANY($2)) "
        "AND ($3::text IS NULL OR d.status = $3) AND ($4::text IS NULL OR $4 = ANY(d.tags)) "
        "AND ($5::int IS NULL OR d.ward_id = $5)",
        saved.get("kind"),
        saved.get("wards", []),
        saved.get("status"),
        saved.get("tag"),
        group["ward_id"],
    )
    return [r["id"] for r in rows]


ALERT_ENGINE: RuntimeKey[AlertEngine] = RuntimeKey("the alert engine")
