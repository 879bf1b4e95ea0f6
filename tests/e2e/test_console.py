"""A technician logs in to the console and finds the district's loudspeakers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from hub.server.demo import DEMO_ADMIN, seed
from tests.conftest import Clients
from tests.support.console import choose_language
from tests.support.hub import RunningHub

SHOTS = Path(os.environ.get("IOCHUB_SCREENSHOTS", tempfile.gettempdir())) / "iochub-e2e"

pytestmark = pytest.mark.e2e


async def test_login_list_filter_and_map(hub: RunningHub, clients: Clients, browser: Any) -> None:
    # Only the demo admin: the suite's own technician keeps its password.
    password = (await seed(hub.settings, only_users=[DEMO_ADMIN]))[DEMO_ADMIN][1]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        # In English: the test reads the words on the pages.
        await choose_language(page, hub.base_url, "en")
        await page.goto(hub.base_url + "/")
        assert page.url.endswith("/login?next=/")
        await page.fill("input[name=username]", DEMO_ADMIN)
        await page.fill("input[name=password]", "not the password")
        await page.click("button[type=submit]")
        assert "wrong username or password" in await page.inner_text(".error")

        await page.fill("input[name=username]", DEMO_ADMIN)
        await page.fill("input[name=password]", password)
        await page.click("button[type=submit]")
        await page.wait_for_selector("table.devices")
        # the seeded sensors and speakers (the demo's cameras enter by being onboarded)
        assert "392" in await page.inner_text(".summary .tile")
        await page.select_option("select[name=kind]", "speaker")
        await page.click(".filters button[type=submit]")
        await page.wait_for_selector("table.devices")
        assert "speaker (272)" in await page.inner_text("select[name=kind]")
        rows = await page.locator("table.devices tbody tr").count()
        assert rows == 100  # the first page of 272
        assert await page.locator("a.more").count() == 1
        await page.screenshot(path=str(SHOTS / "devices.png"), full_page=False)

        await page.click("table.devices tbody tr >> nth=0 >> a")
        await page.wait_for_selector("dl.facts")
        assert "loudspeaker" in await page.inner_text("dl.facts")

        await page.goto(hub.base_url + "/map")
        await page.wait_for_selector("#map[data-ready=true]")
        # every seeded device is on the map, in clusters or alone, over the 8 ward outlines
        assert await page.evaluate("iochubMap.cluster.getLayers().length") == 392
        assert await page.locator(".device-cluster, .device-marker").count() > 0
        assert await page.locator("path.ward-outline").count() == 8
        await page.screenshot(path=str(SHOTS / "map.png"))

        await page.goto(hub.base_url + "/api/docs")
        await page.wait_for_selector(".swagger-ui .info", timeout=15_000)
        assert "iochub" in await page.inner_text(".swagger-ui .info")
        await page.screenshot(path=str(SHOTS / "api-docs.png"))

        await page.goto(hub.base_url + "/")
        await page.click("#logout")
        await page.wait_for_url("**/login")
        await page.goto(hub.base_url + "/")
        assert "/login" in page.url
    finally:
        await page.close()
