"""A simulated fleet of environmental sensors in Hải Phòng, publishing over real MQTT and CoAP.

Values follow the city's rhythm in local time (Asia/Ho_Chi_Minh): traffic
peaks at 7-9 and 17-19 drive PM, CO, NO2 and noise; ozone follows the sun;
temperature and humidity follow the season and the day; rain comes in
events per ward (drizzle in the dry season, storms in the wet one), washes
out dust, and raises water levels with a lag. Everything is deterministic
for a seed. Payload timestamps are the real time so the hub accepts them;
``time_scale`` only speeds up the simulated clock the values follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import math
import random
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

import aiocoap
import aiomqtt
import cbor2
import httpx
from aiocoap.oscore import NotAProtectedMessage

from drivers.contract import Topics
from drivers.firmware.device import FirmwareAgent, FirmwareFault, UpdateTiming
from drivers.sensors.errors import BrokerUnavailable
from drivers.sensors.oscore import (
    OscoreKeyMaterial,
    device_context,
    protect_requests,
    sequence_floor,
)

__all__ = [
    "AIR_METRICS",
    "HYDRO_METRICS",
    "LOCAL_TIME",
    "HaiPhongEnvironment",
    "PayloadStyle",
    "SensorSimulator",
    "SimulatedSensor",
    "SimulationStats",
    "Transport",
    "default_fleet",
    "encode_telemetry",
    "malformed_payload",
    "run_sensor_fleet",
]

log = logging.getLogger(__name__)

LOCAL_TIME: Final = ZoneInfo("Asia/Ho_Chi_Minh")

AIR_METRICS: Final = (
    "pm2_5",
    "pm10",
    "o3",
    "co",
    "no2",
    "so2",
    "temperature",
    "humidity",
    "noise",
)
HYDRO_METRICS: Final = ("rainfall", "water_level", "temperature", "humidity")

# SenML unit symbols (RFC 8428, RFC 8798); noise goes without, A-weighting is implied.
SENML_UNITS: Final = {
    "pm2_5": "ug/m3",
    "pm10": "ug/m3",
    "o3": "ug/m3",
    "co": "ug/m3",
    "no2": "ug/m3",
    "so2": "ug/m3",
    "temperature": "Cel",
    "humidity": "%RH",
    "water_level": "cm",
    "rainfall": "mm",
}

# Hải Phòng climate normals by month: mean air temperature (°C), mean relative
# humidity (%), and the share of days with rain.
MONTHLY_TEMPERATURE: Final = (
    16.6,
    17.3,
    19.9,
    23.6,
    27.4,
    29.0,
    29.3,
    28.6,
    27.6,
    25.3,
    22.0,
    18.4,
)
MONTHLY_HUMIDITY: Final = (81, 86, 89, 89, 85, 84, 85, 87, 84, 80, 78, 78)
RAINY_DAY_SHARE: Final = (0.25, 0.35, 0.45, 0.4, 0.4, 0.5, 0.5, 0.6, 0.45, 0.3, 0.2, 0.15)
# Particulate loading by month: the dry north-east monsoon traps pollution in winter.
POLLUTION_SEASON: Final = (1.5, 1.35, 1.2, 1.0, 0.8, 0.7, 0.65, 0.65, 0.75, 1.0, 1.3, 1.5)
WET_SEASON: Final = frozenset(range(5, 11))
# Water level response to rain: peaks this many hours after the rain, over this window.
RUNOFF_LAG_HOURS: Final = 1.5
RUNOFF_MEMORY_HOURS: Final = 12.0
RUNOFF_STEP_HOURS: Final = 1 / 12
TIDE_PERIOD_HOURS: Final = 24.84
TIPPING_BUCKET_MM: Final = 0.2


class PayloadStyle(enum.StrEnum):
    JSON = "json"
    SENML_JSON = "senml+json"
    SENML_CBOR = "senml+cbor"


class Transport(enum.StrEnum):
    MQTT = "mqtt"
    COAP = "coap"


COAP_CONTENT_FORMATS: Final = {PayloadStyle.SENML_JSON: 110, PayloadStyle.SENML_CBOR: 112}


@dataclass(frozen=True, slots=True)
class SimulatedSensor:
    uid: str
    ward: str
    lat: float
    lon: float
    metrics: tuple[str, ...] = AIR_METRICS
    style: PayloadStyle = PayloadStyle.JSON
    transport: Transport = Transport.MQTT
    username: str | None = None
    password: str | None = None
    silent: bool = False
    """Connects and says it is online, then sends nothing: a hung firmware."""
    oscore: OscoreKeyMaterial | None = None
    """OSCORE key material as the device holds it: its CoAP requests are protected."""
    model: str = "AQM-65"
    firmware_version: str = "1.9.2"
    firmware_faults: frozenset[FirmwareFault] = frozenset()
    """How its firmware updates go wrong (drivers.firmware.device); MQTT sensors only."""
    pollution_source: float = 1.0
    """Particulates from a source beside it (a building site, a burning field): PM times this."""


@dataclass
class SimulationStats:
    published: int = 0
    malformed: int = 0
    statuses: int = 0
    failed: int = 0


def default_fleet(
    sites: Iterable[tuple[str, str, float, float]],
    *,
    seed: int = 0,
    hydro_share: float = 0.25,
    senml_share: float = 0.3,
    coap_share: float = 0.0,
    silent_share: float = 0.0,
) -> list[SimulatedSensor]:
    """Sensors for (uid, ward, lat, lon) sites.

    A ``hydro_share`` of them are rain and water-level gauges, the others
    air-quality stations; a ``senml_share`` speak SenML (JSON or CBOR), a
    ``coap_share`` post SenML CBOR over CoAP, a ``silent_share`` go quiet.
    """
    fleet = []
    for uid, ward, lat, lon in sites:
        rng = random.Random(f"{seed}:fleet:{uid}")
        metrics = HYDRO_METRICS if rng.random() < hydro_share else AIR_METRICS
        transport = Transport.COAP if rng.random() < coap_share else Transport.MQTT
        if transport is Transport.COAP:
            style = PayloadStyle.SENML_CBOR
        elif rng.random() < senml_share:
            style = rng.choice((PayloadStyle.SENML_JSON, PayloadStyle.SENML_CBOR))
        else:
            style = PayloadStyle.JSON
        silent = rng.random() < silent_share
        fleet.append(
            SimulatedSensor(
                uid, ward, lat, lon, metrics, style=style, transport=transport, silent=silent
            )
        )
    return fleet


@dataclass(frozen=True, slots=True)
class _RainEvent:
    start: datetime
    hours: float
    peak_mm_per_hour: float

    def rate(self, at: datetime) -> float:
        elapsed = (at - self.start).total_seconds() / 3600
        if not 0 <= elapsed <= self.hours:
            return 0.0
        return self.peak_mm_per_hour * math.sin(math.pi * elapsed / self.hours)


class HaiPhongEnvironment:
    """The values a sensor at a site would measure at a moment; pure for a seed."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        # A water level integrates the rain of many earlier moments, which the gauges of a
        # ward and the next samples ask for again: computed once (the model is pure).
        self._rain_rate = functools.lru_cache(maxsize=16_384)(self._rain_rate_at)

    def sample(
        self, sensor: SimulatedSensor, at: datetime, since: datetime, rng: random.Random
    ) -> dict[str, float]:
        """Measurements of ``sensor`` at ``at``; rainfall is the rain since ``since``."""
        local = at.astimezone(LOCAL_TIME)
        hour = local.hour + local.minute / 60 + local.second / 3600
        month = local.month
        site = _site_factor(self.seed, sensor.uid)
        traffic = _traffic(hour, weekend=local.weekday() >= 5)
        rain = self.rain_rate(sensor.ward, at)
        season = POLLUTION_SEASON[month - 1]
        wet = month in WET_SEASON
        washout = 1 / (1 + rain / 4)
        swing = _diurnal(hour)
        fine = season * (16 + 32 * traffic) * site * washout + rng.gauss(0, 2.5)
        fine = max(fine * sensor.pollution_source, 1.0)
        values: dict[str, float] = {}
        for metric in sensor.metrics:
            if metric == "pm2_5":
                value = fine
            elif metric == "pm10":
                # Coarse road dust rides on the same traffic; PM10 always contains PM2.5.
                value = fine * (1.45 + 0.35 * traffic) + abs(rng.gauss(0, 4))
            elif metric == "o3":
                sun = max(0.0, math.sin(math.pi * (hour - 6) / 13)) ** 1.3
                value = (15 + 95 * sun * (0.8 if wet else 1.1)) / (1 + rain / 2)
                value += rng.gauss(0, 3) - 10 * traffic  # fresh NO from traffic eats ozone
            elif metric == "co":
                value = 350 + 1800 * traffic * math.sqrt(season) * site + rng.gauss(0, 60)
            elif metric == "no2":
                value = 12 + 48 * traffic * math.sqrt(season) * site + rng.gauss(0, 3)
            elif metric == "so2":
                value = 10 + 12 * (site - 0.8) + 4 * traffic + rng.gauss(0, 1.5)
            elif metric == "temperature":
                amplitude = 3.0 if wet else 3.8
                value = MONTHLY_TEMPERATURE[month - 1] + amplitude * swing
                value += -2.5 * min(rain / 10, 1.0) + rng.gauss(0, 0.3)
            elif metric == "humidity":
                value = MONTHLY_HUMIDITY[month - 1] - 9 * swing + 12 * min(rain / 5, 1.0)
                value = min(100.0, value + rng.gauss(0, 1.2))
            elif metric == "noise":
                value = 40 + 30 * min(traffic, 1.1) + rng.gauss(0, 1.5)
            elif metric == "rainfall":
                fallen = self.rainfall(sensor.ward, since, at)
                value = round(fallen / TIPPING_BUCKET_MM) * TIPPING_BUCKET_MM
            elif metric == "water_level":
                value = self.water_level(sensor, at) + rng.gauss(0, 0.4)
            else:
                raise ValueError(f"the simulator has no model for metric {metric!r}")
            values[metric] = round(max(value, 0.0), 1)
        return values

    def rain_rate(self, ward: str, at: datetime) -> float:
        """Rain intensity in mm/h over ``ward`` at ``at``."""
        return self._rain_rate(ward, at)

    def _rain_rate_at(self, ward: str, at: datetime) -> float:
        day = at.astimezone(LOCAL_TIME).date()
        events = _rain_events(self.seed, ward, day) + _rain_events(
            self.seed, ward, day - timedelta(days=1)
        )
        return sum(event.rate(at) for event in events)

    def rainfall(self, ward: str, since: datetime, until: datetime) -> float:
        """Rain fallen over ``ward`` between two moments, in mm."""
        hours = max((until - since).total_seconds() / 3600, 0.0)
        if hours == 0:
            return 0.0
        steps = min(max(math.ceil(hours * 60), 1), 120)
        step = hours / steps
        return sum(
            self.rain_rate(ward, since + timedelta(hours=step * (index + 0.5))) * step
            for index in range(steps)
        )

    def water_level(self, sensor: SimulatedSensor, at: datetime) -> float:
        """Level above the gauge datum in cm: base, tide, and the lagged runoff of recent rain."""
        rng = random.Random(f"{self.seed}:gauge:{sensor.uid}")
        base = rng.uniform(40, 90)
        tide_phase = rng.uniform(0, 2 * math.pi)
        gain = rng.uniform(1.2, 2.0)  # cm of rise per mm of rain at the peak of the response
        hours_since_epoch = at.timestamp() / 3600
        tide = 12 * math.sin(2 * math.pi * hours_since_epoch / TIDE_PERIOD_HOURS + tide_phase)
        runoff = 0.0
        steps = round(RUNOFF_MEMORY_HOURS / RUNOFF_STEP_HOURS)
        for index in range(steps):
            lag = (index + 0.5) * RUNOFF_STEP_HOURS
            rate = self.rain_rate(sensor.ward, at - timedelta(hours=lag))
            if rate:
                # Unit-peak gamma kernel: the response is largest RUNOFF_LAG_HOURS after the rain.
                shape = lag / RUNOFF_LAG_HOURS
                runoff += rate * RUNOFF_STEP_HOURS * shape * math.exp(1 - shape)
        return base + tide + gain * runoff


