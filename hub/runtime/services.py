"""Long-lived background work owned by the lifespan: started in order, stopped in reverse.

A service that fails with a retryable error (hub.errors.is_retryable) restarts with
back-off; one that fails with a terminal error (a refused broker login, a wrong
configuration) would fail the same way forever, so it stays stopped and the hub reports
itself not ready with that reason (/readyz) until an operator fixes the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hub.errors import is_retryable

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
    # Services stopped by a terminal error, with the reason.
    failed: dict[str, str] = field(default_factory=dict)
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0

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
        delay = self.first_delay_s
        while True:
            try:
                await service.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_retryable(exc):
                    self.failed[service.name] = f"{type(exc).__name__}: {exc}"
                    log.error("%s stopped: %s (not retried)", service.name, exc)
                    return
                log.exception("%s failed; restarting in %.0f s", service.name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)

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
            name: f"failed: {self.failed[name]}"
            if name in self.failed
            else "running"
            if not task.done()
            else "stopped"
            for name, task in self.tasks.items()
        }
