"""PullPoint subscriptions against simulated cameras: events, renewal, re-subscription."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import pytest

from drivers.contract import Driver
from drivers.onvif.client import CameraTarget
from drivers.onvif.events import CameraEventsDriver, PullPointSettings, PullPointSubscriber
from drivers.onvif.simulator import CameraSpec, SimulatedCamera
from tests.integration.onvif.support import RecordingSink, eventually, target_of
from tests.support.cameras import StartCameras

FAST = PullPointSettings(
    termination_s=2.0,
    pull_wait_s=0.5,
    call_timeout_s=2.0,
    retry_initial_s=0.1,
    retry_max_s=0.5,
    recheck_s=0.3,
)


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _subscribe(
    camera: SimulatedCamera, sink: RecordingSink, tasks: list[asyncio.Task[None]]
) -> PullPointSubscriber:
    subscriber = PullPointSubscriber(target_of(camera), FAST)
    tasks.append(asyncio.create_task(subscriber.run(sink)))
    return subscriber


async def test_motion_and_tamper_arrive_as_device_events(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    camera = (await start_cameras(CameraSpec("lobby")))["lobby"]
    sink = RecordingSink()
    _subscribe(camera, sink, running)

    # A new subscription starts with the current state of each property.
    await eventually(lambda: len(sink.events) == 2)
    assert {(e.kind, e.active, e.data["operation"]) for e in sink.events} == {
        ("motion", False, "Initialized"),
        ("tamper", False, "Initialized"),
    }

    camera.emit_motion(True)
    camera.emit_tamper(True)
    camera.emit_motion(False)
    await eventually(lambda: len(sink.events) == 5)

    changed = [(e.kind, e.active) for e in sink.events[2:]]
    assert changed == [("motion", True), ("tamper", True), ("motion", False)]
    motion = sink.events[2]
    assert motion.device_uid == "uid-lobby"
    assert motion.data["topic"] == "RuleEngine/CellMotionDetector/Motion"
    assert motion.data["source"]["Rule"] == "MyMotionDetectorRule"
    assert motion.time.tzinfo is not None
    assert sink.rejections == []


async def test_subscription_is_renewed_before_it_expires(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    camera = (await start_cameras(CameraSpec("renewing")))["renewing"]
    sink = RecordingSink()
    subscriber = PullPointSubscriber(target_of(camera), replace(FAST, termination_s=1.0))
    running.append(asyncio.create_task(subscriber.run(sink)))

    # Lifetime 1 s, renewed at half of it: after 2 s, at least two renewals and
    # still the first subscription, alive and delivering.
    await asyncio.sleep(2.0)
    camera.emit_tamper(True)
    await eventually(lambda: any(e.kind == "tamper" and e.active for e in sink.events))

    assert subscriber.renewals >= 2 and camera.stats.renewals == subscriber.renewals
    assert subscriber.subscriptions_created == 1 == camera.stats.subscriptions_created
    assert camera.active_subscriptions == 1


async def test_subscription_is_recreated_after_the_camera_forgets_it(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    camera = (await start_cameras(CameraSpec("rebooting")))["rebooting"]
    sink = RecordingSink()
    subscriber = _subscribe(camera, sink, running)
    await eventually(lambda: camera.active_subscriptions == 1)

    camera.reboot_subscriptions()
    await eventually(lambda: subscriber.subscriptions_created == 2)
    camera.emit_motion(True)

    await eventually(lambda: any(e.kind == "motion" and e.active for e in sink.events))
    assert camera.active_subscriptions == 1


async def test_a_garbled_message_is_rejected_and_the_loop_goes_on(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    camera = (await start_cameras(CameraSpec("odd-firmware")))["odd-firmware"]
    sink = RecordingSink()
    _subscribe(camera, sink, running)
    await eventually(lambda: len(sink.events) == 2)

    camera.emit_garbled_motion()
    camera.emit_tamper(True)

    await eventually(lambda: len(sink.events) == 3)
    assert (sink.events[-1].kind, sink.events[-1].active) == ("tamper", True)
    [rejection] = sink.rejections
    assert rejection.source == "onvif-events" and rejection.device_uid == "uid-odd-firmware"
    assert "'perhaps' is not a boolean" in rejection.reason
    assert b"perhaps" in rejection.raw


async def test_camera_without_events_is_left_alone(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    camera = (await start_cameras(CameraSpec("mute", events=False)))["mute"]
    sink = RecordingSink()
    _subscribe(camera, sink, running)

    await eventually(lambda: camera.stats.operations["GetCapabilities"] >= 2)  # rechecked
    assert "CreatePullPointSubscription" not in camera.stats.operations
    assert sink.events == []


async def test_events_driver_follows_the_camera_list(start_cameras: StartCameras) -> None:
    simulator = await start_cameras(CameraSpec("east"), CameraSpec("west"))
    east, west = simulator["east"], simulator["west"]
    wanted: list[CameraTarget] = [target_of(east)]

    async def cameras() -> Sequence[CameraTarget]:
        return list(wanted)

    driver = CameraEventsDriver(cameras, refresh_interval=0.1, settings=FAST)
    assert isinstance(driver, Driver)
    sink = RecordingSink()
    task = asyncio.create_task(driver.run(sink))
    try:
        await eventually(lambda: east.active_subscriptions == 1)
        wanted[:] = [target_of(west)]
        await eventually(lambda: west.active_subscriptions == 1 and east.active_subscriptions == 0)
        west.emit_motion(True)
        await eventually(lambda: any(e.device_uid == "uid-west" and e.active for e in sink.events))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert west.active_subscriptions == 0  # unsubscribed on the way out


async def test_a_camera_answering_pulls_at_once_is_paced_and_its_repeats_dropped(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    # Seen in the field: PullMessages answered at once, whatever Timeout asked, repeating
    # "motion active=true" every time: thousands of identical events in half a minute.
    camera = (await start_cameras(CameraSpec("chatty", eager_pulls=True)))["chatty"]
    sink = RecordingSink()
    settings = replace(FAST, termination_s=30.0, pull_wait_s=0.3)
    subscriber = PullPointSubscriber(target_of(camera), settings)
    running.append(asyncio.create_task(subscriber.run(sink)))
    await eventually(lambda: len(sink.events) == 2)
    loop = asyncio.get_running_loop()
    started, pulls_before = loop.time(), camera.stats.operations["PullMessages"]

    camera.emit_motion(True)
    await asyncio.sleep(1.5)

    pulls = camera.stats.operations["PullMessages"] - pulls_before
    assert pulls <= (loop.time() - started) / settings.pull_wait_s + 2, pulls
    assert [(e.kind, e.active) for e in sink.events] == [
        ("motion", False),
        ("tamper", False),
        ("motion", True),
    ]
    assert subscriber.repeats_dropped >= 2


async def test_a_failing_renew_keeps_the_subscription_until_it_ends_then_backs_off(
    start_cameras: StartCameras, running: list[asyncio.Task[None]]
) -> None:
    camera = (await start_cameras(CameraSpec("no-renew", renew_fails=True)))["no-renew"]
    sink = RecordingSink()
    lifetime = 1.0
    subscriber = PullPointSubscriber(target_of(camera), replace(FAST, termination_s=lifetime))
    # The waits the subscriber chose, not the gaps a loaded machine stretches.
    waits: list[float] = []
    back_off = subscriber._back_off

    def recorded_back_off() -> float:
        waits.append(back_off())
        return waits[-1]

    subscriber._back_off = recorded_back_off  # type: ignore[method-assign]
    running.append(asyncio.create_task(subscriber.run(sink)))

    await asyncio.sleep(3.5)
    camera.emit_motion(True)
    await eventually(lambda: any(e.kind == "motion" and e.active for e in sink.events))

    created = camera.stats.subscribed_at
    assert 2 <= len(created) <= 4, created
    gaps = [later - earlier for earlier, later in itertools.pairwise(created)]
    # Each subscription is used until its termination time, and re-subscribing waits longer
    # each time: no burst of subscriptions, each re-sending the states already known.
    assert all(gap >= lifetime * 0.95 for gap in gaps), gaps
    assert len(waits) >= len(gaps) and waits == sorted(waits), waits
    assert camera.stats.operations["Renew"] >= len(created)
    assert [(e.kind, e.active) for e in sink.events] == [
        ("motion", False),
        ("tamper", False),
        ("motion", True),
    ]
