"""A technician finds a new camera from the console, onboards it with its credentials and
sees its snapshot on its page; the camera pages pass axe-core in both languages and the list
fits a phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from drivers.onvif.simulator import CameraSpec
from tests.conftest import PASSWORD, Clients
from tests.support.cameras import StartCameras, camera_starter
from tests.support.console import (
    PHONE,
    SHOTS,
    axe_violations,
    check_page,
    describe,
    fits_the_width,
    log_in,
)
from tests.support.hub import RunningHub

pytestmark = pytest.mark.e2e


@pytest.fixture
async def start_cameras(db: asyncpg.Connection, clients: Clients) -> AsyncIterator[StartCameras]:
    await db.execute("TRUNCATE camera_candidate RESTART IDENTITY")
    async with camera_starter() as start:
        yield start


async def test_a_technician_discovers_onboards_and_sees_a_camera(
    hub: RunningHub, clients: Clients, browser: Any, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("depot", password="Depot-Pw-2026"))
    port = await simulator.start_discovery()
    depot = simulator["depot"]

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        await log_in(page, hub.base_url, "technician", PASSWORD, language="vi")
        await page.goto(hub.base_url + "/cameras")
        await page.click("a[href='/cameras/discover']")
        await page.wait_for_url("**/cameras/discover")

        # Probe where the simulated camera answers WS-Discovery.
        await page.fill("textarea[name=targets]", f"127.0.0.1:{port}")
        await page.fill("input[name=wait_s]", "0.5")
        await page.click("form[action='/cameras/discover'] button[type=submit]")
        candidate = page.locator(
            "article.candidate",
            has=page.locator(f"input[name=candidate][value='{depot.endpoint_ref}']"),
        )
        await candidate.wait_for()
        assert f"{depot.host}:{depot.port}" in await candidate.inner_text()
        # The answer to the form, as it is (check_page reloads the page with a GET).
        await page.screenshot(path=str(SHOTS / "camera-discovery-results-vi.png"), full_page=True)
        violations = await axe_violations(page)
        assert not violations, describe(violations)
        await check_page(page, "camera-discovery")

        form = page.locator(
            "article.candidate",
            has=page.locator(f"input[name=candidate][value='{depot.endpoint_ref}']"),
        ).locator("form.onboard")
        await form.locator("input[name=name]").fill("Kho vật tư")
        await form.locator("select[name=ward]").select_option("ward-a")
        await form.locator("input[name=username]").fill(depot.spec.username)

        # A wrong password first: the page says so, and keeps the rest of the form.
        await form.locator("input[name=password]").fill("wrong-password")
        await form.locator("button[type=submit]").click()
        await page.wait_for_selector("article.candidate .error")
        form = page.locator(
            "article.candidate",
            has=page.locator(f"input[name=candidate][value='{depot.endpoint_ref}']"),
        ).locator("form.onboard")
        assert "Camera từ chối tên đăng nhập hoặc mật khẩu" in await form.inner_text()
        assert await form.locator("input[name=name]").input_value() == "Kho vật tư"
        assert await form.locator("input[name=password]").input_value() == ""
        await form.locator("input[name=password]").fill(depot.spec.password)
        await form.locator("button[type=submit]").click()
        await page.wait_for_url("**/cameras/cam-*?onboarded=1")

        # Its page: the snapshot comes through the hub.
        await page.wait_for_function(
            "() => { const i = document.querySelector('figure.snapshot img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert "Kho vật tư" in await page.inner_text("h1")
        camera_path = page.url.removeprefix(hub.base_url).split("?")[0]
        await check_page(page, "camera-page")

        await page.goto(hub.base_url + "/cameras")
        assert "Kho vật tư" in await page.inner_text("table.cameras")
        await check_page(page, "cameras")
        await page.set_viewport_size(PHONE)
        await page.reload()
        await page.screenshot(path=str(SHOTS / "cameras-vi-360px.png"), full_page=True)
        await fits_the_width(page)
        for path in ("/cameras/discover", camera_path):
            await page.goto(hub.base_url + path)
            await fits_the_width(page)
    finally:
        await page.close()
