"""Camera health: reachable, speaking ONVIF, accepting our credentials, on the right time?"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from drivers.contract import DeviceEvent, DriverSink, Heartbeat
from drivers.onvif.client import (
    CameraAuthError,
    CameraError,
    CameraTarget,
    camera_errors,
    device_information,
    open_camera,
    preload_wsdls,
    read_clock,
    sign_on_camera_clock,
)

log = logging.getLogger(__name__)

HEARTBEAT_SOURCE = "onvif-probe"


class HealthState(enum.StrEnum):
    UP_AUTH = "up_auth"  # an authenticated call works
    UP_NO_AUTH = "up_no_auth"  # ONVIF answers, our credentials are rejected
    REACHABLE = "reachable"  # TCP answers, ONVIF does not
    UNREACHABLE = "unreachable"  # nothing answers

    @property
    def connected(self) -> bool:
        """The camera's ONVIF service answered, whatever it thought of us."""
        return self in (HealthState.UP_AUTH, HealthState.UP_NO_AUTH)


@dataclass(frozen=True, slots=True)
class CameraHealth:
    host: str
    port: int
    state: HealthState
    checked_at: datetime
    latency_s: float | None = None  # ONVIF round trip, or TCP connect time if ONVIF is silent
    clock_drift_s: float | None = None  # camera minus us; > 0 means the camera runs ahead
    reason: str | None = None
    device_uid: str | None = None


async def check_health(
    host: str,
    port: int,
    username: str,
    password: str,
    timeout: float = 5.0,  # noqa: ASYNC109 - the deadline covers camera time, not WSDL parsing
) -> CameraHealth:
    """One health check, finished within ``timeout`` seconds whatever the camera does."""
    await preload_wsdls()
    checked_at = datetime.now(UTC)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    started = loop.time()
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
    except TimeoutError:
        return CameraHealth(
            host, port, HealthState.UNREACHABLE, checked_at, reason="TCP connect timed out"
        )
    except OSError as error:
        reason = f"TCP connect failed: {error.strerror or type(error).__name__}"
        return CameraHealth(host, port, HealthState.UNREACHABLE, checked_at, reason=reason)
    latency = loop.time() - started

    drift: float | None = None
    try:
        with camera_errors(host, port):
            async with open_camera(host, port, username, password) as camera:
                async with asyncio.timeout_at(deadline):
                    clock = await read_clock(camera)
                    latency, drift = clock.round_trip_s, clock.drift_s
                    await sign_on_camera_clock(camera, drift)
                    await device_information(camera)
    except CameraAuthError as error:
        return CameraHealth(
            host, port, HealthState.UP_NO_AUTH, checked_at, latency, drift, str(error)
        )
    except CameraError as error:
        # ONVIF answered the clock request but not the authenticated one: still not usable.
        return CameraHealth(
            host, port, HealthState.REACHABLE, checked_at, latency, drift, str(error)
        )
    return CameraHealth(host, port, HealthState.UP_AUTH, checked_at, latency, drift)


async def sweep(
    cameras: Sequence[CameraTarget], concurrency: int = 16, per_camera_timeout: float = 5.0
) -> list[CameraHealth]:
    """Check every camera, at most ``concurrency`` at a time; results follow the input order.

    Every check ends by its own deadline, so the sweep takes at most about
    ceil(len(cameras) / concurrency) * per_camera_timeout, however many cameras hang.
    """
    await preload_wsdls()
    slots = asyncio.Semaphore(concurrency)

    async def check(target: CameraTarget) -> CameraHealth:
        async with slots:
            health = await check_health(
                target.host, target.port, target.username, target.password, per_camera_timeout
            )
        return replace(health, device_uid=target.device_uid)

    return list(await asyncio.gather(*(check(target) for target in cameras)))


class CameraHealthDriver:
    """Sweeps the cameras every ``interval`` seconds and reports heartbeats and health events.

    Heartbeats go out on every sweep; ``auth_failed`` and ``clock_drift`` events go
    out when the condition starts (active) and when it ends (inactive).
    """

    name = "onvif-health"

    def __init__(
        self,
        cameras: Callable[[], Awaitable[Sequence[CameraTarget]]],
        *,
        interval: float = 60.0,
        concurrency: int = 16,
        per_camera_timeout: float = 5.0,
        drift_threshold_s: float = 5.0,
    ) -> None:
        self._cameras = cameras
        self._interval = interval
        self._concurrency = concurrency
        self._per_camera_timeout = per_camera_timeout
        self._drift_threshold_s = drift_threshold_s
        self._auth_failing: dict[str, bool] = {}
        self._drifting: dict[str, bool] = {}

    async def run(self, sink: DriverSink) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.sweep_once(sink)
            except Exception:
                log.exception("camera health sweep failed; trying again next interval")
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))

    async def sweep_once(self, sink: DriverSink) -> list[CameraHealth]:
        try:
            targets = await self._cameras()
        except Exception:
            log.exception("could not get the list of cameras to check; skipping this sweep")
            return []
        known = {target.device_uid for target in targets}
        for memory in (self._auth_failing, self._drifting):
            for uid in set(memory) - known:
                del memory[uid]
        return await self.check(sink, targets)

    async def check(self, sink: DriverSink, targets: Sequence[CameraTarget]) -> list[CameraHealth]:
        """Check these cameras now and report them exactly as a sweep does."""
        results = await sweep(targets, self._concurrency, self._per_camera_timeout)
        for health in results:
            await self._report(sink, health)
        return results

    async def _report(self, sink: DriverSink, health: CameraHealth) -> None:
        uid = health.device_uid
        assert uid is not None
        drift = None if health.clock_drift_s is None else round(health.clock_drift_s, 1)
        detail = {
            "state": health.state.value,
            "latency_ms": None if health.latency_s is None else round(health.latency_s * 1000, 1),
            "clock_drift_s": drift,
            "reason": health.reason,
        }
        beat = Heartbeat(uid, health.checked_at, health.state.connected, HEARTBEAT_SOURCE, detail)
        await _deliver(sink.heartbeat(beat))

        events: list[tuple[str, bool, dict[str, object]]] = []
        if health.state.connected:
            failing = health.state is HealthState.UP_NO_AUTH
            if self._changed(self._auth_failing, uid, failing):
                events.append(("auth_failed", failing, {"reason": health.reason}))
        if drift is not None:
            drifting = abs(drift) > self._drift_threshold_s
            if self._changed(self._drifting, uid, drifting):
                events.append(
                    (
                        "clock_drift",
                        drifting,
                        {"drift_s": drift, "threshold_s": self._drift_threshold_s},
                    )
                )
        for kind, active, data in events:
            await _deliver(sink.event(DeviceEvent(uid, health.checked_at, kind, active, data)))

    @staticmethod
    def _changed(memory: dict[str, bool], uid: str, now: bool) -> bool:
        """True when the condition flips; a first sighting counts only if the condition holds."""
        before = memory.get(uid)
        memory[uid] = now
        return before != now if before is not None else now


async def _deliver(delivery: Awaitable[None]) -> None:
    """The hub may refuse a device (unknown, decommissioned); that must not stop the sweep."""
    try:
        await delivery
    except Exception:
        log.warning("the hub did not accept a camera health report", exc_info=True)
