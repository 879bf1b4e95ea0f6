"""The console's week calendar, the scheduling form's day-first dates, 24-hour times and
recurrence in words, its live "Before saving" panel, listening to the text before saving,
and the emergency broadcast's confirmation; ward staff see only their wards throughout."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from tests.conftest import Clients
from tests.integration.web.conftest import Session
from tests.integration.web.test_broadcast_pages import (
    HTML,
    count,
    field_errors,
    form,
    submit,
    tomorrow_at,
)
from tests.support.broadcasts import PROBLEM, Speakers, eventually, local_in, upload
from tests.unit.broadcasts.sounds import tone

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)

# Broadcasts here are planned at any local hour (23:30 included): no quiet hours.
pytestmark = pytest.mark.usefixtures("awake_wards")


def days_of(page: str) -> dict[date, str]:
    """The calendar's days, each with its HTML."""
    found = {}
    for chunk in page.split('<li class="day')[1:]:
        day = re.search(r'data-day="([\d-]+)"', chunk)
        assert day is not None
        found[date.fromisoformat(day[1])] = chunk
    return found


def monday_of(moment: datetime) -> date:
    local = moment.astimezone(LOCAL).date()
    return local - timedelta(days=local.weekday())


def at(day: date, hour: int, minute: int) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LOCAL).isoformat()


async def schedule(client: httpx.AsyncClient, audio_id: int, **fields: Any) -> int:
    body = {"targets": {"wards": ["ward-a"]}, "audio_asset_id": audio_id} | fields
    response = await client.post("/api/v1/broadcasts", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["broadcast"]["id"])


