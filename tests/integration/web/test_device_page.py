"""A device's page in the console: its status history and faults, its readings over the last
day with a chart and the chart's table, its firmware, maintenance from a form (the session's
CSRF token, audited), a camera's ONVIF health and snapshot, a speaker's volume and plays;
another ward's device is not there for ward staff."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from drivers.onvif.simulator import CameraSpec
from hub.cameras.health import CAMERA_HEALTH
from tests.conftest import Clients
from tests.integration.web.conftest import Session, log_in
from tests.support.broadcasts import Speakers, tomorrow_local, upload_jingle
from tests.support.cameras import camera_starter, onboard
from tests.support.hub import RunningHub

HTML = {"accept": "text/html"}
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
RAW_TIME = re.compile(r"\d{2}:\d{2}:\d{2}\.\d+|\+00:00")


@pytest.fixture
async def technician_session(hub: RunningHub, clients: Clients) -> AsyncIterator[Session]:
    session = await log_in(hub, "technician")
    yield session
    await session.client.aclose()


async def new_sensor(clients: Clients, db: asyncpg.Connection, uid: str, ward: str) -> int:
    created = await clients.admin.post(
        "/api/v1/devices",
        json={
            "uid": uid,
            "kind": "sensor",
            "name": f"Trạm {uid}",
            "ward": ward,
            "vendor": "Acme",
            "model": "AQ-1",
            "firmware_version": "1.2.0",
            "latitude": 20.86,
            "longitude": 106.69,
        },
    )
    assert created.status_code == 201, created.text
    device_id: int = await db.fetchval("SELECT id FROM device WHERE uid = $1", uid)
    return device_id


def local_text(moment: datetime, seconds: bool = True) -> str:
    return moment.astimezone(LOCAL).strftime("%d/%m/%Y %H:%M" + (":%S" if seconds else ""))


async def test_a_sensor_page_shows_its_history_faults_and_a_days_readings(
    staff_session: Session, clients: Clients, db: asyncpg.Connection
) -> None:
    device_id = await new_sensor(clients, db, "aq-page-1", "ward-a")
    now = datetime.now(UTC).replace(microsecond=0)
    went_offline = now - timedelta(hours=3, minutes=7, seconds=5)
    await db.execute(
        "INSERT INTO health_event (device_id, at, from_status, to_status, reason) VALUES "
        "($1, $2, 'unknown', 'online', ''), ($1, $3, 'online', 'offline', 'no heartbeat for 5 min')",
        device_id,
        went_offline - timedelta(hours=1),
        went_offline,
    )
    await db.execute(
        "INSERT INTO device_event (device_id, at, kind, active) VALUES ($1, $2, 'low_battery', true)",
        device_id,
        went_offline,
    )
    # Six hourly readings, each 30 minutes into an hour of the last six: inside the day shown.
    hours = [now - timedelta(minutes=30) - timedelta(hours=k) for k in range(6)]
    await db.executemany(
        "INSERT INTO reading (device_id, metric, time, value) VALUES ($1, 'pm2_5', $2, $3)",
        [(device_id, at, 10.0 + k) for k, at in enumerate(hours)],
    )
    await db.execute(
        "INSERT INTO reading_latest (device_id, metric, time, value) VALUES ($1, 'pm2_5', $2, 10)",
        device_id,
        hours[0],
    )

    page = await staff_session.client.get("/devices/aq-page-1", headers=HTML)
    assert page.status_code == 200, page.text
    text = page.text
    # Words, not codes; the ward's name; local times day first.
    assert "Phường A" in text and "cảm biến" in text
    assert "mất kết nối" in text and "no heartbeat for 5 min" in text
    assert local_text(went_offline) in text
    assert "pin yếu" in text and "phát sinh" in text
    assert not RAW_TIME.search(text), RAW_TIME.search(text)
    # The day's chart: an accessible SVG, one dot per hour with readings, and its table.
    chart = text[text.index('<figure class="chart" data-metric="pm2_5"') :]
    chart = chart[: chart.index("</figure>")]
    assert 'role="img"' in chart and "<title" in chart and "<desc" in chart
    assert "Bụi mịn PM2.5, trung bình theo giờ trong 24 giờ" in chart
    assert chart.count('<circle class="point"') == 6
    rows = re.findall(r'<td class="num">([^<]+)</td>', chart)
    assert len(rows) == 24
    assert sorted(float(v) for v in rows if v != "—") == [10, 11, 12, 13, 14, 15]
    assert "1.2.0" in text

    staff_session.client.cookies.set("iochub_lang", "en")
    english = await staff_session.client.get("/devices/aq-page-1", headers=HTML)
    assert "Fine particles PM2.5, hourly means over 24 hours" in english.text
    assert "offline" in english.text and "Status history" in english.text


async def test_maintenance_from_the_page_needs_the_form_token_and_is_audited(
    technician_session: Session, staff_session: Session, clients: Clients, db: asyncpg.Connection
) -> None:
    await new_sensor(clients, db, "aq-page-2", "ward-a")
    page = await technician_session.client.get("/devices/aq-page-2", headers=HTML)
    assert 'action="/devices/aq-page-2/maintenance"' in page.text
    until = (datetime.now(LOCAL) + timedelta(hours=3)).replace(second=0, microsecond=0)
    form = {
        "until_date": until.strftime("%d/%m/%Y"),
        "until_time": until.strftime("%H:%M"),
        "reason": "thay pin",
    }

    forged = await technician_session.client.post(
        "/devices/aq-page-2/maintenance", data={**form, "csrf_token": "forged"}
    )
    assert forged.status_code == 403
    assert await db.fetchval("SELECT maintenance_until FROM device WHERE uid = 'aq-page-2'") is None

    past = await technician_session.client.post(
        "/devices/aq-page-2/maintenance",
        data={
            "until_date": "01/01/2020",
            "until_time": "08:00",
            "reason": "x",
            "csrf_token": technician_session.csrf,
        },
        headers=HTML,
    )
    assert past.status_code == 422
    assert "Hãy chọn thời điểm kết thúc trong tương lai" in past.text

    started = await technician_session.client.post(
        "/devices/aq-page-2/maintenance", data={**form, "csrf_token": technician_session.csrf}
    )
    assert started.status_code == 303, started.text
    stored = await db.fetchrow(
        "SELECT maintenance_until, maintenance_reason, status FROM device WHERE uid = 'aq-page-2'"
    )
    assert stored["maintenance_until"] == until and stored["maintenance_reason"] == "thay pin"
    assert stored["status"] == "maintenance"
    shown = await technician_session.client.get("/devices/aq-page-2", headers=HTML)
    assert f"Đang bảo trì đến {until.strftime('%d/%m/%Y %H:%M')}" in shown.text
    assert 'action="/devices/aq-page-2/maintenance/end"' in shown.text

    # Ward staff see it, but may not end it (the API's roles: technicians and admins).
    staff_view = await staff_session.client.get("/devices/aq-page-2", headers=HTML)
    assert "maintenance/end" not in staff_view.text
    refused = await staff_session.client.post(
        "/devices/aq-page-2/maintenance/end", data={"csrf_token": staff_session.csrf}
    )
    assert refused.status_code == 403

    ended = await technician_session.client.post(
        "/devices/aq-page-2/maintenance/end", data={"csrf_token": technician_session.csrf}
    )
    assert ended.status_code == 303
    assert await db.fetchval("SELECT maintenance_until FROM device WHERE uid = 'aq-page-2'") is None
    audit = await db.fetch(
        "SELECT action, actor, after FROM audit_log WHERE object_id = 'aq-page-2' "
        "AND action LIKE 'device.maintenance%' ORDER BY id"
    )
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("device.maintenance", "technician"),
        ("device.maintenance_end", "technician"),
    ]


async def test_another_wards_device_is_not_found_for_ward_staff(
    staff_session: Session, clients: Clients, db: asyncpg.Connection
) -> None:
    await new_sensor(clients, db, "aq-page-b", "ward-b")
    page = await staff_session.client.get("/devices/aq-page-b", headers=HTML)
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "Trạm aq-page-b" not in page.text
    blocked = await staff_session.client.post(
        "/devices/aq-page-b/maintenance",
        data={"until_date": "01/01/2099", "until_time": "08:00", "csrf_token": staff_session.csrf},
    )
    assert blocked.status_code in (403, 404)


async def test_a_speaker_page_shows_its_volume_last_play_and_failures(
    staff_session: Session, clients: Clients, db: asyncpg.Connection, speakers: Speakers
) -> None:
    uid = speakers["ward-a"][0]
    device_id = await db.fetchval("SELECT id FROM device WHERE uid = $1", uid)
    audio = await upload_jingle(clients.admin)
    created = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json={
            "title": "Thông báo phòng dịch",
            "targets": {"speakers": [uid]},
            "starts_at": tomorrow_local(10),
            "audio_asset_id": audio["id"],
            "volume": 65,
            "on_conflict": "reject",
        },
    )
    assert created.status_code == 201, created.text
    broadcast_id = created.json()["broadcast"]["id"]
    now = datetime.now(UTC).replace(microsecond=0)
    played, failed = now - timedelta(days=1, hours=2), now - timedelta(hours=5)
    occurrences = []
    for at in (played, failed):
        occurrences.append(
            await db.fetchval(
                "INSERT INTO broadcast_occurrence (broadcast_id, scheduled_at, status, claimed_by) "
                "VALUES ($1, $2, 'completed', 'tests') RETURNING id",
                broadcast_id,
                at,
            )
        )
    await db.execute(
        "INSERT INTO broadcast_delivery (occurrence_id, device_id, device_uid, command_id, "
        "send_count, first_sent_at, finished_at) VALUES ($1, $2, $3, 'cmd-played', 1, $4, $5)",
        occurrences[0],
        device_id,
        uid,
        played,
        played + timedelta(seconds=30),
    )
    await db.execute(
        "INSERT INTO broadcast_delivery (occurrence_id, device_id, device_uid, command_id, "
        "send_count, first_sent_at, failed_at, failure_reason) "
        "VALUES ($1, $2, $3, 'cmd-failed', 1, $4, $4, 'amplifier_fault')",
        occurrences[1],
        device_id,
        uid,
        failed,
    )
    await db.execute(
        "INSERT INTO speaker_control (request_id, device_id, device_uid, command_id, action, "
        "volume, requested_by, requested_at, finished_at) "
        "VALUES (gen_random_uuid(), $1, $2, 'ctl-1', 'set_volume', 35, 'staff-a', $3, $3)",
        device_id,
        uid,
        failed,
    )

    page = await staff_session.client.get(f"/devices/{uid}", headers=HTML)
    assert page.status_code == 200, page.text
    text = page.text
    assert "loa" in text
    volume = re.search(r"<dt>Âm lượng</dt><dd>([^<]+)</dd>", text)
    assert volume and volume.group(1).startswith("35 (đặt lúc " + local_text(failed, False))
    assert "Thông báo phòng dịch</a>, " + local_text(played + timedelta(seconds=30), False) in text
    assert re.search(r"<dt>Số lần phát lỗi</dt><dd>1</dd>", text)
    assert "đã phát hết" in text and "lỗi — lỗi bộ khuếch đại" in text
    assert f'action="/devices/{uid}/control"' in text
    assert not RAW_TIME.search(text)


async def test_a_camera_page_shows_its_onvif_health_clock_drift_and_a_snapshot(
    hub: RunningHub, staff_session: Session, clients: Clients, db: asyncpg.Connection
) -> None:
    await db.execute("TRUNCATE camera_candidate RESTART IDENTITY")
    async with camera_starter() as start:
        simulator = await start(CameraSpec("drifting", clock_offset_s=7.0))
        camera = simulator["drifting"]
        onboarded = await onboard(clients.technician, camera, "ward-a", name="Camera cổng chợ")
        uid = onboarded["uid"]
        await hub.runtime.get(CAMERA_HEALTH).assess([uid])
        page = await staff_session.client.get(f"/devices/{uid}", headers=HTML)
        assert page.status_code == 200, page.text
        text = page.text
        assert "Tình trạng ONVIF" in text and "phản hồi, đã đăng nhập" in text
        drift = re.search(r"<dt>Lệch đồng hồ</dt><dd>([+-][\d.]+) s", text)
        assert drift and 5 < float(drift.group(1)) < 9
        assert f'src="/api/v1/cameras/{uid}/snapshot"' in text
        snapshot = await staff_session.client.get(f"/api/v1/cameras/{uid}/snapshot")
        assert snapshot.status_code == 200
        assert not RAW_TIME.search(text)