@functools.lru_cache(maxsize=4096)
def _rain_events(seed: int, ward: str, day: date) -> tuple[_RainEvent, ...]:
    rng = random.Random(f"{seed}:rain:{ward}:{day.isoformat()}")
    month = day.month
    if rng.random() >= RAINY_DAY_SHARE[month - 1]:
        return ()
    midnight = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TIME)
    events = []
    for _ in range(rng.choice((1, 1, 2))):
        if month in WET_SEASON:
            # Convective storms, mostly in the afternoon and evening.
            start = min(max(rng.gauss(16, 3), 0.0), 23.5)
            hours = rng.uniform(0.5, 2.5)
            peak = rng.uniform(8, 45)
        else:
            # Dry-season drizzle (mưa phùn), at any hour.
            start = rng.uniform(0, 24)
            hours = rng.uniform(1, 6)
            peak = rng.uniform(0.3, 2.5)
        events.append(_RainEvent(midnight + timedelta(hours=start), hours, peak))
    return tuple(events)


def _site_factor(seed: int, uid: str) -> float:
    """How much busier than average the sensor's street is."""
    return random.Random(f"{seed}:site:{uid}").uniform(0.8, 1.25)


def _traffic(hour: float, *, weekend: bool) -> float:
    """Road traffic relative to the morning peak: rush hours 7-9 and 17-19, quiet nights."""
    morning = math.exp(-(((hour - 7.75) / 1.0) ** 2))
    evening = math.exp(-(((hour - 18.0) / 1.2) ** 2))
    daytime = 1 / (1 + math.exp(-2 * (hour - 8.5))) / (1 + math.exp(2 * (hour - 17)))
    level = 0.08 + 0.85 * morning + 0.85 * evening + 0.4 * daytime
    return level * (0.75 if weekend else 1.0)


