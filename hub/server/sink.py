"""The one DriverSink every driver talks to: it hands each kind of news to its slice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from drivers.contract import Ack, DeviceEvent, Heartbeat, Reading, Rejected, StoreReport
from hub.health.monitor import HealthMonitor
from hub.telemetry.ingest import TelemetryIngest


@dataclass
class HubSink:
    telemetry: TelemetryIngest
    health: HealthMonitor
    # Set by the broadcasts slice: its delivery recorder (hub.broadcasts.wiring).
    on_ack: Callable[[Ack], Awaitable[None]] | None = None
    # Told of every heartbeat before health takes it (the firmware slice: reported versions).
    on_heartbeat: list[Callable[[Heartbeat], None]] = field(default_factory=list)

    async def readings(self, items: list[Reading], source: str) -> StoreReport:
        return await self.telemetry.readings(items, source)

    async def heartbeat(self, item: Heartbeat) -> None:
        for hook in self.on_heartbeat:
            hook(item)
        await self.health.heartbeat(item)

    async def heartbeats(self, items: Sequence[Heartbeat]) -> list[str]:
        """Many at once; returns the uids the hub does not know."""
        for hook in self.on_heartbeat:
            for item in items:
                hook(item)
        return await self.health.heartbeats(items)

    async def event(self, item: DeviceEvent) -> None:
        await self.health.event(item)

    async def events(self, items: Sequence[DeviceEvent]) -> list[str]:
        """Many at once, in order; returns the uids the hub does not know."""
        return await self.health.events(items)

    async def ack(self, item: Ack) -> None:
        if self.on_ack is not None:
            await self.on_ack(item)

    async def rejected(self, item: Rejected) -> None:
        await self.telemetry.rejected(item)
