"""A small, realistic day of the IOC in Ngô Quyền: wards, devices, readings, health
events, alerts and quarantined payloads, kept in Python to compute what each panel
must show and written to the database with plain SQL."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from hub.firmware import store as firmware_store
from hub.firmware.catalog import import_catalog_into
from hub.firmware.compliance import FirmwareCatalog, assess
from hub.telemetry.rollups import refresh_hourly

TIME_FROM = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)  # 07:00 in Hải Phòng
TIME_TO = datetime(2025, 3, 10, 5, 40, tzinfo=UTC)  # 12:40 in Hải Phòng
READINGS_START = datetime(2025, 3, 9, 15, 0, tzinfo=UTC)  # before local midnight
READING_EVERY = timedelta(minutes=5)
# Every device was registered before any of its data (availability counts from then).
CREATED_AT = datetime(2025, 3, 1, tzinfo=UTC)

WARDS = {
    "may-chai": "Máy Chai",
    "van-my": "Vạn Mỹ",
    "cau-tre": "Cầu Tre",
    "lac-vien": "Lạc Viên",  # no devices at all
}
AIR_METRICS = ("pm2_5", "pm10", "o3", "no2", "so2", "co", "temperature", "humidity")


@dataclass(frozen=True, slots=True)
class Device:
    uid: str
    kind: str
    ward: str | None
    status: str
    name: str = ""
    vendor: str = ""
    model: str = ""
    firmware: str = ""
    lifecycle: str = "active"
    status_reason: str = ""
    faults: tuple[str, ...] = ()
    last_seen: datetime | None = None
    status_changed_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    assessed: bool = True
    """Its firmware compliance was computed (False: added after the hub's last refresh)."""


@dataclass(frozen=True, slots=True)
class Reading:
    time: datetime
    uid: str
    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class HealthEvent:
    uid: str
    at: datetime
    from_status: str
    to_status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Alert:
    uid: str
    ward: str | None
    rule: str
    severity: str
    state: str
    started_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Quarantined:
    received_at: datetime
    source: str
    device_uid: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    title: str
    priority: str
    wards: tuple[str, ...]
    slots: tuple[datetime, ...]
    state: str = "active"
    duration: timedelta = timedelta(seconds=90)


@dataclass(frozen=True, slots=True)
class Delivery:
    uid: str
    received_at: datetime | None = None
    finished_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None
    send_count: int = 1


@dataclass(frozen=True, slots=True)
class Occurrence:
    broadcast: int
    """Index of its broadcast in Fleet.broadcasts."""
    scheduled_at: datetime
    status: str
    deliveries: tuple[Delivery, ...]


@dataclass
class Fleet:
    devices: list[Device]
    readings: list[Reading]
    health_events: list[HealthEvent]
    alerts: list[Alert]
    quarantine: list[Quarantined]
    broadcasts: list[Broadcast] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)
    by_uid: dict[str, Device] = field(init=False)

    def __post_init__(self) -> None:
        self.by_uid = {device.uid: device for device in self.devices}

    def latest(self) -> list[Reading]:
        """reading_latest: the newest reading of each device and metric."""
        newest: dict[tuple[str, str], Reading] = {}
        for reading in self.readings:
            key = (reading.uid, reading.metric)
            if key not in newest or reading.time > newest[key].time:
                newest[key] = reading
        return list(newest.values())


def at(hour: int, minute: int = 0, day: int = 10) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def _device(uid: str, kind: str, ward: str | None, status: str, index: int, **extra: Any) -> Device:
    # Spread around Ngô Quyền's centre; deterministic per device.
    device = Device(
        uid,
        kind,
        ward,
        status,
        name=uid.replace("-", " ").title(),
        latitude=round(20.85 + (index % 7) * 0.0021, 6),
        longitude=round(106.69 + (index % 5) * 0.0033, 6),
        last_seen=TIME_TO - timedelta(minutes=1) if status == "online" else None,
    )
    return dataclasses.replace(device, **extra)