def _diurnal(hour: float) -> float:
    """-1 at 05:00 (coolest), +1 at 14:00 (warmest), smooth in between."""
    if 5 <= hour < 14:
        return -math.cos(math.pi * (hour - 5) / 9)
    return math.cos(math.pi * ((hour - 14) % 24) / 15)


def encode_telemetry(sensor: SimulatedSensor, values: dict[str, float], at: datetime) -> bytes:
    """Encode readings the way ``sensor`` does."""
    if sensor.style is PayloadStyle.JSON:
        document = {"ts": at.isoformat(timespec="milliseconds"), "readings": values}
        return json.dumps(document).encode()
    records: list[dict[Any, Any]] = []
    for metric, value in values.items():
        record: dict[Any, Any] = {"n": metric, "v": value}
        if metric in SENML_UNITS:
            record["u"] = SENML_UNITS[metric]
        records.append(record)
    records[0] = {"bn": f"{sensor.uid}:", "bt": round(at.timestamp(), 3), **records[0]}
    if sensor.style is PayloadStyle.SENML_JSON:
        return json.dumps(records).encode()
    labels = {"bn": -2, "bt": -3, "n": 0, "u": 1, "v": 2}
    return cbor2.dumps(
        [{labels[key]: value for key, value in record.items()} for record in records]
    )


