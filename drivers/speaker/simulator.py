"""Simulated loudspeakers speaking protocol v1 over a real MQTT broker.

Each simulated speaker downloads the audio over HTTP, checks its sha256, honours
start times, priorities and expiry, and acknowledges every stage, with seeded
latencies and injectable faults. Small fleets get one MQTT connection per
speaker (own credentials, Last Will); large fleets share a pool of connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import hashlib
import logging
import math
import random
import resource
import socket
import ssl
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import aiomqtt
import httpx
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.contract import AckStage, DecodeError, Topics
from drivers.firmware.device import FirmwareAgent, FirmwareFault, UpdateTiming
from drivers.speaker.protocol import (
    LAST_WILL_PAYLOAD,
    STOP_ALL,
    CommandRejected,
    FailureReason,
    PingCommand,
    PlayCommand,
    Priority,
    RebootCommand,
    SetVolumeCommand,
    SpeakerCommand,
    SpeakerStatus,
    StopCommand,
    decode_command,
    decode_groups,
    encode_ack,
    encode_event,
    encode_status,
)
from drivers.tcp import batch_io

logger = logging.getLogger(__name__)

SLOW_FACTOR = 20.0
MAX_AUDIO_BYTES = 64 * 1024 * 1024
FILE_DESCRIPTOR_HEADROOM = 256
SUBSCRIBE_BATCH = 200
_REMEMBERED_COMMANDS = 1024
_AUDIO_HELD = 8
_SHARED_AUDIO_CACHE_ENTRIES = 16
_ONLINE_WAIT_AFTER_REBOOT_S = 30.0
_REBOOT_GRACE_S = 1.0
_STOP_ROUNDS = 20


class Fault(enum.StrEnum):
    OFFLINE = "offline"
    """Never connects (or drops off when set at run time)."""
    SLOW = "slow"
    """Reacts SLOW_FACTOR times slower than the latency model says."""
    REJECTS = "rejects"
    """Refuses every play with ``failed: rejected``."""
    AMPLIFIER_FAULT = "amplifier_fault"
    """Reports the fault in its status and fails plays with ``amplifier_fault``."""
    SPEAKER_FAULT = "speaker_fault"
    """Reports a broken driver/cone in its status; still plays."""
    CHECKSUM_MISMATCH = "checksum_mismatch"
    """Corrupts what it downloads, so the sha256 check fails."""
    NEVER_ACKS = "never_acks"
    """Acts on commands but publishes no acknowledgement."""
    ACKS_TWICE = "acks_twice"
    """Publishes every acknowledgement twice."""


class MqttVersion(enum.StrEnum):
    V311 = "3.1.1"
    V5 = "5"


class ConnectionMode(enum.StrEnum):
    AUTO = "auto"
    PER_SPEAKER = "per_speaker"
    POOLED = "pooled"


@dataclass(frozen=True, slots=True)
class Latency:
    """How long a speaker takes to react to a command: log-normal, capped."""

    median_s: float = 0.005
    sigma: float = 0.6
    max_s: float = 0.25

    def sample(self, rng: random.Random) -> float:
        return min(self.max_s, self.median_s * math.exp(self.sigma * rng.gauss(0.0, 1.0)))


@dataclass(frozen=True, slots=True)
class SpeakerSpec:
    uid: str
    ward: str
    username: str | None = None
    password: str | None = None
    faults: frozenset[Fault] = frozenset()
    firmware_version: str = "2.4.1"
    follows_groups: bool = True
    """Firmware that follows group command topics; older firmware gets commands one by one."""
    model: str = "IP Speaker S30"
    firmware_faults: frozenset[FirmwareFault] = frozenset()
    """How its firmware updates go wrong (drivers.firmware.device)."""


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    seed: int = 0
    speed: float = 1.0
    """Playback and reboot run this many times faster than real time."""
    latency: Latency = Latency()
    fault_fractions: Mapping[Fault, float] = field(default_factory=dict)
    """Share of the fleet given each fault, on top of the per-speaker faults."""
    connection_mode: ConnectionMode = ConnectionMode.AUTO
    per_speaker_limit: int = 1000
    """AUTO gives every speaker its own connection up to this fleet size."""
    pool_size: int = 32
    status_interval_s: float = 60.0
    reboot_downtime_s: float = 3.0
    keepalive_s: int = 30
    session_expiry_s: int = 3600
    http_timeout_s: float = 10.0
    download_concurrency: int = 64
    shared_downloads: bool = False
    """Fetch each distinct audio once for the whole fleet (10,000 speakers on one host)."""
    tls_context: ssl.SSLContext | None = None
    mqtt_version: MqttVersion = MqttVersion.V311
    """Speaker firmware speaks either; 3.1.1 (most field firmware) costs less per message."""
    ready_timeout_s: float = 60.0
    update_timing: UpdateTiming = field(default_factory=UpdateTiming)
    """How long a firmware update's steps take (divided by ``speed``)."""