def _devices() -> list[Device]:
    air = {"vendor": "Envitech", "model": "AQM-65"}
    water = {"vendor": "Envitech", "model": "WL-Radar 20", "firmware": "1.9.2"}
    speaker = {"vendor": "VNPT Technology", "model": "IP Speaker S30"}
    camera = {"vendor": "Hikvision", "model": "DS-2CD2143G2-I"}
    return [
        _device("aq-may-chai-01", "sensor", "may-chai", "online", 1, firmware="1.9.2", **air),
        _device(
            "aq-may-chai-02",
            "sensor",
            "may-chai",
            "degraded",
            2,
            firmware="1.8.0",
            status_reason="PM sensor fan stalled",
            faults=("fan", "flow"),
            last_seen=at(5, 38),
            status_changed_at=at(2, 5),
            **air,
        ),
        _device(
            "wl-may-chai-01",
            "sensor",
            "may-chai",
            "late",
            3,
            status_reason="no data for 12 minutes",
            last_seen=at(5, 28),
            **water,
        ),
        _device("wl-may-chai-02", "sensor", "may-chai", "online", 4, **water),
        _device("aq-van-my-01", "sensor", "van-my", "online", 5, firmware="1.9.2", **air),
        _device(
            "ns-van-my-01",
            "sensor",
            "van-my",
            "offline",
            6,
            vendor="Envitech",
            model="NSM-1",
            firmware="1.8.0",
            status_reason="no heartbeat for 9000 s",
            last_seen=at(3, 0),
        ),
        _device(
            "aq-cau-tre-01",
            "sensor",
            "cau-tre",
            "late",
            7,
            firmware="1.8.0",
            status_reason="no data for 105 minutes",
            last_seen=at(3, 55),
            **air,
        ),
        _device(
            "aq-old-01",
            "sensor",
            "may-chai",
            "unknown",
            8,
            lifecycle="decommissioned",
            firmware="1.6.0",
            **air,
        ),
        _device(
            "spk-may-chai-001", "speaker", "may-chai", "online", 9, firmware="2.3.1", **speaker
        ),
        _device(
            "spk-may-chai-002",
            "speaker",
            "may-chai",
            "maintenance",
            10,
            firmware="2.4.0",
            status_reason="amplifier replacement",
            **speaker,
        ),
        _device(
            "spk-van-my-001",
            "speaker",
            "van-my",
            "offline",
            11,
            firmware="2.2.7",
            status_reason="no heartbeat for 600 s",
            last_seen=at(1, 10),
            status_changed_at=at(1, 20),
            **speaker,
        ),
        _device(
            "spk-cau-tre-001", "speaker", "cau-tre", "unknown", 12, firmware="2.3.1", **speaker
        ),
        _device("cam-001", "camera", "may-chai", "online", 13, firmware="V5.7.3", **camera),
        _device(
            "cam-002",
            "camera",
            "van-my",
            "late",
            14,
            firmware="V5.5.0",
            status_reason="probe timed out",
            last_seen=at(4, 45),
            **camera,
        ),
        _device("cam-003", "camera", None, "online", 15, firmware="V5.7.3", **camera),
        _device(
            "cam-004",
            "camera",
            "van-my",
            "online",
            16,
            firmware="V5.7.3",
            latitude=None,
            longitude=None,
            assessed=False,
            **camera,
        ),
        _device("pending-aq-99", "sensor", None, "unknown", 17, lifecycle="pending"),
    ]


def _readings(devices: list[Device]) -> list[Reading]:
    rng = random.Random(1459)
    # Per station and metric: (base, swing); o3 of Vạn Mỹ climbs to dominate its AQI.
    bases = {
        "aq-may-chai-01": {"pm2_5": 46.0, "pm10": 80.0},
        "aq-may-chai-02": {"pm2_5": 72.0, "pm10": 120.0},
        "aq-van-my-01": {"pm2_5": 18.0, "pm10": 35.0, "o3": 240.0},
        "aq-cau-tre-01": {"pm2_5": 30.0, "pm10": 55.0},
    }
    defaults = {
        "pm2_5": 30.0,
        "pm10": 50.0,
        "o3": 60.0,
        "no2": 40.0,
        "so2": 20.0,
        "co": 900.0,
        "temperature": 24.0,
        "humidity": 78.0,
        "water_level": 120.0,
        "rainfall": 0.4,
        "noise": 62.0,
    }
    readings: list[Reading] = []
    for device in devices:
        if device.kind != "sensor" or device.lifecycle == "pending":
            continue
        prefix = device.uid.split("-", 1)[0]
        metrics: tuple[str, ...] = {
            "aq": AIR_METRICS,
            "wl": ("water_level", "rainfall"),
            "ns": ("noise",),
        }[prefix]
        if device.uid == "aq-old-01":
            metrics = ("temperature",)
        for metric in metrics:
            base = bases.get(device.uid, {}).get(metric, defaults[metric])
            if device.uid == "wl-may-chai-02" and metric == "water_level":
                base = 310.0  # another datum
            phase = rng.uniform(0, math.tau)
            moment = READINGS_START
            step = 0
            while moment <= TIME_TO:
                if _reports(device.uid, moment):
                    swing = 0.25 * base * math.sin(step / 9 + phase)
                    value = max(0.0, round(base + swing + rng.uniform(-0.05, 0.05) * base, 2))
                    readings.append(Reading(moment, device.uid, metric, value))
                moment += READING_EVERY
                step += 1
    return readings


