"""The hub's sink as the speaker driver sees it.

The driver hands over one message at a time. A status heartbeat costs the health monitor
a database write, and thousands of speakers reconnecting at once would queue the acks of
a broadcast behind them. So heartbeats are kept per speaker (the newest wins: a status
is a state, not an event) and passed on by a worker of their own, while acks, events and
rejects go through at once. Dispatch also learns here who came online, to resend to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from drivers.contract import (
    Ack,
    DeviceEvent,
    DriverSink,
    Heartbeat,
    Reading,
    RefusedDevice,
    Rejected,
    UnknownDevice,
)

log = logging.getLogger("hub.broadcasts")


class SpeakerSink:
    def __init__(self, inner: DriverSink, online: Callable[[str], None]) -> None:
        self._inner = inner
        self._online = online
        self._heartbeats: dict[str, Heartbeat] = {}
        self._waiting = asyncio.Event()

    async def readings(self, items: list[Reading], source: str) -> None:
        await self._inner.readings(items, source)

    async def heartbeat(self, item: Heartbeat) -> None:
        if item.connected:
            self._online(item.device_uid)
        self._heartbeats[item.device_uid] = item
        self._waiting.set()

    async def event(self, item: DeviceEvent) -> None:
        await self._inner.event(item)

    async def ack(self, item: Ack) -> None:
        await self._inner.ack(item)

    async def rejected(self, item: Rejected) -> None:
        await self._inner.rejected(item)

    async def run(self) -> None:
        """Pass the heartbeats on to the health monitor, newest per speaker."""
        while True:
            await self._waiting.wait()
            self._waiting.clear()
            while self._heartbeats:
                uid = next(iter(self._heartbeats))
                await self._pass_on(self._heartbeats.pop(uid))

    async def drain(self) -> None:
        while self._heartbeats:
            uid = next(iter(self._heartbeats))
            await self._pass_on(self._heartbeats.pop(uid))

    async def _pass_on(self, item: Heartbeat) -> None:
        try:
            await self._inner.heartbeat(item)
        except (UnknownDevice, RefusedDevice) as exc:
            log.info("status of %s refused by the hub: %s", item.device_uid, exc)
        except Exception:
            log.exception("status of %s could not be handled", item.device_uid)
