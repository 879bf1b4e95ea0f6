"""What each panel must show for the fleet, computed in Python from the fleet itself
(and, for the VN_AQI, by the hub's own implementation of Decision 1459/QĐ-TCMT)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from dashboards.queries import SOURCES, choose_source
from hub.health.availability import UP
from hub.telemetry import aqi
from hub.telemetry.catalog import METRICS
from hub.telemetry.ingest import reason_label
from tests.integration.dashboards.fleet import (
    CREATED_AT,
    WARDS,
    Broadcast,
    Delivery,
    Device,
    Fleet,
    Occurrence,
    Reading,
)
from tests.integration.dashboards.grafana_sql import Request

VIETNAM = timezone(timedelta(hours=7))
ORIGIN = datetime(2000, 1, 1, tzinfo=VIETNAM)
STATUSES = ("online", "late", "offline", "degraded", "maintenance", "unknown")
SEVERITIES = ("critical", "major", "minor", "warning")
POLLUTANT_LABELS = {
    "pm2_5": "PM2.5",
    "pm10": "PM10",
    "o3": "O3",
    "no2": "NO2",
    "so2": "SO2",
    "co": "CO",
}

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Expected:
    rows: list[Row]
    ordered: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    fleet: Fleet
    wards: frozenset[str]
    request: Request

    @property
    def start(self) -> datetime:
        return self.request.time_from

    @property
    def end(self) -> datetime:
        return self.request.time_to

    def in_range(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= moment <= self.end

    def device(self, uid: str) -> Device:
        return self.fleet.by_uid[uid]

    def selected(self, device: Device) -> bool:
        return device.ward is not None and device.ward in self.wards

    def active_devices(self) -> list[Device]:
        return [d for d in self.fleet.devices if d.lifecycle == "active" and self.selected(d)]

    def readings(self, *metrics: str) -> Iterable[tuple[Reading, Device]]:
        """Readings of the selected wards, and of the selected stations where the
        dashboard has a station variable (its options: the wards' active sensors)."""
        stations = self.request.variables.get("station")
        for reading in self.fleet.readings:
            device = self.device(reading.uid)
            chosen = stations is None or device.uid in stations.values
            if reading.metric in metrics and self.selected(device) and chosen:
                yield reading, device

    def bucket(self, moment: datetime) -> datetime:
        return date_bin(self.width, moment)

    @property
    def width(self) -> timedelta:
        """The bucket of series on the rollups at this request's range and interval."""
        return bucket_width("reading_per_minute(", self.request.interval, self.end - self.start)


def date_bin(stride: timedelta, moment: datetime) -> datetime:
    return (ORIGIN + ((moment - ORIGIN) // stride) * stride).astimezone(UTC)


def bucket_width(sql: str, interval: timedelta, span: timedelta) -> timedelta:
    """The bucket a panel's rows come in: the interval, or for series on the rollups
    (dashboards.queries.samples) the interval rounded up to whole rollup buckets."""
    if "reading_per_minute(" not in sql:
        return interval
    step = SOURCES[choose_source(span, interval)]
    return interval if not step else -(-interval // step) * step


def ward_name(code: str | None) -> str:
    assert code is not None
    return WARDS[code]


def means(groups: dict[tuple[Any, ...], list[float]]) -> list[Row]:
    return [(*key, statistics.fmean(values)) for key, values in groups.items()]


# --- sensors -----------------------------------------------------------------------------


def ward_average(metric: str) -> Callable[[Scenario], Expected]:
    def expected(scenario: Scenario) -> Expected:
        groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        for reading, device in scenario.readings(metric):
            if scenario.in_range(reading.time):
                groups[(scenario.bucket(reading.time), ward_name(device.ward))].append(
                    reading.value
                )
        return Expected(means(groups))

    return expected


def rainfall(scenario: Scenario) -> Expected:
    totals: dict[tuple[datetime, str, str], float] = defaultdict(float)
    for reading, device in scenario.readings("rainfall"):
        if scenario.in_range(reading.time):
            totals[(scenario.bucket(reading.time), ward_name(device.ward), device.uid)] += (
                reading.value
            )
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for (moment, ward, _uid), total in totals.items():
        groups[(moment, ward)].append(total)
    return Expected(means(groups))


def water_level(scenario: Scenario) -> Expected:
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for reading, device in scenario.readings("water_level"):
        if scenario.in_range(reading.time):
            station = f"{ward_name(device.ward)} · {device.name or device.uid}"
            groups[(scenario.bucket(reading.time), station)].append(reading.value)
    return Expected(means(groups))


def daily_particulates(scenario: Scenario) -> Expected:
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for reading, device in scenario.readings("pm2_5", "pm10"):
        hour = reading.time.replace(minute=0, second=0, microsecond=0)
        if scenario.in_range(hour):
            day = date_bin(timedelta(days=1), reading.time)
            label = f"{ward_name(device.ward)} · {POLLUTANT_LABELS[reading.metric]}"
            groups[(day, label)].append(reading.value)
    return Expected(means(groups))


def station_aqi(scenario: Scenario) -> dict[str, aqi.AqiResult]:
    """Per station uid: its hourly VN_AQI, if it has one."""
    anchor = scenario.end.replace(minute=0, second=0, microsecond=0)
    hours: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for reading, device in scenario.readings(*aqi.POLLUTANTS):
        age = (anchor - reading.time.replace(minute=0, second=0)) // timedelta(hours=1)
        if (
            device.kind == "sensor"
            and 0 <= age < aqi.NOWCAST_HOURS
            and reading.time <= scenario.end
        ):
            hours[device.uid][reading.metric][age].append(reading.value)
    rated: dict[str, aqi.AqiResult] = {}
    for uid in sorted(hours):
        pollutants = {
            metric: [
                statistics.fmean(by_age[age]) if by_age.get(age) else None
                for age in range(aqi.NOWCAST_HOURS)
            ]
            for metric, by_age in hours[uid].items()
        }
        result = aqi.hourly_aqi(pollutants)
        if result is not None:
            rated[uid] = result
    return rated


def ward_aqi(scenario: Scenario) -> dict[str, tuple[str, aqi.AqiResult]]:
    """Per ward name: its worst station and that station's hourly VN_AQI."""
    worst: dict[str, tuple[str, aqi.AqiResult]] = {}
    for uid, result in station_aqi(scenario).items():
        ward = ward_name(scenario.device(uid).ward)
        if ward not in worst or result.value > worst[ward][1].value:
            worst[ward] = (uid, result)
    return worst


def station_map(scenario: Scenario) -> Expected:
    return Expected(
        [
            (
                uid,
                ward_name(scenario.device(uid).ward),
                result.value,
                result.category.label_vi,
                POLLUTANT_LABELS[result.dominant],
                scenario.device(uid).latitude,
                scenario.device(uid).longitude,
            )
            for uid, result in sorted(station_aqi(scenario).items())
            if scenario.device(uid).latitude is not None
        ],
        ordered=True,
    )


def aqi_by_ward(scenario: Scenario) -> Expected:
    return Expected([(ward, result.value) for ward, (_, result) in ward_aqi(scenario).items()])


def aqi_detail(scenario: Scenario) -> Expected:
    return Expected(
        [
            (
                ward,
                result.value,
                result.category.label_vi,
                POLLUTANT_LABELS[result.dominant],
                station,
            )
            for ward, (station, result) in ward_aqi(scenario).items()
        ]
    )


def active_sensor(device: Device) -> bool:
    return device.kind == "sensor" and device.lifecycle == "active"


def latest_values(scenario: Scenario) -> Expected:
    groups: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    for reading in scenario.fleet.latest():
        device = scenario.device(reading.uid)
        fresh = scenario.end - timedelta(hours=1) < reading.time <= scenario.end
        if scenario.selected(device) and active_sensor(device) and fresh:
            groups[(ward_name(device.ward), reading.metric)].append(reading)
    return Expected(
        [
            (
                ward,
                metric,
                METRICS[metric].unit,
                statistics.fmean(r.value for r in latest),
                min(r.value for r in latest),
                max(r.value for r in latest),
                len(latest),
                max(r.time for r in latest),
            )
            for (ward, metric), latest in groups.items()
        ]
    )


def today_extremes(scenario: Scenario) -> Expected:
    midnight = (
        scenario.end.astimezone(VIETNAM)
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .astimezone(UTC)
    )
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for reading in scenario.fleet.readings:
        device = scenario.device(reading.uid)
        if (
            scenario.selected(device)
            and active_sensor(device)
            and midnight <= reading.time <= scenario.end
        ):
            groups[(ward_name(device.ward), reading.metric)].append(reading.value)
    return Expected(
        [
            (ward, metric, METRICS[metric].unit, min(v), max(v), statistics.fmean(v), len(v))
            for (ward, metric), v in groups.items()
        ]
    )


# --- device health ---------------------------------------------------------------------


def status_counts(devices: list[Device]) -> tuple[int, ...]:
    return tuple(sum(d.status == status for d in devices) for status in STATUSES)


def devices_by_status(scenario: Scenario) -> Expected:
    return Expected([status_counts(scenario.active_devices())])


def pending(scenario: Scenario) -> Expected:
    return Expected([(sum(d.lifecycle == "pending" for d in scenario.fleet.devices),)])


def without_ward(scenario: Scenario) -> Expected:
    count = sum(d.lifecycle == "active" and d.ward is None for d in scenario.fleet.devices)
    return Expected([(count,)])


def status_by_ward_and_kind(scenario: Scenario) -> Expected:
    groups: dict[tuple[str, str], list[Device]] = defaultdict(list)
    for device in scenario.active_devices():
        groups[(ward_name(device.ward), device.kind)].append(device)
    return Expected(
        [(*key, *status_counts(devices), len(devices)) for key, devices in groups.items()]
    )


# The shipped catalog's judgement of the fleet's versions (firmware_meta/catalog), written
# out by hand: (vendor, model, version) -> (state, worst severity, CVEs, latest version).
FIRMWARE_COMPLIANCE: dict[tuple[str, str, str], tuple[str, str | None, str, str | None]] = {
    ("Envitech", "AQM-65", "1.9.2"): ("outdated", None, "", "1.10.0"),
    ("Envitech", "AQM-65", "1.8.0"): ("vulnerable", "medium", "CVE-2024-900377", "1.10.0"),
    ("Envitech", "WL-Radar 20", "1.9.2"): ("outdated", None, "", "1.10.0"),
    ("Envitech", "NSM-1", "1.8.0"): ("vulnerable", "medium", "CVE-2024-900377", "1.10.0"),
    # 2.2.7 is past its end of support too: a CVE outranks it. 2.11.0-rc1 is never "latest".
    ("VNPT Technology", "IP Speaker S30", "2.2.7"): (
        "vulnerable",
        "critical",
        "CVE-2024-900101",
        "2.10.0",
    ),
    ("VNPT Technology", "IP Speaker S30", "2.3.1"): (
        "vulnerable",
        "high",
        "CVE-2024-900214",
        "2.10.0",
    ),
    ("VNPT Technology", "IP Speaker S30", "2.4.0"): (
        "vulnerable",
        "medium",
        "CVE-2025-900032",
        "2.10.0",
    ),
    ("Hikvision", "DS-2CD2143G2-I", "V5.7.3"): ("unknown_model", None, "", None),
    ("Hikvision", "DS-2CD2143G2-I", "V5.5.0"): ("unknown_model", None, "", None),
}


def firmware(scenario: Scenario) -> Expected:
    groups: dict[tuple[Any, ...], list[Device]] = defaultdict(list)
    for device in scenario.active_devices():
        judged = FIRMWARE_COMPLIANCE[(device.vendor, device.model, device.firmware)]
        state, severity, cves, latest = (
            judged if device.assessed else ("not_assessed", None, None, None)
        )
        key = (
            device.kind,
            device.vendor,
            device.model,
            device.firmware,
            state,
            severity,
            cves,
            latest,
        )
        groups[key].append(device)
    return Expected(
        [
            (*key, len(devices), sum(d.status == "online" for d in devices))
            for key, devices in groups.items()
        ]
    )


def unhealthy(scenario: Scenario) -> Expected:
    order = ("offline", "degraded", "late", "unknown")
    devices = [d for d in scenario.active_devices() if d.status in order]
    oldest = datetime.min.replace(tzinfo=UTC)
    # ORDER BY status rank, last_seen NULLS FIRST, uid
    devices.sort(
        key=lambda d: (order.index(d.status), d.last_seen is not None, d.last_seen or oldest, d.uid)
    )
    return Expected(
        [
            (
                d.uid,
                d.name,
                d.kind,
                ward_name(d.ward),
                d.status,
                d.status_reason,
                ", ".join(d.faults),
                d.last_seen,
                d.status_changed_at,
            )
            for d in devices
        ],
        ordered=True,
    )


def health_events_in_range(scenario: Scenario) -> list[Any]:
    return [
        event
        for event in scenario.fleet.health_events
        if scenario.selected(scenario.device(event.uid)) and scenario.in_range(event.at)
    ]


def status_changes(scenario: Scenario) -> Expected:
    counts: dict[tuple[datetime, str], int] = defaultdict(int)
    for event in health_events_in_range(scenario):
        counts[(scenario.bucket(event.at), f"to {event.to_status}")] += 1
    return Expected([(*key, count) for key, count in counts.items()])


def recent_status_changes(scenario: Scenario) -> Expected:
    events = sorted(health_events_in_range(scenario), key=lambda e: e.at, reverse=True)
    return Expected(
        [
            (
                e.at,
                e.uid,
                scenario.device(e.uid).kind,
                ward_name(scenario.device(e.uid).ward),
                e.from_status,
                e.to_status,
                e.reason,
            )
            for e in events
        ],
        ordered=True,
    )


def device_map(scenario: Scenario) -> Expected:
    return Expected(
        [
            (
                d.uid,
                d.name,
                d.kind,
                ward_name(d.ward),
                d.status,
                d.status_reason,
                d.last_seen,
                d.latitude,
                d.longitude,
            )
            for d in sorted(scenario.active_devices(), key=lambda d: d.uid)
            if d.latitude is not None
        ],
        ordered=True,
    )


# --- alerts ----------------------------------------------------------------------------


def alerts(scenario: Scenario) -> list[Any]:
    return [a for a in scenario.fleet.alerts if a.ward is not None and a.ward in scenario.wards]


def seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()


def mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def open_by_severity(scenario: Scenario) -> Expected:
    open_alerts = [a for a in alerts(scenario) if a.state != "resolved"]
    return Expected([tuple(sum(a.severity == s for a in open_alerts) for s in SEVERITIES)])


def response_times(scenario: Scenario) -> Expected:
    started = [a for a in alerts(scenario) if scenario.in_range(a.started_at)]
    return Expected(
        [
            (
                mean_or_none(seconds(a.started_at, a.acknowledged_at) for a in started),
                mean_or_none(seconds(a.started_at, a.resolved_at) for a in started),
            )
        ]
    )


def open_by_ward(scenario: Scenario) -> Expected:
    rows = []
    for code in scenario.wards:
        open_alerts = [a for a in alerts(scenario) if a.ward == code and a.state != "resolved"]
        rows.append((WARDS[code], *(sum(a.severity == s for a in open_alerts) for s in SEVERITIES)))
    return Expected(rows)


def response_times_by_severity(scenario: Scenario) -> Expected:
    rows = []
    started = [a for a in alerts(scenario) if scenario.in_range(a.started_at)]
    for severity in SEVERITIES:
        group = [a for a in started if a.severity == severity]
        if group:
            rows.append(
                (
                    severity,
                    len(group),
                    sum(a.acknowledged_at is not None for a in group),
                    mean_or_none(seconds(a.started_at, a.acknowledged_at) for a in group),
                    sum(a.resolved_at is not None for a in group),
                    mean_or_none(seconds(a.started_at, a.resolved_at) for a in group),
                )
            )
    return Expected(rows, ordered=True)


def shown_alerts(scenario: Scenario) -> list[tuple[int, Any]]:
    """(id, alert) of the alerts open at some moment of the range; ids follow fleet order."""
    return [
        (number, a)
        for number, a in enumerate(scenario.fleet.alerts, start=1)
        if a.ward is not None
        and a.ward in scenario.wards
        and a.started_at <= scenario.end
        and (a.resolved_at is None or a.resolved_at >= scenario.start)
    ]


def alert_timeline(scenario: Scenario) -> Expected:
    rows: list[Row] = []
    for number, a in shown_alerts(scenario):
        label = f"{a.rule} · {a.uid} #{number}"
        rows.append((a.started_at, label, 1))
        if a.acknowledged_at:
            rows.append((a.acknowledged_at, label, 2))
        if a.resolved_at:
            rows.append((a.resolved_at, label, 3))
    return Expected(rows)


def started_and_resolved(scenario: Scenario) -> Expected:
    counts: dict[tuple[datetime, str], int] = defaultdict(int)
    for a in alerts(scenario):
        if scenario.in_range(a.started_at):
            counts[(scenario.bucket(a.started_at), "started")] += 1
        if a.resolved_at and scenario.in_range(a.resolved_at):
            counts[(scenario.bucket(a.resolved_at), "resolved")] += 1
    return Expected([(*key, count) for key, count in counts.items()])


def noisy_devices(scenario: Scenario) -> Expected:
    groups: dict[str, list[Any]] = defaultdict(list)
    for a in alerts(scenario):
        if scenario.in_range(a.started_at):
            groups[a.uid].append(a)
    rows = [
        (
            uid,
            scenario.device(uid).name,
            scenario.device(uid).kind,
            ward_name(group[0].ward),
            len(group),
            sum(a.severity == "critical" for a in group),
            len({a.rule for a in group}),
            max(a.started_at for a in group),
        )
        for uid, group in groups.items()
    ]
    rows.sort(key=lambda row: (-row[4], row[0]))
    return Expected(rows[:10], ordered=True)


def alerts_in_range(scenario: Scenario) -> Expected:
    shown = sorted(
        shown_alerts(scenario), key=lambda item: (item[1].started_at, item[0]), reverse=True
    )
    return Expected(
        [
            (
                a.started_at,
                a.severity,
                a.state,
                WARDS[a.ward],
                a.uid,
                a.rule,
                f"{a.rule} on {a.uid}",
                a.acknowledged_at,
                "operator" if a.acknowledged_at else None,
                a.resolved_at,
                ((a.resolved_at or scenario.end) - a.started_at).total_seconds(),
            )
            for _, a in shown
        ],
        ordered=True,
    )


def quarantine_in_range(scenario: Scenario) -> list[Any]:
    return [q for q in scenario.fleet.quarantine if scenario.in_range(q.received_at)]


def quarantine_by_reason(scenario: Scenario) -> Expected:
    counts: dict[tuple[datetime, str], int] = defaultdict(int)
    for q in quarantine_in_range(scenario):
        counts[(scenario.bucket(q.received_at), reason_label(q.reason))] += 1
    return Expected([(*key, count) for key, count in counts.items()])


def quarantine_by_source(scenario: Scenario) -> Expected:
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for q in quarantine_in_range(scenario):
        groups[(q.source, reason_label(q.reason))].append(q)
    return Expected(
        [
            (
                *key,
                len(group),
                len({q.device_uid for q in group if q.device_uid is not None}),
                max(q.received_at for q in group),
            )
            for key, group in groups.items()
        ]
    )


def availability(scenario: Scenario) -> Expected:
    """Per ward and interval: up time out of counted time (hub.health.availability)."""
    start, end, width = scenario.start, scenario.end, scenario.request.interval
    up: dict[tuple[datetime, str], float] = defaultdict(float)
    counted: dict[tuple[datetime, str], float] = defaultdict(float)
    seen: set[tuple[datetime, str]] = set()
    for device in scenario.active_devices():
        events = sorted(
            (e for e in scenario.fleet.health_events if e.uid == device.uid), key=lambda e: e.at
        )
        before = [e for e in events if e.at < start]
        inside = [e for e in events if start <= e.at < end]
        opening = (
            before[-1].to_status if before else inside[0].from_status if inside else device.status
        )
        born = max(start, CREATED_AT)
        steps = [(born, opening)] + [(max(e.at, born), e.to_status) for e in inside]
        segments = [
            (status, at, steps[i + 1][0] if i + 1 < len(steps) else end)
            for i, (at, status) in enumerate(steps)
        ]
        slot = date_bin(width, start)
        while slot <= end:
            key = (slot, ward_name(device.ward))
            for status, seg_start, seg_end in segments:
                if seg_start < slot + width and seg_end > slot:
                    seconds = (
                        min(seg_end, slot + width, end) - max(seg_start, slot, start)
                    ).total_seconds()
                    if seconds > 0:
                        seen.add(key)
                        if status != "maintenance":
                            counted[key] += seconds
                            if status in UP:
                                up[key] += seconds
            slot += width
    return Expected(
        [
            (
                moment,
                ward,
                100 * up[(moment, ward)] / counted[(moment, ward)]
                if counted[(moment, ward)]
                else None,
            )
            for moment, ward in sorted(seen)
        ]
    )


# --- broadcasts ------------------------------------------------------------------------

LOCAL_DAY = timedelta(days=1)


def local_midnight(moment: datetime) -> datetime:
    local = moment.astimezone(VIETNAM)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def reaches(scenario: Scenario, broadcast: Broadcast) -> bool:
    priorities = scenario.request.variables["priority"].values
    return bool(set(broadcast.wards) & scenario.wards) and broadcast.priority in priorities


def ward_names(broadcast: Broadcast) -> str:
    return ", ".join(sorted(ward_name(code) for code in broadcast.wards))


def occurrences_in_range(scenario: Scenario) -> list[tuple[Occurrence, Broadcast]]:
    return [
        (o, scenario.fleet.broadcasts[o.broadcast])
        for o in scenario.fleet.occurrences
        if scenario.in_range(o.scheduled_at)
        and reaches(scenario, scenario.fleet.broadcasts[o.broadcast])
    ]


def percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def emergencies(scenario: Scenario) -> Expected:
    count = sum(1 for _, b in occurrences_in_range(scenario) if b.priority == "emergency")
    return Expected([(count,)])


def delivery_rate(scenario: Scenario) -> Expected:
    deliveries = [d for o, _ in occurrences_in_range(scenario) for d in o.deliveries]
    played = sum(1 for d in deliveries if d.finished_at)
    return Expected([(percent(played, len(deliveries)),)])


def delivery_rate_over_time(scenario: Scenario) -> Expected:
    buckets: dict[datetime, list[Delivery]] = defaultdict(list)
    for occurrence, _ in occurrences_in_range(scenario):
        buckets[date_bin(scenario.request.interval, occurrence.scheduled_at)].extend(
            occurrence.deliveries
        )
    return Expected(
        [
            (
                moment,
                percent(sum(1 for d in ds if d.received_at), len(ds)),
                percent(sum(1 for d in ds if d.finished_at), len(ds)),
                percent(sum(1 for d in ds if d.failed_at), len(ds)),
            )
            for moment, ds in sorted(buckets.items())
        ],
        ordered=True,
    )


def todays_schedule(scenario: Scenario) -> Expected:
    start = local_midnight(scenario.end)
    fired = {(o.broadcast, o.scheduled_at): o.status for o in scenario.fleet.occurrences}
    rows = []
    for index, broadcast in enumerate(scenario.fleet.broadcasts):
        if broadcast.state != "active" or not reaches(scenario, broadcast):
            continue
        for slot in broadcast.slots:
            if start <= slot < start + LOCAL_DAY:
                status = fired.get((index, slot), "not fired")  # every slot is in the past
                rows.append(
                    (
                        index,
                        slot,
                        slot + broadcast.duration,
                        broadcast.title,
                        broadcast.priority,
                        ward_names(broadcast),
                        status,
                    )
                )
    rows.sort(key=lambda r: (r[1], r[0]))
    return Expected([r[1:] for r in rows], ordered=True)


def this_week(scenario: Scenario) -> Expected:
    monday = local_midnight(scenario.end) - timedelta(
        days=scenario.end.astimezone(VIETNAM).weekday()
    )
    groups: dict[tuple[str, Any], list[tuple[datetime, bool]]] = defaultdict(list)
    for broadcast in scenario.fleet.broadcasts:
        if (
            broadcast.state != "active"
            or broadcast.priority not in scenario.request.variables["priority"].values
        ):
            continue
        for code in broadcast.wards:
            if code not in scenario.wards:
                continue
            for slot in broadcast.slots:
                if monday <= slot < monday + 7 * LOCAL_DAY:
                    day = slot.astimezone(VIETNAM).date()
                    groups[(ward_name(code), day)].append((slot, broadcast.priority == "emergency"))
    return Expected(
        [
            (
                ward,
                day,
                len(slots),
                sum(e for _, e in slots),
                min(t for t, _ in slots),
                max(t for t, _ in slots),
            )
            for (ward, day), slots in groups.items()
        ]
    )


def delivery_per_occurrence(scenario: Scenario) -> Expected:
    rows = []
    for occurrence, broadcast in occurrences_in_range(scenario):
        ds = occurrence.deliveries
        played = sum(1 for d in ds if d.finished_at)
        rate = percent(played, len(ds))
        rows.append(
            (
                occurrence.scheduled_at,
                broadcast.title,
                broadcast.priority,
                ward_names(broadcast),
                occurrence.status,
                len(ds),
                sum(1 for d in ds if d.received_at),
                played,
                sum(1 for d in ds if d.failed_at),
                None if rate is None else round(rate, 1),
            )
        )
    rows.sort(key=lambda r: r[0], reverse=True)
    return Expected(rows, ordered=True)


def failed_speakers(scenario: Scenario) -> Expected:
    rows = []
    priorities = scenario.request.variables["priority"].values
    for occurrence in scenario.fleet.occurrences:
        broadcast = scenario.fleet.broadcasts[occurrence.broadcast]
        if not scenario.in_range(occurrence.scheduled_at) or broadcast.priority not in priorities:
            continue
        for d in occurrence.deliveries:
            ward = scenario.device(d.uid).ward
            if d.failed_at and ward in scenario.wards:
                rows.append(
                    (
                        d.failed_at,
                        d.uid,
                        ward_name(ward),
                        broadcast.title,
                        broadcast.priority,
                        occurrence.scheduled_at,
                        d.failure_reason or "",
                        d.send_count,
                    )
                )
    rows.sort(key=lambda r: (-r[0].timestamp(), r[1]))
    return Expected(rows, ordered=True)


PANELS: dict[str, Callable[[Scenario], Expected]] = {
    "Hourly VN_AQI by ward": aqi_by_ward,
    "VN_AQI detail": aqi_detail,
    "PM2.5 (ward average)": ward_average("pm2_5"),
    "PM10 (ward average)": ward_average("pm10"),
    "Stations by current VN_AQI": station_map,
    "PM2.5 and PM10 daily mean, last 30 days": daily_particulates,
    "Temperature (ward average)": ward_average("temperature"),
    "Humidity (ward average)": ward_average("humidity"),
    "Noise (ward average)": ward_average("noise"),
    "Rainfall (ward average of gauge totals)": rainfall,
    "Water level (per station)": water_level,
    "Latest values": latest_values,
    "Today's minimum and maximum": today_extremes,
    "Devices by status": devices_by_status,
    "Pending approval": pending,
    "Active devices without a ward": without_ward,
    "Status by ward and kind": status_by_ward_and_kind,
    "Firmware compliance by model": firmware,
    "Unhealthy devices": unhealthy,
    "Availability by ward": availability,
    "Status changes": status_changes,
    "Recent status changes": recent_status_changes,
    "Device map": device_map,
    "Open alerts by severity": open_by_severity,
    "Mean time to acknowledge and resolve": response_times,
    "Open alerts by ward": open_by_ward,
    "Response times by severity": response_times_by_severity,
    "Alert timeline": alert_timeline,
    "Alerts started and resolved": started_and_resolved,
    "Top noisy devices": noisy_devices,
    "Alerts in the time range": alerts_in_range,
    "Quarantined payloads by reason": quarantine_by_reason,
    "Quarantined payloads by source": quarantine_by_source,
    "Emergency broadcasts in the range": emergencies,
    "Delivery rate": delivery_rate,
    "Delivery rate over time": delivery_rate_over_time,
    "Today's schedule": todays_schedule,
    "This week per ward": this_week,
    "Delivery per occurrence": delivery_per_occurrence,
    "Speakers that failed and why": failed_speakers,
}


def comparable(value: Any) -> Any:
    """Rows as the database returns them and as computed here, in one comparable form."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def normalise(rows: Iterable[Iterable[Any]], ordered: bool) -> list[Row]:
    normalised = [tuple(comparable(value) for value in row) for row in rows]
    return normalised if ordered else sorted(normalised, key=repr)
