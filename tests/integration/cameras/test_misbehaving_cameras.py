"""Cameras that misbehave the ways real ones do, onboarded and swept through the hub."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from drivers.onvif.simulator import CameraFault, CameraSpec
from hub.cameras.health import CameraHealthService
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import assert_problem
from tests.support.cameras import StartCameras, onboard, onboarding

TWELVE_YEARS_S = 12 * 365 * 86400.0


async def test_an_unreadable_snapshot_reply_leaves_the_camera_onboarded_without_snapshots(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    spec = CameraSpec("captured", malformed_replies=frozenset({"GetSnapshotUri"}))
    camera = (await start_cameras(spec))["captured"]

    created = await onboard(clients.technician, camera)

    assert created["snapshot"] is None
    unavailable = created["capabilities"]["unavailable"]
    assert set(unavailable) == {"GetSnapshotUri profile_main", "GetSnapshotUri profile_sub"}
    assert all("well-formed" in reason or "SOAP" in reason for reason in unavailable.values())
    assert all(p["stream_uri"] for p in created["profiles"])


async def test_an_unreadable_required_reply_answers_502_naming_the_call(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    spec = CameraSpec("no-profiles", malformed_replies=frozenset({"GetProfiles"}))
    camera = (await start_cameras(spec))["no-profiles"]

    response = await clients.technician.post("/api/v1/cameras", json=onboarding(camera))

    body = assert_problem(response, 502, "camera-unavailable")
    assert "GetProfiles" in body["detail"]
    assert "check the port" not in body["detail"]  # the port is right: the other calls worked


async def test_a_camera_twelve_years_off_is_onboarded_degraded_with_its_drift(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras, db: asyncpg.Connection
) -> None:
    spec = CameraSpec("old-clock", clock_offset_s=-TWELVE_YEARS_S)
    camera = (await start_cameras(spec))["old-clock"]

    created = await onboard(clients.technician, camera)

    # The same assessment as a sweep, at once: not "online" until the next sweep.
    assert created["status"] == "degraded", created
    assert "clock_drift" in created["status_reason"]
    assert abs(created["health"]["clock_drift_s"] + TWELVE_YEARS_S) < 2
    faults = await db.fetchval("SELECT faults FROM device WHERE uid = $1", created["uid"])
    assert list(faults) == ["clock_drift"]


async def test_a_camera_authenticating_its_clock_is_onboarded_on_its_own_time(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    strict = CameraSpec("strict", authenticate_everything=True, clock_offset_s=-TWELVE_YEARS_S)
    mute = CameraSpec(
        "mute", authenticate_everything=True, http_date=False, clock_offset_s=-TWELVE_YEARS_S
    )
    simulator = await start_cameras(strict, mute)

    created = await onboard(clients.technician, simulator["strict"])
    refused = await clients.technician.post("/api/v1/cameras", json=onboarding(simulator["mute"]))

    assert abs(created["health"]["clock_drift_s"] + TWELVE_YEARS_S) < 2
    body = assert_problem(refused, 422, "camera-credentials-rejected")
    assert "clock may be the cause" in body["detail"]


async def test_clock_drift_keeps_its_own_time_when_a_check_cannot_read_the_clock(
    clients: Clients,
    cameras: CameraService,
    camera_health: CameraHealthService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    camera = (await start_cameras(CameraSpec("fading", clock_offset_s=40.0)))["fading"]
    uid = (await onboard(clients.technician, camera))["uid"]
    await camera_health.sweep_once()
    read = (await clients.viewer.get(f"/api/v1/cameras/{uid}")).json()["health"]
    assert read["clock_checked_at"] == read["checked_at"]

    await camera.set_fault(CameraFault.HUNG)  # TCP answers, ONVIF (and its clock) does not
    await camera_health.sweep_once()

    stale = (await clients.viewer.get(f"/api/v1/cameras/{uid}")).json()["health"]
    assert stale["state"] == "reachable"
    assert datetime.fromisoformat(stale["checked_at"]) > datetime.fromisoformat(read["checked_at"])
    assert stale["clock_checked_at"] == read["clock_checked_at"]
    assert stale["clock_drift_s"] == read["clock_drift_s"]
    await camera.set_fault(CameraFault.NONE)