def district_pairs(count: int = 272, wards: int = 8) -> list[tuple[str, str]]:
    """(uid, ward) pairs spread evenly over the wards: ``spk-03-012`` in ``ward-03``."""
    pairs: list[tuple[str, str]] = []
    for index in range(count):
        ward = index % wards + 1
        pairs.append((f"spk-{ward:02d}-{index // wards + 1:04d}", f"ward-{ward:02d}"))
    return sorted(pairs)


def default_fleet(
    pairs: Iterable[tuple[str, str]],
    *,
    credentials: Mapping[str, tuple[str, str]] | None = None,
    firmware_version: str = "2.4.1",
) -> list[SpeakerSpec]:
    """Speaker specs for (uid, ward) pairs; ``credentials`` maps uid to (username, password)."""
    credentials = credentials or {}
    specs = []
    for uid, ward in pairs:
        username, password = credentials.get(uid, (None, None))
        specs.append(SpeakerSpec(uid, ward, username, password, firmware_version=firmware_version))
    return specs


def choose_connection_mode(fleet_size: int, config: SimulatorConfig) -> ConnectionMode:
    """Per-speaker connections while the fleet is small and the file limit allows it."""
    if config.connection_mode is not ConnectionMode.AUTO:
        return config.connection_mode
    soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fits = (
        soft_limit == resource.RLIM_INFINITY or fleet_size + FILE_DESCRIPTOR_HEADROOM <= soft_limit
    )
    if fleet_size <= config.per_speaker_limit and fits:
        return ConnectionMode.PER_SPEAKER
    return ConnectionMode.POOLED


def assign_faults(
    speakers: Sequence[SpeakerSpec], fractions: Mapping[Fault, float], seed: int
) -> dict[str, frozenset[Fault]]:
    """Each speaker's faults: its own plus a seeded sample of the fleet per fraction."""
    rng = random.Random(f"faults/{seed}")
    uids = sorted(spec.uid for spec in speakers)
    assigned = {spec.uid: set(spec.faults) for spec in speakers}
    for fault in sorted(fractions):
        fraction = fractions[fault]
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction for {fault} must be within 0..1, not {fraction}")
        for uid in rng.sample(uids, round(fraction * len(uids))):
            assigned[uid].add(fault)
    return {uid: frozenset(faults) for uid, faults in assigned.items()}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AudioUnavailable(Exception):
    """The audio could not be fetched; the play fails with ``download_failed``."""