def _reports(uid: str, moment: datetime) -> bool:
    if uid == "ns-van-my-01":
        return moment <= at(3, 0)  # went offline
    if uid == "aq-cau-tre-01":
        return moment < at(4, 0)  # nothing in the last two hours: no NowCast
    if uid == "aq-old-01":
        return moment < at(1, 0)
    return True


def _health_events() -> list[HealthEvent]:
    return [
        HealthEvent("spk-van-my-001", at(1, 12), "online", "late", "no heartbeat for 120 s"),
        HealthEvent("spk-van-my-001", at(1, 20), "late", "offline", "no heartbeat for 600 s"),
        HealthEvent("aq-may-chai-02", at(2, 5), "online", "degraded", "PM sensor fan stalled"),
        HealthEvent("ns-van-my-01", at(3, 14), "online", "offline", "no heartbeat for 840 s"),
        HealthEvent("cam-002", at(4, 50), "online", "late", "probe timed out"),
        HealthEvent("wl-may-chai-01", at(5, 32), "online", "late", "no data for 12 minutes"),
        HealthEvent("cam-003", at(2, 0), "offline", "online", "back"),
        HealthEvent("cam-001", at(21, 0, day=9), "offline", "online", "before the range"),
    ]


def _alerts() -> list[Alert]:
    return [
        Alert("aq-may-chai-02", "may-chai", "PM2.5 high", "major", "firing", at(4, 0)),
        Alert(
            "spk-van-my-001",
            "van-my",
            "Speaker offline",
            "critical",
            "acknowledged",
            at(1, 25),
            acknowledged_at=at(1, 40),
        ),
        Alert(
            "ns-van-my-01",
            "van-my",
            "Noise high",
            "minor",
            "resolved",
            at(0, 30),
            acknowledged_at=at(0, 35),
            resolved_at=at(1, 0),
        ),
        Alert(
            "aq-may-chai-02",
            "may-chai",
            "PM2.5 high",
            "major",
            "resolved",
            at(2, 10),
            resolved_at=at(3, 10),
        ),
        Alert(
            "cam-001",
            "may-chai",
            "Camera offline",
            "warning",
            "resolved",
            at(10, 0, day=9),
            resolved_at=at(11, 0, day=9),
        ),
        Alert(
            "spk-may-chai-002",
            "may-chai",
            "Speaker offline",
            "critical",
            "firing",
            at(5, 30),
        ),
        Alert(
            "aq-may-chai-01",
            "may-chai",
            "PM2.5 high",
            "major",
            "resolved",
            at(23, 0, day=9),
            acknowledged_at=at(23, 30, day=9),
            resolved_at=at(0, 20),
        ),
        Alert("cam-003", None, "Camera offline", "warning", "firing", at(3, 0)),
    ]


def _quarantine() -> list[Quarantined]:
    return [
        Quarantined(
            at(0, 15),
            "mqtt:sensors/aq-may-chai-01",
            "aq-may-chai-01",
            "pm2_5: value 1500.0 µg/m³ is outside 0.0..1000.0",
        ),
        Quarantined(
            at(0, 17),
            "mqtt:sensors/aq-may-chai-01",
            "aq-may-chai-01",
            "pm2_5: value 1200.0 µg/m³ is outside 0.0..1000.0",
        ),
        Quarantined(at(2, 3), "coap:/senml", None, "  Invalid   SenML record (no base name): x"),
        Quarantined(at(2, 4), "coap:/senml", "unknown-7", "unknown metric 'pm1'"),
        Quarantined(at(4, 44), "speaker", "spk-van-my-001", ""),
        Quarantined(
            at(4, 45),
            "onvif:events",
            "cam-002",
            "Event message is not well-formed XML; it cannot be parsed by the reader at all",
        ),
        Quarantined(
            at(22, 0, day=9), "coap:/senml", None, "Invalid SenML record: before the range"
        ),
    ]


