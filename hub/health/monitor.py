"""Health of every device: transports report, the monitor decides, history is kept.

Heartbeats and readings update what is known (connected, last_seen, last_data_at,
faults); the state machine in `machine.assess` turns that into a status, at once for a
heartbeat and every few seconds for silence. Each change is a health_event row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import TypeVar

import asyncpg

from drivers.contract import DeviceEvent, Heartbeat, UnknownDevice
from hub.devices import DeviceDirectory
from hub.health.machine import Observed, Timing, assess, flap_reason, flaps
from hub.health.settings import HealthSettings
from hub.runtime import RuntimeKey, notify_live
from hub.telemetry import Row

log = logging.getLogger("hub.health")
FAULT_EVENTS = frozenset(
    {"amplifier_fault", "speaker_fault", "clock_drift", "auth_failed", "low_battery", "tamper"}
)
LOW_BATTERY_PERCENT, BATTERY_RECOVERED_PERCENT = 15.0, 25.0


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    id: int
    uid: str
    kind: str
    ward_id: int | None
    status: str
    status_changed_at: datetime | None
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    device: DeviceHealth
    from_status: str
    to_status: str
    reason: str
    at: datetime


_News = TypeVar("_News", Heartbeat, DeviceEvent)
TickHook = Callable[[Sequence[DeviceHealth], datetime], Awaitable[None]]
TransitionHook = Callable[[Transition], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FlapChange:
    device: DeviceHealth
    flapping: bool
    """True: it started flapping; False: it stopped."""
    reason: str
    at: datetime


FlapHook = Callable[[FlapChange], Awaitable[None]]

_SELECT = """
SELECT id, uid, kind, ward_id, status, status_reason, status_changed_at, last_seen, connected,
       faults, maintenance_until, expected_interval_s, flapping_since
FROM device WHERE lifecycle = 'active'
"""
_CHANGES = """
SELECT d.id, d.uid, d.kind, d.ward_id, d.status, d.status_changed_at, d.flapping_since,
       d.flapping_reason,
       (SELECT count(*) FROM health_event e WHERE e.device_id = d.id AND e.at > $2)::int
           AS changes