@pytest.mark.any_hour
async def test_the_week_calendar_puts_each_occurrence_on_its_local_day(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    this_monday = monday_of(datetime.now(LOCAL))
    week = this_monday + timedelta(days=7)  # next week: wholly ahead, whatever the hour
    # 06:30 local is 23:30 UTC the day before; 00:15 local on the Monday after is still
    # Sunday in UTC; 23:30 local Sunday is the week's last half hour.
    weekly = await schedule(
        clients.admin,
        jingle["id"],
        title="Phát thanh sáng",
        starts_at=at(week, 6, 30),
        rrule="FREQ=WEEKLY;BYDAY=MO,TH",
    )
    await schedule(
        clients.admin, jingle["id"], title="Cuối tuần", starts_at=at(week + timedelta(6), 23, 30)
    )
    await schedule(
        clients.admin, jingle["id"], title="Tuần sau nữa", starts_at=at(week + timedelta(7), 0, 15)
    )
    await schedule(
        clients.admin,
        jingle["id"],
        title="Khẩn cấp phường B",
        targets={"wards": ["ward-b"]},
        starts_at=at(week + timedelta(2), 9, 0),
        priority="emergency",
    )

    # The default week is the current local one, with links to its neighbours.
    current = await clients.staff_a.get("/broadcasts/calendar")
    assert current.status_code == 200, current.text
    assert sorted(days_of(current.text)) == [this_monday + timedelta(n) for n in range(7)]
    assert f'href="/broadcasts/calendar?week={week.isoformat()}"' in current.text
    previous = (this_monday - timedelta(7)).isoformat()
    assert f'href="/broadcasts/calendar?week={previous}"' in current.text

    page = await clients.staff_a.get("/broadcasts/calendar", params={"week": week.isoformat()})
    assert page.status_code == 200
    days = days_of(page.text)
    assert sorted(days) == [week + timedelta(n) for n in range(7)]
    with_morning = [d for d, html in days.items() if "Phát thanh sáng" in html]
    assert with_morning == [week, week + timedelta(3)]  # Monday and Thursday, local
    assert '<time datetime="' in days[week] and ">06:30</time>" in days[week]
    assert f'href="/broadcasts/{weekly}"' in days[week]
    assert "Cuối tuần" in days[week + timedelta(6)] and ">23:30</time>" in days[week + timedelta(6)]
    assert "Tuần sau nữa" not in page.text  # next Monday, though UTC says Sunday
    assert "Khẩn cấp phường B" not in page.text  # another ward's
    # Levels in words, not colour alone; days named in Vietnamese.
    assert "Thông thường" in days[week] and "Thứ Hai" in days[week]
    assert "Phường A" in days[week]  # wards by name
    assert "Không có lịch phát" in days[week + timedelta(1)]  # nothing on Tuesday

    # An admin sees every ward, the emergency marked as such.
    admin = await clients.admin.get("/broadcasts/calendar", params={"week": week.isoformat()})
    wednesday = days_of(admin.text)[week + timedelta(2)]
    assert "Khẩn cấp phường B" in wednesday and "level-emergency" in wednesday
    english = await clients.admin.get(
        "/broadcasts/calendar", params={"week": week.isoformat()}, cookies={"iochub_lang": "en"}
    )
    assert "Emergency" in days_of(english.text)[week + timedelta(2)]
    assert "Monday" in english.text

    # A week named by any of its days is that week; a wrong one is a clear 404 page.
    mid = await clients.staff_a.get(
        "/broadcasts/calendar", params={"week": (week + timedelta(3)).isoformat()}
    )
    assert sorted(days_of(mid.text))[0] == week
    wrong = await clients.staff_a.get("/broadcasts/calendar?week=someday", headers=HTML)
    assert wrong.status_code == 404 and wrong.headers["content-type"].startswith("text/html")


async def test_dates_and_times_are_typed_day_first_and_24_hour(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, staff_session: Session
) -> None:
    start = tomorrow_at(6, 30)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"start_date": "31/02/2027"}, "start_date", "không có ngày này trên lịch"),
        ({"start_date": "2027/01/05"}, "start_date", "viết ngày theo dạng dd/mm/yyyy"),
        ({"start_date": ""}, "start_date", "chọn ngày phát đầu tiên"),
        ({"start_time": "25:00"}, "start_time", "viết giờ theo dạng HH:MM"),
        ({"start_time": "6:30 PM"}, "start_time", "đồng hồ 24 giờ"),
        ({"repeat": "weekly"}, "days", "chọn ít nhất một ngày trong tuần"),
        ({"repeat": "monthly", "month_day": "32"}, "month_day", "từ 1 đến 31"),
        (
            {
                "repeat": "daily",
                "ends": "until",
                "until": (start - timedelta(days=1)).strftime("%d/%m/%Y"),
            },
            "until",
            "ngày cuối đứng trước ngày đầu",
        ),
        ({"repeat": "daily", "ends": "count", "count": "0"}, "count", "từ 1 đến 1000"),
        ({"repeat": "daily", "exdates": "mai"}, "exdates", "mai không phải là ngày"),
    ]
    for overrides, name, expected in cases:
        response = await submit(staff_session, form(**overrides))
        assert response.status_code == 422, (overrides, response.text)
        # The message sits next to its field, and the form comes back as typed.
        beside = re.findall(rf'data-field="{name}" class="field-error">([^<]*)<', response.text)
        assert any(expected in m for m in beside), (overrides, field_errors(response.text))
        for key, value in overrides.items():
            if key not in ("repeat", "ends") and value:
                assert f'value="{value}"' in response.text, (key, value)
    assert await count(db, "broadcast") == 0

    saved = await submit(
        staff_session,
        form(
            start_date=f"{start.day}/{start.month}/{start.year}",  # no leading zeros
            start_time="6h30",
            repeat="weekly",
            days=["MO", "TH"],
            ends="count",
            count="8",
        ),
    )
    assert saved.status_code == 303, saved.text
    row = await db.fetchrow("SELECT starts_at, rrule FROM broadcast")
    assert row["rrule"] == "FREQ=WEEKLY;BYDAY=MO,TH;COUNT=8"
    local = row["starts_at"].astimezone(LOCAL)
    assert (local.date(), local.hour, local.minute) == (start.date(), 6, 30)
    details = await staff_session.client.get(saved.headers["location"])
    assert "hằng tuần vào Thứ Hai và Thứ Năm, 8 lần" in details.text
    assert start.strftime("%d/%m/%Y") in details.text and "06:30:00" in details.text


