"""A technician finds devices on the map and opens their pages: a sensor's readings and
history, a speaker's plays, a camera's health and snapshot; both languages pass axe-core,
and a device's page fits a phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from drivers.onvif.simulator import CameraSpec
from hub.server.demo import DEMO_ADMIN, seed
from tests.conftest import Clients
from tests.support.cameras import StartCameras, camera_starter, onboard
from tests.support.console import DESK, PHONE, check_page, fits_the_width, log_in
from tests.support.hub import RunningHub

pytestmark = pytest.mark.e2e


@pytest.fixture
async def start_cameras() -> AsyncIterator[StartCameras]:
    async with camera_starter() as start:
        yield start


@pytest.fixture
async def demo_admin(hub: RunningHub, clients: Clients) -> str:
    """The demo's fleet (392 sensors and speakers, 8 wards with outlines) and its admin."""
    password: str = (await seed(hub.settings, only_users=[DEMO_ADMIN]))[DEMO_ADMIN][1]
    return password


async def test_the_map_clusters_the_fleet_over_ward_outlines_and_fetches_nothing_outside(
    hub: RunningHub, browser: Any, demo_admin: str
) -> None:
    page = await browser.new_page(viewport=DESK)
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((hub.base_url, "data:"))
            else elsewhere.append(request.url)
        ),
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await log_in(page, hub.base_url, DEMO_ADMIN, demo_admin)
        await page.goto(hub.base_url + "/map")
        await page.wait_for_load_state()
        assert not errors, errors
        await page.wait_for_selector("#map[data-ready=true]")
        assert await page.evaluate("iochubMap.cluster.getLayers().length") == 392
        assert await page.locator("path.ward-outline").count() == 8
        clusters = page.locator(".device-cluster")
        assert await clusters.count() > 0
        shown = await page.evaluate(
            "[...document.querySelectorAll('.device-cluster span')]"
            ".reduce((n, e) => n + Number(e.textContent), 0)"
            " + document.querySelectorAll('.device-marker').length"
        )
        assert shown == 392  # each device once: in a group's count or on its own
        legend = await page.inner_text(".legend")
        assert "không rõ" in legend and "màu xám" in legend  # grey is explained
        await check_page(page, "map")

        # Filters are in the URL; a speaker's popup leads to its page.
        await page.goto(hub.base_url + "/map?kind=speaker&status=unknown&ward=may-chai")
        await page.wait_for_selector("#map[data-ready=true]")
        assert await page.evaluate("iochubMap.cluster.getLayers().length") == 34
        assert await page.locator("select[name=kind]").input_value() == "speaker"
        await page.goto(hub.base_url + "/map?focus=spk-may-chai-001")
        await page.wait_for_selector(".leaflet-popup a[href='/devices/spk-may-chai-001']")
        await page.click(".leaflet-popup a[href='/devices/spk-may-chai-001']")
        await page.wait_for_url("**/devices/spk-may-chai-001")
        assert "Loa Máy Chai 01" in await page.inner_text("h1")
    finally:
        await page.close()
    assert not elsewhere, elsewhere


async def test_device_pages_read_well_in_both_languages_and_on_a_phone(
    hub: RunningHub,
    clients: Clients,
    browser: Any,
    demo_admin: str,
    db: asyncpg.Connection,
    start_cameras: StartCameras,
) -> None:
    sensor = await db.fetchval("SELECT id FROM device WHERE uid = 'aq-may-chai-01'")
    now = datetime.now(UTC)
    await db.executemany(
        "INSERT INTO reading (device_id, metric, time, value) VALUES ($1, $2, $3, $4)",
        [
            (sensor, metric, now - timedelta(minutes=20 + 60 * k), base + k % 5)
            for k in range(20)
            for metric, base in (("pm2_5", 31.0), ("temperature", 27.5))
        ],
    )
    await db.execute(
        "INSERT INTO reading_latest (device_id, metric, time, value) VALUES "
        "($1, 'pm2_5', $2, 31), ($1, 'temperature', $2, 27.5)",
        sensor,
        now - timedelta(minutes=20),
    )
    await db.execute(
        "INSERT INTO health_event (device_id, at, from_status, to_status, reason) VALUES "
        "($1, $2, 'unknown', 'online', ''), ($1, $3, 'online', 'late', 'no reading for 2 min')",
        sensor,
        now - timedelta(hours=5),
        now - timedelta(hours=1),
    )
    camera = (await start_cameras(CameraSpec("gate", clock_offset_s=4.0)))["gate"]
    onboarded = await onboard(
        clients.technician,
        camera,
        "may-chai",
        name="Camera cổng chợ Máy Chai",
        latitude=20.8671,
        longitude=106.6961,
    )
    camera_uid = onboarded["uid"]

    page = await browser.new_page(viewport=DESK)
    try:
        await log_in(page, hub.base_url, DEMO_ADMIN, demo_admin)
        await page.goto(hub.base_url + "/devices/aq-may-chai-01")
        chart = page.locator("figure.chart[data-metric=pm2_5] svg[role=img]")
        assert await chart.count() == 1
        assert await page.locator("figure.chart[data-metric=pm2_5] circle.point").count() >= 19
        assert "chậm báo" in await page.inner_text("table.transitions")
        await check_page(page, "device-sensor")

        # Maintenance from the form, then ended.
        await page.fill("input[name=reason]", "thay bộ lọc")
        await page.click(".maintenance-form button[type=submit]")
        await page.wait_for_selector(".maintenance .notice")
        assert "Đang bảo trì đến" in await page.inner_text(".maintenance .notice")
        await page.click(".maintenance form button[type=submit]")
        await page.wait_for_selector(".maintenance-form")

        await page.goto(hub.base_url + "/devices/spk-may-chai-001")
        assert await page.locator("form.controls").count() == 1
        await check_page(page, "device-speaker")

        await page.goto(hub.base_url + f"/devices/{camera_uid}")
        await page.wait_for_selector("figure.snapshot img")
        loaded = await page.evaluate(
            "(() => { const i = document.querySelector('figure.snapshot img');"
            " return i.complete && i.naturalWidth > 0; })()"
        )
        assert loaded
        await check_page(page, "device-camera")

        await page.set_viewport_size(PHONE)
        for uid in ("aq-may-chai-01", "spk-may-chai-001", camera_uid):
            await page.goto(hub.base_url + f"/devices/{uid}")
            await fits_the_width(page)
        await check_page(page, "device-camera-phone", languages=("vi",))
    finally:
        await page.close()