def _broadcasts() -> tuple[list[Broadcast], list[Occurrence]]:
    """2025-03-10 is a Monday: the week of the range runs from local midnight that day."""
    broadcasts = [
        Broadcast(
            "Thông báo tiêm chủng",
            "normal",
            ("may-chai", "van-my"),
            (at(1, 0), at(4, 0), at(1, 0, day=11), at(1, 0, day=17), at(20, 0, day=9)),
        ),
        Broadcast("Cảnh báo ngập lụt", "emergency", ("van-my",), (at(3, 0),)),
        Broadcast("Lịch thu gom rác", "priority", ("cau-tre",), (at(5, 30), at(10, 0))),
        Broadcast("Đã hủy", "normal", ("may-chai",), (at(2, 0),), state="cancelled"),
    ]
    occurrences = [
        Occurrence(
            0,
            at(1, 0),
            "partially_failed",
            (
                Delivery("spk-may-chai-001", at(1, 0), at(1, 2)),
                Delivery(
                    "spk-may-chai-002",
                    at(1, 0),
                    failed_at=at(1, 1),
                    failure_reason="download_failed",
                ),
                Delivery("spk-van-my-001", at(1, 0), at(1, 2)),
            ),
        ),
        Occurrence(
            0,
            at(4, 0),
            "partially_failed",
            (
                Delivery("spk-may-chai-001", at(4, 0), at(4, 2)),
                Delivery(
                    "spk-may-chai-002", failed_at=at(4, 5), failure_reason="no_answer", send_count=3
                ),
                Delivery("spk-van-my-001"),
            ),
        ),
        Occurrence(1, at(3, 0), "completed", (Delivery("spk-van-my-001", at(3, 0), at(3, 2)),)),
        Occurrence(
            0,
            at(20, 0, day=9),
            "completed",
            (Delivery("spk-may-chai-001", at(20, 0, day=9), at(20, 2, day=9)),),
        ),
    ]
    return broadcasts, occurrences


def build() -> Fleet:
    devices = _devices()
    broadcasts, occurrences = _broadcasts()
    return Fleet(
        devices,
        _readings(devices),
        _health_events(),
        _alerts(),
        _quarantine(),
        broadcasts,
        occurrences,
    )


