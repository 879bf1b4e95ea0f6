"""Staged rollouts through the running hub and the real broker to simulated speakers."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import asyncpg
import pytest

from drivers.contract import Topics
from drivers.firmware.device import FirmwareFault, UpdateTiming
from drivers.firmware.protocol import UpdateCommand, encode_command
from tests.conftest import Clients
from tests.integration.server.test_cli import iochub
from tests.support.broadcasts import eventually, local_in
from tests.support.firmware import (
    campaign_when,
    devices_of,
    import_into,
    peak_updating,
    register,
    update_commands,
    updating_speakers,
)
from tests.support.hub import RunningHub


@pytest.fixture
async def releases(clients: Clients, hub: RunningHub) -> dict[str, int]:
    return await import_into(hub)


def plan(release_id: int, **extra: Any) -> dict[str, Any]:
    return {"name": "S30 2.10.0", "release_id": release_id, "wards": ["ward-a"]} | extra


async def test_a_ward_updates_in_waves_never_more_than_its_share_at_once(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, releases: dict[str, int]
) -> None:
    speakers = await register(db, {"ward-a": 12})
    uids = [s.uid for s in speakers]
    async with updating_speakers(hub.settings.mqtt.port, speakers) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(releases["2.10.0"], waves=[10, 50, 100], max_ward_percent=25),
        )
        assert created.status_code == 201, created.text
        campaign = created.json()["campaign"]
        assert [w["size"] for w in campaign["waves"]] == [2, 4, 6]
        done = await campaign_when(clients.technician, campaign["id"], ["completed"], 30)
        assert done["counts"] == {"updated": 12}
        assert [w["state"] for w in done["waves"]] == ["succeeded"] * 3
        assert all(fleet.speaker(uid).firmware.version == "2.10.0" for uid in uids)
        assert peak_updating(fleet, uids) <= 3  # 25% of 12
        assert all(update_commands(fleet, uid) == 1 for uid in uids)
    versions = await db.fetch(
        "SELECT DISTINCT firmware_version FROM device WHERE uid = ANY($1)", uids
    )
    assert [r["firmware_version"] for r in versions] == ["2.10.0"]


async def test_injected_failures_stop_the_campaign_at_the_error_threshold(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, releases: dict[str, int]
) -> None:
    speakers = await register(db, {"ward-a": 10})
    uids = [s.uid for s in speakers]
    faulty = {
        uids[0]: frozenset({FirmwareFault.DOWNLOAD_FAILS}),
        uids[1]: frozenset({FirmwareFault.CHECKSUM_MISMATCH}),
        uids[2]: frozenset({FirmwareFault.BOOTS_OLD_VERSION}),
        uids[3]: frozenset({FirmwareFault.NEVER_RETURNS}),
    }
    async with updating_speakers(hub.settings.mqtt.port, speakers, faulty) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(
                releases["2.10.0"],
                waves=[100],
                max_ward_percent=90,
                error_percent=5,
                device_timeout_s=3,
            ),
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["campaign"]["id"]
        stopped = await campaign_when(clients.technician, campaign_id, ["stopped"], 30)
        assert re.fullmatch(
            r"wave 1: [1-4] of 10 devices failed, more than the 5% allowed", stopped["stop_reason"]
        ), stopped["stop_reason"]
        # What was already updating finishes; the never-returning one fails at its deadline.

        async def settled() -> dict[str, dict[str, Any]] | None:
            rows = await devices_of(clients.technician, campaign_id)
            active = {"sent", "downloading", "verifying", "installing", "rebooting"}
            return None if any(r["state"] in active for r in rows.values()) else rows

        rows = await eventually(settled, 15)
        reasons = {uid: rows[uid]["reason"] for uid in uids[:4]}
        assert reasons[uids[0]].startswith("download_failed")
        assert reasons[uids[1]].startswith("checksum_mismatch")
        assert reasons[uids[2]] == "came back on 2.4.1, not 2.10.0"
        assert reasons[uids[3]] == "did not come back after its reboot"
        assert fleet.speaker(uids[2]).firmware.version == "2.4.1"
        # Nine could start at once (90% of ten); the tenth never does once it is stopped.
        assert [rows[u]["state"] for u in uids].count("pending") == 1
        assert rows[uids[9]]["state"] == "pending" and update_commands(fleet, uids[9]) == 0
        late = await db.fetchval(
            "SELECT count(*) FROM firmware_campaign_device cd JOIN firmware_campaign c "
            "ON c.id = cd.campaign_id WHERE c.id = $1 AND cd.sent_at > c.stopped_at",
            campaign_id,
        )
        assert late == 0
        # Retry: the failed go again (the faults stay), and the campaign stops once more.
        retried = await clients.technician.post(f"/api/v1/firmware/campaigns/{campaign_id}/retry")
        assert retried.json()["state"] == "running", retried.text
        await campaign_when(clients.technician, campaign_id, ["stopped"], 15)
        assert update_commands(fleet, uids[0]) == 2


async def test_the_next_wave_waits_for_approval(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, releases: dict[str, int]
) -> None:
    speakers = await register(db, {"ward-a": 4})
    uids = [s.uid for s in speakers]
    async with updating_speakers(hub.settings.mqtt.port, speakers) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(
                releases["2.10.0"], waves=[25, 100], require_approval=True, max_ward_percent=75
            ),
        )
        campaign_id = created.json()["campaign"]["id"]
        waiting = await campaign_when(clients.technician, campaign_id, ["waiting_approval"])
        assert [w["state"] for w in waiting["waves"]] == ["succeeded", "waiting_approval"]
        assert waiting["counts"] == {"updated": 1, "pending": 3}
        await asyncio.sleep(1.5)  # two of the driver's rounds: still nobody else started
        assert sum(update_commands(fleet, uid) for uid in uids) == 1
        denied = await clients.staff_a.post(f"/api/v1/firmware/campaigns/{campaign_id}/approve")
        assert denied.status_code == 403
        approved = await clients.technician.post(
            f"/api/v1/firmware/campaigns/{campaign_id}/approve"
        )
        assert approved.status_code == 200, approved.text
        done = await campaign_when(clients.technician, campaign_id, ["completed"])
        assert done["waves"][1]["approved_by"] == "technician"
        assert done["counts"] == {"updated": 4}


@pytest.mark.usefixtures("awake_wards")  # a broadcast due in minutes, whatever the hour
async def test_no_ward_goes_silent_and_a_due_broadcast_holds_its_speakers(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    releases: dict[str, int],
    jingle: dict[str, Any],
) -> None:
    speakers = await register(db, {"ward-a": 4, "ward-b": 4})
    in_a = [s.uid for s in speakers if s.ward == "ward-a"]
    in_b = [s.uid for s in speakers if s.ward == "ward-b"]
    due = await clients.admin.post(
        "/api/v1/broadcasts",
        json={
            "title": "Họp tổ dân phố",
            "targets": {"wards": ["ward-b"]},
            "starts_at": local_in(300),
            "audio_asset_id": jingle["id"],
            "volume": 70,
        },
    )
    assert due.status_code == 201, due.text
    async with updating_speakers(hub.settings.mqtt.port, speakers) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(
                releases["2.10.0"],
                wards=["ward-a", "ward-b"],
                waves=[100],
                max_ward_percent=50,
                broadcast_guard_min=15,
            ),
        )
        campaign_id = created.json()["campaign"]["id"]

        async def ward_a_done() -> dict[str, dict[str, Any]] | None:
            rows = await devices_of(clients.technician, campaign_id)
            return rows if all(rows[u]["state"] == "updated" for u in in_a) else None

        rows = await eventually(ward_a_done, 20)
        assert {rows[u]["state"] for u in in_b} == {"pending"}
        assert all(update_commands(fleet, u) == 0 for u in in_b)
        assert peak_updating(fleet, in_a) <= 2  # half the ward keeps its voice
        cancelled = await clients.admin.delete(
            f"/api/v1/broadcasts/{due.json()['broadcast']['id']}"
        )
        assert cancelled.status_code == 200, cancelled.text
        done = await campaign_when(clients.technician, campaign_id, ["completed"])
        assert done["counts"] == {"updated": 8}
        assert peak_updating(fleet, in_b) <= 2


async def test_an_emergency_takes_back_speakers_not_yet_installing(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    releases: dict[str, int],
    jingle: dict[str, Any],
) -> None:
    speakers = await register(db, {"ward-a": 3})
    uids = [s.uid for s in speakers]
    slow_verify = UpdateTiming(verify_s=2.5, install_s=0.2, reboot_s=0.1)
    async with updating_speakers(hub.settings.mqtt.port, speakers, timing=slow_verify) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(releases["2.10.0"], waves=[100], max_ward_percent=70, broadcast_guard_min=0),
        )
        campaign_id = created.json()["campaign"]["id"]

        async def verifying() -> list[str]:
            rows = await devices_of(clients.technician, campaign_id)
            return [u for u in uids if rows[u]["state"] == "verifying"]

        taken = await eventually(verifying, 10)
        emergency = await clients.admin.post(
            "/api/v1/broadcasts/emergency",
            json={"title": "Bão số 3", "wards": ["ward-a"], "audio_asset_id": jingle["id"]},
        )
        assert emergency.status_code == 201, emergency.text

        async def pre_empted() -> dict[str, dict[str, Any]] | None:
            rows = await devices_of(clients.technician, campaign_id)
            hit = [u for u in taken if (rows[u]["reason"] or "").startswith("pre-empted")]
            return rows if len(hit) == len(taken) else None

        await eventually(pre_empted, 5)
        done = await campaign_when(clients.technician, campaign_id, ["completed"], 30)
        assert done["counts"] == {"updated": 3}
        for uid in taken:
            states = [r.state.value for r in fleet.speaker(uid).firmware.reports]
            assert "cancelled" in states and states[-1] == "updated"
            # Sent again after the emergency; maybe more than once, if it was still playing.
            assert update_commands(fleet, uid) >= 2


async def test_wrong_model_and_below_minimum_are_refused_by_hub_and_device(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, releases: dict[str, int]
) -> None:
    good = await register(db, {"ward-a": 2})
    other_model = await register(db, {"ward-a": 1}, model="IP Speaker S20")
    too_old = await register(db, {"ward-a": 1}, version="2.2.7")
    everyone = [*good, *other_model, *too_old]
    async with updating_speakers(hub.settings.mqtt.port, everyone) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(releases["2.10.0"], waves=[100], max_ward_percent=75),
        )
        assert created.status_code == 201, created.text
        refused = {r["uid"]: r["reason"] for r in created.json()["refused"]}
        assert refused == {
            other_model[0].uid: "wrong model: the device is a VNPT Technology IP Speaker S20, "
            "the firmware is for VNPT Technology IP Speaker S30",
            too_old[0].uid: "below minimum: runs 2.2.7, 2.10.0 installs only from 2.4.0",
        }
        done = await campaign_when(
            clients.technician, created.json()["campaign"]["id"], ["completed"]
        )
        assert done["counts"] == {"updated": 2, "refused": 2}
        assert update_commands(fleet, other_model[0].uid) == 0
        assert update_commands(fleet, too_old[0].uid) == 0
        # The device side refuses them too, were they sent anyway.
        url = f"{hub.base_url}/api/v1/firmware/artifacts/1?device=x&expires=1&sig=0"
        now = datetime.now(UTC)
        async with aiomqtt.Client("127.0.0.1", hub.settings.mqtt.port) as raw:
            for speaker, cid in ((other_model[0], "fw-x-1"), (too_old[0], "fw-x-2")):
                command = UpdateCommand(
                    cid,
                    now,
                    now + timedelta(minutes=5),
                    "IP Speaker S30",
                    "2.10.0",
                    "2.4.0",
                    url,
                    16384,
                    "0" * 64,
                )
                await raw.publish(
                    Topics.for_device(speaker.uid, Topics.FIRMWARE), encode_command(command), qos=1
                )

        def refusals() -> list[str] | None:
            found = [
                r.reason.value
                for s in (other_model[0], too_old[0])
                for r in fleet.speaker(s.uid).firmware.reports
                if r.reason is not None
            ]
            return found if len(found) == 2 else None

        assert sorted(await eventually(refusals, 5)) == ["below_minimum", "wrong_model"]
        assert fleet.speaker(too_old[0].uid).firmware.version == "2.2.7"


async def test_pause_resume_and_cancel(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection, releases: dict[str, int]
) -> None:
    speakers = await register(db, {"ward-a": 6})
    uids = [s.uid for s in speakers]
    async with updating_speakers(
        hub.settings.mqtt.port, speakers, timing=UpdateTiming(0.05, 0.8, 0.1)
    ) as fleet:
        created = await clients.technician.post(
            "/api/v1/firmware/campaigns",
            json=plan(releases["2.10.0"], waves=[100], max_ward_percent=34),
        )
        campaign_id = created.json()["campaign"]["id"]
        paused = await clients.technician.post(f"/api/v1/firmware/campaigns/{campaign_id}/pause")
        assert paused.json()["state"] == "paused"
        await asyncio.sleep(2.0)
        started = sum(update_commands(fleet, u) for u in uids)
        assert started <= 2  # those sent before the pause finish; no one else starts
        assert (
            await clients.technician.post(f"/api/v1/firmware/campaigns/{campaign_id}/pause")
        ).status_code == 409
        await clients.technician.post(f"/api/v1/firmware/campaigns/{campaign_id}/resume")

        async def some_updating() -> bool:
            rows = await devices_of(clients.technician, campaign_id)
            return sum(r["state"] == "updated" for r in rows.values()) >= 3

        await eventually(some_updating, 15)
        cancelled = await clients.technician.post(
            f"/api/v1/firmware/campaigns/{campaign_id}/cancel"
        )
        assert cancelled.json()["state"] == "cancelled"
        await asyncio.sleep(1.5)
        rows = await devices_of(clients.technician, campaign_id)
        states = [r["state"] for r in rows.values()]
        assert "pending" not in states and "cancelled" in states
        assert all(update_commands(fleet, u) <= 1 for u in uids)


async def test_the_command_line_creates_a_campaign_and_follows_it_to_the_end(
    clients: Clients,
    hub: RunningHub,
    db: asyncpg.Connection,
    releases: dict[str, int],
    database_url: str,
) -> None:
    speakers = await register(db, {"ward-a": 3})
    async with updating_speakers(hub.settings.mqtt.port, speakers):
        created = await asyncio.to_thread(
            iochub,
            database_url,
            "firmware", "rollout", "create", "--name", "from the CLI",
            "--release", str(releases["2.10.0"]), "--ward", "ward-a",
            "--waves", "33,100", "--max-ward-percent", "70",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        campaign_id = int(created.stdout.split()[1])
        assert "waves [1, 2]" in created.stdout
        followed = await asyncio.to_thread(
            iochub, database_url, "firmware", "rollout", "status", str(campaign_id), "--watch"
        )
        assert followed.returncode == 0, followed.stderr
        assert "(completed)" in followed.stdout and "wave 2" in followed.stdout
        paused = await asyncio.to_thread(
            iochub, database_url, "firmware", "rollout", "pause", str(campaign_id)
        )
        assert paused.returncode == 1 and "cannot make it paused" in paused.stderr
