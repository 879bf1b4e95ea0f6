"""Ward staff in the console, in Vietnamese: a recurring announcement scheduled with its
conflict shown and resolved as the form changes, heard before it is saved, found in the week
calendar, and the report of which speakers played its first occurrence; and an emergency
broadcast, confirmed after being told what it will do, followed on its report as the speakers
play it.
Each page is checked in both languages (axe-core, screenshots) and the calendar and the form
on a 360 px phone."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from drivers.speaker.simulator import Fault
from tests.conftest import PASSWORD, Clients
from tests.support.broadcasts import (
    heard_since,
    local_in,
    register_speakers,
    simulated,
    upload,
    upload_jingle,
)
from tests.support.console import DESK, PHONE, check_page, fits_the_width, log_in
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
OPEN = ("planned", "dispatching", "playing")
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

# Broadcasts play seconds from now: the wards must have no quiet hours then.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("awake_wards"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


async def test_ward_staff_schedule_a_recurring_broadcast_and_read_who_played_it(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection, browser: Any
) -> None:
    speakers = await register_speakers(db, {"ward-a": 5, "ward-b": 2})
    amplifier, corrupted = speakers["ward-a"][3:]
    jingle = await upload_jingle(clients.admin)
    faults = {
        amplifier: frozenset({Fault.AMPLIFIER_FAULT}),
        corrupted: frozenset({Fault.CHECKSUM_MISMATCH}),
    }
    # The ward's collection notice plays in 25 s: time to fill the form (about 5 s), typed to
    # the second so that the new announcement's first occurrence plays within the test.
    clash = (datetime.now(LOCAL) + timedelta(seconds=25)).replace(microsecond=0)
    for title, ward in (("Lịch thu gom rác", "ward-a"), ("Họp tổ dân phố phường B", "ward-b")):
        other = await clients.admin.post(
            "/api/v1/broadcasts",
            json={
                "title": title,
                "targets": {"wards": [ward]},
                "starts_at": clash.isoformat(),
                "audio_asset_id": jingle["id"],
            },
        )
        assert other.status_code == 201, other.text

    page = await browser.new_page(viewport=DESK)
    try:
        async with simulated(hub, speakers["ward-a"], faults):
            await log_in(page, hub.base_url, "staff-a", PASSWORD, language="vi")
            await page.click("nav >> text=Phát thanh")
            await page.click("text=Lịch phát mới")
            await page.wait_for_selector("form.broadcast-form")
            assert await page.locator("input[name=wards]").count() == 1  # the ward she serves
            assert await page.is_checked("input[name=wards][value=ward-a]")
            # Voices by name, not by id.
            voices = await page.locator("select[name=voice] option").all_inner_texts()
            assert "Giọng nam miền Bắc (Hà Nội)" in voices
            await page.fill("input[name=title]", "Thông báo tiêm chủng")
            # Nothing to say yet: the hub's answer is shown beside the button.
            await page.click(".tts-preview button.listen")
            await page.wait_for_selector(".tts-state.field-error")
            assert "Không đọc được văn bản" in await page.inner_text(".tts-state")
            await page.fill(
                "textarea[name=text]",
                "Sáng mai phường tổ chức tiêm chủng tại nhà văn hoá khu phố 3.",
            )
            await page.click(".tts-preview button.listen")
            await page.wait_for_selector("audio.tts-audio[data-bytes]", state="attached")
            assert "Xong" in await page.inner_text(".tts-state")
            await page.fill("input[name=start_date]", clash.strftime("%d/%m/%Y"))
            await page.fill("input[name=start_time]", clash.strftime("%H:%M:%S"))
            await page.select_option("select[name=repeat]", "weekly")
            await page.check(f"input[name=days][value={WEEKDAY_CODES[clash.weekday()]}]")
            await page.check("input[name=ends][value=count]")
            await page.fill("input[name=count]", "5")
            await page.fill("input[name=volume]", "85")
            # The panel refreshes by itself: the slot clashes with the collection notice.
            await page.wait_for_selector(".plan .conflict-count", timeout=20_000)
            plan = await page.inner_text(".plan")
            assert "Trùng lịch: 1" in plan and "Lịch thu gom rác" in plan
            assert "lịch này dời sang" in plan
            rule = await page.inner_text("#rule-words")
            assert "hằng tuần vào" in rule and ", 5 lần" in rule and "COUNT=5" in rule

            # Ten seconds later the notice (2 s, then 5 s of silence) is over: the panel says so.
            chosen = clash + timedelta(seconds=10)
            await page.fill("input[name=start_time]", chosen.strftime("%H:%M:%S"))
            await page.wait_for_selector(".plan .no-conflicts", timeout=20_000)
            assert "Không trùng lịch" in await page.inner_text(".plan")

            await page.click("button[value=save]")
            await page.wait_for_url(re.compile(r"/broadcasts/\d+\?saved=1$"))
            assert "Đã lưu" in await page.inner_text(".notice")
            facts = await page.inner_text("dl.facts")
            assert "hằng tuần vào" in facts and chosen.strftime("%H:%M:%S") in facts
            details = page.url.split("?")[0]
            await check_page(page, "broadcast-details")

            # Her list and week calendar: her ward's broadcasts, the other ward's not.
            await page.click("nav >> text=Phát thanh")
            await page.wait_for_selector("table.broadcasts")
            listed = await page.inner_text("table.broadcasts tbody")
            assert "Thông báo tiêm chủng" in listed and "Lịch thu gom rác" in listed
            assert "phường B" not in listed
            await check_page(page, "broadcasts")
            await page.click("text=Lịch tuần")
            await page.wait_for_selector("ol.week")
            day = page.locator(f'li.day[data-day="{chosen.date().isoformat()}"]')
            if not await day.count():  # past midnight on a Sunday: next week
                await page.click("a[rel=next]")
            assert "Thông báo tiêm chủng" in await day.inner_text()
            assert chosen.strftime("%H:%M") in await day.inner_text()
            await check_page(page, "broadcast-calendar")
            await page.set_viewport_size(PHONE)
            await fits_the_width(page)
            await page.goto(hub.base_url + "/broadcasts/new")
            await page.wait_for_selector("form.broadcast-form")
            await fits_the_width(page)
            await page.set_viewport_size(DESK)
            await check_page(page, "broadcast-form")

            # The first of the five plays on her speakers: it appears under "Played" (she
            # reloads the page) and its report follows them live.
            report = page.locator("table.occurrences a.report-link")
            for _ in range(90):
                await page.goto(details)
                if await report.count():
                    break
                await asyncio.sleep(1.0)
            await report.first.click()
            ended = ".occurrence-status" + "".join(f":not([data-status={s}])" for s in OPEN)
            await page.wait_for_selector(ended, timeout=90_000)
        # Two of her speakers could not play it: the occurrence ended partly failed.
        status = await page.get_attribute(".occurrence-status", "data-status")
        assert status == "partially_failed"
        rows = page.locator("table.speakers tbody tr")
        assert await rows.count() == 5
        states = {
            (await rows.nth(i).locator("td").nth(0).inner_text()).strip(): await rows.nth(i)
            .locator("td.state")
            .get_attribute("data-state")
            for i in range(5)
        }
        assert states == {
            **{uid: "finished" for uid in speakers["ward-a"][:3]},
            amplifier: "failed",
            corrupted: "failed",
        }
        summary = await page.inner_text(".summary")
        assert re.search(r"3\s+phát xong", summary) and re.search(r"2\s+lỗi", summary)
        assert "lỗi bộ khuếch đại" in await page.inner_text(f"tr:has-text('{amplifier}')")
        await check_page(page, "occurrence-report")

        await page.click(".chips a[data-state=failed]")
        await page.wait_for_selector(".chip.on.state-failed")
        assert await rows.count() == 2
    finally:
        await page.close()


async def test_an_emergency_broadcast_is_confirmed_then_followed_on_its_report(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection, browser: Any
) -> None:
    speakers = await register_speakers(db, {"ward-a": 3})
    jingle = await upload_jingle(clients.admin)
    long = await upload(clients.admin, tone(60.0), name="chương trình dài")
    assert long.status_code == 201, long.text
    page = await browser.new_page(viewport=DESK)
    since = datetime.now(UTC)
    async with simulated(hub, speakers["ward-a"]):
        await heard_since(clients.admin, speakers["ward-a"], since)
        programme = await clients.admin.post(
            "/api/v1/broadcasts",
            json={
                "title": "Chương trình ca nhạc",
                "targets": {"wards": ["ward-a"]},
                "starts_at": local_in(1.0),
                "audio_asset_id": long.json()["id"],
            },
        )
        assert programme.status_code == 201, programme.text
        try:
            await log_in(page, hub.base_url, "staff-a", PASSWORD, language="vi")
            await page.goto(hub.base_url + "/broadcasts")
            await page.click("a.button.emergency")
            await page.wait_for_selector("form.emergency-form")
            await page.fill("input[name=title]", "Cảnh báo ngập lụt")
            # The text can be heard here too, before deciding to send a recording instead.
            await page.fill("textarea[name=text]", "Khẩn cấp: nước sông đang lên.")
            await page.click(".tts-preview button.listen")
            await page.wait_for_selector("audio.tts-audio[data-bytes]", state="attached")
            await page.check("input[name=source][value=library]")
            await page.select_option("select[name=audio_asset_id]", str(jingle["id"]))
            assert await page.is_checked("input[name=wards][value=ward-a]")
            await page.click("form.emergency-form button[type=submit]")
            await page.wait_for_selector(".confirm-emergency")
            said = await page.inner_text(".confirm-emergency")
            assert "Phát ngay tại: Phường A." in said
            assert "Số loa sẽ phát: 3." in said
            assert "Chương trình ca nhạc" in said  # what it interrupts
            await check_page(page, "emergency-confirmation")

            await page.click("button[value=send]")
            # The report opens once the scheduler has taken it up, and follows the speakers.
            await page.wait_for_url(re.compile(r"/broadcasts/\d+/occurrences/\d+"), timeout=20_000)
            await page.wait_for_selector(
                ".occurrence-status[data-status=completed]", timeout=30_000
            )
            assert "Cảnh báo ngập lụt" in await page.inner_text("h1")
            assert "KHẨN CẤP" in (await page.inner_text("h1")).upper()
            states = await page.locator("table.speakers td.state").evaluate_all(
                "cells => cells.map(c => c.dataset.state)"
            )
            assert states == ["finished"] * 3
        finally:
            await page.close()
