"""Live views of a camera that really streams: RTSP from the simulator, HLS through the hub."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from drivers.onvif.simulator import CameraSpec, SimulatedCamera, SimulatedProfile
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import assert_problem
from tests.support.cameras import StartCameras, onboard

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg is not installed (scripts/system-deps installs it)",
)

PROFILES = (
    SimulatedProfile("main_h264", "mainStream", "H264", 480, 270, 10),
    SimulatedProfile("sub_h264", "subStream", "H264", 320, 180, 10),
)


def streaming(name: str) -> CameraSpec:
    return CameraSpec(name, rtsp=True, profiles=PROFILES)


@pytest.fixture
async def live(
    cameras: CameraService, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CameraService]:
    """Short segments and a short idle timeout, so that a test takes seconds; no stream
    outlives its test (the hub serves the whole session)."""
    assert cameras.live is not None
    fast = cameras.settings.model_copy(
        update={
            "live_segment_s": 1.0,
            "live_idle_timeout_s": 1.5,
            "live_max_streams": 1,
            "live_start_timeout_s": 15.0,
        }
    )
    monkeypatch.setattr(cameras.live, "settings", fast)
    monkeypatch.setattr(cameras, "settings", fast)
    await cameras.live.stop_all()
    yield cameras
    await cameras.live.stop_all()


def ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    streams: list[dict[str, object]] = json.loads(out.stdout)["streams"]
    return streams[0]


async def playlist(client: httpx.AsyncClient, uid: str, stream: str = "sub") -> httpx.Response:
    return await client.get(f"/api/v1/cameras/{uid}/live/{stream}/index.m3u8", timeout=30)


async def two_segments(
    client: httpx.AsyncClient, uid: str, tmp_path: Path, stream: str = "sub"
) -> list[Path]:
    """Follow the playlist as a player does until two segments have arrived."""
    saved: dict[str, Path] = {}
    deadline = time.monotonic() + 20
    while len(saved) < 2:
        assert time.monotonic() < deadline, "two segments did not arrive in 20 s"
        response = await playlist(client, uid, stream)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        for name in re.findall(r"^(seg\d{5}\.ts)$", response.text, re.MULTILINE):
            if name not in saved:
                segment = await client.get(f"/api/v1/cameras/{uid}/live/{stream}/{name}")
                assert segment.status_code == 200, segment.text
                assert segment.headers["content-type"].startswith("video/mp2t")
                saved[name] = tmp_path / name
                saved[name].write_bytes(segment.content)
        await asyncio.sleep(0.5)
    return list(saved.values())


async def test_live_view_streams_hls_to_its_ward_and_stops_when_idle(
    clients: Clients,
    live: CameraService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    camera: SimulatedCamera = (await start_cameras(streaming("crossing")))["crossing"]
    uid = (await onboard(clients.technician, camera, "ward-a"))["uid"]

    segments = await two_segments(clients.staff_a, uid, tmp_path)

    for path in segments:
        probed = ffprobe(path)
        # Remuxed, not transcoded: the sub-stream's own codec and size.
        assert (probed["codec_name"], probed["width"], probed["height"]) == ("h264", 320, 180)
        assert int(str(probed["nb_read_frames"])) >= 3  # decodable video, not an empty file
    assert live.live is not None and live.live.running((uid, "sub")) is not None
    remux = live.live.streams[(uid, "sub")].remux
    assert camera.rtsp is not None and camera.rtsp.active_encoders == 1

    # The stream stops once nobody has fetched from it for the idle timeout.
    deadline = time.monotonic() + 10
    while remux.running or (uid, "sub") in live.live.streams:
        assert time.monotonic() < deadline, "the remux outlived the idle timeout"
        await asyncio.sleep(0.2)
    assert not remux.directory.exists()
    while camera.rtsp.active_encoders:  # the camera saw the RTSP session end
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)

    audit = await db.fetch(
        "SELECT action, actor, after FROM audit_log WHERE object_id = $1 AND action LIKE "
        "'camera.view%' ORDER BY id",
        uid,
    )
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("camera.view", "staff-a"),
        ("camera.view.end", "staff-a"),
    ]
    ended = (
        json.loads(audit[1]["after"]) if isinstance(audit[1]["after"], str) else audit[1]["after"]
    )
    assert ended["profile"] == "sub" and ended["seconds"] > 0


async def test_another_wards_user_is_refused_and_the_cap_refuses_the_next_stream(
    clients: Clients, live: CameraService, start_cameras: StartCameras, tmp_path: Path
) -> None:
    simulator = await start_cameras(streaming("pier-b"), streaming("pier-a"))
    in_b = (await onboard(clients.technician, simulator["pier-b"], "ward-b"))["uid"]
    in_a = (await onboard(clients.technician, simulator["pier-a"], "ward-a"))["uid"]

    refused = await playlist(clients.staff_a, in_b)
    assert_problem(refused, 404)
    segment = await clients.staff_a.get(f"/api/v1/cameras/{in_b}/live/sub/seg00000.ts")
    assert_problem(segment, 404)

    first = await playlist(clients.technician, in_b, "main")  # the cap is one stream
    assert first.status_code == 200, first.text
    capped = await playlist(clients.staff_a, in_a)
    body = assert_problem(capped, 503, "camera-stream-limit")
    assert "LIVE_MAX_STREAMS=1" in body["detail"]
    assert f"/api/v1/cameras/{in_a}/live.mjpeg" in body["detail"]
    # Joining the stream that runs is no new stream: it works beyond the cap.
    joined = await playlist(clients.admin, in_b, "main")
    assert joined.status_code == 200, joined.text
    [main] = [p for p in await two_segments(clients.admin, in_b, tmp_path, "main")][:1]
    assert ffprobe(main)["width"] == 480


async def test_mjpeg_fallback_delivers_frames(
    clients: Clients, live: CameraService, start_cameras: StartCameras
) -> None:
    camera = (await start_cameras(CameraSpec("no-rtsp")))["no-rtsp"]
    uid = (await onboard(clients.technician, camera, "ward-a"))["uid"]

    frames = 0
    started = time.monotonic()
    async with clients.staff_a.stream(
        "GET", f"/api/v1/cameras/{uid}/live.mjpeg", params={"fps": 2}, timeout=20
    ) as response:
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        assert content_type.startswith("multipart/x-mixed-replace")
        boundary = content_type.split("boundary=")[1].encode()
        received = b""
        async for chunk in response.aiter_bytes():
            received += chunk
            frames = received.count(b"--" + boundary + b"\r\nContent-Type: image/jpeg")
            if frames >= 3:
                break
    elapsed = time.monotonic() - started
    assert frames >= 3
    assert received.count(b"\xff\xd8\xff") >= 3  # JPEG images, one per part
    assert elapsed >= 0.9  # paced at 2 fps, not as fast as the camera answers
    assert camera.stats.snapshots_served >= 3


async def test_a_camera_that_cannot_stream_answers_with_its_health(
    clients: Clients, live: CameraService, start_cameras: StartCameras
) -> None:
    camera = (await start_cameras(streaming("cut-cable")))["cut-cable"]
    uid = (await onboard(clients.technician, camera, "ward-a"))["uid"]
    assert camera.rtsp is not None
    await camera.rtsp.stop()  # the RTSP server is gone; ONVIF still answers

    response = await playlist(clients.staff_a, uid)

    body = assert_problem(response, 502, "camera-unavailable")
    assert "last check: up_auth" in body["detail"]