async def test_the_before_saving_panel_follows_the_form(
    clients: Clients,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
    staff_session: Session,
) -> None:
    starts = tomorrow_at(10)
    other = await schedule(
        clients.admin, jingle["id"], title="Lịch thu gom rác", starts_at=starts.isoformat()
    )
    fields = form(source="library", audio_asset_id=str(jingle["id"]), repeat="daily")

    async def panel(**changes: Any) -> str:
        response = await staff_session.client.post(
            "/broadcasts/new/plan",
            data={"csrf_token": staff_session.csrf, **(fields | changes)},
            files={"file": ("", b"", "application/octet-stream")},
        )
        assert response.status_code == 200, response.text
        assert "<html" not in response.text  # the panel alone
        return response.text

    clash = await panel()
    assert "Trùng lịch: 1" in clash and f'href="/broadcasts/{other}"' in clash
    assert "hằng ngày" in clash and "FREQ=DAILY" in clash  # the rule, in words and as code
    resolved = await panel(start_time="10:05")
    assert "Không trùng lịch" in resolved and "Trùng lịch: 1" not in resolved
    incomplete = await panel(start_time="25:00")
    assert "viết giờ theo dạng HH:MM" in incomplete
    english = await staff_session.client.post(
        "/broadcasts/new/plan",
        data={"csrf_token": staff_session.csrf, **fields},
        files={"file": ("", b"", "application/octet-stream")},
        cookies={"iochub_lang": "en"},
    )
    assert "Conflicts: 1" in english.text and "every day" in english.text
    forged = await staff_session.client.post(
        "/broadcasts/new/plan", data={"csrf_token": "forged", **fields}
    )
    assert forged.status_code == 403
    assert await count(db, "broadcast") == 1  # nothing saved by asking


@needs_espeak
async def test_the_text_is_heard_before_it_is_saved(
    clients: Clients, db: asyncpg.Connection, staff_session: Session
) -> None:
    headers = {"x-csrf-token": staff_session.csrf}
    spoken = await staff_session.client.post(
        "/api/v1/tts/preview",
        json={"text": "Kính thưa bà con khu phố 3.", "voice": "vi-vn-x-south"},
        headers=headers,
    )
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["content-type"].startswith("audio/wav")
    assert spoken.content[:4] == b"RIFF" and len(spoken.content) > 10_000
    assert await count(db, "audio_asset") == 0  # nothing kept

    empty = await staff_session.client.post(
        "/api/v1/tts/preview", json={"text": "  "}, headers=headers
    )
    assert empty.status_code == 422
    assert empty.headers["content-type"].startswith(PROBLEM)
    assert (
        await staff_session.client.post("/api/v1/tts/preview", json={"text": "Xin chào"})
    ).status_code == 403  # a cookie write needs the header
    viewer = await clients.viewer.post("/api/v1/tts/preview", json={"text": "Xin chào"})
    assert viewer.status_code == 403

    page = await staff_session.client.get("/broadcasts/new")
    assert 'data-url="/api/v1/tts/preview"' in page.text
    assert "Giọng nam miền Nam (Sài Gòn)" in page.text  # voices by name, not id
    assert ">vi-vn-x-south<" not in page.text


