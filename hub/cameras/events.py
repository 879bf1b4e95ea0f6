"""Motion and tamper from cameras that offer PullPoint, into the hub's sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg

from drivers.contract import DriverSink
from drivers.onvif.client import CameraTarget
from drivers.onvif.events import CameraEventsDriver
from hub.cameras import store
from hub.storage.crypto import SecretBox


class ChangeSignal:
    """Tells a waiting list reader that cameras were onboarded, changed or removed."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - a pacing interval, not a deadline
        """Return when notified or after ``timeout`` seconds, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        self._changed.clear()


class PacedCameraList:
    """The driver's camera list: at once the first time, then on a change or every refresh.

    The driver re-reads its list in a loop; waiting here, instead of in the driver's
    sleep, lets a newly onboarded camera be subscribed within moments.
    """

    def __init__(
        self, pool: asyncpg.Pool, box: SecretBox, changes: ChangeSignal, refresh_s: float
    ) -> None:
        self._pool = pool
        self._box = box
        self._changes = changes
        self._refresh_s = refresh_s
        self._served = False

    async def __call__(self) -> Sequence[CameraTarget]:
        if self._served:
            await self._changes.wait(self._refresh_s)
        self._served = True
        return await store.load_targets(self._pool, self._box, pullpoint_only=True)


async def run_camera_events(
    pool: asyncpg.Pool, box: SecretBox, sink: DriverSink, changes: ChangeSignal, refresh_s: float
) -> None:
    """Subscribe to every active PullPoint camera until cancelled (motion, tamper)."""
    cameras = PacedCameraList(pool, box, changes, refresh_s)
    await CameraEventsDriver(cameras, refresh_interval=0.0).run(sink)
