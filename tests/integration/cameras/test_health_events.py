"""Camera health and events through the hub: sweeps into device status, PullPoint into history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from drivers.onvif.simulator import CameraFault, CameraSpec
from hub.cameras.health import CameraHealthService
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import app_state
from tests.support.cameras import StartCameras, onboard
from tests.support.hub import RunningHub


async def device(db: asyncpg.Connection, uid: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT d.status, d.status_reason, d.faults, c.health_state, c.latency_ms, "
        "c.clock_drift_s, c.last_probe_at, c.last_error "
        "FROM device d JOIN camera c ON c.device_id = d.id WHERE d.uid = $1",
        uid,
    )
    assert row is not None
    return row


def fresh_health_service(
    hub: RunningHub, cameras: CameraService, **settings: object
) -> CameraHealthService:
    """A health service of its own (as after a restart), with these camera settings changed."""
    state = app_state(hub)
    return CameraHealthService(
        state.database.pool,
        cameras.box,
        state.sink,
        cameras.settings.model_copy(update=settings),
    )


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within}s")
        await asyncio.sleep(0.05)
    return result


async def test_sweep_marks_down_cameras_offline_and_rejected_credentials_degraded(
    clients: Clients,
    cameras: CameraService,
    camera_health: CameraHealthService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    simulator = await start_cameras(CameraSpec("pole"), CameraSpec("kiosk"))
    pole = (await onboard(clients.technician, simulator["pole"]))["uid"]
    kiosk = (await onboard(clients.technician, simulator["kiosk"]))["uid"]

    await camera_health.sweep_once()
    for uid in (pole, kiosk):
        row = await device(db, uid)
        assert (row["status"], row["health_state"]) == ("online", "up_auth")
        assert row["latency_ms"] is not None and row["last_probe_at"] is not None

    await simulator["pole"].set_fault(CameraFault.DOWN)
    simulator["kiosk"].spec.password = "Changed-On-Site-1"
    await camera_health.sweep_once()

    row = await device(db, pole)
    assert (row["status"], row["health_state"]) == ("offline", "unreachable")
    assert "TCP connect failed" in row["last_error"]
    row = await device(db, kiosk)
    assert (row["status"], row["health_state"]) == ("degraded", "up_no_auth")
    assert row["faults"] == ["auth_failed"] and "auth_failed" in row["status_reason"]
    listed = await clients.viewer.get("/api/v1/cameras", params={"status": "degraded"})
    assert [c["uid"] for c in listed.json()["items"]] == [kiosk]

    # New credentials clear the fault at once; the camera coming back clears offline.
    updated = await clients.technician.put(
        f"/api/v1/cameras/{kiosk}/credentials",
        json={"username": "admin", "password": "Changed-On-Site-1"},
    )
    assert updated.status_code == 200, updated.text
    assert (await device(db, kiosk))["status"] == "online"
    await simulator["pole"].set_fault(CameraFault.NONE)
    await camera_health.sweep_once()
    assert [(await device(db, uid))["status"] for uid in (pole, kiosk)] == ["online", "online"]


async def test_hung_cameras_do_not_hold_up_the_sweep(
    hub: RunningHub,
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    simulator = await start_cameras(CameraSpec("ok"), CameraSpec("stuck"), CameraSpec("halfway"))
    uids = {
        name: (await onboard(clients.technician, simulator[name]))["uid"]
        for name in simulator.cameras
    }
    await simulator["stuck"].set_fault(CameraFault.HUNG)
    await simulator["halfway"].set_fault(CameraFault.HANG_MID_RESPONSE)
    fast = fresh_health_service(hub, cameras, health_timeout_s=1.0, health_concurrency=2)

    started = time.monotonic()
    results = await fast.sweep_once()
    elapsed = time.monotonic() - started

    # Two slots: the two hung cameras take one deadline together; the healthy one is not delayed.
    assert elapsed < 2.5, elapsed
    assert {r.device_uid: r.state.value for r in results} == {
        uids["ok"]: "up_auth",
        uids["stuck"]: "reachable",
        uids["halfway"]: "reachable",
    }
    assert (await device(db, uids["ok"]))["status"] == "online"
    for name in ("stuck", "halfway"):
        row = await device(db, uids[name])
        assert (row["status"], row["health_state"]) == ("offline", "reachable")


async def test_clock_drift_is_a_fault_that_clears_even_after_a_restart(
    hub: RunningHub,
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    spec = CameraSpec("tower", clock_offset_s=90.0)
    uid = (await onboard(clients.technician, (await start_cameras(spec))["tower"]))["uid"]

    await fresh_health_service(hub, cameras).sweep_once()
    row = await device(db, uid)
    assert (row["status"], row["faults"]) == ("degraded", ["clock_drift"])
    assert 88 < row["clock_drift_s"] < 92

    # After a restart the driver has no memory of the fault; the sweep still clears it.
    spec.clock_offset_s = 0.0
    await fresh_health_service(hub, cameras).sweep_once()
    row = await device(db, uid)
    assert (row["status"], row["faults"]) == ("online", [])
    assert abs(row["clock_drift_s"]) < 2
    cleared = await db.fetchval(
        "SELECT count(*) FROM device_event e JOIN device d ON d.id = e.device_id "
        "WHERE d.uid = $1 AND e.kind = 'clock_drift' AND NOT e.active",
        uid,
    )
    assert cleared >= 1


async def test_motion_and_tamper_reach_device_events(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras, db: asyncpg.Connection
) -> None:
    camera = (await start_cameras(CameraSpec("lobby")))["lobby"]
    uid = (await onboard(clients.technician, camera))["uid"]

    async def events(kind: str, active: bool) -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM device_event e JOIN device d ON d.id = e.device_id "
            "WHERE d.uid = $1 AND e.kind = $2 AND e.active = $3",
            uid,
            kind,
            active,
        )
        return count

    # The hub subscribes as soon as the camera is onboarded; the camera sends its state.
    await eventually(lambda: events("motion", False))
    camera.emit_motion(True)
    await eventually(lambda: events("motion", True))
    camera.emit_tamper(True)
    await eventually(lambda: events("tamper", True))

    async def degraded() -> bool:
        # The status follows the event's commit: wait for it rather than read it once.
        row = await device(db, uid)
        return bool(row["status"] == "degraded" and row["faults"] == ["tamper"])

    await eventually(degraded)
    detail = (await clients.viewer.get(f"/api/v1/cameras/{uid}")).json()
    assert [(e["kind"], e["active"]) for e in detail["recent_events"][:2]] == [
        ("tamper", True),
        ("motion", True),
    ]
    assert detail["recent_events"][1]["data"]["topic"] == "RuleEngine/CellMotionDetector/Motion"
