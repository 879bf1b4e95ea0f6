"""Long-lived background work owned by the lifespan: started in order, stopped in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("hub.services")


@dataclass
class BackgroundService:
    name: str
    run: Callable[[], Awaitable[None]]
    # Called before cancellation, to finish or flush what the service holds.
    stop: Callable[[], Awaitable[None]] | None = None


@dataclass
class ServiceGroup:
    stop_timeout_s: float = 10.0
    services: list[BackgroundService] = field(default_factory=list)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def add(self, service: BackgroundService) -> None:
        self.services.append(service)

    async def start(self) -> None:
        for service in self.services:
            self.tasks[service.name] = asyncio.create_task(
                self._supervise(service), name=service.name
            )
            log.info("started %s", service.name)

    async def _supervise(self, service: BackgroundService) -> None:
        # A crashed service restarts with back-off instead of silently dying.
        delay = 1.0
        while True:
            try:
                await service.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in %.0f s", service.name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def stop(self) -> None:
        for service in reversed(self.services):
            task = self.tasks.pop(service.name, None)
            if task is None:
                continue
            if service.stop is not None and not task.done():
                try:
                    await asyncio.wait_for(service.stop(), self.stop_timeout_s)
                except TimeoutError:
                    log.error("%s did not finish within %.0f s", service.name, self.stop_timeout_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, self.stop_timeout_s)
            log.info("stopped %s", service.name)

    def status(self) -> dict[str, str]:
        return {
            name: "running" if not task.done() else "stopped" for name, task in self.tasks.items()
        }
