"""Snapshots through the hub: fetched with the sealed credentials, bounded, ward-scoped."""

from __future__ import annotations

import pytest

from drivers.onvif.simulator import SMALL_JPEG, CameraFault, CameraSpec
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import assert_problem, tune
from tests.support.cameras import StartCameras, onboard

LARGE_JPEG = SMALL_JPEG[:-2] + b"\x00" * 20_000 + b"\xff\xd9"


async def test_snapshot_is_proxied_within_the_callers_wards(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(
        CameraSpec("digest-a", snapshot_auth="digest"), CameraSpec("basic-b", snapshot_auth="basic")
    )
    in_a = (await onboard(clients.technician, simulator["digest-a"], "ward-a"))["uid"]
    in_b = (await onboard(clients.technician, simulator["basic-b"], "ward-b"))["uid"]

    for client, uid in ((clients.staff_a, in_a), (clients.viewer, in_b)):
        response = await client.get(f"/api/v1/cameras/{uid}/snapshot")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "no-store"
        assert response.content == SMALL_JPEG
    assert simulator["digest-a"].stats.snapshots_served == 1
    assert simulator["basic-b"].stats.snapshots_served == 1

    # The map layer links each camera's snapshot.
    features = (await clients.viewer.get("/api/v1/devices.geojson")).json()["features"]
    assert {f["id"]: f["properties"]["snapshot"].rsplit("/api", 1)[1] for f in features} == {
        uid: f"/v1/cameras/{uid}/snapshot" for uid in (in_a, in_b)
    }

    # Outside ward staff's wards the camera does not exist, and the hub does not fetch.
    assert_problem(await clients.staff_a.get(f"/api/v1/cameras/{in_b}/snapshot"), 404)
    assert_problem(await clients.anonymous.get(f"/api/v1/cameras/{in_a}/snapshot"), 401)
    assert simulator["basic-b"].stats.snapshots_served == 1


async def test_snapshot_limits_and_camera_failures_are_problems(
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tune(monkeypatch, cameras, snapshot_max_bytes=8192, snapshot_timeout_s=1.0)
    spec = CameraSpec("big", snapshot_image=LARGE_JPEG)
    camera = (await start_cameras(spec))["big"]
    uid = (await onboard(clients.technician, camera))["uid"]
    url = f"/api/v1/cameras/{uid}/snapshot"

    body = assert_problem(await clients.viewer.get(url), 502, "camera-unavailable")
    assert "8192 bytes" in body["detail"]

    spec.snapshot_image = SMALL_JPEG
    spec.password = "Changed-On-Site-2"
    body = assert_problem(await clients.viewer.get(url), 502, "camera-unavailable")
    assert f"/api/v1/cameras/{uid}/credentials" in body["detail"]

    await camera.set_fault(CameraFault.HUNG)
    assert_problem(await clients.viewer.get(url), 504, "camera-timeout")
