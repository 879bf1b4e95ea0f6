"""Volume and stop from the console: a speaker's page and a broadcast's wards, each
speaker's answer on a page of its own, the session's CSRF token required."""

from __future__ import annotations

import asyncpg

from tests.conftest import Clients
from tests.integration.web.conftest import Session
from tests.support.broadcasts import Speakers, simulated, tomorrow_local, upload_jingle
from tests.support.hub import RunningHub

HTML = {"accept": "text/html"}


async def test_a_speaker_page_turns_it_down_and_shows_its_answer(
    staff_session: Session, hub: RunningHub, clients: Clients, speakers: Speakers
) -> None:
    uid = speakers["ward-a"][0]
    page = await staff_session.client.get(f"/devices/{uid}", headers=HTML)
    assert page.status_code == 200
    assert f'action="/devices/{uid}/control"' in page.text
    async with simulated(hub, [uid]) as fleet:
        refused = await staff_session.client.post(
            f"/devices/{uid}/control",
            data={"csrf_token": "forged", "action": "set_volume", "volume": "20"},
        )
        assert refused.status_code == 403
        assert fleet.speaker(uid).volume != 20
        sent = await staff_session.client.post(
            f"/devices/{uid}/control",
            data={"csrf_token": staff_session.csrf, "action": "set_volume", "volume": "20"},
        )
        assert sent.status_code == 303, sent.text
        assert fleet.speaker(uid).volume == 20
    answers = await staff_session.client.get(sent.headers["location"], headers=HTML)
    assert answers.status_code == 200
    assert uid in answers.text and "Đặt âm lượng 20" in answers.text
    assert "đã xác nhận: 1" in answers.text  # confirmed by one speaker


async def test_a_broadcast_page_stops_the_speakers_of_its_wards(
    staff_session: Session, hub: RunningHub, clients: Clients, speakers: Speakers
) -> None:
    audio = await upload_jingle(clients.admin)
    created = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json={
            "title": "Ngày mai",
            "targets": {"wards": ["ward-a"]},
            "starts_at": tomorrow_local(10),
            "audio_asset_id": audio["id"],
            "on_conflict": "reject",
        },
    )
    broadcast_id = created.json()["broadcast"]["id"]
    page = await staff_session.client.get(f"/broadcasts/{broadcast_id}", headers=HTML)
    assert f'action="/broadcasts/{broadcast_id}/control"' in page.text
    ward = speakers["ward-a"]
    async with simulated(hub, ward):
        sent = await staff_session.client.post(
            f"/broadcasts/{broadcast_id}/control",
            data={"csrf_token": staff_session.csrf, "action": "stop"},
        )
        assert sent.status_code == 303, sent.text
    answers = await staff_session.client.get(sent.headers["location"], headers=HTML)
    assert all(uid in answers.text for uid in ward)
    assert f"đã xác nhận: {len(ward)}" in answers.text


async def test_a_flapping_device_says_so_on_its_page(
    staff_session: Session, db: asyncpg.Connection, speakers: Speakers
) -> None:
    uid = speakers["ward-a"][0]
    await db.execute(
        "UPDATE device SET flapping_since = now(), "
        "flapping_reason = '12 state changes in 10 min' WHERE uid = $1",
        uid,
    )
    page = await staff_session.client.get(f"/devices/{uid}", headers=HTML)
    assert "dao động</b> — 12 lần đổi trạng thái trong 10 phút" in page.text
