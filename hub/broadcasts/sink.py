"""The hub's sink as the speaker driver sees it.

The driver hands over one message at a time. A status costs the health monitor a
database write or two (a heartbeat, and fault events on the first status), and a fleet
reconnecting at once would queue a broadcast's acks behind thousands of them. So the
health news is passed on by a worker of its own: heartbeats kept per speaker (the newest
wins: a status is a state) and handed over together, events in order and all of them;
acks and rejects go through at once. Dispatch also learns here who came online, to resend to them, and the group
roster which groups each speaker follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from drivers.contract import (
    Ack,
    DeviceEvent,
    DriverSink,
    Heartbeat,
    Reading,
    Rejected,
)

log = logging.getLogger("hub.broadcasts")

MAX_QUEUED_EVENTS = 100_000


class HubNews(DriverSink, Protocol):
    """The hub's sink, which also takes heartbeats in batches."""

    async def heartbeats(self, items: Sequence[Heartbeat]) -> list[str]: ...

    async def events(self, items: Sequence[DeviceEvent]) -> list[str]: ...


class SpeakerSink:
    def __init__(
        self,
        inner: HubNews,
        online: Callable[[str], None],
        follows: Callable[[str, Iterable[str] | None], None],
    ) -> None:
        self._inner = inner
        self._online = online
        self._follows = follows
        self._heartbeats: dict[str, Heartbeat] = {}
        self._events: asyncio.Queue[DeviceEvent] = asyncio.Queue(MAX_QUEUED_EVENTS)
        self._waiting = asyncio.Event()

    async def readings(self, items: list[Reading], source: str) -> None:
        await self._inner.readings(items, source)

    async def heartbeat(self, item: Heartbeat) -> None:
        if item.connected:
            self._online(item.device_uid)
            self._follows(item.device_uid, item.detail.get("groups"))
        self._heartbeats[item.device_uid] = item
        self._waiting.set()

    async def event(self, item: DeviceEvent) -> None:
        # A full queue holds the driver up: events are never dropped.
        await self._events.put(item)
        self._waiting.set()

    async def ack(self, item: Ack) -> None:
        await self._inner.ack(item)

    async def rejected(self, item: Rejected) -> None:
        await self._inner.rejected(item)

    async def run(self) -> None:
        """Pass the health news on: events in order, then the newest status per speaker."""
        while True:
            await self._waiting.wait()
            self._waiting.clear()
            await self._pass_all_on()

    async def _pass_all_on(self) -> None:
        while not self._events.empty() or self._heartbeats:
            if not self._events.empty():
                events = [self._events.get_nowait() for _ in range(self._events.qsize())]
                await self._hand_over("events", events, self._inner.events)
            else:
                batch, self._heartbeats = self._heartbeats, {}
                await self._hand_over("statuses", list(batch.values()), self._inner.heartbeats)

    async def _hand_over(
        self,
        what: str,
        items: list[Any],
        handler: Callable[[Sequence[Any]], Awaitable[list[str]]],
    ) -> None:
        try:
            unknown = await handler(items)
        except Exception:
            log.exception("%d speaker %s could not be handled", len(items), what)
            return
        if unknown:
            log.info(
                "%s from %d unregistered speakers refused, e.g. %s", what, len(unknown), unknown[0]
            )
