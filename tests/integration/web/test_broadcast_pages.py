"""The console's broadcast pages over HTTP: what each role sees, the scheduling form (its
preview, its errors, what it stores) and the CSRF protection of its writes."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from drivers.speaker.simulator import Fault
from tests.conftest import Clients
from tests.integration.web.conftest import Session, log_in
from tests.support.broadcasts import (
    Speakers,
    first_occurrence,
    local_in,
    report_when,
    simulated,
)
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
HTML = {"accept": "text/html"}
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)

# These play broadcasts seconds from now: the wards must have no quiet hours then.
pytestmark = pytest.mark.usefixtures("awake_wards")


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    """Local wall-clock time tomorrow (outside the default quiet hours for 6 <= hour < 22)."""
    day = datetime.now(LOCAL) + timedelta(days=1)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


def api_broadcast(
    audio_id: int, wards: list[str], starts: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "title": "Lịch thu gom rác",
        "targets": {"wards": wards},
        "starts_at": starts.isoformat(),
        "audio_asset_id": audio_id,
    } | extra


def form(**overrides: Any) -> dict[str, Any]:
    """The scheduling form as a browser sends it, for text-to-speech in ward-a."""
    return {
        "title": "Thông báo tiêm chủng",
        "source": "text",
        "text": "Sáng mai phường tổ chức tiêm chủng tại nhà văn hoá.",
        "voice": "vi",
        "start_date": tomorrow_at(10).strftime("%d/%m/%Y"),
        "start_time": "10:00",
        "repeat": "once",
        "rrule": "",
        "exdates": "",
        "wards": ["ward-a"],
        "volume": "80",
        "priority": "normal",
        "retry_window_minutes": "10",
        "action": "save",
    } | overrides


async def submit(
    session: Session, fields: dict[str, Any], csrf: str | None = None
) -> httpx.Response:
    """POST the form as multipart, as the page's form does (no file chosen unless given)."""
    files = fields.pop("files", {"file": ("", b"", "application/octet-stream")})
    return await session.client.post(
        "/broadcasts/new",
        data={"csrf_token": session.csrf if csrf is None else csrf, **fields},
        files=files,
    )


