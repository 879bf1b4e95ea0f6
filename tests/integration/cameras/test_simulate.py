"""`iochub simulate cameras` as its own process: cameras served, onboarded, usable by the hub."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.support.hub import RunningHub

RUN = """
import asyncio
from hub.cameras.simulate import run_camera_simulation
from hub.server.settings import Settings
asyncio.run(run_camera_simulation(2, register_ward="ward-b", settings=Settings(), rtsp=True))
"""


async def test_simulated_cameras_are_registered_and_reachable(
    hub: RunningHub, clients: Clients, cameras: CameraService
) -> None:
    env = {
        **os.environ,
        "IOCHUB_DATABASE__URL": hub.settings.database.url.get_secret_value(),
        "IOCHUB_SECRET_KEY": hub.settings.secret_key.get_secret_value()
        if hub.settings.secret_key
        else "",
        "IOCHUB_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not (lines and lines[-1].startswith("WS-Discovery answers")):
                lines.append((await process.stdout.readline()).decode().strip())
                assert lines[-1] or process.returncode is None, lines
        assert lines[0].startswith("2 simulated ONVIF cameras on 127.0.0.1")
        assert "Cam-Passw0rd" in lines[0]
        listed = (await clients.viewer.get("/api/v1/cameras")).json()["items"]
        assert sorted(c["name"] for c in listed) == ["cam-001", "cam-002"]
        assert {c["ward"] for c in listed} == {"ward-b"}
        for camera in listed:
            assert camera["uid"] in "\n".join(lines)
            # The hub opens what the simulation sealed: same key, same camera.
            snapshot = await clients.viewer.get(f"/api/v1/cameras/{camera['uid']}/snapshot")
            assert snapshot.status_code == 200, snapshot.text
            # They stream: H.264 over RTSP on a port of their own, not the default 554.
            for profile in camera["profiles"]:
                assert profile["codec"] == "H264" and ":554/" not in profile["stream_uri"]
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 10)
