"""The one DriverSink every driver talks to: it hands each kind of news to the slice that
took it on when the hub started (telemetry the readings and rejects, health the
heartbeats and events, broadcasts the acks), so no news passes through the composition
root and back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from drivers.contract import Ack, DeviceEvent, Heartbeat, Reading, Rejected, StoreReport


class TakesReadings(Protocol):
    async def readings(self, items: list[Reading], source: str) -> StoreReport: ...

    async def rejected(self, item: Rejected) -> None: ...


class TakesHealthNews(Protocol):
    async def heartbeat(self, item: Heartbeat) -> None: ...

    async def heartbeats(self, items: Sequence[Heartbeat]) -> list[str]: ...

    async def event(self, item: DeviceEvent) -> None: ...

    async def events(self, items: Sequence[DeviceEvent]) -> list[str]: ...


class NotTaken(RuntimeError):
    """News reached the sink before any slice took that kind on (a wiring mistake)."""

    retryable = False


class HubSink:
    def __init__(self) -> None:
        self._telemetry: TakesReadings | None = None
        self._health: TakesHealthNews | None = None
        self._ack_listeners: list[Callable[[Ack], Awaitable[None]]] = []
        self._heartbeat_listeners: list[Callable[[Heartbeat], None]] = []

    def take_readings(self, telemetry: TakesReadings) -> None:
        self._telemetry = telemetry

    def take_health_news(self, health: TakesHealthNews) -> None:
        self._health = health

    def listen_to_heartbeats(self, listener: Callable[[Heartbeat], None]) -> None:
        """Told of every heartbeat before health takes it (firmware: reported versions)."""
        self._heartbeat_listeners.append(listener)

    def listen_to_acks(self, listener: Callable[[Ack], Awaitable[None]]) -> None:
        self._ack_listeners.append(listener)

    @property
    def telemetry(self) -> TakesReadings:
        if self._telemetry is None:
            raise NotTaken("no slice takes readings in this hub")
        return self._telemetry

    @property
    def health(self) -> TakesHealthNews:
        if self._health is None:
            raise NotTaken("no slice takes heartbeats and events in this hub")
        return self._health

    async def readings(self, items: list[Reading], source: str) -> StoreReport:
        return await self.telemetry.readings(items, source)

    async def heartbeat(self, item: Heartbeat) -> None:
        for listener in self._heartbeat_listeners:
            listener(item)
        await self.health.heartbeat(item)

    async def heartbeats(self, items: Sequence[Heartbeat]) -> list[str]:
        """Many at once; returns the uids the hub does not know."""
        for listener in self._heartbeat_listeners:
            for item in items:
                listener(item)
        return await self.health.heartbeats(items)

    async def event(self, item: DeviceEvent) -> None:
        await self.health.event(item)

    async def events(self, items: Sequence[DeviceEvent]) -> list[str]:
        """Many at once, in order; returns the uids the hub does not know."""
        return await self.health.events(items)

    async def ack(self, item: Ack) -> None:
        # No listener (no broadcasts slice in this process): the ack is news nobody awaits.
        for listener in self._ack_listeners:
            await listener(item)

    async def rejected(self, item: Rejected) -> None:
        await self.telemetry.rejected(item)
