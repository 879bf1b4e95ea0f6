"""Group commands: one publish per ward, heard by exactly the speakers meant to hear it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import asyncpg
import pytest

from drivers.contract import Topics
from drivers.speaker.protocol import decode_groups
from tests.conftest import Clients
from tests.support.broadcasts import (
    Speakers,
    by_speaker,
    eventually,
    first_occurrence,
    local_in,
    report_when,
    simulated,
)
from tests.support.hub import RunningHub

# These play broadcasts seconds from now: the wards must have no quiet hours then.
pytestmark = pytest.mark.usefixtures("awake_wards")


def everyone_finished(report: dict[str, Any]) -> bool:
    return bool(report["speakers"]) and all(s["state"] == "finished" for s in report["speakers"])


async def follows(db: asyncpg.Connection, uids: list[str]) -> dict[str, list[str]]:
    rows = await db.fetch(
        "SELECT d.uid, f.groups FROM speaker_group_follow f JOIN device d ON d.id = f.device_id "
        "WHERE d.uid = ANY($1::text[])",
        uids,
    )
    return {r["uid"]: list(r["groups"]) for r in rows}


async def until_following(db: asyncpg.Connection, expected: dict[str, list[str]]) -> None:
    async def probe() -> bool:
        return await follows(db, list(expected)) == expected

    await eventually(probe, within_s=15)


async def play(clients: Clients, jingle: dict[str, Any], targets: dict[str, Any]) -> dict[str, Any]:
    created = await clients.admin.post(
        "/api/v1/broadcasts",
        json={
            "title": "Loa phường",
            "targets": targets,
            "starts_at": local_in(2.0),
            "audio_asset_id": jingle["id"],
            "volume": 70,
        },
    )
    assert created.status_code == 201, created.text
    occurrence_id = await first_occurrence(clients.admin, created.json()["broadcast"]["id"])
    return await report_when(clients.admin, occurrence_id, everyone_finished, within_s=20)


async def via_groups(db: asyncpg.Connection, occurrence_id: int) -> dict[str, str | None]:
    rows = await db.fetch(
        "SELECT device_uid, via_group FROM broadcast_delivery WHERE occurrence_id = $1",
        occurrence_id,
    )
    return {r["device_uid"]: r["via_group"] for r in rows}


async def test_a_ward_is_reached_with_one_publish_and_old_firmware_one_by_one(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
) -> None:
    ward_a, ward_b = speakers["ward-a"], speakers["ward-b"]
    old_firmware = ward_a[2]
    async with simulated(hub, speakers.all, without_groups=[old_firmware]) as fleet:
        # The hub tells each speaker its ward's group; each says so in its next status.
        await until_following(
            db,
            {uid: ["ward-ward-a"] for uid in ward_a[:2]}
            | {old_firmware: []}
            | {uid: ["ward-ward-b"] for uid in ward_b},
        )
        assert fleet.speaker(ward_a[0]).groups == ("ward-ward-a",)

        report = await play(clients, jingle, {"wards": ["ward-a"]})

        assert report["summary"]["finished"] == 3
        assert await via_groups(db, report["id"]) == {
            ward_a[0]: "ward-ward-a",
            ward_a[1]: "ward-ward-a",
            old_firmware: None,
        }
        rows = by_speaker(report)
        # Group members share the command id; each still answered for itself.
        assert rows[ward_a[0]]["command_id"] == rows[ward_a[1]]["command_id"]
        assert rows[old_firmware]["command_id"] != rows[ward_a[0]]["command_id"]
        assert all(fleet.speaker(uid).acted_on == () for uid in ward_b)
        assert report["summary"]["speakers"] == 3


async def test_a_group_is_used_only_when_every_follower_is_a_target(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
) -> None:
    ward_a = speakers["ward-a"]
    heard: list[str] = []

    async def listen(spy: aiomqtt.Client) -> None:
        async for message in spy.messages:
            heard.append(message.topic.value)

    async with (
        simulated(hub, ward_a) as fleet,
        aiomqtt.Client("127.0.0.1", hub.settings.mqtt.port) as spy,
    ):
        await until_following(db, {uid: ["ward-ward-a"] for uid in ward_a})
        await spy.subscribe(Topics.all_groups(), qos=1)
        listener = asyncio.create_task(listen(spy))
        try:
            report = await play(clients, jingle, {"speakers": ward_a[:2]})
        finally:
            listener.cancel()

        # Two of three followers targeted: the third must not hear it, so no group publish.
        rows = by_speaker(report)
        assert await via_groups(db, report["id"]) == {ward_a[0]: None, ward_a[1]: None}
        assert report["summary"]["finished"] == 2
        assert heard == []
        assert fleet.speaker(ward_a[2]).acted_on == ()
        assert fleet.speaker(ward_a[0]).acted_on == (rows[ward_a[0]]["command_id"],)


async def test_a_speaker_moved_to_another_ward_is_told_its_new_group(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    speakers: Speakers,
    jingle: dict[str, Any],
) -> None:
    moved = speakers["ward-a"][0]
    async with simulated(hub, [moved]) as fleet:
        await until_following(db, {moved: ["ward-ward-a"]})
        response = await clients.admin.patch(f"/api/v1/devices/{moved}", json={"ward": "ward-b"})
        assert response.status_code == 200, response.text
        # Its next status (here, after a ping) shows the old group; the hub re-tells it.
        await fleet.speaker(moved).publish_status()
        await until_following(db, {moved: ["ward-ward-b"]})
        assert fleet.speaker(moved).groups == ("ward-ward-b",)

        async with aiomqtt.Client("127.0.0.1", hub.settings.mqtt.port) as reader:
            await reader.subscribe(Topics.for_device(moved, Topics.GROUPS), qos=1)
            retained = await anext(aiter(reader.messages))
            assert decode_groups(bytes(retained.payload)) == ("ward-ward-b",)  # type: ignore[arg-type]
