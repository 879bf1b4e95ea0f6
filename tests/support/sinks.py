"""A recording DriverSink (the hub's stand-in while a driver is under test) and driver runners."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from drivers.contract import (
    Ack,
    DeviceEvent,
    Driver,
    DriverSink,
    Heartbeat,
    Reading,
    RefusedDevice,
    Rejected,
    StoreReport,
    UnknownDevice,
)


@dataclass
class RecordingSink:
    """Keeps what a sensor driver hands over; can refuse devices, fail, or hold calls open."""

    unknown: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    failures_to_inject: int = 0
    hold: asyncio.Event | None = None
    stored: list[Reading] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    quarantined: list[Rejected] = field(default_factory=list)
    calls: int = 0
    outstanding: int = 0
    # Reading names this sink keeps aside, with the reason, as the hub does with a name
    # its profile does not map.
    keep_aside: dict[str, str] = field(default_factory=dict)

    async def readings(self, items: list[Reading], source: str) -> StoreReport:
        self.calls += 1
        self.outstanding += 1
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.failures_to_inject:
                self.failures_to_inject -= 1
                raise ConnectionError("database is restarting")
            devices = {item.device_uid for item in items}
            if devices & self.unknown:
                raise UnknownDevice("pending approval")
            if devices & self.refused:
                raise RefusedDevice("decommissioned")
            refused = [
                self.keep_aside[item.metric] for item in items if item.metric in self.keep_aside
            ]
            self.stored.extend(item for item in items if item.metric not in self.keep_aside)
            self.sources.append(source)
            return StoreReport(len(items) - len(refused), len(items), refused)
        finally:
            self.outstanding -= 1

    async def heartbeat(self, item: Heartbeat) -> None:
        self.heartbeats.append(item)

    async def event(self, item: DeviceEvent) -> None:
        raise AssertionError("sensor drivers report no events")

    async def ack(self, item: Ack) -> None:
        raise AssertionError("sensor drivers report no acks")

    async def rejected(self, item: Rejected) -> None:
        self.quarantined.append(item)


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(driver: Driver, sink: DriverSink) -> AsyncIterator[asyncio.Task[None]]:
    """Run a driver in a task; cancel it (a clean stop) on the way out."""
    task = asyncio.create_task(driver.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
