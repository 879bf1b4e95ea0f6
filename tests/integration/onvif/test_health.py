"""Health checks, sweeps and the health driver against simulated cameras on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from drivers.contract import Driver
from drivers.onvif.client import CameraTarget
from drivers.onvif.health import CameraHealthDriver, HealthState, check_health, sweep
from drivers.onvif.simulator import CameraFault, CameraSpec, fleet
from tests.integration.onvif.support import RecordingSink, eventually, target_of
from tests.support.cameras import StartCameras


async def test_each_health_state(start_cameras: StartCameras) -> None:
    simulator = await start_cameras(
        CameraSpec("fine"),
        CameraSpec("off", fault=CameraFault.DOWN),
        CameraSpec("web", fault=CameraFault.NOT_ONVIF),
        CameraSpec("garbled", fault=CameraFault.MALFORMED),
    )
    fine, off, web, garbled = (simulator[name] for name in ("fine", "off", "web", "garbled"))
    password = fine.spec.password

    up = await check_health(fine.host, fine.port, "admin", password, timeout=2)
    refused = await check_health(fine.host, fine.port, "admin", "wrong", timeout=2)
    down = await check_health(off.host, off.port, "admin", password, timeout=2)
    not_onvif = await check_health(web.host, web.port, "admin", password, timeout=2)
    broken = await check_health(garbled.host, garbled.port, "admin", password, timeout=2)

    assert up.state is HealthState.UP_AUTH and up.reason is None
    assert up.latency_s is not None and 0 < up.latency_s < 1
    assert refused.state is HealthState.UP_NO_AUTH
    assert refused.reason is not None and "credentials" in refused.reason
    assert refused.clock_drift_s is not None  # the clock is read before authenticating
    assert down.state is HealthState.UNREACHABLE and down.latency_s is None
    assert not_onvif.state is HealthState.REACHABLE
    assert not_onvif.reason is not None and "not SOAP" in not_onvif.reason
    assert broken.state is HealthState.REACHABLE
    assert up.state.connected and refused.state.connected
    assert not (down.state.connected or not_onvif.state.connected)


async def test_hung_camera_is_reachable_and_answers_within_the_limit(
    start_cameras: StartCameras,
) -> None:
    camera = (await start_cameras(CameraSpec("hung", fault=CameraFault.HUNG)))["hung"]

    started = time.monotonic()
    health = await check_health(camera.host, camera.port, "admin", camera.spec.password, 0.8)

    assert time.monotonic() - started < 1.3
    assert health.state is HealthState.REACHABLE
    assert health.reason is not None and "in time" in health.reason


async def test_clock_drift_is_measured(start_cameras: StartCameras) -> None:
    simulator = await start_cameras(
        CameraSpec("ahead", clock_offset_s=125.0), CameraSpec("behind", clock_offset_s=-37.0)
    )

    ahead, behind = [
        await check_health(c.host, c.port, "admin", c.spec.password, 2)
        for c in (simulator["ahead"], simulator["behind"])
    ]

    assert ahead.state is HealthState.UP_AUTH and behind.state is HealthState.UP_AUTH
    assert ahead.clock_drift_s is not None and abs(ahead.clock_drift_s - 125.0) < 1.0
    assert behind.clock_drift_s is not None and abs(behind.clock_drift_s + 37.0) < 1.0


async def test_sweep_of_twenty_with_three_hung_finishes_in_bounded_time(
    start_cameras: StartCameras,
) -> None:
    specs = fleet(20)
    for spec in specs[4:7]:
        spec.fault = CameraFault.HUNG
    simulator = await start_cameras(*specs)
    targets = [target_of(camera) for camera in simulator.cameras.values()]

    started = time.monotonic()
    results = await sweep(targets, concurrency=4, per_camera_timeout=1.0)
    elapsed = time.monotonic() - started

    # 3 hung checks hold 3 of the 4 slots for 1 s; the 17 others pass through the
    # last slot meanwhile, so the whole sweep takes about one timeout, not three.
    assert elapsed < 2.5
    assert [health.device_uid for health in results] == [t.device_uid for t in targets]
    states = [health.state for health in results]
    assert states.count(HealthState.REACHABLE) == 3
    assert states.count(HealthState.UP_AUTH) == 17
    assert all(results[i].state is HealthState.REACHABLE for i in (4, 5, 6))


class _Cameras:
    """The camera list the hub would supply; tests edit it between sweeps."""

    def __init__(self, targets: Sequence[CameraTarget]) -> None:
        self.targets = list(targets)

    async def __call__(self) -> Sequence[CameraTarget]:
        return self.targets


async def test_driver_reports_heartbeats_and_edge_triggered_events(
    start_cameras: StartCameras,
) -> None:
    simulator = await start_cameras(CameraSpec("cam-a"), CameraSpec("cam-b", clock_offset_s=30))
    a, b = simulator["cam-a"], simulator["cam-b"]
    cameras = _Cameras([target_of(a, password="stale-password"), target_of(b)])
    driver = CameraHealthDriver(cameras, per_camera_timeout=2.0, drift_threshold_s=5.0)
    sink = RecordingSink()
    assert isinstance(driver, Driver)

    await driver.sweep_once(sink)
    assert {(h.device_uid, h.connected, h.source) for h in sink.heartbeats} == {
        ("uid-cam-a", True, "onvif-probe"),
        ("uid-cam-b", True, "onvif-probe"),
    }
    detail = {h.device_uid: h.detail for h in sink.heartbeats}
    assert detail["uid-cam-a"]["state"] == "up_no_auth"
    assert detail["uid-cam-b"]["state"] == "up_auth"
    assert abs(detail["uid-cam-b"]["clock_drift_s"] - 30) < 1.0
    assert detail["uid-cam-b"]["latency_ms"] > 0
    assert [(e.device_uid, e.active) for e in sink.events_of("auth_failed")] == [
        ("uid-cam-a", True)
    ]
    assert [(e.device_uid, e.active) for e in sink.events_of("clock_drift")] == [
        ("uid-cam-b", True)
    ]

    await driver.sweep_once(sink)  # nothing changed: heartbeats, but no new events
    assert len(sink.heartbeats) == 4 and len(sink.events) == 2

    cameras.targets[0] = target_of(a)  # a technician fixed the password
    b.spec.clock_offset_s = 0  # and the camera's NTP caught up
    await driver.sweep_once(sink)
    assert [(e.device_uid, e.active) for e in sink.events_of("auth_failed")][-1] == (
        "uid-cam-a",
        False,
    )
    assert [(e.device_uid, e.active) for e in sink.events_of("clock_drift")][-1] == (
        "uid-cam-b",
        False,
    )

    await b.set_fault(CameraFault.DOWN)
    await driver.sweep_once(sink)
    last_b = [h for h in sink.heartbeats if h.device_uid == "uid-cam-b"][-1]
    assert not last_b.connected and last_b.detail["state"] == "unreachable"
    assert len(sink.events) == 4  # an unreachable camera says nothing about its clock


async def test_driver_runs_on_its_interval_until_cancelled(start_cameras: StartCameras) -> None:
    camera = (await start_cameras(CameraSpec("periodic")))["periodic"]
    driver = CameraHealthDriver(_Cameras([target_of(camera)]), interval=0.2, per_camera_timeout=1)
    sink = RecordingSink()

    task = asyncio.create_task(driver.run(sink))
    await eventually(lambda: len(sink.heartbeats) >= 3, within=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled()
    assert all(h.detail["state"] == "up_auth" for h in sink.heartbeats)


async def test_driver_survives_a_failing_camera_list_and_a_refusing_sink(
    start_cameras: StartCameras,
) -> None:
    camera = (await start_cameras(CameraSpec("lonely")))["lonely"]

    async def broken_list() -> Sequence[CameraTarget]:
        raise ConnectionError("registry unavailable")

    class RefusingSink(RecordingSink):
        async def heartbeat(self, item: object) -> None:
            raise LookupError("unknown device")

    assert await CameraHealthDriver(broken_list).sweep_once(RecordingSink()) == []
    results = await CameraHealthDriver(_Cameras([target_of(camera)])).sweep_once(RefusingSink())
    assert [r.state for r in results] == [HealthState.UP_AUTH]
