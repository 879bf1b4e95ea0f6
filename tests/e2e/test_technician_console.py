"""A technician watches the fleet from the console: a speaker goes silent, the home page
moves it to the top as offline without a reload (server-sent events), its alert opens on
the alerts page, and the technician acknowledges and resolves it there."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import PASSWORD, Clients
from tests.support.broadcasts import eventually, register_speakers, simulated
from tests.support.console import DESK, PHONE, check_page, choose_language, fits_the_width, log_in
from tests.support.hub import RunningHub

pytestmark = pytest.mark.e2e


async def status_of(client: httpx.AsyncClient, uid: str) -> str:
    return str((await client.get(f"/api/v1/devices/{uid}")).json()["status"])


async def test_a_silent_speaker_rises_to_the_top_and_its_alert_is_handled(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection, browser: Any
) -> None:
    speakers = await register_speakers(db, {"ward-a": 3})
    silent = speakers["ward-a"][1]
    # Pending devices lie outside the health monitor's ticks: a late one stays late, above
    # the online speakers, until ours goes offline and passes it.
    await db.execute(
        "INSERT INTO device (uid, kind, ward_id, lifecycle, status, status_reason, "
        "status_changed_at) SELECT 'late-gauge', 'sensor', id, 'pending', 'late', "
        "'silent for 2 min', now() FROM ward WHERE code = 'ward-a'"
    )
    rule = await clients.technician.post(
        "/api/v1/alert-rules",
        json={
            "name": "Speaker offline",
            "kind": "offline",
            "severity": "major",
            "scope": {"type": "kind", "value": "speaker"},
        },
    )
    assert rule.status_code == 201, rule.text

    page = await browser.new_page(viewport=DESK)
    try:
        async with simulated(hub, speakers.all) as fleet:
            for uid in speakers.all:
                await eventually(
                    lambda uid=uid: _online(clients.technician, uid), within_s=20, every_s=0.2
                )
            await log_in(page, hub.base_url, "technician", PASSWORD, language="en")
            await page.goto(hub.base_url + "/")
            await page.wait_for_selector("html[data-live=open]")
            first = page.locator("table.devices tbody tr").first
            assert await first.get_attribute("data-uid") == "late-gauge"
            await page.evaluate("window.notReloaded = true")

            # Its connection drops without a goodbye: the broker publishes its Last Will.
            await fleet.speaker(silent).power_off()
            await page.wait_for_function(
                "uid => { const row = document.querySelector('table.devices tbody tr');"
                " return row && row.dataset.uid === uid && row.dataset.status === 'offline'; }",
                arg=silent,
                timeout=20_000,
            )
            assert await page.evaluate("window.notReloaded === true")
            row = page.locator(f'tr[data-uid="{silent}"]')
            assert "disconnected" in await row.inner_text()
            await check_page(page, "home")
            await page.set_viewport_size(PHONE)
            await fits_the_width(page)
            await page.set_viewport_size(DESK)

            # The alert opens on the health monitor's next tick; the list shows it live.
            await page.goto(hub.base_url + "/alerts")
            await page.wait_for_selector("html[data-live=open]")
            await page.wait_for_selector("table.alerts tr[data-alert]", timeout=20_000)
            listed = page.locator("table.alerts tr[data-alert]").first
            assert silent in await listed.inner_text()
            alert_id = await listed.get_attribute("data-alert")
            await check_page(page, "alerts")
            await page.set_viewport_size(PHONE)
            await fits_the_width(page)
            await page.set_viewport_size(DESK)
            # A colleague assigns it through the API: the open list shows it without a reload.
            await page.wait_for_selector("html[data-live=open]")
            await page.evaluate("window.notReloaded = true")
            assigned = await clients.admin.post(
                f"/api/v1/alerts/{alert_id}/assign", json={"assignee": "staff-a"}
            )
            assert assigned.status_code == 200, assigned.text
            await page.wait_for_function(
                "id => (document.querySelector(`tr[data-alert='${id}']`) || {}).innerText"
                "?.includes('staff-a')",
                arg=alert_id,
                timeout=10_000,
            )
            assert await page.evaluate("window.notReloaded === true")

            await page.click(f'a[href="/alerts/{alert_id}"]')
            await page.wait_for_selector("dl.facts")
            await check_page(page, "alert")
            await choose_language(page, hub.base_url, "en")
            await page.reload()
            await page.click("form[action$='/acknowledge'] button")
            await page.wait_for_selector(".notice")
            assert "You acknowledged this alert." in await page.inner_text(".notice")
            await page.click("form[action$='/resolve'] button")
            await page.wait_for_selector(".badge.state-resolved")
            handled = (await clients.technician.get(f"/api/v1/alerts/{alert_id}")).json()
            assert handled["state"] == "resolved"
            assert handled["acknowledged_by"] == handled["resolved_by"] == "technician"

            await page.goto(hub.base_url + "/alerts/rules")
            assert "Speaker offline" in await page.inner_text("table.rules")
            await check_page(page, "alert-rules")
    finally:
        await page.close()


async def _online(client: httpx.AsyncClient, uid: str) -> bool:
    return await status_of(client, uid) == "online"
