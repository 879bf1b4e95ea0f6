"""The hub's side of firmware updates: an MQTT 5 connection for commands, and an MQTT
3.1.1 one for reports (as the speaker driver splits them).

Commands carry an MQTT 5 message expiry, so a device that comes back after its command
went stale never sees it. Reports are read from the retained ``fwstate`` topics: the
broker hands a newly subscribed hub each device's last report, which is how a new
rollout leader learns what happened while nobody was listening. They come in on 3.1.1
because paho builds an MQTT 5 property set for every message it reads, which was the
largest single cost of a 10,000-device rollout (five reports per device).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.contract import DecodeError, Topics
from drivers.firmware.protocol import FirmwareCommand, StateReport, decode_report, encode_command
from drivers.tcp import batch_io

logger = logging.getLogger(__name__)
_new_properties: Callable[[int], Properties] = Properties


class FirmwareLinkDown(ConnectionError):
    """Not connected to the broker: nothing was sent; sending again later may work."""


@dataclass(frozen=True, slots=True)
class FirmwareLinkSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    keepalive_s: int = 30
    reconnect_max_s: float = 15.0
    batch_window_s: float = 0.0
    """Reports arriving this close together are handed over as one batch; at 0 a batch is
    what arrived while the previous one was being handled (nothing waits for company)."""
    fan_out_window: int = 100
    publish_timeout_s: float = 30.0
    """Longest a round waits for the broker to acknowledge its commands."""


@dataclass(frozen=True, slots=True)
class Received:
    device_uid: str
    report: StateReport | None
    """None when the payload did not decode (``problem`` says why)."""
    problem: str | None = None


ReportHandler = Callable[[Sequence[Received]], Awaitable[None]]


class FirmwareMqttLink:
    def __init__(self, settings: FirmwareLinkSettings | None = None) -> None:
        self.settings = settings or FirmwareLinkSettings()
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._client_id = self.settings.client_id or f"iochub-firmware-{uuid.uuid4().hex[:10]}"

    def _connection(self, identifier: str, *, v5: bool) -> aiomqtt.Client:
        settings = self.settings
        common: dict[str, Any] = {
            "identifier": identifier,
            "username": settings.username,
            "password": settings.password,
            "tls_context": settings.tls_context,
            "keepalive": settings.keepalive_s,
            "max_inflight_messages": 500,
        }
        if v5:
            client = aiomqtt.Client(
                settings.host,
                settings.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=True,
                **common,
            )
        else:
            client = aiomqtt.Client(
                settings.host,
                settings.port,
                protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=True,
                **common,
            )
        client.pending_calls_threshold = 10 * settings.fan_out_window + 100
        return client

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def run(self, handle: ReportHandler) -> None:
        """Hold the connection (reconnecting with back-off) and hand over reports."""
        delay = 0.5
        while True:
            commands = self._connection(f"{self._client_id}-cmd", v5=True)
            reports = self._connection(self._client_id, v5=False)
            try:
                async with commands, reports:
                    batch_io(commands)
                    batch_io(reports)
                    await reports.subscribe(Topics.all_devices(Topics.FIRMWARE_STATE), qos=1)
                    self._client = commands
                    self._up.set()
                    delay = 0.5
                    await self._read(reports, commands, handle)
            except aiomqtt.MqttError as exc:
                logger.warning("firmware link lost (%s); reconnecting in about %.1fs", exc, delay)
            finally:
                self._client = None
                self._up.clear()
            await asyncio.sleep(delay / 2 + random.uniform(0, delay / 2))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    async def _read(
        self, client: aiomqtt.Client, commands: aiomqtt.Client, handle: ReportHandler
    ) -> None:
        queue: asyncio.Queue[Received] = asyncio.Queue()

        async def hand_over() -> None:
            while True:
                batch = [await queue.get()]
                await asyncio.sleep(self.settings.batch_window_s)  # 0: one turn of the loop
                while not queue.empty():
                    batch.append(queue.get_nowait())
                try:
                    await handle(batch)
                except Exception:
                    logger.exception("%d firmware reports could not be handled", len(batch))

        async def pump() -> None:
            async for message in client.messages:
                raw = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                try:
                    uid, _ = Topics.parse(message.topic.value)
                except DecodeError:
                    continue
                if not raw:
                    continue  # a cleared retained report
                try:
                    queue.put_nowait(Received(uid, decode_report(bytes(raw))))
                except DecodeError as exc:
                    queue.put_nowait(Received(uid, None, str(exc)))

        async def hold_commands() -> None:
            await commands.messages.__anext__()  # nothing is subscribed: returns only on loss

        worker = asyncio.create_task(hand_over(), name="firmware-reports")
        tasks = [
            asyncio.create_task(pump(), name="firmware-report-reader"),
            asyncio.create_task(hold_commands(), name="firmware-command-link"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the MqttError of the connection that was lost
            raise aiomqtt.MqttError("a firmware connection closed")
        finally:
            for task in (worker, *tasks):
                task.cancel()
            await asyncio.gather(worker, *tasks, return_exceptions=True)

    async def send_many(
        self, commands: Sequence[tuple[str, FirmwareCommand]], now: datetime | None = None
    ) -> list[tuple[str, str]]:
        """Publish (uid, command) pairs with QoS 1; returns (uid, reason) of those not taken.

        Raises FirmwareLinkDown before sending anything when there is no connection.
        """
        client = self._client
        if client is None:
            raise FirmwareLinkDown("not connected to the broker")
        moment = now or datetime.now(UTC)
        # Straight to paho, then one wait for every PUBACK: awaiting each publish through
        # aiomqtt caps a round at about 150 commands a second here, and every command is
        # its own (it carries that device's signed link); paho keeps QoS 1's in-flight
        # window itself.
        sent: list[tuple[str, Any]] = []
        failed: list[tuple[str, str]] = []
        for uid, command in commands:
            properties = _new_properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(
                1, math.ceil((command.expires_at - moment).total_seconds())
            )
            info = client._client.publish(
                Topics.for_device(uid, Topics.FIRMWARE),
                encode_command(command),
                qos=1,
                properties=properties,
            )
            if info.rc != 0:
                failed.append((uid, f"not sent: publish refused (rc {info.rc})"))
            else:
                sent.append((uid, info))
        deadline = asyncio.get_running_loop().time() + self.settings.publish_timeout_s
        # PUBACKs come back in order, mostly: each look drops the acknowledged ones from the
        # front, rather than scanning every command of a 2,500-command round 100 times a second.
        waiting = collections.deque(sent)
        while waiting:
            while waiting and waiting[0][1].is_published():
                waiting.popleft()
            if not waiting:
                break
            if asyncio.get_running_loop().time() > deadline or self._client is not client:
                break
            await asyncio.sleep(0.01)
            if len(waiting) > 1 and waiting[-1][1].is_published():
                # The last one is in: whatever is left was overtaken (or lost); look at each.
                waiting = collections.deque(w for w in waiting if not w[1].is_published())
        failed += [
            (uid, "not sent: no PUBACK in time") for uid, info in waiting if not info.is_published()
        ]
        return failed
