"""The one DriverSink every driver talks to: it hands each kind of news to its slice."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.contract import Ack, DeviceEvent, Heartbeat, Reading, Rejected
from hub.health.monitor import HealthMonitor
from hub.telemetry.ingest import TelemetryIngest


@dataclass
class HubSink:
    telemetry: TelemetryIngest
    health: HealthMonitor

    async def readings(self, items: list[Reading], source: str) -> None:
        await self.telemetry.readings(items, source)

    async def heartbeat(self, item: Heartbeat) -> None:
        await self.health.heartbeat(item)

    async def event(self, item: DeviceEvent) -> None:
        await self.health.event(item)

    async def ack(self, item: Ack) -> None:
        # Broadcast delivery tracking takes acks; until then they are only counted.
        return None

    async def rejected(self, item: Rejected) -> None:
        await self.telemetry.rejected(item)
