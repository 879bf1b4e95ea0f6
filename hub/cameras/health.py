"""Camera health sweeps: the driver checks, the hub records each result and forwards it.

The driver reports auth_failed and clock_drift as edges it remembers in memory; after a
restart it does not know which faults the registry still holds. Each sweep therefore
also compares the results with the device's faults and sends whatever edge is missing,
so a fault never outlives its cause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from drivers.contract import DeviceEvent, DriverSink
from drivers.onvif.client import CameraTarget
from drivers.onvif.health import CameraHealth, CameraHealthDriver, HealthState
from hub.cameras import store
from hub.cameras.settings import CameraSettings
from hub.runtime import RuntimeKey
from hub.storage.crypto import SecretBox

log = logging.getLogger("hub.cameras")


class CameraHealthService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        sink: DriverSink,
        settings: CameraSettings,
        interval_s: float = 60.0,
    ) -> None:
        self.pool = pool
        self.box = box
        self.sink = sink
        self.settings = settings
        # The health monitor expects a camera heartbeat this often (camera_interval_s).
        self.interval_s = interval_s
        self.driver = CameraHealthDriver(
            self._targets,
            concurrency=settings.health_concurrency,
            per_camera_timeout=settings.health_timeout_s,
            drift_threshold_s=settings.drift_threshold_s,
        )
        self._sweeping = asyncio.Lock()

    async def _targets(self) -> Sequence[CameraTarget]:
        return await store.load_targets(self.pool, self.box)

    async def sweep_once(self) -> list[CameraHealth]:
        """Check every active camera once; one sweep at a time."""
        async with self._sweeping:
            results = await self.driver.sweep_once(self.sink)
            await store.record_health(self.pool, results)
            await self._reconcile_faults(results)
        return results

    async def assess(self, uids: Sequence[str]) -> list[CameraHealth]:
        """The sweep's assessment of these cameras, now: onboarding ends with it, so a
        camera whose clock is years off is not reported online until the next sweep."""
        wanted = set(uids)
        targets = [t for t in await self._targets() if t.device_uid in wanted]
        results = await self.driver.check(self.sink, targets)
        await store.record_health(self.pool, results)
        await self._reconcile_faults(results)
        return results

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                results = await self.sweep_once()
                log.debug("swept %d cameras in %.1f s", len(results), loop.time() - started)
            except Exception:
                log.exception("camera health sweep failed; trying again next interval")
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    async def _reconcile_faults(self, results: Sequence[CameraHealth]) -> None:
        connected = {r.device_uid: r for r in results if r.device_uid and r.state.connected}
        if not connected:
            return
        faults = await store.faults_of(self.pool, list(connected))
        threshold = self.settings.drift_threshold_s
        for uid, health in connected.items():
            held = faults.get(uid)
            if held is None:
                continue
            failing = health.state is HealthState.UP_NO_AUTH
            if failing != ("auth_failed" in held):
                await self._send(uid, "auth_failed", failing, {"reason": health.reason})
            if health.clock_drift_s is not None:
                drift = round(health.clock_drift_s, 1)
                drifting = abs(drift) > threshold
                if drifting != ("clock_drift" in held):
                    await self._send(
                        uid, "clock_drift", drifting, {"drift_s": drift, "threshold_s": threshold}
                    )

    async def _send(self, uid: str, kind: str, active: bool, data: dict[str, object]) -> None:
        try:
            await self.sink.event(DeviceEvent(uid, datetime.now(UTC), kind, active, data))
        except Exception:
            log.warning("the hub did not accept a %s event for %s", kind, uid, exc_info=True)


CAMERA_HEALTH: RuntimeKey[CameraHealthService] = RuntimeKey("camera health sweeps")