class _AudioFetcher:
    def __init__(self, client: httpx.AsyncClient, shared: bool, concurrency: int) -> None:
        self._client = client
        self._shared = shared
        # httpx's pool gets slow when hundreds of requests queue inside it; queue here.
        self._slots = asyncio.Semaphore(concurrency)
        self._cache: OrderedDict[tuple[str, str], asyncio.Future[bytes]] = OrderedDict()

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    async def fetch(self, url: str, expected_sha256: str) -> bytes:
        if not self._shared:
            return await self._download(url)
        # Signed URLs differ per speaker only in their query string.
        key = (url.partition("?")[0], expected_sha256)
        future = self._cache.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._cache[key] = future
            while len(self._cache) > _SHARED_AUDIO_CACHE_ENTRIES:
                self._cache.popitem(last=False)
            try:
                future.set_result(await self._download(url))
            except BaseException as exc:
                self._cache.pop(key, None)
                if isinstance(exc, AudioUnavailable):
                    future.set_exception(exc)
                    # Marks it retrieved: the waiters may all be gone by now.
                    future.exception()
                else:
                    future.cancel()
                raise
        return await asyncio.shield(future)

    async def _download(self, url: str) -> bytes:
        # The query string carries the signature: keep it out of messages and logs.
        where = url.partition("?")[0]
        try:
            async with self._slots, self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise AudioUnavailable(f"GET {where} answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_AUDIO_BYTES:
                        raise AudioUnavailable(
                            f"GET {where} is larger than {MAX_AUDIO_BYTES} bytes"
                        )
                return bytes(body)
        except httpx.HTTPError as exc:
            raise AudioUnavailable(f"GET {where} failed: {type(exc).__name__}") from exc


class _Link(Protocol):
    """How one speaker reaches the broker."""

    @property
    def online(self) -> bool: ...

    async def wait_online(self) -> None: ...

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...

    async def power_off(self) -> None: ...

    async def power_on(self) -> None: ...

    async def drop(self) -> None: ...

    async def follow(self, speaker: SimulatedSpeaker, groups: tuple[str, ...]) -> None:
        """Listen to exactly these groups' command topics for the speaker."""
        ...


@dataclass(slots=True)
class _PlayJob:
    command: PlayCommand
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class SimulatedSpeaker:
    """One speaker's behaviour; its link to the broker is attached by the simulator."""

    def __init__(
        self,
        spec: SpeakerSpec,
        faults: frozenset[Fault],
        config: SimulatorConfig,
        fetcher: _AudioFetcher,
        spawn: _Spawner,
    ) -> None:
        self.uid = spec.uid
        self.ward = spec.ward
        self.spec = spec
        self.faults: set[Fault] = set(faults)
        self.volume = 60
        self.link: _Link | None = None
        self.powered = asyncio.Event()
        if Fault.OFFLINE not in self.faults:
            self.powered.set()
        self._config = config
        self._fetcher = fetcher
        self._spawn = spawn
        self._rng = random.Random(f"{config.seed}/{spec.uid}")
        self._booted_at = asyncio.get_running_loop().time()
        self._temperature_c = self._rng.uniform(32.0, 42.0)
        self._rssi_dbm = float(self._rng.randint(-85, -50))
        self._jobs: dict[str, _PlayJob] = {}
        self.firmware = FirmwareAgent(
            spec.uid,
            spec.model,
            spec.firmware_version,
            publish=lambda topic, payload: self._publish(topic, payload, retain=True),
            reboot=self._firmware_reboot,
            http=lambda: fetcher.client,
            spawn=spawn,
            faults=set(spec.firmware_faults),
            timing=config.update_timing,
            speed=config.speed,
            busy=lambda: self._playing is not None,
            # A shared fleet fetches each image once, as it does each announcement.
            fetch=fetcher.fetch if config.shared_downloads else None,
        )
        self._playing: _PlayJob | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._held: list[bytes] = []
        self._audio_held: OrderedDict[str, None] = OrderedDict()
        self.groups: tuple[str, ...] = ()
        self.cmd_topic = Topics.for_device(self.uid, Topics.COMMAND)
        self.groups_topic = Topics.for_device(self.uid, Topics.GROUPS)
        self.status_topic = Topics.for_device(self.uid, Topics.STATUS)
        self._ack_topic = Topics.for_device(self.uid, Topics.ACK)
        self._event_topic = Topics.for_device(self.uid, Topics.EVENT)

    @property
    def playing(self) -> str | None:
        return None if self._playing is None else self._playing.command.command_id

    @property
    def online(self) -> bool:
        return self.link is not None and self.link.online

    @property
    def acted_on(self) -> tuple[str, ...]:
        """The command ids this speaker acted on (the most recent ones), oldest first."""
        return tuple(self._seen)

    def status(self) -> SpeakerStatus:
        return SpeakerStatus(
            online=True,
            volume=self.volume,
            playing=self.playing,
            amplifier_fault=Fault.AMPLIFIER_FAULT in self.faults,
            speaker_fault=Fault.SPEAKER_FAULT in self.faults,
            temperature_c=round(self._temperature_c, 1),
            rssi_dbm=self._rssi_dbm,
            firmware_version=self.firmware.version,
            uptime_s=round(asyncio.get_running_loop().time() - self._booted_at, 1),
            at=_utc_now(),
            groups=self.groups if self.spec.follows_groups else None,
        )

    async def publish_status(self) -> None:
        await self._publish(self.status_topic, encode_status(self.status()), retain=True)

    def assign_groups(self, payload: bytes) -> None:
        """The hub's retained list of groups to follow arrived."""
        if self.spec.follows_groups:
            self._spawn(self._follow(payload), f"{self.uid} groups")

    async def _follow(self, payload: bytes) -> None:
        try:
            groups = decode_groups(payload)
        except DecodeError as exc:
            logger.warning("%s ignored a groups message: %s", self.uid, exc)
            return
        if self.link is None:
            return
        await self.link.follow(self, groups)
        self.groups = groups
        await self.publish_status()

    def receive(self, payload: bytes, decoded: SpeakerCommand | None = None) -> None:
        """A command arrived from the broker, on its own topic or a group's (``decoded``
        once for all the group's members on one connection)."""
        if not self.powered.is_set():
            self._held.append(payload)
            return
        self._spawn(self._handle(payload, decoded), f"{self.uid} command")

    async def report_status_forever(self) -> None:
        interval = self._config.status_interval_s
        await asyncio.sleep(self._rng.uniform(0, interval))
        while True:
            self._temperature_c = min(
                75.0, max(20.0, self._temperature_c + self._rng.gauss(0, 0.3))
            )
            self._rssi_dbm = float(
                min(-40, max(-95, self._rssi_dbm + self._rng.choice((-1, 0, 1))))
            )
            if self.online:
                await self.publish_status()
            await asyncio.sleep(interval)

    async def set_fault(self, fault: Fault, active: bool) -> None:
        if active == (fault in self.faults):
            return
        if active:
            self.faults.add(fault)
        else:
            self.faults.discard(fault)
        if fault is Fault.OFFLINE:
            await (self.power_off() if active else self.power_on())
        elif fault in (Fault.AMPLIFIER_FAULT, Fault.SPEAKER_FAULT) and self.online:
            await self.publish_status()

    async def power_off(self) -> None:
        self.powered.clear()
        if self.link is not None:
            await self.link.power_off()

    async def power_on(self) -> None:
        self._booted_at = asyncio.get_running_loop().time()
        self.powered.set()
        if self.link is not None:
            await self.link.power_on()
        held, self._held = self._held, []
        for payload in held:
            self.receive(payload)

    # ------------------------------------------------------------------ commands

    async def _handle(self, payload: bytes, decoded: SpeakerCommand | None = None) -> None:
        try:
            command = decoded or decode_command(payload)
        except CommandRejected as exc:
            if exc.command_id is None:
                logger.warning("%s dropped a command without a usable id: %s", self.uid, exc)
                return
            await self._react()
            await self._ack(exc.command_id, AckStage.FAILED, exc.failure)
            return
        if command.command_id in self._seen:
            return  # a QoS 1 redelivery of something already acted on
        self._seen[command.command_id] = None
        while len(self._seen) > _REMEMBERED_COMMANDS:
            self._seen.popitem(last=False)
        await self._react()
        await self._ack(command.command_id, AckStage.RECEIVED)
        if _utc_now() >= command.expires_at:
            await self._ack(command.command_id, AckStage.FAILED, FailureReason.EXPIRED)
            return
        if isinstance(command, PlayCommand):
            await self._play(command)
        elif isinstance(command, StopCommand):
            for job in list(self._jobs.values()):
                if command.target in (STOP_ALL, job.command.command_id):
                    job.interrupted.set()
            await self._ack(command.command_id, AckStage.FINISHED)
        elif isinstance(command, SetVolumeCommand):
            self.volume = command.volume
            await self._ack(command.command_id, AckStage.FINISHED)
            await self.publish_status()
        elif isinstance(command, PingCommand):
            await self.publish_status()
            await self._ack(command.command_id, AckStage.FINISHED)
        elif isinstance(command, RebootCommand):
            await self._reboot(command)

    async def _play(self, command: PlayCommand) -> None:
        job = _PlayJob(command)
        self._jobs[command.command_id] = job
        try:
            await self._run_play(job)
        finally:
            del self._jobs[command.command_id]
            if self._playing is job:
                self._playing = None
            job.done.set()

    async def _run_play(self, job: _PlayJob) -> None:
        command = job.command
        command_id = command.command_id
        if Fault.REJECTS in self.faults:
            await self._ack(command_id, AckStage.FAILED, FailureReason.REJECTED)
            return
        if Fault.AMPLIFIER_FAULT in self.faults:
            await self._ack(command_id, AckStage.FAILED, FailureReason.AMPLIFIER_FAULT)
            return
        if command.sha256 not in self._audio_held and not await self._download(command):
            return
        wait_s = (
            0.0 if command.start_at is None else (command.start_at - _utc_now()).total_seconds()
        )
        if await _interrupted_within(job, wait_s):
            await self._ack(command_id, AckStage.PREEMPTED)
            return
        if _utc_now() >= command.expires_at:
            await self._ack(command_id, AckStage.FAILED, FailureReason.EXPIRED)
            return
        current = self._playing
        if current is not None:
            if command.priority is not Priority.EMERGENCY:
                await self._ack(command_id, AckStage.FAILED, FailureReason.BUSY)
                return
            current.interrupted.set()
        self._playing = job
        await self._ack(command_id, AckStage.STARTED)
        interrupted = await _interrupted_within(job, command.duration_s / self._config.speed)
        # Silent before it says so: whoever hears the ack may ask what is playing.
        if self._playing is job:
            self._playing = None
        await self._ack(command_id, AckStage.PREEMPTED if interrupted else AckStage.FINISHED)

    async def _download(self, command: PlayCommand) -> bool:
        """Fetch and verify the audio; False (after a failed ack) when it cannot be played."""
        await self._ack(command.command_id, AckStage.DOWNLOADING)
        try:
            audio = await self._fetcher.fetch(command.audio_url, command.sha256)
        except AudioUnavailable as exc:
            logger.info("%s: %s", self.uid, exc)
            await self._ack(command.command_id, AckStage.FAILED, FailureReason.DOWNLOAD_FAILED)
            return False
        if Fault.CHECKSUM_MISMATCH in self.faults:
            audio = b"\x00" + audio
        if hashlib.sha256(audio).hexdigest() != command.sha256:
            await self._ack(command.command_id, AckStage.FAILED, FailureReason.CHECKSUM_MISMATCH)
            return False
        # Verified audio is kept by its checksum: the next play of it needs no download.
        self._audio_held[command.sha256] = None
        while len(self._audio_held) > _AUDIO_HELD:
            self._audio_held.popitem(last=False)
        return True

    async def _firmware_reboot(self, downtime_s: float, comes_back: bool) -> None:
        """Restart into the image just installed; a device that never comes back stays off."""
        await self.power_off()
        if not comes_back:
            return
        await asyncio.sleep(downtime_s)
        await self.power_on()
        if self.link is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ONLINE_WAIT_AFTER_REBOOT_S):
                    await self.link.wait_online()

    async def _reboot(self, command: RebootCommand) -> None:
        jobs = list(self._jobs.values())
        for job in jobs:
            job.interrupted.set()
        # Firmware lets interrupted plays report before it restarts; a download in
        # flight does not get to hold the reboot up for long.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REBOOT_GRACE_S):
                for job in jobs:
                    await job.done.wait()
        await self.power_off()
        await asyncio.sleep(self._config.reboot_downtime_s / self._config.speed)
        await self.power_on()
        if self.link is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ONLINE_WAIT_AFTER_REBOOT_S):
                    await self.link.wait_online()
        await self._publish(
            self._event_topic, encode_event("boot", _utc_now(), data={"reason": "command"})
        )
        await self._ack(command.command_id, AckStage.FINISHED)

    # ------------------------------------------------------------------ output

    async def _react(self) -> None:
        delay = self._config.latency.sample(self._rng)
        if Fault.SLOW in self.faults:
            delay *= SLOW_FACTOR
        await asyncio.sleep(delay)

    async def _ack(
        self, command_id: str, stage: AckStage, reason: FailureReason | None = None
    ) -> None:
        if Fault.NEVER_ACKS in self.faults:
            return
        payload = encode_ack(command_id, stage, _utc_now(), reason)
        for _ in range(2 if Fault.ACKS_TWICE in self.faults else 1):
            await self._publish(self._ack_topic, payload)

    async def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.link is None or not self.powered.is_set():
            return
        try:
            await self.link.publish(topic, payload, retain=retain)
        except aiomqtt.MqttError as exc:
            # A real speaker would buffer; the simulator just loses it, like a crash.
            logger.info("%s could not publish on %s: %s", self.uid, topic, exc)


