"""Sensor telemetry over MQTT: paho-mqtt driven by the asyncio loop, acknowledged after storage.

paho's socket is watched by the event loop (``add_reader``/``add_writer``) rather
than by a network thread: no lock hand-offs per message, and acknowledgements
are written from the same thread that decodes. Messages are decoded and stored
in batches; a QoS 1 message is acknowledged only once the sink has stored what
it carried (or quarantined it), and acknowledgements leave in arrival order as
MQTT requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import random
import ssl
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from drivers.contract import (
    DecodeError,
    DriverSink,
    Heartbeat,
    Reading,
    RefusedDevice,
    Rejected,
    Topics,
    UnknownDevice,
    status_dialect,
)
from drivers.sensors.errors import BrokerRefused, BrokerUnavailable, SensorTransportError
from drivers.sensors.payloads import (
    DEFAULT_LIMITS,
    PayloadLimits,
    decode_status,
    decode_telemetry,
    format_for_content_type,
)

__all__ = [
    "BrokerRefused",
    "BrokerUnavailable",
    "MqttDriverStats",
    "MqttVersion",
    "SensorMqttDriver",
    "SensorTransportError",
]

log = logging.getLogger(__name__)

READINGS_SOURCE: Final = "mqtt"
STATUS_SOURCE: Final = "mqtt-status"

# CONNACK and SUBACK reason codes that retrying cannot fix (MQTT 5.0 section 3.2.2.2).
_TERMINAL_REASONS: Final = frozenset(
    {
        0x80,  # unspecified error (SUBACK)
        0x84,  # unsupported protocol version
        0x85,  # client identifier not valid
        0x86,  # bad user name or password
        0x87,  # not authorized
        0x8A,  # banned
        0x8C,  # bad authentication method
        0x8F,  # topic filter invalid (SUBACK)
        0x9E,  # shared subscriptions not supported (SUBACK)
    }
)
# Packets read per readiness event before yielding to the loop, so that
# decoding and acknowledging keep pace with a saturated socket.
_READS_PER_WAKEUP: Final = 512
_MISC_INTERVAL: Final = 1.0


class MqttVersion(enum.StrEnum):
    """The protocol the driver speaks to the broker.

    3.1.1 is the default for throughput: paho parses MQTT 5 properties in Python
    on every PUBLISH, which nearly halved the driver's measured throughput
    (docs/protocol/sensors.md, section 7). MQTT 5 adds a session expiry and a Receive Maximum the broker
    honours; under 3.1.1 the broker's ``max_inflight_messages`` bounds the
    messages in flight instead (docs/protocol/sensors.md).
    """

    V311 = "3.1.1"
    V5 = "5"


@dataclass
class MqttDriverStats:
    received: int = 0
    readings: int = 0
    heartbeats: int = 0
    rejected: int = 0
    acknowledged: int = 0
    connections: int = 0


class SensorMqttDriver:
    """Ingests sensor telemetry and status from the broker into a ``DriverSink``.

    Telemetry is read through an MQTT 5 shared subscription, so hub processes
    using the same ``shared_group`` split the load; status goes to every
    process (a retained status must reach each one). The session is
    persistent (fixed ``client_id``, ``session_expiry`` seconds): messages
    received but not acknowledged when the driver stops are delivered again.
    """

    name = "sensors-mqtt"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str = "iochub-sensors",
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        version: MqttVersion = MqttVersion.V311,
        shared_group: str | None = "iochub",
        session_expiry: int = 3600,
        keepalive: int = 30,
        batch_size: int = 512,
        max_batches: int = 8,
        limits: PayloadLimits = DEFAULT_LIMITS,
        reconnect_min_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        connect_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if batch_size < 1 or max_batches < 1:
            raise ValueError("batch_size and max_batches must be positive")
        self.host = host
        self.port = port
        self.client_id = client_id
        self._username = username
        self._password = password
        self._tls = tls
        self.version = version
        self.shared_group = shared_group
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.batch_size = batch_size
        self.max_batches = max_batches
        # Unacknowledged messages this driver holds at most; MQTT 5's Receive Maximum.
        self.max_in_flight = min(batch_size * max_batches, 65_535)
        self.limits = limits
        self.reconnect_min_delay = reconnect_min_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self.stop_timeout = stop_timeout
        self.stats = MqttDriverStats()
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()

    @property
    def telemetry_filter(self) -> str:
        telemetry = Topics.all_devices(Topics.TELEMETRY)
        return f"$share/{self.shared_group}/{telemetry}" if self.shared_group else telemetry

    @property
    def status_filter(self) -> str:
        return Topics.all_devices(Topics.STATUS)

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the driver is connected and subscribed."""
        await self._connected.wait()

    async def run(self, sink: DriverSink) -> None:
        """Consume until cancelled; reconnect with exponential back-off and jitter.

        Raises BrokerRefused when the broker rejects the credentials or the
        subscriptions, or its TLS certificate is not trusted: retrying would not help.
        """
        failures = 0
        try:
            while True:
                session = _Session(self, sink)
                try:
                    await session.run()
                except BrokerUnavailable as error:
                    if session.established:
                        failures = 0
                    delay = self._backoff(failures)
                    failures += 1
                    log.warning(
                        "MQTT broker %s:%d: %s; reconnecting in %.1f s",
                        self.host,
                        self.port,
                        error,
                        delay,
                    )
                    await asyncio.sleep(delay)
        finally:
            await self._finish_batches()

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.reconnect_max_delay, self.reconnect_min_delay * 2.0**failures)
        # Equal jitter: never sooner than half the step, so a fleet of hubs spreads out.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _start_batch(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    def _can_start_batch(self) -> bool:
        return len(self._batch_tasks) < self.max_batches

    async def _finish_batches(self) -> None:
        """Let outstanding batches finish (bounded by ``stop_timeout``), then cancel the rest."""
        if not self._batch_tasks:
            return
        _, late = await asyncio.wait(set(self._batch_tasks), timeout=self.stop_timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning(
                "%d MQTT batches did not finish within %.1f s", len(late), self.stop_timeout
            )
            await asyncio.wait(late)


_Handshake = asyncio.Future


@dataclass(slots=True)
class _Batch:
    messages: list[paho.MQTTMessage]
    done: bool = False


@dataclass(slots=True)
class _Decoded:
    """One message after decoding: what it carried, or why it was rejected."""

    topic: str
    payload: bytes
    device_uid: str | None = None
    readings: list[Reading] = field(default_factory=list)
    heartbeat: Heartbeat | None = None
    reject_reason: str | None = None


class _Session:
    """One broker connection: a paho client whose socket is watched by the event loop."""

    def __init__(self, driver: SensorMqttDriver, sink: DriverSink) -> None:
        self.driver = driver
        self.sink = sink
        self.established = False
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        self._connack: _Handshake[tuple[paho.ConnectFlags, ReasonCode]] = self._loop.create_future()
        self._suback: _Handshake[list[ReasonCode]] = self._loop.create_future()
        self._lost: asyncio.Future[str] = self._loop.create_future()
        self._subscribe_mid: int | None = None
        self._pending: list[paho.MQTTMessage] = []
        self._unacknowledged: deque[_Batch] = deque()
        self._in_flight = 0
        self._reading = False
        self._closed = False

    def _make_client(self) -> paho.Client:
        driver = self.driver
        if driver.version is MqttVersion.V5:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=driver.client_id,
                protocol=paho.MQTTv5,
                manual_ack=True,
            )
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=driver.client_id,
                protocol=paho.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        client.connect_timeout = driver.connect_timeout
        if driver._username is not None:
            client.username_pw_set(driver._username, driver._password)
        if driver._tls is not None:
            client.tls_set_context(driver._tls)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def run(self) -> None:
        misc: asyncio.Task[None] | None = None
        try:
            await self._connect()
            misc = asyncio.create_task(self._keep_alive())
            reason = await self._lost
            raise BrokerUnavailable(f"connection lost ({reason})")
        finally:
            if misc is not None:
                misc.cancel()
            await self._close()

    async def _connect(self) -> None:
        driver = self.driver
        connect = functools.partial(
            self._client.connect, driver.host, driver.port, driver.keepalive
        )
        if driver.version is MqttVersion.V5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = driver.session_expiry
            properties.ReceiveMaximum = driver.max_in_flight
            connect = functools.partial(connect, clean_start=False, properties=properties)
        # Name resolution, TCP and TLS handshakes block; keep them off the loop.
        attempt = self._loop.run_in_executor(None, connect)
        try:
            result = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # Let the connect thread finish before the cancellation goes on; its outcome,
            # success or failure, no longer matters.
            with contextlib.suppress(Exception):
                await attempt
            raise
        except ssl.SSLCertVerificationError as error:
            # Not something time fixes: the broker is not who it should be, or the CA is wrong.
            raise BrokerRefused(f"broker certificate not trusted: {error}") from error
        except (OSError, ValueError) as error:
            raise BrokerUnavailable(f"cannot connect: {error}") from error
        if result != paho.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"cannot connect: {paho.error_string(result)}")
        self._watch_socket()
        try:
            async with asyncio.timeout(driver.connect_timeout):
                flags, reason = await asyncio.shield(self._connack)
        except TimeoutError:
            raise BrokerUnavailable("no CONNACK from the broker") from None
        if reason.is_failure:
            error_type = BrokerRefused if reason.value in _TERMINAL_REASONS else BrokerUnavailable
            raise error_type(f"broker refused the connection: {reason}")
        self.established = True
        driver.stats.connections += 1
        log.info(
            "connected to MQTT broker %s:%d as %s (session %s)",
            driver.host,
            driver.port,
            driver.client_id,
            "resumed" if flags.session_present else "new",
        )
        await self._subscribe()
        driver._connected.set()

    async def _subscribe(self) -> None:
        driver = self.driver
        filters = (driver.telemetry_filter, driver.status_filter)
        if driver.version is MqttVersion.V5:
            result, self._subscribe_mid = self._client.subscribe(
                [(topic_filter, SubscribeOptions(qos=1)) for topic_filter in filters]
            )
        else:
            result, self._subscribe_mid = self._client.subscribe(
                [(topic_filter, 1) for topic_filter in filters]
            )
        if result != paho.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"cannot subscribe: {paho.error_string(result)}")
        try:
            async with asyncio.timeout(driver.connect_timeout):
                granted = await asyncio.shield(self._suback)
        except TimeoutError:
            raise BrokerUnavailable("no SUBACK from the broker") from None
        for topic_filter, reason in zip(filters, granted, strict=False):
            if reason.is_failure:
                error_type = (
                    BrokerRefused if reason.value in _TERMINAL_REASONS else BrokerUnavailable
                )
                raise error_type(f"broker refused the subscription to {topic_filter}: {reason}")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(_MISC_INTERVAL)
            self._client.loop_misc()

    # --- socket plumbing: paho calls these from loop_read/loop_write on the loop thread

    def _watch_socket(self) -> None:
        client = self._client
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._resume_reading()
        if client.want_write():
            sock = client.socket()
            if sock is not None:
                self._loop.add_writer(sock, self._on_writable)

    def _resume_reading(self) -> None:
        sock = self._client.socket()
        if sock is not None and not self._reading and not self._closed:
            self._loop.add_reader(sock, self._on_readable)
            self._reading = True

    def _pause_reading(self) -> None:
        sock = self._client.socket()
        if sock is not None and self._reading:
            self._loop.remove_reader(sock)
        self._reading = False

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._reading = False

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock, self._on_writable)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _on_writable(self) -> None:
        self._client.loop_write()

    def _on_readable(self) -> None:
        client = self._client
        limit = self.driver.max_in_flight
        for _ in range(_READS_PER_WAKEUP):
            received = self.driver.stats.received
            if client.loop_read() != paho.MQTT_ERR_SUCCESS or client.socket() is None:
                break
            if self.driver.stats.received == received or self._in_flight >= limit:
                break  # no more data, a control packet, or enough held: let the loop decide
        sock = client.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            # Decrypted bytes wait inside the TLS layer where the selector cannot see them.
            self._loop.call_soon(self._on_readable)
        self._dispatch()

    # --- paho callbacks

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._connack.done():
            self._connack.set_result((flags, reason))

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid == self._subscribe_mid and not self._suback.done():
            self._suback.set_result(reasons)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.driver._connected.clear()
        if not self._lost.done():
            origin = "by the broker" if flags.is_disconnect_packet_from_server else "locally"
            self._lost.set_result(f"{reason}, {origin}")
        for handshake in (self._connack, self._suback):
            if not handshake.done():
                handshake.set_exception(BrokerUnavailable(f"disconnected: {reason}"))
                handshake.exception()  # retrieved here so an abandoned handshake logs nothing

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._pending.append(message)
        self._in_flight += 1
        self.driver.stats.received += 1

    # --- batching and acknowledgement

    def _dispatch(self) -> None:
        driver = self.driver
        while self._pending and driver._can_start_batch():
            batch = _Batch(self._pending[: driver.batch_size])
            del self._pending[: driver.batch_size]
            self._unacknowledged.append(batch)
            driver._start_batch(self._process(batch))
        if self._in_flight >= driver.max_in_flight:
            # The broker sends past its quota at times; back-pressure through TCP instead.
            self._pause_reading()

    async def _process(self, batch: _Batch) -> None:
        try:
            now = datetime.now(UTC)
            decoded = [self._decode(message, now) for message in batch.messages]
            await _deliver(self.sink, decoded, self.driver.stats)
            batch.done = True
        finally:
            self._acknowledge_completed()
            if not self._closed:
                self._resume_reading()
                self._dispatch()

    def _acknowledge_completed(self) -> None:
        """Acknowledge finished batches in arrival order (MQTT 5.0 section 4.6)."""
        while self._unacknowledged and self._unacknowledged[0].done:
            batch = self._unacknowledged.popleft()
            self._in_flight -= len(batch.messages)
            if self._client.socket() is None:
                continue  # the broker delivers them again on the next connection
            for message in batch.messages:
                if message.qos:
                    self._client.ack(message.mid, message.qos)
            self.driver.stats.acknowledged += len(batch.messages)

    def _decode(self, message: paho.MQTTMessage, now: datetime) -> _Decoded:
        payload = bytes(message.payload)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            return _Decoded(repr(message._topic), payload, reject_reason="topic is not UTF-8")
        item = _Decoded(topic, payload)
        limits = self.driver.limits
        try:
            item.device_uid, channel = Topics.parse(topic)
            if channel == Topics.TELEMETRY:
                content_type = getattr(message.properties, "ContentType", None)
                item.readings = decode_telemetry(
                    payload,
                    item.device_uid,
                    payload_format=format_for_content_type(content_type) if content_type else None,
                    now=now,
                    limits=limits,
                )
            elif channel == Topics.STATUS:
                if status_dialect(payload) == "speaker":
                    # Another kind's status: its own driver reads it.
                    return item
                report = decode_status(payload, item.device_uid, now=now, limits=limits)
                if report is not None:
                    detail = dict(report.detail)
                    if message.retain:
                        # Delivered on subscribe: it tells the last known state, not activity now.
                        detail["retained"] = True
                    item.readings = report.readings
                    item.heartbeat = Heartbeat(
                        item.device_uid, report.time, report.connected, STATUS_SOURCE, detail
                    )
            else:
                raise DecodeError(f"channel {channel!r} is not read by the sensor driver")
        except DecodeError as error:
            item.reject_reason = str(error)
        except Exception as error:
            # A decoder bug must cost one message, not the batch.
            log.exception("decoding a message on %s failed", topic)
            item.reject_reason = f"decoder failure: {error!r}"
        if item.reject_reason is not None and len(payload) > limits.max_bytes:
            item.payload = payload[: limits.max_bytes]
            item.reject_reason += f" (the first {limits.max_bytes} bytes are kept)"
        return item

    async def _close(self) -> None:
        """Stop reading; on a clean stop, let batches finish and say goodbye to the broker."""
        self._closed = True
        self._pause_reading()
        self._pending.clear()
        if self._client.socket() is not None:
            await self.driver._finish_batches()
            self._acknowledge_completed()
            # A normal DISCONNECT keeps the session (and its unacknowledged messages).
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.driver.connect_timeout):
                    await asyncio.shield(self._lost)
        sock = self._client.socket()
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            sock.close()
        self.driver._connected.clear()


