"""Volume and stop controls per speaker and per ward: ward-scoped, audited, and each
speaker's acknowledgement reported back, through simulated speakers on the real broker."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg
import pytest

from drivers.speaker.simulator import Fault
from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem
from tests.support.broadcasts import (
    Speakers,
    eventually,
    first_occurrence,
    report_when,
    simulated,
    upload,
)
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

# Broadcasts seconds from now: the wards must have no quiet hours then, at any hour.
pytestmark = pytest.mark.usefixtures("awake_wards")


async def test_a_speaker_is_turned_down_and_says_so(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, speakers: Speakers
) -> None:
    answering, silent, _ = speakers["ward-a"]
    async with simulated(hub, [answering, silent], {silent: frozenset({Fault.NEVER_ACKS})}) as f:
        turned = await clients.staff_a.post(
            "/api/v1/speaker-controls",
            json={"action": "set_volume", "volume": 35, "targets": {"speakers": [answering]}},
        )
        assert turned.status_code == 201, turned.text
        [answer] = turned.json()["speakers"]
        assert answer["speaker"] == answering and answer["state"] == "done"
        assert answer["received_at"] and answer["finished_at"]
        assert f.speaker(answering).volume == 35
        both = await clients.staff_a.post(
            "/api/v1/speaker-controls",
            json={
                "action": "set_volume",
                "volume": 50,
                "targets": {"speakers": [answering, silent]},
            },
        )
        body = both.json()
        assert {s["speaker"]: s["state"] for s in body["speakers"]} == {
            answering: "done",
            silent: "sent",  # it acted, but said nothing: the operator sees no answer
        }
        assert (body["done"], body["waiting"]) == (1, 1)
        assert f.speaker(silent).volume == 50
        again = await clients.staff_a.get(f"/api/v1/speaker-controls/{body['request_id']}")
        assert again.json()["speakers"] == body["speakers"]
    entries = await db.fetch(
        "SELECT actor, action, object_id, ward_id, after FROM audit_log "
        "WHERE object_type = 'speaker_control' ORDER BY id"
    )
    assert [(e["actor"], e["action"]) for e in entries] == [("staff-a", "speaker.set_volume")] * 2
    assert json.loads(entries[1]["after"])["waiting"] == 1
    assert entries[1]["object_id"] == body["request_id"]


async def test_stopping_a_ward_stops_what_it_plays(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, speakers: Speakers
) -> None:
    ward = speakers["ward-a"]
    long = (await upload(clients.admin, tone(40.0, rate=8_000), name="dài")).json()
    async with simulated(hub, ward) as fleet:
        created = await clients.staff_a.post(
            "/api/v1/broadcasts",
            json={
                "title": "Dài",
                "targets": {"wards": ["ward-a"]},
                "starts_at": (datetime.now().astimezone() + timedelta(seconds=2)).isoformat(),
                "audio_asset_id": long["id"],
            },
        )
        occurrence_id = await first_occurrence(clients.staff_a, created.json()["broadcast"]["id"])
        await report_when(clients.staff_a, occurrence_id, lambda r: r["summary"]["played"] == 3)
        stopped = await clients.staff_a.post(
            "/api/v1/speaker-controls", json={"action": "stop", "targets": {"wards": ["ward-a"]}}
        )
        assert stopped.status_code == 201, stopped.text
        assert sorted(s["speaker"] for s in stopped.json()["speakers"]) == sorted(ward)
        assert {s["state"] for s in stopped.json()["speakers"]} == {"done"}
        await eventually(lambda: all(fleet.speaker(uid).playing is None for uid in ward))
        report = await report_when(
            clients.staff_a, occurrence_id, lambda r: r["status"] == "preempted", within_s=15
        )
    assert report["summary"]["preempted"] == 3
    ward_a = await db.fetchval("SELECT id FROM ward WHERE code = 'ward-a'")
    audited = await db.fetchrow(
        "SELECT actor, ward_id FROM audit_log WHERE action = 'speaker.stop'"
    )
    assert (audited["actor"], audited["ward_id"]) == ("staff-a", ward_a)


async def test_controls_stay_inside_the_callers_wards(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers
) -> None:
    other = speakers["ward-b"][0]
    outside = await clients.staff_a.post(
        "/api/v1/speaker-controls", json={"action": "stop", "targets": {"wards": ["ward-b"]}}
    )
    assert_problem(outside, 403)
    one = await clients.staff_a.post(
        "/api/v1/speaker-controls", json={"action": "stop", "targets": {"speakers": [other]}}
    )
    assert one.status_code in (403, 422), one.text
    viewer = await clients.viewer.post(
        "/api/v1/speaker-controls", json={"action": "stop", "targets": {"speakers": [other]}}
    )
    assert_problem(viewer, 403)
    assert_problem(
        await clients.admin.post(
            "/api/v1/speaker-controls", json={"action": "set_volume", "targets": {"all": True}}
        ),
        422,
        "volume",
    )
    assert await db.fetchval("SELECT count(*) FROM speaker_control") == 0
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'speaker.%'") == 0


async def test_a_control_answer_is_read_only_inside_its_wards(
    clients: Clients, hub: RunningHub, speakers: Speakers
) -> None:
    other = speakers["ward-b"][0]
    async with simulated(hub, [other]):
        sent = await clients.admin.post(
            "/api/v1/speaker-controls",
            json={"action": "set_volume", "volume": 10, "targets": {"speakers": [other]}},
        )
    request_id = sent.json()["request_id"]
    assert (await clients.technician.get(f"/api/v1/speaker-controls/{request_id}")).is_success
    assert_problem(await clients.staff_a.get(f"/api/v1/speaker-controls/{request_id}"), 404)
    assert_problem(await clients.staff_a.get("/api/v1/speaker-controls/not-a-request"), 404)
    assert sent.json()["speakers"][0]["state"] == "done"
