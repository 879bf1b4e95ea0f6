"""Ward staff schedule an announcement in the console, with a preview of its conflicts, and
find out which of their speakers played an earlier one."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from drivers.speaker.simulator import Fault
from tests.conftest import PASSWORD, Clients
from tests.support.broadcasts import (
    first_occurrence,
    local_in,
    register_speakers,
    report_when,
    simulated,
    upload_jingle,
)
from tests.support.hub import RunningHub

SHOTS = Path(os.environ.get("IOCHUB_SCREENSHOTS", tempfile.gettempdir())) / "iochub-e2e"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
FINAL = {"finished", "failed", "preempted"}

# The first broadcast plays seconds from now: the wards must have no quiet hours then.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("awake_wards")]


async def test_ward_staff_schedule_a_broadcast_and_read_who_played_one(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection, browser: Any
) -> None:
    speakers = await register_speakers(db, {"ward-a": 5, "ward-b": 2})
    amplifier, corrupted = speakers["ward-a"][3:]
    jingle = await upload_jingle(clients.admin)
    faults = {
        amplifier: frozenset({Fault.AMPLIFIER_FAULT}),
        corrupted: frozenset({Fault.CHECKSUM_MISMATCH}),
    }
    async with simulated(hub, speakers["ward-a"], faults):
        played = await clients.staff_a.post(
            "/api/v1/broadcasts",
            json={
                "title": "Thông báo lịch cắt điện",
                "targets": {"wards": ["ward-a"]},
                "starts_at": local_in(2.0),
                "audio_asset_id": jingle["id"],
            },
        )
        assert played.status_code == 201, played.text
        played_id = played.json()["broadcast"]["id"]
        occurrence_id = await first_occurrence(clients.staff_a, played_id)
        await report_when(
            clients.staff_a,
            occurrence_id,
            lambda r: len(r["speakers"]) == 5 and all(s["state"] in FINAL for s in r["speakers"]),
        )
    starts = (datetime.now(LOCAL) + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    for title, ward in (("Lịch thu gom rác", "ward-a"), ("Họp tổ dân phố phường B", "ward-b")):
        other = await clients.admin.post(
            "/api/v1/broadcasts",
            json={
                "title": title,
                "targets": {"wards": [ward]},
                "starts_at": starts.isoformat(),
                "audio_asset_id": jingle["id"],
            },
        )
        assert other.status_code == 201, other.text

    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        await page.goto(hub.base_url + "/")
        await page.fill("input[name=username]", "staff-a")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("table.devices")
        await page.click("nav >> text=Phát thanh")
        await page.wait_for_selector("table.broadcasts")
        listed = await page.inner_text("table.broadcasts tbody")
        assert "Thông báo lịch cắt điện" in listed and "Lịch thu gom rác" in listed
        assert "phường B" not in listed
        await page.screenshot(path=str(SHOTS / "broadcasts.png"))

        await page.click("text=New broadcast")
        await page.wait_for_selector("form.broadcast-form")
        assert await page.locator("input[name=wards]").count() == 1  # only the ward she serves
        assert await page.is_checked("input[name=wards][value=ward-a]")
        await page.fill("input[name=title]", "Thông báo tiêm chủng")
        await page.fill(
            "textarea[name=text]", "Sáng mai phường tổ chức tiêm chủng tại nhà văn hoá khu phố 3."
        )
        await page.fill("input[name=starts_at]", starts.strftime("%Y-%m-%dT%H:%M"))
        await page.select_option("select[name=repeat]", "custom")
        await page.fill("input[name=rrule]", "FREQ=SOMETIMES")
        await page.fill("input[name=volume]", "85")
        await page.click("button[value=preview]")
        await page.wait_for_selector(".error[role=alert]")
        assert "not a valid RFC 5545 RRULE" in await page.inner_text(".field-error")
        assert await page.input_value("input[name=rrule]") == "FREQ=SOMETIMES"
        await page.screenshot(path=str(SHOTS / "broadcast-form-error.png"), full_page=True)

        await page.select_option("select[name=repeat]", "daily")
        await page.click("button[value=preview]")
        await page.wait_for_selector(".plan h3.warn")
        plan = await page.inner_text(".plan")
        assert "1 conflict" in plan and "Lịch thu gom rác" in plan
        assert "this one moves to 10:00:" in plan
        # The form came back as it was typed.
        assert await page.input_value("input[name=title]") == "Thông báo tiêm chủng"
        assert await page.input_value("select[name=repeat]") == "daily"
        await page.screenshot(path=str(SHOTS / "broadcast-preview.png"), full_page=True)

        await page.click("button[value=save]")
        await page.wait_for_url(re.compile(r"/broadcasts/\d+\?saved=1$"))
        assert "Saved" in await page.inner_text(".notice")
        assert "every day" in await page.inner_text("dl.facts")
        await page.screenshot(path=str(SHOTS / "broadcast-saved.png"), full_page=True)

        await page.click("nav >> text=Phát thanh")
        await page.wait_for_selector("table.broadcasts")
        assert "Thông báo tiêm chủng" in await page.inner_text("table.broadcasts tbody")

        await page.click("text=Thông báo lịch cắt điện")
        await page.wait_for_selector("table.occurrences")
        await page.click("table.occurrences >> text=Report →")
        await page.wait_for_selector("table.speakers")
        rows = page.locator("table.speakers tbody tr")
        assert await rows.count() == 5
        states = {
            (await rows.nth(i).locator("td").nth(0).inner_text()).strip(): (
                await rows.nth(i).locator("td.state").inner_text()
            ).strip()
            for i in range(5)
        }
        assert states == {
            **{uid: "finished" for uid in speakers["ward-a"][:3]},
            amplifier: "failed",
            corrupted: "failed",
        }
        summary = await page.inner_text(".summary")
        assert re.search(r"3\s+finished", summary) and re.search(r"2\s+failed", summary)
        assert "amplifier fault" in await page.inner_text(f"tr:has-text('{amplifier}')")
        await page.screenshot(path=str(SHOTS / "occurrence-report.png"), full_page=True)

        await page.click(".chips >> text=failed")
        await page.wait_for_selector(".chip.on.state-failed")
        assert await rows.count() == 2
        await page.screenshot(path=str(SHOTS / "occurrence-report-failed.png"))
    finally:
        await page.close()