FROM device d WHERE d.id = ANY($1::bigint[])
"""


@dataclass
class HealthMonitor:
    pool: asyncpg.Pool
    directory: DeviceDirectory
    settings: HealthSettings = field(default_factory=HealthSettings)
    on_tick: list[TickHook] = field(default_factory=list)
    on_transition: list[TransitionHook] = field(default_factory=list)
    on_flapping: list[FlapHook] = field(default_factory=list)
    # Called after a maintenance window is set or ended (the alert rules depend on it).
    on_maintenance: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _touched: dict[int, float] = field(default_factory=dict)
    _battery_low: dict[int, bool] = field(default_factory=dict)

    async def _registered(
        self, items: Sequence[_News]
    ) -> tuple[list[tuple[int, _News]], list[str]]:
        """Each item with its device id, and the uids that are not registered devices.

        One directory look-up for the batch: a rollout's reboots bring thousands of
        statuses at once, and a query per uid was a quarter of the hub's time."""
        refs = await self.directory.resolve_many({item.device_uid for item in items})
        known: list[tuple[int, _News]] = []
        unknown: list[str] = []
        for item in items:
            ref = refs[item.device_uid]
            if ref is None or ref.lifecycle == "pending":
                unknown.append(item.device_uid)
            else:
                known.append((ref.id, item))
        return known, unknown

    async def heartbeat(self, item: Heartbeat) -> None:
        if await self.heartbeats([item]):
            raise UnknownDevice(f"device {item.device_uid!r} is not registered")

    async def heartbeats(self, items: Sequence[Heartbeat]) -> list[str]:
        """Take many heartbeats at once (a fleet reconnecting after a broker restart): two
        statements and one reassessment, not a round of them per device. Returns the uids
        that are not registered devices (they are left out)."""
        known, unknown = await self._registered(items)
        newest = dict(known)  # in arrival order: the last word wins
        if not newest:
            return unknown
        alive = [(i, h.time) for i, h in newest.items() if h.connected]
        gone = [i for i, h in newest.items() if not h.connected]
        async with self.pool.acquire() as conn, conn.transaction():
            if alive:
                await conn.execute(
                    "UPDATE device d SET connected = true, last_seen = greatest(d.last_seen, n.at) "
                    "FROM unnest($1::bigint[], $2::timestamptz[]) AS n(id, at) WHERE d.id = n.id",
                    [i for i, _ in alive],
                    [at for _, at in alive],
                )
            if gone:
                await conn.execute(
                    "UPDATE device SET connected = false WHERE id = ANY($1::bigint[])", gone
                )
        await self.reassess(sorted(newest))
        return unknown

    async def event(self, item: DeviceEvent) -> None:
        if await self.events([item]):
            raise UnknownDevice(f"device {item.device_uid!r} is not registered")

    async def events(self, items: Sequence[DeviceEvent]) -> list[str]:
        """Store many device events at once, in order, and apply the faults they raise or
        clear (a fleet's first statuses bring two each). Returns the uids that are not
        registered devices (their events are left out)."""
        known, unknown = await self._registered(items)
        if not known:
            return unknown
        # Only each fault's last word counts; the history keeps every event.
        final = {(device_id, e.kind): e.active for device_id, e in known if e.kind in FAULT_EVENTS}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO device_event (device_id, at, kind, active, data) "
                "SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], "
                "$4::bool[], $5::jsonb[])",
                [device_id for device_id, _ in known],
                [e.time for _, e in known],
                [e.kind for _, e in known],
                [e.active for _, e in known],
                [json.dumps(dict(e.data), default=str) for _, e in known],
            )
            if final:
                await set_faults(conn, final)
        await self.reassess(sorted({device_id for device_id, _ in known}))
        return unknown

    async def readings_stored(self, rows: Sequence[Row]) -> None:
        """Data is activity: refresh last_seen and last_data_at; watch battery levels.

        Called for every written batch, so it writes only what changed: a device's
        activity at most once a second, a battery fault only when it flips.
        """
        newest: dict[int, datetime] = {}
        battery: dict[int, float] = {}
        for time, device_id, metric, value in rows:
            if time > newest.get(device_id, time - timedelta(seconds=1)):
                newest[device_id] = time
            if metric == "battery":
                battery[device_id] = value
        moment = monotonic()
        due = sorted(i for i in newest if moment - self._touched.get(i, -1e9) >= 1.0)
        flips: list[tuple[int, bool]] = []
        for device_id, level in sorted(battery.items()):
            low = self._battery_low.get(device_id)
            if level < LOW_BATTERY_PERCENT and low is not True:
                flips.append((device_id, True))
            elif level >= BATTERY_RECOVERED_PERCENT and low is not False:
                flips.append((device_id, False))
        if not due and not flips:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if due:
                await conn.execute(
                    "UPDATE device d SET last_data_at = greatest(d.last_data_at, n.at), "
                    "last_seen = greatest(d.last_seen, n.at), connected = true "
                    "FROM unnest($1::bigint[], $2::timestamptz[]) AS n(id, at) WHERE d.id = n.id",
                    due,
                    [newest[i] for i in due],
                )
            for device_id, low in flips:
                await set_fault(conn, device_id, "low_battery", low)
        for device_id in due:
            self._touched[device_id] = moment
        for device_id, low in flips:
            self._battery_low[device_id] = low
        await self.reassess(sorted({*due, *(device_id for device_id, _ in flips)}))

    def forget_all(self) -> None:
        """Drop what is remembered per device id (ids are never reused outside tests)."""
        self._touched.clear()
        self._battery_low.clear()

    async def reassess(self, device_ids: Sequence[int] | None = None) -> list[DeviceHealth]:
        """Apply the state machine; return every assessed device as it now stands."""
        now = self.clock()
        if device_ids is None:
            rows = await self.pool.fetch(_SELECT)
        else:
            rows = await self.pool.fetch(_SELECT + " AND id = ANY($1::bigint[])", list(device_ids))
        assessed: list[DeviceHealth] = []
        changes: list[tuple[DeviceHealth, str, str]] = []
        for row in rows:
            interval = row["expected_interval_s"] or self.settings.interval_for(row["kind"])
            timing = Timing(
                timedelta(seconds=interval), self.settings.late_factor, self.settings.offline_factor
            )
            verdict = assess(
                Observed(
                    row["last_seen"], row["connected"], row["faults"], row["maintenance_until"]
                ),
                timing,
                now,
            )
            health = DeviceHealth(
                row["id"],
                row["uid"],
                row["kind"],
                row["ward_id"],
                row["status"],
                row["status_changed_at"],
                row["flapping_since"] is not None,
            )
            if verdict.status != row["status"] or verdict.reason != row["status_reason"]:
                changes.append((health, verdict.status, verdict.reason))
            else:
                assessed.append(health)
        if changes:
            applied = await self._apply(changes, now)
            moved = [c[0].id for c in changes if c[1] != c[0].status]
            flapping = await self.review_flapping(moved, now) if moved else {}
            assessed += [replace(d, flapping=flapping.get(d.id, d.flapping)) for d in applied]
        return assessed

    async def review_flapping(
        self, device_ids: Sequence[int], now: datetime | None = None
    ) -> dict[int, bool]:
        """Count each device's state changes in the window and start or stop its flapping
        (machine.flaps); returns whether each flaps now."""
        now = now or self.clock()
        rule = self.settings.flapping
        rows = await self.pool.fetch(_CHANGES, sorted(set(device_ids)), now - rule.window)
        result: dict[int, bool] = {}
        news: list[FlapChange] = []
        for row in rows:
            was = row["flapping_since"] is not None
            flapping = flaps(row["changes"], was, rule)
            result[row["id"]] = flapping
            reason = flap_reason(row["changes"], rule) if flapping else ""
            if flapping == was and reason == row["flapping_reason"]:
                continue
            await self.pool.execute(
                "UPDATE device SET flapping_since = CASE WHEN $2 THEN "
                "coalesce(flapping_since, $3) END, flapping_reason = $4 WHERE id = $1",
                row["id"],
                flapping,
                now,
                reason,
            )
            if flapping != was:
                device = DeviceHealth(
                    row["id"],
                    row["uid"],
                    row["kind"],
                    row["ward_id"],
                    row["status"],
                    row["status_changed_at"],
                    flapping,
                )
                news.append(FlapChange(device, flapping, reason or "stable again", now))
        for change in news:
            log.info(
                "%s %s flapping (%s)",
                change.device.uid,
                "started" if change.flapping else "stopped",
                change.reason,
            )
            for hook in self.on_flapping:
                try:
                    await hook(change)
                except Exception:
                    log.exception(
                        "a flapping hook failed for %s",
                        change.device.uid,
                        extra={"device_uid": change.device.uid},
                    )
        return result

    async def _apply(
        self, changes: Sequence[tuple[DeviceHealth, str, str]], now: datetime
    ) -> list[DeviceHealth]:
        """Write every change in one transaction; a new status is also a health_event.

        A change applies only to a device still in the status it was assessed from: two
        assessments at once (the periodic tick beside a heartbeat's, or two hub replicas)
        would otherwise both record the same transition."""
        async with self.pool.acquire() as conn, conn.transaction():
            written = await conn.fetch(
                "UPDATE device d SET status = c.status, status_reason = c.reason, "
                "status_changed_at = CASE WHEN d.status <> c.status THEN $5 "
                "ELSE d.status_changed_at END "
                "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) "
                "AS c(id, status, reason, was) "
                "WHERE d.id = c.id AND d.status = c.was RETURNING d.id",
                [device.id for device, _, _ in changes],
                [status for _, status, _ in changes],
                [reason for _, _, reason in changes],
                [device.status for device, _, _ in changes],
                now,
            )
            won = {row["id"] for row in written}
            moved = [
                (device, status, reason)
                for device, status, reason in changes
                if status != device.status and device.id in won
            ]
            if moved:
                await insert_transitions(
                    conn,
                    [
                        (device.id, now, device.status, status, reason)
                        for device, status, reason in moved
                    ],
                )
                # Consoles show the move at once, on whichever hub process they are served by.
                await notify_live(
                    conn,
                    [
                        {
                            "topic": "device",
                            "uid": device.uid,
                            "kind": device.kind,
                            "ward_id": device.ward_id,
                            "from": device.status,
                            "status": status,
                            "reason": reason,
                            "at": now.isoformat(),
                        }
                        for device, status, reason in moved
                    ],
                )
        applied: list[DeviceHealth] = []
        for device, status, reason in changes:
            if status == device.status or device.id not in won:
                applied.append(device)
                continue
            log.info(
                "%s: %s → %s %s", device.uid, device.status, status, f"({reason})" if reason else ""
            )
            transition = Transition(device, device.status, status, reason, now)
            for hook in self.on_transition:
                try:
                    await hook(transition)
                except Exception:
                    # Stored already; one failing hook must not cost the others theirs.
                    log.exception(
                        "a health transition hook failed for %s",
                        device.uid,
                        extra={"device_uid": device.uid},
                    )
            applied.append(
                DeviceHealth(device.id, device.uid, device.kind, device.ward_id, status, now)
            )
        return applied

    async def tick(self) -> None:
        assessed = await self.reassess()
        now = self.clock()
        # The window slides on without transitions too: a flapping device may have calmed.
        still = [d.id for d in assessed if d.flapping]
        if still:
            flapping = await self.review_flapping(still, now)
            assessed = [replace(d, flapping=flapping.get(d.id, d.flapping)) for d in assessed]
        for hook in self.on_tick:
            try:
                await hook(assessed, now)
            except Exception:
                log.exception("a health tick hook failed")

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("health check failed (%s); retrying", exc)
            await asyncio.sleep(self.settings.check_interval_s)

    async def set_maintenance(self, device_id: int, until: datetime | None, reason: str) -> None:
        await self.pool.execute(
            "UPDATE device SET maintenance_until = $2, maintenance_reason = $3 WHERE id = $1",
            device_id,
            until,
            reason,
        )
        await self.reassess([device_id])


