"""The broadcast API refuses what it cannot do, naming the field, and stores nothing then."""

from __future__ import annotations

import shutil
from typing import Any

import asyncpg
import pytest

from hub.broadcasts.service import BROADCASTS
from tests.conftest import Clients
from tests.support.broadcasts import (
    Speakers,
    local_in,
    problem_fields,
    tomorrow_local,
    upload,
)
from tests.unit.broadcasts.sounds import tone

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)


def broadcast(audio_id: int | None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Thông báo cắt nước",
        "targets": {"wards": ["ward-a"]},
        "starts_at": tomorrow_local(10),
        "volume": 80,
    }
    if audio_id is not None:
        body["audio_asset_id"] = audio_id
    return body | overrides


async def count(db: asyncpg.Connection, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


async def test_upload_raw_and_multipart_are_decoded_and_normalised(
    clients: Clients, db: asyncpg.Connection
) -> None:
    raw = await upload(
        clients.staff_a, tone(1.5, container="MP3"), name="loa", content_type="audio/mpeg"
    )
    assert raw.status_code == 201, raw.text
    asset = raw.json()
    assert asset["original_format"] == "MP3"
    assert asset["ward"] == "ward-a"  # the uploader's only ward
    assert asset["sample_rate"] == 22050
    assert asset["duration_s"] == pytest.approx(1.5, abs=0.1)

    form = await clients.admin.post(
        "/api/v1/audio",
        files={"file": ("morning.ogg", tone(1.0, container="OGG"), "audio/ogg")},
    )
    assert form.status_code == 201, form.text
    assert form.json()["name"] == "morning.ogg"
    assert form.json()["ward"] is None

    content = await clients.staff_a.get(f"/api/v1/audio/{asset['id']}/content")
    assert content.status_code == 200
    assert content.headers["content-type"] == "audio/wav"
    assert content.content[:4] == b"RIFF"
    assert await count(db, "audio_asset") == 2


async def test_bytes_that_are_not_audio_are_refused_whatever_they_are_called(
    clients: Clients, db: asyncpg.Connection
) -> None:
    response = await clients.admin.post(
        "/api/v1/audio",
        files={"file": ("announcement.mp3", b"<html>not audio</html>" * 100, "audio/mpeg")},
    )
    assert response.status_code == 422
    assert problem_fields(response) == ["file"]
    assert await count(db, "audio_asset") == 0


async def test_too_large_audio_is_refused_with_413(
    clients: Clients, hub: Any, db: asyncpg.Connection
) -> None:
    limit = hub.settings.broadcasts.max_audio_bytes
    response = await upload(clients.admin, b"\0" * (limit + 1))
    assert response.status_code == 413
    assert problem_fields(response) == ["file"]
    assert await count(db, "audio_asset") == 0


async def test_viewers_cannot_upload_or_schedule(clients: Clients, speakers: Speakers) -> None:
    assert (await upload(clients.viewer, tone(1.0))).status_code == 403
    response = await clients.viewer.post("/api/v1/broadcasts", json=broadcast(1))
    assert response.status_code == 403


NEVER_MATCHES = {"rrule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"}
INVALID: list[tuple[dict[str, Any], int, str]] = [
    ({"rrule": "FREQ=NEVERLY"}, 422, "rrule"),
    (NEVER_MATCHES, 422, "rrule"),
    ({"rrule": "FREQ=HOURLY"}, 422, "rrule"),  # a 2 s jingle fits, but not in quiet hours
    ({"starts_at": local_in(-120)}, 422, "starts_at"),
    ({"targets": {"wards": ["ward-zz"]}}, 422, "targets.wards[0]"),
    ({"targets": {"speakers": ["spk-nobody"]}}, 422, "targets.speakers[0]"),
    ({"targets": {"groups": [999]}}, 422, "targets.groups[0]"),
    ({"targets": {}}, 422, "targets"),
    ({"exdates": ["2030-01-01"]}, 422, "exdates"),
    ({"rrule": "FREQ=DAILY", "exdates": ["someday"]}, 422, "exdates[0]"),
    ({"audio_asset_id": 999_999}, 422, "audio_asset_id"),
    ({"volume": 101}, 400, "volume"),
    ({"priority": "urgent"}, 400, "priority"),
]


async def test_invalid_broadcasts_are_refused_naming_the_field(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    for overrides, status, field in INVALID:
        body = broadcast(jingle["id"], **overrides)
        response = await clients.admin.post("/api/v1/broadcasts", json=body)
        assert response.status_code == status, (overrides, response.text)
        assert field in problem_fields(response), (overrides, response.text)
        if overrides is not NEVER_MATCHES:  # it takes the whole expansion time limit
            preview = await clients.admin.post("/api/v1/broadcasts/conflicts", json=body)
            assert preview.status_code == status, (overrides, preview.text)
    assert await count(db, "broadcast") == 0
    assert await count(db, "broadcast_slot") == 0


async def test_ward_staff_cannot_reach_outside_their_wards(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    cases = [
        ({"wards": ["ward-a", "ward-b"]}, "targets.wards[1]"),
        ({"speakers": [speakers["ward-a"][0], speakers["ward-b"][0]]}, "targets.speakers[1]"),
        ({"all": True}, "targets.all"),
    ]
    for targets, field in cases:
        response = await clients.staff_a.post(
            "/api/v1/broadcasts", json=broadcast(jingle["id"], targets=targets)
        )
        assert response.status_code == 403, response.text
        assert problem_fields(response) == [field]
    assert await count(db, "broadcast") == 0
    allowed = await clients.staff_a.post("/api/v1/broadcasts", json=broadcast(jingle["id"]))
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["plan"]["speaker_count"] == 3


async def test_ward_staff_see_only_broadcasts_inside_their_wards(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    ours = await clients.admin.post("/api/v1/broadcasts", json=broadcast(jingle["id"]))
    theirs = await clients.admin.post(
        "/api/v1/broadcasts",
        json=broadcast(jingle["id"], targets={"wards": ["ward-a", "ward-b"]}),
    )
    assert ours.status_code == theirs.status_code == 201
    listed = (await clients.staff_a.get("/api/v1/broadcasts")).json()
    assert [b["id"] for b in listed] == [ours.json()["broadcast"]["id"]]
    hidden = theirs.json()["broadcast"]["id"]
    assert (await clients.staff_a.get(f"/api/v1/broadcasts/{hidden}")).status_code == 404
    assert (await clients.staff_a.delete(f"/api/v1/broadcasts/{hidden}")).status_code == 404
    assert (await clients.viewer.get(f"/api/v1/broadcasts/{hidden}")).status_code == 200


async def test_every_change_is_audited(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    created = await clients.staff_a.post("/api/v1/broadcasts", json=broadcast(jingle["id"]))
    broadcast_id = created.json()["broadcast"]["id"]
    cancelled = await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast_id}")
    assert cancelled.json()["state"] == "cancelled"
    rows = await db.fetch(
        "SELECT action, actor FROM audit_log WHERE object_type = 'broadcast' "
        "AND object_id = $1 ORDER BY id",
        str(broadcast_id),
    )
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("broadcast.create", "staff-a"),
        ("broadcast.cancel", "staff-a"),
    ]
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'audio.upload'") == 1


async def test_text_longer_than_the_limit_is_refused(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, hub: Any
) -> None:
    limit = hub.settings.broadcasts.tts_max_chars
    body = broadcast(None, text="Thông báo. " * (limit // 10 + 1))
    response = await clients.staff_a.post("/api/v1/broadcasts", json=body)
    assert response.status_code == 422
    assert problem_fields(response) == ["text"]
    preview = await clients.staff_a.post("/api/v1/tts/preview", json={"text": "a" * (limit + 1)})
    assert preview.status_code == 422
    assert problem_fields(preview) == ["text"]
    both = await clients.staff_a.post("/api/v1/broadcasts", json=broadcast(1, text="Xin chào"))
    assert problem_fields(both) == ["audio_asset_id"]
    assert await count(db, "broadcast") == 0
    assert await count(db, "audio_asset") == 0


@needs_espeak
async def test_typed_text_is_spoken_and_scheduled(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers
) -> None:
    preview = await clients.staff_a.post(
        "/api/v1/tts/preview", json={"text": "Xin chào bà con phường A."}
    )
    assert preview.status_code == 200, preview.text
    assert preview.headers["content-type"] == "audio/wav"
    assert preview.content[:4] == b"RIFF"
    assert await count(db, "audio_asset") == 0

    created = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json=broadcast(None, text="Thông báo: sáng mai phường tổ chức tiêm chủng."),
    )
    assert created.status_code == 201, created.text
    asset = await db.fetchrow("SELECT * FROM audio_asset")
    assert asset is not None
    assert asset["source"] == "tts"
    assert asset["tts_voice"] == "vi"
    assert created.json()["broadcast"]["audio_asset_id"] == asset["id"]


async def test_the_speaker_audio_link_is_its_own_authorisation(
    clients: Clients, hub: Any, jingle: dict[str, Any]
) -> None:
    from datetime import UTC, datetime, timedelta

    signer = hub.runtime.get(BROADCASTS).signer
    url = signer.url(jingle["id"], datetime.now(UTC) + timedelta(minutes=5))
    good = await clients.anonymous.get(url)
    assert good.status_code == 200
    import hashlib

    assert hashlib.sha256(good.content).hexdigest() == jingle["sha256"]
    tampered = url.replace(f"/{jingle['id']}?", f"/{jingle['id'] + 1}?")
    assert (await clients.anonymous.get(tampered)).status_code == 403
    expired = signer.url(jingle["id"], datetime.now(UTC) - timedelta(seconds=1))
    response = await clients.anonymous.get(expired)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