async def test_an_emergency_says_what_it_will_do_before_it_is_sent(
    clients: Clients,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
    staff_session: Session,
) -> None:
    long = await upload(clients.admin, tone(60.0), name="long programme")
    assert long.status_code == 201, long.text
    playing_from = datetime.now(UTC) + timedelta(seconds=1)
    playing = await schedule(
        clients.admin,
        long.json()["id"],
        title="Chương trình buổi sáng",
        starts_at=playing_from.isoformat(),
    )
    later = await schedule(
        clients.admin, jingle["id"], title="Ngày mai", starts_at=tomorrow_at(10).isoformat()
    )
    elsewhere = await schedule(
        clients.admin,
        long.json()["id"],
        title="Phường B đang phát",
        targets={"wards": ["ward-b"]},
        starts_at=local_in(1.0),
    )

    page = await staff_session.client.get("/broadcasts/emergency")
    assert page.status_code == 200
    assert re.findall(r'name="wards" value="([^"]+)" checked', page.text) == ["ward-a"]
    fields = {
        "title": "Cảnh báo ngập lụt",
        "source": "library",
        "audio_asset_id": str(jingle["id"]),
        "wards": ["ward-a"],
        "volume": "100",
    }
    # The confirmation is a page of its own (nothing is sent by looking at it).
    # Asked once the programme has begun (it plays for a minute): it is told as playing now.
    await asyncio.sleep(max(0.0, (playing_from - datetime.now(UTC)).total_seconds()) + 0.3)
    confirm = await staff_session.client.get("/broadcasts/emergency/confirm", params=fields)
    assert confirm.status_code == 200, confirm.text
    text = confirm.text
    assert "Phát bản tin khẩn cấp này ngay bây giờ?" in text
    assert "Phát ngay tại: Phường A." in text  # the ward by name
    assert "Số loa sẽ phát: 3." in text
    assert f'href="/broadcasts/{playing}">Chương trình buổi sáng</a>' in text
    assert "đang phát" in text  # it is playing now and will be interrupted
    assert (
        f'href="/broadcasts/{later}"' not in text and f'href="/broadcasts/{elsewhere}"' not in text
    )
    assert 'name="action" value="send"' in text
    assert await count(db, "broadcast") == 3  # nothing sent by asking

    outside = await staff_session.client.get(
        "/broadcasts/emergency/confirm", params=fields | {"wards": ["ward-b"]}
    )
    assert outside.status_code == 403
    assert "ward-b không thuộc các phường bạn phụ trách" in outside.text
    viewer = await clients.viewer.get("/broadcasts/emergency", headers=HTML)
    assert viewer.status_code == 403

    forged = await staff_session.client.post(
        "/broadcasts/emergency", data=fields | {"csrf_token": "forged"}
    )
    assert forged.status_code == 403
    sent = await staff_session.client.post(
        "/broadcasts/emergency", data=fields | {"csrf_token": staff_session.csrf}
    )
    assert sent.status_code == 303, sent.text
    report_link = sent.headers["location"]
    emergency_id = int(re.fullmatch(r"/broadcasts/(\d+)/report", report_link)[1])  # type: ignore[index]
    row = await db.fetchrow(
        "SELECT priority, ward_ids, created_by FROM broadcast WHERE id = $1", emergency_id
    )
    assert (row["priority"], row["created_by"]) == ("emergency", "staff-a")

    async def report() -> str | None:
        answer = await staff_session.client.get(report_link)
        return answer.headers["location"] if answer.status_code == 303 else None

    occurrence = await eventually(report, within_s=20)
    assert re.fullmatch(rf"/broadcasts/{emergency_id}/occurrences/\d+", occurrence)
    shown = await staff_session.client.get(occurrence)
    assert shown.status_code == 200 and "Cảnh báo ngập lụt" in shown.text
    assert "level-emergency" in shown.text


async def test_another_wards_broadcast_is_not_found_by_its_address(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any], staff_session: Session
) -> None:
    theirs = await schedule(
        clients.admin,
        jingle["id"],
        title="Phường B",
        targets={"wards": ["ward-b"]},
        starts_at=tomorrow_at(9).isoformat(),
    )
    for path in (f"/broadcasts/{theirs}", f"/broadcasts/{theirs}/report"):
        page = await staff_session.client.get(path, headers=HTML)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html")
        assert "Phường B" not in page.text
    cancel = await staff_session.client.post(
        f"/broadcasts/{theirs}/cancel", data={"csrf_token": staff_session.csrf}
    )
    assert cancel.status_code == 404
    assert (await clients.admin.get(f"/broadcasts/{theirs}")).status_code == 200