async def _deliver(sink: DriverSink, decoded: list[_Decoded], stats: MqttDriverStats) -> None:
    """Hand a decoded batch to the sink: readings, then heartbeats, then rejections."""
    accepted = [item for item in decoded if item.reject_reason is None]
    readings = [reading for item in accepted for reading in item.readings]
    if readings:
        try:
            await _patiently(functools.partial(sink.readings, readings, READINGS_SOURCE))
            stats.readings += len(readings)
        except (UnknownDevice, RefusedDevice) as refusal:
            await _deliver_per_device(sink, accepted, refusal, stats)
    for item in accepted:
        if item.heartbeat is not None and item.reject_reason is None:
            heartbeat = item.heartbeat
            try:
                await _patiently(functools.partial(sink.heartbeat, heartbeat))
                stats.heartbeats += 1
            except (UnknownDevice, RefusedDevice) as error:
                item.reject_reason = _refusal_reason(error, heartbeat.device_uid)
    now = datetime.now(UTC)
    for item in decoded:
        if item.reject_reason is not None:
            rejected = Rejected(item.topic, item.payload, item.reject_reason, item.device_uid, now)
            try:
                await _patiently(functools.partial(sink.rejected, rejected))
            except (UnknownDevice, RefusedDevice) as error:
                log.warning("the hub keeps no quarantine copy of %s: %s", item.topic, error)
            stats.rejected += 1


