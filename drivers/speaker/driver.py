"""The hub's side of the loudspeaker protocol: two broker links for all speakers.

Commands go out on an MQTT 5 link, because only MQTT 5 lets the broker drop a command
that went stale before a speaker came back (message expiry). Acknowledgements and
statuses come in on an MQTT 3.1.1 link with the persistent session: a large broadcast
brings tens of thousands of them, and paho decodes a 3.1.1 PUBLISH in about half the
time of a 5.0 one (no property block to parse).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.contract import (
    Command,
    DecodeError,
    DeviceEvent,
    DriverSink,
    Heartbeat,
    RefusedDevice,
    Rejected,
    Topics,
    UnknownDevice,
    status_dialect,
)
from drivers.speaker.protocol import (
    CommandEncoder,
    InvalidCommand,
    SpeakerStatus,
    build_command,
    decode_ack,
    decode_event,
    decode_status,
    encode_groups,
)
from drivers.tcp import batch_io

logger = logging.getLogger(__name__)

DRIVER_NAME = "speaker-mqtt"
HEARTBEAT_SOURCE = "mqtt-status"
FAULT_KINDS = ("amplifier_fault", "speaker_fault")
_SUBSCRIBED_CHANNELS = (Topics.ACK, Topics.STATUS, Topics.EVENT)
# paho's constructor is unannotated; this gives it a type.
_new_properties: Callable[[int], Properties] = Properties


class SpeakerLinkDown(ConnectionError):
    """The broker connection is down or dropped while sending; the send may be retried."""

    retryable = True


@dataclass(frozen=True, slots=True)
class SpeakerMqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None
    """Fixed MQTT client id of the receiving link (the command link adds ``-cmd``);
    required for a persistent session, generated otherwise."""
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    persistent_session: bool = False
    """Keep subscriptions and queued acks on the broker across hub restarts (for as long
    as the broker keeps sessions: mosquitto's ``persistent_client_expiration``)."""
    keepalive_s: int = 30
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    publish_timeout_s: float = 10.0
    max_inflight: int = 200
    """QoS 1 publishes on the wire awaiting PUBACK; bounds the fan-out pipeline."""
    fan_out_window: int = 100
    """Publishes awaited concurrently by send_many; past ~100 aiomqtt's bookkeeping
    costs more than the extra overlap gains."""
    subscription_group: str | None = None
    """Share the speaker topics among every hub process in this group (MQTT v5 shared
    subscriptions), so acks from a large fleet are decoded on more than one core.
    Brokers send no retained status to shared subscriptions: each speaker's state is
    then known from its next periodic status rather than at start."""


@dataclass(frozen=True, slots=True)
class SendFailure:
    command: Command
    reason: str
    retryable: bool


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _raise_if_cancel_pending() -> None:
    """Honour a cancellation that Python 3.11's wait_for (inside aiomqtt) swallowed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


class SpeakerMqttDriver:
    """Receives speaker acks, status and events; sends commands.

    ``run`` owns both links: each reconnects with exponential back-off and jitter,
    and no bad payload or failing sink call ends it. ``send``, ``send_many``,
    ``send_group`` and ``assign_groups`` use whatever command link ``run`` holds.
    """

    name = DRIVER_NAME

    def __init__(
        self,
        settings: SpeakerMqttSettings | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings or SpeakerMqttSettings()
        if self.settings.persistent_session and self.settings.client_id is None:
            raise ValueError("a persistent session needs a fixed client_id")
        self._client_id = self.settings.client_id or f"iochub-speakers-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._client: aiomqtt.Client | None = None
        """The command link."""
        self._listening = False
        self._link_up = asyncio.Condition()
        self.connections = 0
        """Successful connections so far; more than one means the link has flapped."""
        self._fault_state: dict[str, dict[str, bool]] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None and self._listening

    async def wait_connected(self, after: int = 0) -> None:
        """Return once both links are up, the receiving one later than its ``after``-th."""
        async with self._link_up:
            await self._link_up.wait_for(lambda: self.connected and self.connections > after)

    # ------------------------------------------------------------------ receiving

    async def run(self, sink: DriverSink) -> None:
        async with asyncio.TaskGroup() as links:
            links.create_task(self._keep_link("command", self._command_client, self._hold))
            links.create_task(
                self._keep_link(
                    "receiving", self._receiving_client, lambda c: self._listen(c, sink)
                )
            )

    async def _keep_link(
        self,
        name: str,
        new_client: Callable[[], aiomqtt.Client],
        use: Callable[[aiomqtt.Client], Awaitable[None]],
    ) -> None:
        delay = self.settings.reconnect_initial_s
        while True:
            client = new_client()
            try:
                async with client:
                    delay = self.settings.reconnect_initial_s
                    await use(client)
            except aiomqtt.MqttError as exc:
                logger.warning(
                    "speaker %s link lost (%s); reconnecting in about %.1fs", name, exc, delay
                )
            # Equal jitter: never hammer the broker, never wait longer than the cap.
            await asyncio.sleep(delay / 2 + random.uniform(0, delay / 2))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    async def _hold(self, client: aiomqtt.Client) -> None:
        """Keep the command link for the senders until the broker drops it."""
        batch_io(client)
        try:
            async with self._link_up:
                self._client = client
                self._link_up.notify_all()
            await client.messages.__anext__()  # nothing is subscribed: returns only on loss
        finally:
            self._client = None

    async def _listen(self, client: aiomqtt.Client, sink: DriverSink) -> None:
        # A rollout's reboots or a broadcast's acks arrive thousands at once.
        batch_io(client)
        try:
            for topic in self._subscriptions():
                await client.subscribe(topic, qos=1)
            _raise_if_cancel_pending()
            async with self._link_up:
                self._listening = True
                self.connections += 1
                self._link_up.notify_all()
            logger.info("speaker driver listening on %s:%d", self.settings.host, self.settings.port)
            async for message in client.messages:
                await self._dispatch(message, sink)
                _raise_if_cancel_pending()
        finally:
            self._listening = False

    def _subscriptions(self) -> list[str]:
        topics = [Topics.all_devices(channel) for channel in _SUBSCRIBED_CHANNELS]
        group = self.settings.subscription_group
        if group is None:
            return topics
        return [f"$share/{group}/{topic}" for topic in topics]

    def _receiving_client(self) -> aiomqtt.Client:
        settings = self.settings
        return aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=self._client_id,
            username=settings.username,
            password=settings.password,
            tls_context=settings.tls_context,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=not settings.persistent_session,
            keepalive=settings.keepalive_s,
            timeout=settings.publish_timeout_s,
        )

    def _command_client(self) -> aiomqtt.Client:
        settings = self.settings
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=f"{self._client_id}-cmd",
            username=settings.username,
            password=settings.password,
            tls_context=settings.tls_context,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            keepalive=settings.keepalive_s,
            max_inflight_messages=settings.max_inflight,
            timeout=settings.publish_timeout_s,
        )
        # aiomqtt warns past ten concurrent publishes; fan-out runs hundreds by design.
        client.pending_calls_threshold = settings.max_inflight + settings.fan_out_window
        return client

    async def _dispatch(self, message: aiomqtt.Message, sink: DriverSink) -> None:
        raw = _payload_bytes(message.payload)
        now = self._clock()
        device_uid: str | None = None
        try:
            device_uid, channel = Topics.parse(message.topic.value)
            if channel == Topics.ACK:
                await sink.ack(decode_ack(raw, device_uid))
            elif channel == Topics.STATUS:
                if not raw or status_dialect(raw) == "sensor":
                    # An empty retained payload is how a retained status is cleared (a
                    # decommissioned speaker); a sensor's status is the sensor driver's.
                    return
                status = decode_status(raw)
                await self._report_status(device_uid, status, message.retain, now, sink)
            elif channel == Topics.EVENT:
                await sink.event(decode_event(raw, device_uid))
            else:
                raise DecodeError(f"channel {channel!r} is not one a speaker publishes on")
        except DecodeError as exc:
            await self._reject(sink, raw, f"{message.topic.value}: {exc}", device_uid, now)
        except (UnknownDevice, RefusedDevice) as exc:
            logger.info("speaker message from %s refused by the hub: %s", device_uid, exc)
        except Exception:
            # A failing sink must not take every other speaker down with it.
            logger.exception("speaker message on %s could not be handled", message.topic.value)

    async def _reject(
        self, sink: DriverSink, raw: bytes, reason: str, device_uid: str | None, now: datetime
    ) -> None:
        await sink.rejected(
            Rejected(source=DRIVER_NAME, raw=raw, reason=reason, device_uid=device_uid, time=now)
        )

    async def _report_status(
        self,
        device_uid: str,
        status: SpeakerStatus,
        retained: bool,
        now: datetime,
        sink: DriverSink,
    ) -> None:
        detail: dict[str, Any] = {"retained": retained}
        if status.online:
            detail.update(
                volume=status.volume,
                playing=status.playing,
                amplifier_fault=status.amplifier_fault,
                speaker_fault=status.speaker_fault,
                temperature_c=status.temperature_c,
                rssi_dbm=status.rssi_dbm,
                firmware_version=status.firmware_version,
                uptime_s=status.uptime_s,
                groups=None if status.groups is None else list(status.groups),
            )
        await sink.heartbeat(
            Heartbeat(
                device_uid=device_uid,
                time=now,
                connected=status.online,
                source=HEARTBEAT_SOURCE,
                detail=detail,
            )
        )
        if not status.online:
            # A Last Will knows nothing about the hardware: keep the last known faults.
            return
        known = self._fault_state.setdefault(device_uid, {})
        for kind, active in (
            ("amplifier_fault", status.amplifier_fault),
            ("speaker_fault", status.speaker_fault),
        ):
            if active is None or known.get(kind) == active:
                continue
            # The first status after start is reported too, so a fault that cleared
            # while the hub was down gets closed.
            known[kind] = active
            await sink.event(
                DeviceEvent(
                    device_uid=device_uid,
                    time=now,
                    kind=kind,
                    active=active,
                    data={"source": "status"},
                )
            )

    # ------------------------------------------------------------------ sending

    def _prepare(
        self,
        command: Command,
        now: datetime,
        encoder: CommandEncoder,
        properties_by_expiry: dict[int, Properties],
    ) -> tuple[str, bytes, Properties]:
        speaker_command = build_command(command, now)
        payload = encoder.encode(speaker_command)
        # The broker drops what it could not deliver in time, so a speaker that
        # reconnects late never even sees a stale command.
        expiry_s = max(1, math.ceil((speaker_command.expires_at - now).total_seconds()))
        properties = properties_by_expiry.get(expiry_s)
        if properties is None:
            properties = _new_properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry_s
            properties_by_expiry[expiry_s] = properties
        return Topics.for_device(command.device_uid, Topics.COMMAND), payload, properties

    def _require_client(self) -> aiomqtt.Client:
        client = self._client
        if client is None:
            raise SpeakerLinkDown("not connected to the speaker broker")
        return client

    async def _publish(self, topic: str, payload: bytes, what: str, **options: Any) -> None:
        """QoS 1 on the command link; SpeakerLinkDown (retryable) when it is down or drops."""
        client = self._require_client()
        try:
            await client.publish(topic, payload, qos=1, **options)
        except aiomqtt.MqttError as exc:
            raise SpeakerLinkDown(f"{what} not sent: {exc}") from exc

    async def send(self, command: Command) -> None:
        """Publish one command with QoS 1 and return once the broker has it.

        Raises InvalidCommand (terminal) or SpeakerLinkDown (retryable).
        """
        topic, payload, properties = self._prepare(command, self._clock(), CommandEncoder(), {})
        await self._publish(topic, payload, f"command {command.command_id}", properties=properties)

    async def send_group(self, group: str, command: Command) -> None:
        """Publish one command to every speaker of ``group`` at once (QoS 1).

        The broker does the fan-out, so a whole ward costs the hub one publish.
        ``command.device_uid`` is not used: each member answers on its own ack topic.
        Raises InvalidCommand (terminal) or SpeakerLinkDown (retryable).
        """
        _, payload, properties = self._prepare(command, self._clock(), CommandEncoder(), {})
        await self._publish(
            Topics.for_group(group),
            payload,
            f"command {command.command_id}",
            properties=properties,
        )

    async def assign_groups(self, device_uid: str, groups: Sequence[str]) -> None:
        """Tell a speaker, in a retained message, which group topics to follow."""
        await self._publish(
            Topics.for_device(device_uid, Topics.GROUPS),
            encode_groups(groups),
            f"groups of {device_uid}",
            retain=True,
        )

    async def send_many(self, commands: Iterable[Command]) -> list[SendFailure]:
        """Publish many commands concurrently; return the ones the broker did not accept.

        Publishes are pipelined (up to ``fan_out_window`` awaiting PUBACK at once)
        instead of waiting one round trip per speaker. Raises SpeakerLinkDown
        before sending anything if there is no connection.
        """
        client = self._require_client()
        now = self._clock()
        failures: list[SendFailure] = []
        prepared: list[tuple[Command, str, bytes, Properties]] = []
        encoder = CommandEncoder()
        properties_by_expiry: dict[int, Properties] = {}
        for command in commands:
            try:
                prepared.append(
                    (command, *self._prepare(command, now, encoder, properties_by_expiry))
                )
            except InvalidCommand as exc:
                failures.append(SendFailure(command, str(exc), retryable=False))
        window = asyncio.Semaphore(self.settings.fan_out_window)

        async def publish(item: tuple[Command, str, bytes, Properties]) -> SendFailure | None:
            command, topic, payload, properties = item
            async with window:
                try:
                    await client.publish(topic, payload, qos=1, properties=properties)
                except aiomqtt.MqttError as exc:
                    return SendFailure(command, f"not sent: {exc}", retryable=True)
            return None

        results: Sequence[SendFailure | None] = await asyncio.gather(
            *(publish(item) for item in prepared)
        )
        failures.extend(result for result in results if result is not None)
        return failures
