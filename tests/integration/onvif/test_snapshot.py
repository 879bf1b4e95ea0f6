"""Snapshots over real HTTP from simulated cameras: auth schemes, size and time limits."""

from __future__ import annotations

import time

import pytest

from drivers.onvif.client import CameraAuthError, CameraProtocolError, CameraTimeout, probe_camera
from drivers.onvif.simulator import SMALL_JPEG, CameraFault, CameraSpec
from drivers.onvif.snapshot import SnapshotTooLarge, fetch_snapshot
from tests.support.cameras import StartCameras


@pytest.mark.parametrize("scheme", ["digest", "basic", "none"])
async def test_snapshot_with_the_auth_the_camera_asks_for(
    start_cameras: StartCameras, scheme: str
) -> None:
    spec = CameraSpec("porch", snapshot_auth=scheme)
    camera = (await start_cameras(spec))["porch"]
    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password)
    assert probe.snapshot_uri is not None

    snapshot = await fetch_snapshot(
        probe.snapshot_uri, spec.username, spec.password, camera_host=camera.host
    )

    assert snapshot.content == SMALL_JPEG and snapshot.content_type == "image/jpeg"
    assert snapshot.content.startswith(b"\xff\xd8") and snapshot.content.endswith(b"\xff\xd9")
    assert camera.stats.snapshots_served == 1
    assert "content=" not in repr(snapshot)


async def test_credentials_in_the_uri_are_sent_as_a_header_instead(
    start_cameras: StartCameras,
) -> None:
    spec = CameraSpec("legacy", embed_credentials_in_uris=True)
    camera = (await start_cameras(spec))["legacy"]
    uri = f"http://{spec.username}:{spec.password}@{camera.host}:{camera.port}/onvif/snapshot/profile_sub.jpg?user={spec.username}&pwd={spec.password}"

    snapshot = await fetch_snapshot(uri, spec.username, spec.password)

    assert snapshot.size == len(SMALL_JPEG)


async def test_wrong_password_is_an_auth_error(start_cameras: StartCameras) -> None:
    spec = CameraSpec("locked")
    camera = (await start_cameras(spec))["locked"]
    uri = f"http://{camera.host}:{camera.port}/onvif/snapshot/profile_main.jpg"

    with pytest.raises(CameraAuthError) as raised:
        await fetch_snapshot(uri, spec.username, "guess", camera_host=camera.host)
    assert "guess" not in str(raised.value)


async def test_size_limit_is_enforced(start_cameras: StartCameras) -> None:
    spec = CameraSpec("4k", snapshot_image=SMALL_JPEG + b"\x00" * 200_000)
    camera = (await start_cameras(spec))["4k"]
    uri = f"http://{camera.host}:{camera.port}/onvif/snapshot/profile_main.jpg"

    with pytest.raises(SnapshotTooLarge) as raised:
        await fetch_snapshot(uri, spec.username, spec.password, max_bytes=64_000)
    assert not raised.value.retryable
    snapshot = await fetch_snapshot(uri, spec.username, spec.password, max_bytes=300_000)
    assert snapshot.size == 200_000 + len(SMALL_JPEG)


async def test_time_limit_is_enforced_on_a_stalled_transfer(start_cameras: StartCameras) -> None:
    spec = CameraSpec("stalling", snapshot_auth="none", fault=CameraFault.HANG_MID_RESPONSE)
    camera = (await start_cameras(spec))["stalling"]
    uri = f"http://{camera.host}:{camera.port}/onvif/snapshot/profile_main.jpg"

    started = time.monotonic()
    with pytest.raises(CameraTimeout):
        await fetch_snapshot(uri, spec.username, spec.password, timeout=0.5)
    assert time.monotonic() - started < 1.0


async def test_uri_pointing_elsewhere_never_gets_the_credentials(
    start_cameras: StartCameras,
) -> None:
    spec = CameraSpec("redirected")
    camera = (await start_cameras(spec))["redirected"]
    uri = f"http://127.0.0.2:{camera.port}/onvif/snapshot/profile_main.jpg"

    with pytest.raises(CameraProtocolError, match="not at the camera"):
        await fetch_snapshot(uri, spec.username, spec.password, camera_host=camera.host)
    assert camera.stats.snapshots_served == 0


async def test_a_web_server_error_page_is_a_protocol_error(start_cameras: StartCameras) -> None:
    spec = CameraSpec("web-only", fault=CameraFault.NOT_ONVIF)
    camera = (await start_cameras(spec))["web-only"]
    uri = f"http://{camera.host}:{camera.port}/onvif/snapshot/profile_main.jpg"

    with pytest.raises(CameraProtocolError, match="HTTP 404"):
        await fetch_snapshot(uri, spec.username, spec.password)
