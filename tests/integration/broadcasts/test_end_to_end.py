"""Broadcasts through the running hub to simulated speakers on a real broker and back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx
import pytest

from drivers.contract import AckStage, Topics
from drivers.speaker.protocol import encode_ack
from drivers.speaker.simulator import Fault
from tests.conftest import Clients
from tests.support.broadcasts import (
    Speakers,
    by_speaker,
    eventually,
    first_occurrence,
    heard_since,
    local_in,
    report_when,
    simulated,
    upload,
)
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

# These play broadcasts seconds from now: the wards must have no quiet hours then.
pytestmark = pytest.mark.usefixtures("awake_wards")


def schedule(audio: dict[str, Any], targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "title": "Thông báo",
        "targets": targets,
        "starts_at": local_in(2.0),
        "audio_asset_id": audio["id"],
        "volume": 75,
    } | extra


def everyone(state: str) -> Any:
    return lambda report: (
        bool(report["speakers"]) and all(s["state"] == state for s in report["speakers"])
    )


async def acks_counted(client: httpx.AsyncClient, outcome: str) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(rf'iochub_broadcast_acks_total{{outcome="{outcome}"}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


async def test_a_scheduled_broadcast_plays_on_every_speaker_together(
    clients: Clients, hub: RunningHub, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    ward = speakers["ward-a"]
    connecting = datetime.now(UTC)
    async with simulated(hub, ward):
        await heard_since(clients.admin, ward, connecting)  # one send each, counted below
        created = await clients.staff_a.post(
            "/api/v1/broadcasts", json=schedule(jingle, {"wards": ["ward-a"]})
        )
        assert created.status_code == 201, created.text
        broadcast_id = created.json()["broadcast"]["id"]
        occurrence_id = await first_occurrence(clients.staff_a, broadcast_id)
        report = await report_when(clients.staff_a, occurrence_id, everyone("finished"))

    assert report["summary"] | {"failures": None} == {
        "speakers": 3,
        "delivered": 3,
        "played": 3,
        "finished": 3,
        "preempted": 0,
        "failed": 0,
        "pending": 0,
        "failures": None,
    }
    start_at = datetime.fromisoformat(report["start_at"])
    assert start_at == datetime.fromisoformat(report["scheduled_at"])
    started = [datetime.fromisoformat(s["started_at"]) for s in report["speakers"]]
    # Everyone starts at the instant given (acks carry milliseconds), within a whisker.
    assert all(
        timedelta(milliseconds=-2) <= t - start_at < timedelta(milliseconds=150) for t in started
    )
    assert [s["send_count"] for s in report["speakers"]] == [1, 1, 1]
    assert sorted(s["speaker"] for s in report["speakers"]) == sorted(ward)
    calendar = (
        await clients.staff_a.get(
            "/api/v1/broadcasts/calendar",
            params={"start": (start_at - timedelta(minutes=1)).isoformat()},
        )
    ).json()
    [entry] = calendar["items"]
    assert entry["occurrence_id"] == occurrence_id
    assert entry["status"] in ("dispatching", "playing", "completed")


async def test_silent_doubled_unknown_and_late_speakers_are_told_apart(
    clients: Clients, hub: RunningHub, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    ok, twice, late = speakers["ward-a"]
    silent = speakers["ward-b"][0]
    faults = {
        twice: frozenset({Fault.ACKS_TWICE}),
        late: frozenset({Fault.OFFLINE}),
        silent: frozenset({Fault.NEVER_ACKS}),
    }
    unknown_before = await acks_counted(clients.admin, "unknown")
    async with simulated(hub, [ok, twice, late, silent], faults) as fleet:
        patient = await clients.admin.post(
            "/api/v1/broadcasts",
            json=schedule(jingle, {"speakers": [ok, twice, late]}, retry_window_minutes=1),
        )
        hasty = await clients.admin.post(
            "/api/v1/broadcasts",
            json=schedule(jingle, {"speakers": [silent]}, retry_window_minutes=0),
        )
        assert patient.status_code == hasty.status_code == 201, (patient.text, hasty.text)
        patient_id = await first_occurrence(clients.admin, patient.json()["broadcast"]["id"])
        hasty_id = await first_occurrence(clients.admin, hasty.json()["broadcast"]["id"])
        await report_when(
            clients.admin,
            patient_id,
            lambda r: r["status"] == "playing" and by_speaker(r)[ok]["state"] == "finished",
        )
        # Back within the retry window: it gets the play when it reports online.
        await fleet.set_fault(late, Fault.OFFLINE, active=False)
        patient_report = await report_when(clients.admin, patient_id, everyone("finished"))
        hasty_report = await report_when(
            clients.admin, hasty_id, lambda r: r["status"] == "failed", within_s=15
        )

        # A speaker acknowledging a command the hub never sent, and a stale repeat.
        async with aiomqtt.Client("127.0.0.1", hub.settings.mqtt.port) as rogue:
            now = datetime.now().astimezone()
            await rogue.publish(
                Topics.for_device(ok, Topics.ACK),
                encode_ack(f"o{patient_id + 1000}-d1", AckStage.RECEIVED, now),
                qos=1,
            )
            mine = by_speaker(patient_report)[ok]["command_id"]
            await rogue.publish(
                Topics.for_device(ok, Topics.ACK), encode_ack(mine, AckStage.RECEIVED, now), qos=1
            )

        async def stale_repeat_recorded() -> bool:
            report = (
                await clients.admin.get(f"/api/v1/broadcasts/occurrences/{patient_id}")
            ).json()
            return bool(by_speaker(report)[ok]["duplicate_acks"] == 1)

        await eventually(stale_repeat_recorded)
        assert await acks_counted(clients.admin, "unknown") == unknown_before + 1

    rows = by_speaker(patient_report)
    assert rows[ok]["duplicate_acks"] == 0 and rows[ok]["send_count"] == 1
    assert rows[twice]["duplicate_acks"] == 4  # received, downloading, started, finished
    assert rows[late]["send_count"] >= 2
    assert datetime.fromisoformat(rows[late]["started_at"]) > datetime.fromisoformat(
        patient_report["start_at"]
    )
    assert patient_report["summary"]["played"] == 3

    [quiet] = hasty_report["speakers"]
    assert (quiet["state"], quiet["failure_reason"]) == ("failed", "no_answer")
    assert quiet["received_at"] is None
    assert hasty_report["summary"]["failures"] == {"no_answer": 1}
    assert hasty_report["summary"]["delivered"] == 0

    final = (await clients.admin.get(f"/api/v1/broadcasts/occurrences/{patient_id}")).json()
    assert by_speaker(final)[ok]["out_of_order_acks"] == 1
    assert by_speaker(final)[ok]["state"] == "finished"


async def test_an_emergency_preempts_a_playing_broadcast(
    clients: Clients, hub: RunningHub, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    ward = speakers["ward-a"]
    long_one = await upload(clients.staff_a, tone(12.0, rate=8000), name="programme")
    assert long_one.status_code == 201, long_one.text
    async with simulated(hub, ward):
        created = await clients.staff_a.post(
            "/api/v1/broadcasts", json=schedule(long_one.json(), {"wards": ["ward-a"]})
        )
        normal_id = await first_occurrence(clients.staff_a, created.json()["broadcast"]["id"])
        await report_when(clients.staff_a, normal_id, everyone("playing"))

        asked = datetime.now(UTC)  # the hub's clock, which the speakers' acks follow too
        alarm = await clients.staff_a.post(
            "/api/v1/broadcasts/emergency",
            json={"title": "Cảnh báo lũ", "audio_asset_id": jingle["id"]},
        )
        assert alarm.status_code == 201, alarm.text
        assert alarm.json()["broadcast"]["wards"] == ["ward-a"]
        assert alarm.json()["broadcast"]["priority"] == "emergency"
        assert {c["resolution"] for c in alarm.json()["plan"]["conflicts"]} == {"preempts"}
        emergency_id = await first_occurrence(
            clients.staff_a, alarm.json()["broadcast"]["id"], within_s=3
        )
        interrupted = await report_when(clients.staff_a, normal_id, everyone("preempted"))
        urgent = await report_when(clients.staff_a, emergency_id, everyone("finished"))

    assert interrupted["summary"]["preempted"] == 3, interrupted
    cut_at = max(datetime.fromisoformat(s["preempted_at"]) for s in interrupted["speakers"])
    began = min(datetime.fromisoformat(s["started_at"]) for s in urgent["speakers"])
    assert began >= cut_at - timedelta(milliseconds=5)
    # Sent at once: the emergency started within a second of being asked for.
    assert began - asked < timedelta(seconds=1)