async def count(db: asyncpg.Connection, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


def field_errors(page: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", m) for m in re.findall(r'class="field-error">(.*?)</span>', page)
    ]


@pytest.mark.any_hour
async def test_every_page_renders_for_an_admin(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
) -> None:
    good, broken, _ = speakers["ward-a"]
    async with simulated(hub, [good, broken], {broken: frozenset({Fault.AMPLIFIER_FAULT})}):
        created = await clients.admin.post(
            "/api/v1/broadcasts",
            json={
                "title": "Loa phường A",
                "targets": {"speakers": [good, broken]},
                "starts_at": local_in(2.0),
                "audio_asset_id": jingle["id"],
            },
        )
        assert created.status_code == 201, created.text
        broadcast_id = created.json()["broadcast"]["id"]
        occurrence_id = await first_occurrence(clients.admin, broadcast_id)
        await report_when(
            clients.admin,
            occurrence_id,
            lambda r: {s["state"] for s in r["speakers"]} == {"finished", "failed"},
        )

    listing = await clients.admin.get("/broadcasts")
    assert listing.status_code == 200
    assert "Loa phường A" in listing.text
    assert 'href="/broadcasts/new"' in listing.text
    assert 'href="/broadcasts"' in listing.text  # the navigation

    new = await clients.admin.get("/broadcasts/new")
    assert new.status_code == 200
    # An admin is offered every ward there is (earlier tests may have added some).
    wards = sorted(r["code"] for r in await db.fetch("SELECT code FROM ward"))
    assert sorted(re.findall(r'name="wards" value="([^"]+)"', new.text)) == wards

    details = await clients.admin.get(f"/broadcasts/{broadcast_id}")
    assert details.status_code == 200
    report_link = f"/broadcasts/{broadcast_id}/occurrences/{occurrence_id}"
    assert report_link in details.text
    assert "không còn gì để phát" in details.text  # nothing more to play
    assert "Hủy lịch phát" not in details.text  # nothing left to cancel

    report = await clients.admin.get(report_link)
    assert report.status_code == 200, report.text
    rows = re.findall(
        r'<tr class="state-(\w+)">\s*<td class="uid"><a href="/devices/([^"]+)"', report.text
    )
    assert sorted(rows) == sorted([("finished", good), ("failed", broken)])
    assert "lỗi bộ khuếch đại" in report.text  # amplifier fault
    failed_only = await clients.admin.get(report_link, params={"state": "failed"})
    assert re.findall(r'<a href="/devices/([^"]+)"', failed_only.text) == [broken]
    elsewhere = await clients.admin.get(
        f"/broadcasts/{broadcast_id + 1}/occurrences/{occurrence_id}"
    )
    assert elsewhere.status_code == 404


async def test_ward_staff_see_only_their_wards(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    starts = tomorrow_at(9)
    ours = await clients.admin.post(
        "/api/v1/broadcasts", json=api_broadcast(jingle["id"], ["ward-a"], starts, title="Ours")
    )
    theirs = await clients.admin.post(
        "/api/v1/broadcasts",
        json=api_broadcast(jingle["id"], ["ward-a", "ward-b"], starts, title="Theirs"),
    )
    assert ours.status_code == theirs.status_code == 201, (ours.text, theirs.text)
    ours_id, theirs_id = ours.json()["broadcast"]["id"], theirs.json()["broadcast"]["id"]
    # Occurrences as the scheduler leaves them, at a time no slot has.
    occurrence = {}
    for broadcast_id in (ours_id, theirs_id):
        occurrence[broadcast_id] = await db.fetchval(
            "INSERT INTO broadcast_occurrence (broadcast_id, scheduled_at, status, claimed_by) "
            "VALUES ($1, now() - interval '1 day', 'completed', 'test') RETURNING id",
            broadcast_id,
        )

    listing = await clients.staff_a.get("/broadcasts")
    assert listing.status_code == 200
    assert "Ours" in listing.text and "Theirs" not in listing.text
    new = await clients.staff_a.get("/broadcasts/new")
    assert re.findall(r'name="wards" value="([^"]+)"', new.text) == ["ward-a"]

    assert (await clients.staff_a.get(f"/broadcasts/{ours_id}")).status_code == 200
    mine = f"/broadcasts/{ours_id}/occurrences/{occurrence[ours_id]}"
    assert (await clients.staff_a.get(mine)).status_code == 200
    for path in (
        f"/broadcasts/{theirs_id}",
        f"/broadcasts/{theirs_id}/occurrences/{occurrence[theirs_id]}",
        f"/broadcasts/{ours_id}/occurrences/{occurrence[theirs_id]}",
    ):
        assert (await clients.staff_a.get(path)).status_code == 404, path
    page = await clients.staff_a.get(f"/broadcasts/{theirs_id}", headers=HTML)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "no broadcast" in page.text and 'href="/broadcasts"' in page.text

    assert (await clients.viewer.get(f"/broadcasts/{theirs_id}")).status_code == 200
    viewer_list = await clients.viewer.get("/broadcasts")
    assert "Theirs" in viewer_list.text and 'href="/broadcasts/new"' not in viewer_list.text
    assert (await clients.viewer.get("/broadcasts/new")).status_code == 403


@needs_espeak
async def test_a_text_to_speech_broadcast_is_scheduled_through_the_form(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, staff_session: Session
) -> None:
    start = tomorrow_at(10)
    saturday = start + timedelta(days=(5 - start.weekday()) % 7)
    response = await submit(staff_session, form(repeat="weekdays", exdates=f"{saturday:%d/%m/%Y}"))
    # A skipped date that is no occurrence of the rule is refused: nothing of it stored.
    assert response.status_code == 422, response.text
    assert await count(db, "broadcast") == await count(db, "audio_asset") == 0

    response = await submit(staff_session, form(repeat="weekdays"))
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    broadcast_id = int(re.fullmatch(r"/broadcasts/(\d+)\?saved=1", location)[1])  # type: ignore[index]
    row = await db.fetchrow("SELECT * FROM broadcast WHERE id = $1", broadcast_id)
    assert row is not None
    assert (row["title"], row["volume"], row["priority"]) == ("Thông báo tiêm chủng", 80, "normal")
    assert row["rrule"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    assert row["created_by"] == "staff-a"
    assert row["retry_window_s"] == 600
    asset = await db.fetchrow("SELECT * FROM audio_asset WHERE id = $1", row["audio_asset_id"])
    assert asset["source"] == "tts"
    assert asset["tts_text"] == "Sáng mai phường tổ chức tiêm chủng tại nhà văn hoá."
    local_start = row["starts_at"].astimezone(LOCAL)
    assert (local_start.hour, local_start.minute) == (10, 0)

    page = await staff_session.client.get(location)
    assert page.status_code == 200
    assert "Đã lưu" in page.text and "các ngày làm việc" in page.text  # saved, weekdays
    listing = await staff_session.client.get("/broadcasts")
    assert f'href="/broadcasts/{broadcast_id}"' in listing.text


async def test_a_recording_uploaded_in_the_form_is_kept_for_saving(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, staff_session: Session
) -> None:
    response = await submit(
        staff_session,
        form(source="file", action="preview", files={"file": ("gong.wav", tone(1.5), "audio/wav")}),
    )
    assert response.status_code == 200, response.text
    asset = await db.fetchrow("SELECT * FROM audio_asset")
    assert asset is not None
    assert (asset["name"], asset["source"], asset["created_by"]) == (
        "gong.wav",
        "upload",
        "staff-a",
    )
    # The form comes back with the recording chosen, so saving needs no second upload.
    assert 'name="source" value="library" checked' in response.text
    assert f'<option value="{asset["id"]}" selected' in response.text
    assert await count(db, "broadcast") == 0

    saved = await submit(staff_session, form(source="library", audio_asset_id=str(asset["id"])))
    assert saved.status_code == 303, saved.text
    assert await db.fetchval("SELECT audio_asset_id FROM broadcast") == asset["id"]
    assert await count(db, "audio_asset") == 1

    bad = await submit(
        staff_session,
        form(
            source="file",
            files={"file": ("notes.mp3", b"<html>not audio</html>" * 50, "audio/mpeg")},
        ),
    )
    assert bad.status_code == 422
    assert field_errors(bad.text) and await count(db, "audio_asset") == 1


async def test_a_refused_form_comes_back_filled_in_with_what_to_fix(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, staff_session: Session
) -> None:
    yesterday = (datetime.now(LOCAL) - timedelta(days=1)).strftime("%d/%m/%Y")
    # The form's own checks speak Vietnamese; the service's problems come as it words them.
    cases: list[tuple[dict[str, Any], str]] = [
        ({"repeat": "custom", "rrule": "FREQ=NEVERLY"}, "không phải RRULE hợp lệ"),
        ({"repeat": "custom", "rrule": ""}, "nhập một quy tắc"),
        ({"start_date": yesterday}, "đã qua"),
        ({"start_date": "someday"}, "viết ngày theo dạng dd/mm/yyyy"),
        ({"wards": []}, "chọn ít nhất một phường"),
        ({"wards": ["ward-b"]}, "ward-b"),
        ({"volume": "101"}, "một số nguyên từ 0 đến 100"),
        ({"text": ""}, "nhập nội dung loa sẽ đọc"),
        ({"title": ""}, "đặt tiêu đề cho thông báo"),
        ({"source": "library", "audio_asset_id": "999999"}, "999999"),
    ]
    for overrides, expected in cases:
        fields = form(**overrides)
        for action in ("save", "preview"):
            response = await submit(staff_session, fields | {"action": action})
            assert response.status_code in (403, 422), (overrides, response.text)
            assert response.headers["content-type"].startswith("text/html")
            errors = field_errors(response.text)
            assert any(expected in e for e in errors), (overrides, errors)
            # What was typed is still there.
            if fields["title"]:
                assert f'value="{fields["title"]}"' in response.text
            if fields["text"]:
                assert fields["text"] in response.text
    assert await count(db, "broadcast") == 0
    assert await count(db, "audio_asset") == 0


async def test_the_preview_shows_conflicts_before_anything_is_saved(
    clients: Clients,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
    staff_session: Session,
) -> None:
    starts = tomorrow_at(10)
    existing = await clients.admin.post(
        "/api/v1/broadcasts", json=api_broadcast(jingle["id"], ["ward-a"], starts)
    )
    assert existing.status_code == 201, existing.text
    other_id = existing.json()["broadcast"]["id"]

    fields = form(source="library", audio_asset_id=str(jingle["id"]), action="preview")
    response = await submit(staff_session, fields)
    assert response.status_code == 200, response.text
    plan = response.text.split('class="plan"', 1)[1]
    assert "Trùng lịch: 1" in plan  # one conflict
    assert f'href="/broadcasts/{other_id}">Lịch thu gom rác</a>' in plan
    moved_to = (starts + timedelta(seconds=2 + 5)).strftime("%H:%M:%S")  # its end, plus the gap
    assert f"lịch này dời sang {moved_to}, sau lịch kia" in plan  # this one moves after it
    assert "Phát tới 3 loa ở Phường A" in plan  # reaches 3 speakers, the ward by name
    assert await count(db, "broadcast") == 1

    rejecting = await submit(staff_session, fields | {"on_conflict": "reject", "action": "save"})
    assert rejecting.status_code == 409
    assert any("trùng" in e for e in field_errors(rejecting.text)), field_errors(rejecting.text)
    assert await count(db, "broadcast") == 1


async def test_console_writes_need_the_sessions_csrf_token(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
    staff_session: Session,
) -> None:
    fields = form(source="library", audio_asset_id=str(jingle["id"]))
    for token in ("", "not-the-token"):
        refused = await submit(staff_session, dict(fields), csrf=token)
        assert refused.status_code == 403, refused.text
    without_field = await staff_session.client.post("/broadcasts/new", data=fields)
    assert without_field.status_code == 403
    assert await count(db, "broadcast") == 0

    page = await staff_session.client.get("/broadcasts/new")
    assert f'name="csrf_token" value="{staff_session.csrf}"' in page.text
    saved = await submit(staff_session, dict(fields))
    assert saved.status_code == 303, saved.text
    broadcast_id = await db.fetchval("SELECT id FROM broadcast")

    cancel = f"/broadcasts/{broadcast_id}/cancel"
    assert (await staff_session.client.post(cancel)).status_code == 403
    assert (await staff_session.client.post(cancel, data={"csrf_token": "x"})).status_code == 403
    # Each session has its own token: another one's is no good.
    second = await log_in(hub, "staff-a")
    try:
        assert second.csrf != staff_session.csrf
        crossed = await staff_session.client.post(cancel, data={"csrf_token": second.csrf})
        assert crossed.status_code == 403
    finally:
        await second.client.aclose()
    assert await db.fetchval("SELECT state FROM broadcast") == "active"
    done = await staff_session.client.post(cancel, data={"csrf_token": staff_session.csrf})
    assert done.status_code == 303
    assert done.headers["location"] == f"/broadcasts/{broadcast_id}?cancelled=1"
    assert await db.fetchval("SELECT state FROM broadcast") == "cancelled"
    # The API's own rule is unchanged: a cookie write there needs the header.
    api = await staff_session.client.delete(f"/api/v1/broadcasts/{broadcast_id}")
    assert api.status_code == 403