async def insert_transitions(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record],
    changes: Sequence[tuple[int, datetime, str, str, str]],
) -> None:
    """Status changes into the device history: (device id, at, from, to, reason) each."""
    await conn.execute(
        "INSERT INTO health_event (device_id, at, from_status, to_status, reason) "
        "SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], "
        "$5::text[])",
        [c[0] for c in changes],
        [c[1] for c in changes],
        [c[2] for c in changes],
        [c[3] for c in changes],
        [c[4] for c in changes],
    )


async def set_fault(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], device_id: int, fault: str, active: bool
) -> None:
    await set_faults(conn, {(device_id, fault): active})


async def set_faults(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], final: dict[tuple[int, str], bool]
) -> None:
    """Raise or clear faults, writing only the devices whose set of faults changes."""
    by_device: dict[int, list[tuple[str, bool]]] = {}
    for (device_id, kind), active in final.items():
        by_device.setdefault(device_id, []).append((kind, active))
    rows = await conn.fetch(
        "SELECT id, faults FROM device WHERE id = ANY($1::bigint[])", sorted(by_device)
    )
    changed: dict[int, list[str]] = {}
    for row in rows:
        faults = list(row["faults"])
        for kind, active in by_device[row["id"]]:
            if active and kind not in faults:
                faults.append(kind)
            elif not active and kind in faults:
                faults.remove(kind)
        if faults != list(row["faults"]):
            changed[row["id"]] = faults
    if changed:
        # Fault names are identifiers: a comma-joined list carries each device's new set.
        await conn.execute(
            "UPDATE device d SET faults = string_to_array(c.faults, ',') "
            "FROM unnest($1::bigint[], $2::text[]) AS c(id, faults) WHERE d.id = c.id",
            list(changed),
            [",".join(faults) for faults in changed.values()],
        )


HEALTH: RuntimeKey[HealthMonitor] = RuntimeKey("the health monitor")