async def _deliver_per_device(
    sink: DriverSink,
    accepted: Iterable[_Decoded],
    refusal: UnknownDevice | RefusedDevice,
    stats: MqttDriverStats,
) -> None:
    """The sink refused a batch: find out which devices it refuses, store the others."""
    by_device: defaultdict[str | None, list[_Decoded]] = defaultdict(list)
    for item in accepted:
        if item.readings:
            by_device[item.device_uid].append(item)
    if len(by_device) == 1:
        [(device_uid, items)] = by_device.items()
        for item in items:
            item.reject_reason = _refusal_reason(refusal, device_uid)
        return
    for device_uid, items in by_device.items():
        readings = [reading for item in items for reading in item.readings]
        try:
            await _patiently(functools.partial(sink.readings, readings, READINGS_SOURCE))
            stats.readings += len(readings)
        except (UnknownDevice, RefusedDevice) as error:
            for item in items:
                item.reject_reason = _refusal_reason(error, device_uid)


def _refusal_reason(error: UnknownDevice | RefusedDevice, device_uid: str | None) -> str:
    kind = "unknown device" if isinstance(error, UnknownDevice) else "refused device"
    return f"{kind} {device_uid!r}: {error}" if str(error) else f"{kind} {device_uid!r}"


async def _patiently(call: Callable[[], Awaitable[object]]) -> None:
    """Await a sink call, retrying failures other than a refusal with capped back-off.

    The sink stores or quarantines by contract, so any other failure is
    transient (the database is away); holding the batch is the back-pressure.
    """
    delay = 0.1
    while True:
        try:
            await call()
            return
        except (UnknownDevice, RefusedDevice):
            raise
        except Exception:
            log.exception("sensor sink failed; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