async def load(conn: asyncpg.Connection, fleet: Fleet) -> None:
    ward_ids: dict[str, int] = {}
    for code, name in WARDS.items():
        ward_ids[code] = await conn.fetchval(
            "INSERT INTO ward (code, name) VALUES ($1, $2) RETURNING id", code, name
        )
    ids: dict[str, int] = {}
    for device in fleet.devices:
        ids[device.uid] = await conn.fetchval(
            """
            INSERT INTO device (uid, kind, name, vendor, model, firmware_version, ward_id,
                                latitude, longitude, lifecycle, status, status_reason, faults,
                                last_seen, status_changed_at, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            RETURNING id
            """,
            device.uid,
            device.kind,
            device.name,
            device.vendor,
            device.model,
            device.firmware,
            ward_ids[device.ward] if device.ward else None,
            device.latitude,
            device.longitude,
            device.lifecycle,
            device.status,
            device.status_reason,
            list(device.faults),
            device.last_seen,
            device.status_changed_at,
            CREATED_AT,
        )
    await conn.copy_records_to_table(
        "reading",
        records=[(r.time, ids[r.uid], r.metric, r.value) for r in fleet.readings],
        columns=["time", "device_id", "metric", "value"],
    )
    if await conn.fetchval("SELECT value FROM hub_meta WHERE key = 'timeseries_backend'") == (
        "postgres"
    ):
        # What the hub's rollup service keeps there (TimescaleDB's aggregate is real-time).
        await refresh_hourly(conn, READINGS_START, TIME_TO)  # type: ignore[arg-type]
    await conn.copy_records_to_table(
        "reading_latest",
        records=[(ids[r.uid], r.metric, r.time, r.value) for r in fleet.latest()],
        columns=["device_id", "metric", "time", "value"],
    )
    await conn.executemany(
        "INSERT INTO health_event (device_id, at, from_status, to_status, reason) "
        "VALUES ($1, $2, $3, $4, $5)",
        [(ids[e.uid], e.at, e.from_status, e.to_status, e.reason) for e in fleet.health_events],
    )
    for number, alert in enumerate(fleet.alerts, start=1):
        await conn.execute(
            """
            INSERT INTO alert (fingerprint, rule_name, device_id, ward_id, severity, state,
                               message, started_at, acknowledged_at, acknowledged_by,
                               resolved_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            f"{alert.rule}:{alert.uid}:{number}",
            alert.rule,
            ids[alert.uid],
            ward_ids[alert.ward] if alert.ward else None,
            alert.severity,
            alert.state,
            alert.message or f"{alert.rule} on {alert.uid}",
            alert.started_at,
            alert.acknowledged_at,
            "operator" if alert.acknowledged_at else None,
            alert.resolved_at,
        )
    await conn.executemany(
        "INSERT INTO quarantine (received_at, source, device_uid, reason, raw, size) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [(q.received_at, q.source, q.device_uid, q.reason, b"{}", 2) for q in fleet.quarantine],
    )
    await load_broadcasts(conn, fleet, ward_ids, ids)
    await load_compliance(conn, fleet)


async def load_compliance(conn: asyncpg.Connection, fleet: Fleet) -> None:
    """The shipped catalog imported and each device judged against it, written where the
    hub's compliance refresh writes (the fleet's versions never depend on today's date)."""
    await import_catalog_into(conn)
    catalog = FirmwareCatalog.build(
        await firmware_store.releases(conn), await firmware_store.vulnerabilities(conn)
    )
    assessed = {d.uid for d in fleet.devices if d.assessed}
    items = [
        assess(device, catalog, TIME_TO.date())
        for device in await firmware_store.devices(conn, None)
        if device.uid in assessed
    ]
    await firmware_store.write_compliance(conn, items, TIME_TO)


async def load_broadcasts(
    conn: asyncpg.Connection, fleet: Fleet, ward_ids: dict[str, int], ids: dict[str, int]
) -> None:
    if not fleet.broadcasts:
        return
    digest = "0" * 64
    asset = await conn.fetchval(
        "INSERT INTO audio_asset (name, source, original_format, original_sha256, "
        "original_bytes, sha256, size_bytes, duration_s, sample_rate, created_by) "
        "VALUES ('chime', 'upload', 'wav', $1, 1000, $1, 1000, 90, 16000, 'test') RETURNING id",
        digest,
    )
    broadcast_ids = []
    for broadcast in fleet.broadcasts:
        broadcast_ids.append(
            await conn.fetchval(
                "INSERT INTO broadcast (title, priority, volume, audio_asset_id, duration_s, "
                "target_wards, ward_ids, starts_at, timezone, retry_window_s, state, created_by) "
                "VALUES ($1, $2, 70, $3, $4, $5, $5, $6, 'Asia/Ho_Chi_Minh', 300, $7, 'test') "
                "RETURNING id",
                broadcast.title,
                broadcast.priority,
                asset,
                broadcast.duration.total_seconds(),
                [ward_ids[code] for code in broadcast.wards],
                broadcast.slots[0],
                broadcast.state,
            )
        )
        await conn.executemany(
            "INSERT INTO broadcast_slot (broadcast_id, starts_at, ends_at) VALUES ($1, $2, $3)",
            [(broadcast_ids[-1], slot, slot + broadcast.duration) for slot in broadcast.slots],
        )
    devices = {d.uid: d for d in fleet.devices}
    for number, occurrence in enumerate(fleet.occurrences):
        occurrence_id = await conn.fetchval(
            "INSERT INTO broadcast_occurrence (broadcast_id, scheduled_at, status, claimed_by, "
            "speaker_count) VALUES ($1, $2, $3, 'test', $4) RETURNING id",
            broadcast_ids[occurrence.broadcast],
            occurrence.scheduled_at,
            occurrence.status,
            len(occurrence.deliveries),
        )
        await conn.executemany(
            "INSERT INTO broadcast_delivery (occurrence_id, device_id, device_uid, ward_id, "
            "command_id, send_count, first_sent_at, received_at, finished_at, failed_at, "
            "failure_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            [
                (
                    occurrence_id,
                    ids[delivery.uid],
                    delivery.uid,
                    ward_ids[devices[delivery.uid].ward or ""],
                    f"cmd-{number}-{delivery.uid}",
                    delivery.send_count,
                    occurrence.scheduled_at,
                    delivery.received_at,
                    delivery.finished_at,
                    delivery.failed_at,
                    delivery.failure_reason,
                )
                for delivery in occurrence.deliveries
            ],
        )