async def _interrupted_within(job: _PlayJob, seconds: float) -> bool:
    if seconds <= 0:
        return job.interrupted.is_set()
    try:
        async with asyncio.timeout(seconds):
            await job.interrupted.wait()
    except TimeoutError:
        return False
    return True


class _Spawner(Protocol):
    def __call__(self, coroutine: Coroutine[Any, Any, None], name: str) -> None: ...


def _drop_abruptly(client: aiomqtt.Client) -> None:
    """Cut the TCP connection without DISCONNECT, so the broker publishes the Last Will.

    aiomqtt only offers a graceful disconnect, hence the reach into its paho client.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# paho's constructor is unannotated; this gives it a type.
_new_properties: Callable[[int], Properties] = Properties


def _persistent_session(config: SimulatorConfig) -> dict[str, Any]:
    """Client arguments for a session that keeps queued commands while the speaker is away."""
    if config.mqtt_version is MqttVersion.V311:
        return {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
    properties = _new_properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = config.session_expiry_s
    return {
        "protocol": aiomqtt.ProtocolVersion.V5,
        "clean_start": False,
        "properties": properties,
    }


def _mqtt_protocol(config: SimulatorConfig) -> aiomqtt.ProtocolVersion:
    if config.mqtt_version is MqttVersion.V311:
        return aiomqtt.ProtocolVersion.V311
    return aiomqtt.ProtocolVersion.V5


class _DedicatedLink:
    """One MQTT connection for one speaker, with its own identity and Last Will."""

    def __init__(self, speaker: SimulatedSpeaker, config: SimulatorConfig) -> None:
        self._speaker = speaker
        self._config = config
        self._client: aiomqtt.Client | None = None
        self._online = asyncio.Event()

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self) -> None:
        await self._online.wait()

    async def run(self) -> None:
        speaker = self._speaker
        rng = random.Random(f"link/{self._config.seed}/{speaker.uid}")
        delay = 0.2
        while True:
            await speaker.powered.wait()
            client = aiomqtt.Client(
                self._config.host,
                self._config.port,
                identifier=speaker.uid,
                username=speaker.spec.username,
                password=speaker.spec.password,
                will=aiomqtt.Will(speaker.status_topic, LAST_WILL_PAYLOAD, qos=1, retain=True),
                keepalive=self._config.keepalive_s,
                tls_context=self._config.tls_context,
                **_persistent_session(self._config),
            )
            try:
                async with client:
                    batch_io(client)
                    # One SUBSCRIBE for all: a speaker back from a reboot is online sooner.
                    topics = [(speaker.cmd_topic, 1), (speaker.firmware.topic, 1)]
                    if speaker.spec.follows_groups:
                        topics.append((speaker.groups_topic, 1))
                    await client.subscribe(topics)
                    self._client = client
                    await speaker.publish_status()
                    self._online.set()
                    delay = 0.2
                    async for message in client.messages:
                        if message.topic.value == speaker.groups_topic:
                            speaker.assign_groups(_as_bytes(message.payload))
                        elif message.topic.value == speaker.firmware.topic:
                            speaker.firmware.receive(_as_bytes(message.payload))
                        else:
                            speaker.receive(_as_bytes(message.payload))
            except aiomqtt.MqttError as exc:
                logger.debug("%s lost its broker connection: %s", speaker.uid, exc)
            finally:
                self._client = None
                self._online.clear()
            await asyncio.sleep(delay * rng.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected")
        await client.publish(topic, payload, qos=1, retain=retain)

    async def power_off(self) -> None:
        if self._client is not None:
            _drop_abruptly(self._client)

    async def power_on(self) -> None:
        """The run loop reconnects as soon as the speaker is powered."""

    async def follow(self, speaker: SimulatedSpeaker, groups: tuple[str, ...]) -> None:
        client = self._client
        if client is None:
            return
        for group in set(speaker.groups) - set(groups):
            await client.unsubscribe(Topics.for_group(group))
        for group in groups:
            await client.subscribe(Topics.for_group(group), qos=1)

    async def drop(self) -> None:
        if self._client is not None:
            _drop_abruptly(self._client)

    async def close(self) -> None:
        """Say goodbye like a speaker being switched off properly."""
        client = self._client
        if client is not None and self._speaker.powered.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(
                    self._speaker.status_topic, LAST_WILL_PAYLOAD, qos=1, retain=True
                )


class _Pool:
    """One MQTT connection carrying many speakers: no per-speaker Last Will or credentials."""

    def __init__(
        self, index: int, speakers: list[SimulatedSpeaker], config: SimulatorConfig
    ) -> None:
        self._config = config
        self._identifier = f"speaker-sim-{uuid.uuid4().hex[:8]}-{index}"
        self._by_topic = {speaker.cmd_topic: speaker for speaker in speakers}
        self._groups_topics = {speaker.groups_topic: speaker for speaker in speakers}
        self._firmware_topics = {speaker.firmware.topic: speaker for speaker in speakers}
        self._members: dict[str, set[SimulatedSpeaker]] = {}
        self._speakers = speakers
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        rng = random.Random(f"pool/{self._config.seed}/{self._identifier}")
        delay = 0.2
        while True:
            client = aiomqtt.Client(
                self._config.host,
                self._config.port,
                identifier=self._identifier,
                protocol=_mqtt_protocol(self._config),
                keepalive=self._config.keepalive_s,
                tls_context=self._config.tls_context,
                max_inflight_messages=1000,
            )
            client.pending_calls_threshold = 10 * len(self._speakers) + 100
            try:
                async with client:
                    batch_io(client)
                    topics = [(speaker.cmd_topic, 1) for speaker in self._speakers]
                    topics += [(topic, 1) for topic in self._groups_topics]
                    topics += [(topic, 1) for topic in self._firmware_topics]
                    self._members.clear()
                    for start in range(0, len(topics), SUBSCRIBE_BATCH):
                        await client.subscribe(topics[start : start + SUBSCRIBE_BATCH])
                    self._client = client
                    await asyncio.gather(
                        *(s.publish_status() for s in self._speakers if s.powered.is_set())
                    )
                    self.connected.set()
                    delay = 0.2
                    async for message in client.messages:
                        self._route(message.topic.value, _as_bytes(message.payload))
            except aiomqtt.MqttError as exc:
                logger.debug("speaker pool %s lost its connection: %s", self._identifier, exc)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay * rng.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)

    def _route(self, topic: str, payload: bytes) -> None:
        speaker = self._by_topic.get(topic)
        if speaker is not None:
            speaker.receive(payload)
            return
        speaker = self._groups_topics.get(topic)
        if speaker is not None:
            speaker.assign_groups(payload)
            return
        speaker = self._firmware_topics.get(topic)
        if speaker is not None:
            if speaker.powered.is_set():
                speaker.firmware.receive(payload)
            return
        members = self._members.get(Topics.parse_group(topic) or "", ())
        if not members:
            return
        # Each speaker's firmware would parse it alike; one parse serves them all here.
        try:
            decoded: SpeakerCommand | None = decode_command(payload)
        except CommandRejected:
            decoded = None  # each member refuses it for itself
        for member in members:
            member.receive(payload, decoded)

    async def follow(self, speaker: SimulatedSpeaker, groups: tuple[str, ...]) -> None:
        client = self._client
        if client is None:
            return
        for group in set(speaker.groups) - set(groups):
            members = self._members.get(group, set())
            members.discard(speaker)
            if not members:
                self._members.pop(group, None)
                await client.unsubscribe(Topics.for_group(group))
        for group in groups:
            members = self._members.setdefault(group, set())
            if not members:
                await client.subscribe(Topics.for_group(group), qos=1)
            members.add(speaker)

    async def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected")
        # Straight to paho, without awaiting the PUBACK: thousands of speakers share this
        # one client, and aiomqtt's per-publish future and timeout would make the
        # simulator, not the hub, the slowest part of a large fan-out.
        info = client._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != 0:
            raise aiomqtt.MqttError(f"publish refused by the client (rc {info.rc})")

    async def close(self) -> None:
        if self._client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await asyncio.gather(
                *(
                    self.publish(s.status_topic, LAST_WILL_PAYLOAD, retain=True)
                    for s in self._speakers
                    if s.powered.is_set()
                )
            )


class _PooledLink:
    """A speaker's seat on a pool; going offline is announced, as no Will can speak for it."""

    def __init__(self, speaker: SimulatedSpeaker, pool: _Pool) -> None:
        self._speaker = speaker
        self._pool = pool

    @property
    def online(self) -> bool:
        return self._pool.connected.is_set() and self._speaker.powered.is_set()

    async def wait_online(self) -> None:
        await self._speaker.powered.wait()
        await self._pool.connected.wait()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        await self._pool.publish(topic, payload, retain=retain)

    async def power_off(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self._pool.publish(self._speaker.status_topic, LAST_WILL_PAYLOAD, retain=True)

    async def power_on(self) -> None:
        if self._pool.connected.is_set():
            await self._speaker.publish_status()

    async def drop(self) -> None:
        await self._speaker.power_off()
        await asyncio.sleep(0.2)
        await self._speaker.power_on()

    async def follow(self, speaker: SimulatedSpeaker, groups: tuple[str, ...]) -> None:
        await self._pool.follow(speaker, groups)


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


class SpeakerSimulator:
    """A fleet of simulated speakers on one event loop.

    ``async with SpeakerSimulator(specs, config) as fleet:`` returns once every
    speaker that is not OFFLINE is connected, subscribed and has published its
    status; leaving the block switches them off gracefully.
    """

    def __init__(
        self, speakers: Sequence[SpeakerSpec], config: SimulatorConfig | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        uids = [spec.uid for spec in speakers]
        if len(set(uids)) != len(uids):
            raise ValueError("speaker uids must be unique")
        if self.config.speed <= 0:
            raise ValueError("speed must be positive")
        self.mode = choose_connection_mode(len(speakers), self.config)
        self._specs = list(speakers)
        self._faults = assign_faults(self._specs, self.config.fault_fractions, self.config.seed)
        self._speakers: dict[str, SimulatedSpeaker] = {}
        self._closers: list[_DedicatedLink | _Pool] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    @property
    def speakers(self) -> Mapping[str, SimulatedSpeaker]:
        return self._speakers

    def speaker(self, uid: str) -> SimulatedSpeaker:
        return self._speakers[uid]

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        """Connect the fleet; returns once it is ready (``config.ready_timeout_s`` at most)."""
        config = self.config
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.http_timeout_s),
            limits=httpx.Limits(max_connections=config.download_concurrency),
        )
        fetcher = _AudioFetcher(self._http, config.shared_downloads, config.download_concurrency)
        for spec in self._specs:
            speaker = SimulatedSpeaker(spec, self._faults[spec.uid], config, fetcher, self._spawn)
            self._speakers[spec.uid] = speaker
        if self.mode is ConnectionMode.PER_SPEAKER:
            for speaker in self._speakers.values():
                link = _DedicatedLink(speaker, config)
                speaker.link = link
                self._closers.append(link)
                self._spawn(link.run(), f"{speaker.uid} link")
        else:
            members = list(self._speakers.values())
            pool_count = max(1, min(config.pool_size, len(members)))
            for index in range(pool_count):
                pool = _Pool(index, members[index::pool_count], config)
                for speaker in members[index::pool_count]:
                    speaker.link = _PooledLink(speaker, pool)
                self._closers.append(pool)
                self._spawn(pool.run(), f"speaker pool {index}")
        for speaker in self._speakers.values():
            self._spawn(speaker.report_status_forever(), f"{speaker.uid} status")
        logger.info(
            "speaker simulator: %d speakers, %s connections", len(self._speakers), self.mode
        )
        async with asyncio.timeout(config.ready_timeout_s):
            await self.wait_ready()
        logger.info("speaker simulator ready")

    async def wait_ready(self) -> None:
        """Wait until every powered speaker is online."""
        for speaker in self._speakers.values():
            if speaker.powered.is_set() and speaker.link is not None:
                await speaker.link.wait_online()

    async def stop(self) -> None:
        await asyncio.gather(*(closer.close() for closer in self._closers))
        for speaker in self._speakers.values():
            speaker.powered.clear()
        pending = set(self._tasks)
        for _ in range(_STOP_ROUNDS):
            if not pending:
                break
            # Python 3.11's wait_for (inside aiomqtt) can swallow a cancellation that
            # races a reply, so cancel again until every task has ended.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        if pending:
            logger.warning("speaker simulator left %d tasks running", len(pending))
        self._closers.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def set_fault(self, uid: str, fault: Fault, active: bool = True) -> None:
        await self._speakers[uid].set_fault(fault, active)

    async def drop_connection(self, uid: str) -> None:
        """Cut a speaker's connection as a crash would; it reconnects by itself."""
        link = self._speakers[uid].link
        if link is not None:
            await link.drop()