def malformed_payload(sensor: SimulatedSensor, at: datetime, rng: random.Random) -> bytes:
    """A payload the hub must reject, one of the ways field devices get it wrong."""
    stamp = at.isoformat(timespec="seconds")
    choices = (
        lambda: json.dumps({"ts": stamp, "readings": {"pm2_5": 35.0}}).encode()[:-7],
        lambda: json.dumps({"ts": stamp, "readings": {"pm2_5": "35.2"}}).encode(),
        lambda: f'{{"ts": "{stamp}", "readings": {{"pm2_5": NaN}}}}'.encode(),
        lambda: json.dumps(
            {"ts": (at + timedelta(days=1)).isoformat(), "readings": {"pm2_5": 35.0}}
        ).encode(),
        lambda: json.dumps([{"bn": f"{sensor.uid}:", "n": "pm2_5", "v": 1.0, "vs": "1"}]).encode(),
        lambda: b"\x00" + rng.randbytes(15),
    )
    return rng.choice(choices)()


class SensorSimulator:
    """Publishes a fleet's readings on a fixed cadence until stopped or out of rounds.

    Every device publishes every ``interval`` real seconds, starting at a random
    moment within the first interval. The values follow a simulated clock that
    starts at ``start`` (default: now) and runs ``time_scale`` times faster than
    real time: 1440 plays a day in a minute. A ``malformed_share`` of the
    messages are broken on purpose. Devices with credentials get their own
    connection, with their Last Will; the others share one connection (a
    single connection cannot carry a will per device) unless
    ``dedicated_connections`` is set. A lost connection is not re-established:
    later publications count as failed.
    """

    def __init__(
        self,
        devices: Sequence[SimulatedSensor],
        broker_host: str,
        broker_port: int = 1883,
        *,
        coap_host: str | None = None,
        coap_port: int = 5683,
        interval: float = 60.0,
        time_scale: float = 1.0,
        start: datetime | None = None,
        seed: int = 0,
        malformed_share: float = 0.0,
        dedicated_connections: bool = False,
        tls: ssl.SSLContext | None = None,
        update_timing: UpdateTiming | None = None,
    ) -> None:
        coap_devices = [device for device in devices if device.transport is Transport.COAP]
        if coap_devices and coap_host is None:
            raise ValueError("CoAP devices need coap_host")
        if any(device.style not in COAP_CONTENT_FORMATS for device in coap_devices):
            raise ValueError("CoAP devices speak SenML (JSON or CBOR)")
        self.devices = list(devices)
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.coap_host = coap_host
        self.coap_port = coap_port
        self.interval = interval
        self.time_scale = time_scale
        self.start = start
        self.seed = seed
        self.malformed_share = malformed_share
        self.dedicated_connections = dedicated_connections
        self.tls = tls
        self.environment = HaiPhongEnvironment(seed)
        self.stats = SimulationStats()
        self._real_start = datetime.now(UTC)
        self.update_timing = update_timing or UpdateTiming()
        self.agents: dict[str, FirmwareAgent] = {}
        """Each MQTT sensor's firmware side, by uid."""
        self.down: set[str] = set()
        """Sensors rebooting (or that never came back): they publish nothing."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _agent(self, device: SimulatedSensor, connection: _DeviceConnection) -> FirmwareAgent:
        async def reboot(downtime_s: float, comes_back: bool) -> None:
            self.down.add(device.uid)
            await connection.status(device, "offline")
            if not comes_back:
                return
            await asyncio.sleep(downtime_s)
            self.down.discard(device.uid)
            await connection.announce(device)

        def http() -> httpx.AsyncClient:
            assert self._http is not None
            return self._http

        agent = FirmwareAgent(
            device.uid,
            device.model,
            device.firmware_version,
            publish=lambda topic, payload: connection.publish(topic, payload),
            reboot=reboot,
            http=http,
            spawn=self._spawn,
            faults=set(device.firmware_faults),
            timing=self.update_timing,
        )
        self.agents[device.uid] = agent
        return agent

    def simulated_time(self, real: datetime) -> datetime:
        """The moment the values follow at ``real``: the real time since the run began, sped up."""
        origin = self.start or self._real_start
        return origin + (real - self._real_start) * self.time_scale

    @property
    def started_at(self) -> datetime:
        """When the current run began, in real time."""
        return self._real_start

    async def run(self, *, rounds: int | None = None) -> SimulationStats:
        """Publish until cancelled, or ``rounds`` readings per (non-silent) device."""
        self._real_start = datetime.now(UTC)
        async with contextlib.AsyncExitStack() as stack:
            self._http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
            stack.callback(lambda: [task.cancel() for task in self._tasks])
            coap: _CoapPublisher | None = None
            shared: _DeviceConnection | None = None
            loops = []
            for device in self.devices:
                if device.transport is Transport.COAP:
                    if coap is None:
                        assert self.coap_host is not None
                        # The OSCORE transport first: it takes the requests it has a context for.
                        context = await aiocoap.Context.create_client_context(
                            transports=["oscore", "udp6"]
                        )
                        stack.push_async_callback(context.shutdown)
                        coap = _CoapPublisher(context, self.coap_host, self.coap_port)
                    coap.secure(device)
                    loops.append(self._device_loop(device, coap, rounds))
                    continue
                if device.username is not None or self.dedicated_connections:
                    client = await stack.enter_async_context(_DeviceConnection(self, device))
                else:
                    if shared is None:
                        shared = await stack.enter_async_context(_DeviceConnection(self, None))
                    client = shared
                await client.attach(device, self._agent(device, client))
                await client.announce(device)
                loops.append(self._device_loop(device, client, rounds))
            async with asyncio.TaskGroup() as group:
                for loop in loops:
                    group.create_task(loop)
        return self.stats

    async def _device_loop(
        self, device: SimulatedSensor, publisher: _Publisher, rounds: int | None
    ) -> None:
        if device.silent:
            return
        rng = random.Random(f"{self.seed}:device:{device.uid}")
        # Devices boot at different moments; spread them over one interval.
        await asyncio.sleep(rng.uniform(0, self.interval))
        previous = self.simulated_time(datetime.now(UTC)) - timedelta(
            seconds=self.interval * self.time_scale
        )
        sent = 0
        while rounds is None or sent < rounds:
            if device.uid in self.down:
                await asyncio.sleep(min(self.interval, 0.5))
                continue
            real = datetime.now(UTC)
            simulated = self.simulated_time(real)
            if rng.random() < self.malformed_share:
                payload = malformed_payload(device, real, rng)
                self.stats.malformed += 1
            else:
                values = self.environment.sample(device, simulated, previous, rng)
                payload = encode_telemetry(device, values, real)
            previous = simulated
            try:
                await publisher.telemetry(device, payload)
                self.stats.published += 1
            except (aiomqtt.MqttError, aiocoap.error.Error) as error:
                self.stats.failed += 1
                log.warning("simulated sensor %s could not publish: %s", device.uid, error)
            sent += 1
            if rounds is None or sent < rounds:
                await asyncio.sleep(self.interval)


class _Publisher(Protocol):
    async def telemetry(self, device: SimulatedSensor, payload: bytes) -> None: ...


class _DeviceConnection:
    """An MQTT connection for one device (with its will), or shared by devices without one."""

    def __init__(self, simulator: SensorSimulator, device: SimulatedSensor | None) -> None:
        self.simulator = simulator
        self.announced: list[SimulatedSensor] = []
        self._agents: dict[str, FirmwareAgent] = {}
        self._reader: asyncio.Task[None] | None = None
        will = None
        identifier = f"sim-{device.uid}" if device else f"sim-shared-{simulator.seed}"
        if device is not None:
            will = aiomqtt.Will(Topics.for_device(device.uid, Topics.STATUS), "offline", 1, True)
        self.client = aiomqtt.Client(
            simulator.broker_host,
            simulator.broker_port,
            identifier=identifier,
            username=device.username if device else None,
            password=device.password if device else None,
            will=will,
            tls_context=simulator.tls,
            keepalive=30,
        )

    async def __aenter__(self) -> _DeviceConnection:
        try:
            await self.client.__aenter__()
        except aiomqtt.MqttError as error:
            raise BrokerUnavailable(f"simulator cannot connect: {error}") from error
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        # A device switched off cleanly says so; only a crash leaves it to the will.
        with contextlib.suppress(aiomqtt.MqttError):
            for device in self.announced:
                await self.status(device, "offline")
        await self.client.__aexit__(None, None, None)

    async def attach(self, device: SimulatedSensor, agent: FirmwareAgent) -> None:
        """Listen for the device's firmware commands on this connection."""
        self._agents[agent.topic] = agent
        await self.client.subscribe(agent.topic, qos=1)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="sensor-firmware")

    async def _read(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in self.client.messages:
                agent = self._agents.get(message.topic.value)
                payload = message.payload
                if (
                    agent is not None
                    and isinstance(payload, bytes | bytearray)
                    and agent.uid not in self.simulator.down
                ):
                    agent.receive(bytes(payload))

    async def announce(self, device: SimulatedSensor) -> None:
        rng = random.Random(f"{self.simulator.seed}:status:{device.uid}")
        status: dict[str, Any] = {
            "state": "online",
            "battery": round(rng.uniform(55, 100), 1),
            "rssi": round(rng.uniform(-97, -58)),
        }
        agent = self.simulator.agents.get(device.uid)
        if agent is not None:
            status["firmware"] = agent.version
        await self.status(device, json.dumps(status))
        if device not in self.announced:
            self.announced.append(device)
        self.simulator.stats.statuses += 1

    async def publish(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.publish(topic, payload, qos=1, retain=True)

    async def status(self, device: SimulatedSensor, payload: str) -> None:
        topic = Topics.for_device(device.uid, Topics.STATUS)
        await self.client.publish(topic, payload, qos=1, retain=True)

    async def telemetry(self, device: SimulatedSensor, payload: bytes) -> None:
        topic = Topics.for_device(device.uid, Topics.TELEMETRY)
        await self.client.publish(topic, payload, qos=1)


class _CoapPublisher:
    """Posts SenML to ``/s/<uid>``; an error response is a failed publication.

    Devices with OSCORE key material protect their requests. They keep no state
    between runs, so each run starts at ``sequence_floor``: the hub's replay
    window must never see a sequence number again.
    """

    def __init__(self, context: Any, host: str, port: int) -> None:
        self.context = context
        self.base_uri = f"coap://{f'[{host}]' if ':' in host else host}:{port}/s/"

    def secure(self, device: SimulatedSensor) -> None:
        if device.oscore is not None:
            security = device_context(device.oscore, device.uid, first_sequence=sequence_floor())
            protect_requests(self.context, self.base_uri + device.uid, security)

    async def telemetry(self, device: SimulatedSensor, payload: bytes) -> None:
        request = aiocoap.Message(
            code=aiocoap.POST,
            uri=self.base_uri + device.uid,
            payload=payload,
            content_format=COAP_CONTENT_FORMATS[device.style],
        )
        try:
            response = await self.context.request(request).response
        except NotAProtectedMessage as error:
            # The OSCORE layer refused the request (unknown key, replay) in the clear.
            response = error.plain_message
        if not response.code.is_successful():
            raise aiocoap.error.Error(
                f"{device.uid}: {response.code} {response.payload.decode(errors='replace')}"
            )


async def run_sensor_fleet(
    devices: Sequence[SimulatedSensor],
    broker_host: str,
    broker_port: int = 1883,
    *,
    rounds: int | None = None,
    coap_host: str | None = None,
    coap_port: int = 5683,
    interval: float = 60.0,
    time_scale: float = 1.0,
    start: datetime | None = None,
    seed: int = 0,
    malformed_share: float = 0.0,
    dedicated_connections: bool = False,
    tls: ssl.SSLContext | None = None,
) -> SimulationStats:
    """Publish ``devices`` until cancelled or for ``rounds``; see ``SensorSimulator``."""
    simulator = SensorSimulator(
        devices,
        broker_host,
        broker_port,
        coap_host=coap_host,
        coap_port=coap_port,
        interval=interval,
        time_scale=time_scale,
        start=start,
        seed=seed,
        malformed_share=malformed_share,
        dedicated_connections=dedicated_connections,
        tls=tls,
    )
    return await simulator.run(rounds=rounds)
