"""A ward's staff open a camera from the map and watch it live; an alert shows its cameras."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.onvif.simulator import CameraSpec, SimulatedProfile
from hub.cameras.service import CAMERAS, CameraService
from tests.conftest import PASSWORD, Clients
from tests.support.cameras import StartCameras, camera_starter
from tests.support.hub import RunningHub

SHOTS = Path(os.environ.get("IOCHUB_SCREENSHOTS", tempfile.gettempdir())) / "iochub-e2e"
HLS_JS = Path(__file__).parents[2] / "hub/web/static/vendor/hls.min.js"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
    pytest.mark.skipif(not HLS_JS.exists(), reason="hls.js is not vendored (make vendor)"),
]


@pytest.fixture
async def start_cameras() -> AsyncIterator[StartCameras]:
    async with camera_starter() as start:
        yield start


async def test_a_camera_opened_from_the_map_plays_live(
    hub: RunningHub,
    clients: Clients,
    browser: Any,
    start_cameras: StartCameras,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cameras: CameraService = hub.runtime.get(CAMERAS)
    assert cameras.live is not None
    monkeypatch.setattr(
        cameras.live, "settings", cameras.live.settings.model_copy(update={"live_segment_s": 1.0})
    )
    await cameras.live.stop_all()  # nothing left running by earlier tests of this hub
    spec = CameraSpec(
        "market",
        rtsp=True,
        profiles=(SimulatedProfile("sub", "subStream", "H264", 320, 180, 10),),
    )
    camera = (await start_cameras(spec))["market"]
    created = await clients.technician.post(
        "/api/v1/cameras",
        json={
            "host": camera.host,
            "port": camera.port,
            "username": spec.username,
            "password": spec.password,
            "ward": "ward-a",
            "name": "Market gate",
            "latitude": 20.861,
            "longitude": 106.69,
        },
    )
    assert created.status_code == 201, created.text
    uid = created.json()["uid"]

    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        await page.goto(hub.base_url + "/login")
        await page.fill("input[name=username]", "staff-a")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("table.devices")

        await page.goto(hub.base_url + "/map?kind=camera")
        await page.wait_for_selector("#map[data-ready=true]")
        await page.click(".device-marker.kind-camera")
        await page.click(f'.leaflet-popup a[href="/cameras/{uid}"]')
        await page.wait_for_url(f"**/cameras/{uid}")
        player = page.locator("figure.player")
        await page.wait_for_selector(
            'figure.player[data-state="playing"], figure.player[data-state="failed"]',
            timeout=30_000,
        )
        state = await player.get_attribute("data-state")
        caption = await player.locator("figcaption").inner_text()
        assert state == "playing", caption
        played = await page.evaluate("document.querySelector('figure.player video').currentTime")
        assert played > 0
        await page.screenshot(path=str(SHOTS / "camera-live.png"))

        # The camera goes away: the player says so, with the camera's health state.
        assert camera.rtsp is not None
        await camera.rtsp.stop()
        await page.reload()
        await page.wait_for_selector('figure.player[data-state="failed"]', timeout=60_000)
        # In the page's language (Vietnamese here), with the camera's own state name.
        assert "tình trạng: up_auth" in await player.locator("figcaption").inner_text()
    finally:
        await page.close()
        await cameras.live.stop_all()