async def run_speaker_fleet(
    speakers: Sequence[SpeakerSpec] | None = None,
    config: SimulatorConfig | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Run a fleet until cancelled; by default the district's 272 speakers in 8 wards."""
    fleet = SpeakerSimulator(speakers or default_fleet(district_pairs()), config)
    async with fleet:
        if ready is not None:
            ready.set()
        await asyncio.Future()


def _parse_fraction(text: str) -> tuple[Fault, float]:
    name, _, value = text.partition("=")
    try:
        return Fault(name), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FAULT=FRACTION, got {text!r}") from None


def _parse_firmware_fraction(text: str) -> tuple[FirmwareFault, float]:
    name, _, value = text.partition("=")
    try:
        return FirmwareFault(name), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FAULT=FRACTION, got {text!r}") from None


def firmware_faults(
    speakers: Sequence[SpeakerSpec],
    fractions: Mapping[FirmwareFault, float],
    seed: int,
    model: str = "IP Speaker S30",
) -> list[SpeakerSpec]:
    """The specs with their model and a seeded share given each firmware fault."""
    rng = random.Random(f"firmware-faults/{seed}")
    uids = sorted(spec.uid for spec in speakers)
    chosen: dict[str, set[FirmwareFault]] = {uid: set() for uid in uids}
    for fault in sorted(fractions):
        for uid in rng.sample(uids, round(fractions[fault] * len(uids))):
            chosen[uid].add(fault)
    return [
        replace(spec, model=model, firmware_faults=frozenset(chosen[spec.uid])) for spec in speakers
    ]


def _parse_shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got {text!r}")
    return int(index), int(count)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run simulated loudspeakers against a broker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--count", type=int, default=272)
    parser.add_argument("--wards", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--mode", type=ConnectionMode, default=ConnectionMode.AUTO)
    parser.add_argument("--pool-size", type=int, default=32)
    parser.add_argument("--status-interval", type=float, default=60.0)
    parser.add_argument("--mqtt", type=MqttVersion, default=MqttVersion.V311)
    parser.add_argument("--shared-downloads", action="store_true")
    parser.add_argument(
        "--shard",
        type=_parse_shard,
        default=(0, 1),
        metavar="K/N",
        help="run only every N-th speaker, from the K-th (0-based): N processes share a fleet",
    )
    parser.add_argument(
        "--fault", type=_parse_fraction, action="append", default=[], metavar="FAULT=FRACTION"
    )
    parser.add_argument("--firmware-version", default="2.4.1")
    parser.add_argument("--model", default="IP Speaker S30")
    parser.add_argument(
        "--update-times",
        default="0.5,20,5",
        metavar="VERIFY,INSTALL,REBOOT",
        help="seconds each firmware update step takes (before --speed)",
    )
    parser.add_argument(
        "--fw-fault",
        type=_parse_firmware_fraction,
        action="append",
        default=[],
        metavar="FAULT=FRACTION",
        help="share of the fleet whose firmware updates fail this way (fw_download_fails, ...)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        speed=args.speed,
        connection_mode=args.mode,
        pool_size=args.pool_size,
        status_interval_s=args.status_interval,
        mqtt_version=args.mqtt,
        shared_downloads=args.shared_downloads,
        fault_fractions=dict(args.fault),
        update_timing=UpdateTiming(*(float(x) for x in args.update_times.split(","))),
    )
    index, shards = args.shard
    fleet = default_fleet(
        district_pairs(args.count, args.wards), firmware_version=args.firmware_version
    )
    fleet = firmware_faults(fleet, dict(args.fw_fault), args.seed, args.model)[index::shards]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_speaker_fleet(fleet, config))


if __name__ == "__main__":
    main()
