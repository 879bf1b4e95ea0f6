"""Onboarding simulated cameras through the hub's API: probe, register, seal, recognise."""

from __future__ import annotations

import json
import logging
import time

import asyncpg
import pytest

from drivers.onvif.simulator import CameraFault, CameraSpec
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import assert_problem, tune
from tests.support.cameras import StartCameras, onboard, onboarding
from tests.support.hub import RunningHub

SECRET = "Wh1sper-0f-the-Lens"


async def test_onboarding_registers_the_camera_and_seals_its_password(
    hub: RunningHub,
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = CameraSpec("gate", password=SECRET, embed_credentials_in_uris=True)
    camera = (await start_cameras(spec))["gate"]
    responses = []

    response = await clients.technician.post("/api/v1/cameras", json=onboarding(camera))
    responses.append(response)
    assert response.status_code == 201, response.text
    created = response.json()
    uid = created["uid"]
    assert uid == f"cam-{spec.serial.lower()}"
    assert created["ward"] == "ward-a" and created["status"] == "online"
    assert (created["manufacturer"], created["model"], created["firmware"], created["serial"]) == (
        spec.manufacturer,
        spec.model,
        spec.firmware,
        spec.serial,
    )
    assert (created["host"], created["port"]) == (camera.host, camera.port)
    assert created["capabilities"]["pullpoint"] is True
    assert created["capabilities"]["ptz"] is False
    profiles = {p["token"]: p for p in created["profiles"]}
    assert profiles["profile_main"]["codec"] == "H265"
    assert (profiles["profile_main"]["width"], profiles["profile_main"]["height"]) == (2560, 1440)
    # The camera embeds its credentials in its URIs; the hub hands them on without.
    assert profiles["profile_sub"]["stream_uri"] == "rtsp://127.0.0.1:554/Streaming/profile_sub"
    assert created["snapshot"] == f"/api/v1/cameras/{uid}/snapshot"
    assert created["health"]["state"] == "up_auth"

    responses.append(await clients.viewer.get(f"/api/v1/cameras/{uid}"))
    responses.append(await clients.admin.get("/api/v1/cameras"))
    responses.append(await clients.admin.get(f"/api/v1/devices/{uid}"))
    assert [r.status_code for r in responses[1:]] == [200, 200, 200]
    assert responses[2].json()["items"][0]["uid"] == uid

    row = await db.fetchrow(
        "SELECT c.* FROM camera c JOIN device d ON d.id = c.device_id WHERE d.uid = $1", uid
    )
    assert row is not None
    assert SECRET not in json.dumps(dict(row), default=str)
    # Sealed for this camera: it opens with the hub's key and this camera's context only.
    box = hub.settings.secret_box()
    assert box.open(row["password_sealed"], f"camera:{uid}") == SECRET
    with pytest.raises(Exception, match="damaged or belongs elsewhere"):
        box.open(row["password_sealed"], "camera:another")
    audit = await db.fetch("SELECT action, before, after FROM audit_log WHERE object_id = $1", uid)
    assert [entry["action"] for entry in audit] == ["camera.onboard"]
    assert SECRET not in str([dict(entry) for entry in audit])
    assert all(SECRET not in r.text for r in responses)
    # The capture saw the hub's own lines and the ORM's queries, and no password in them.
    assert f"onboarded camera {uid}" in caplog.text
    assert any(record.name.startswith("tortoise") for record in caplog.records)
    assert SECRET not in caplog.text


async def test_wrong_password_is_a_credentials_problem(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras, db: asyncpg.Connection
) -> None:
    camera = (await start_cameras(CameraSpec("wrong")))["wrong"]
    response = await clients.technician.post(
        "/api/v1/cameras", json=onboarding(camera, password="not-the-password")
    )
    body = assert_problem(response, 422, "camera-credentials-rejected")
    assert "rejected the credentials" in body["detail"]
    assert {e["field"] for e in body["errors"]} == {"username", "password"}
    assert "not-the-password" not in response.text
    assert await db.fetchval("SELECT count(*) FROM camera") == 0


async def test_cameras_that_cannot_be_probed_get_a_clear_problem_in_time(
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tune(monkeypatch, cameras, probe_timeout_s=1.0)
    cases = {
        CameraFault.DOWN: (502, "camera-unavailable", "nothing answered"),
        CameraFault.NOT_ONVIF: (502, "camera-unavailable", "not ONVIF"),
        CameraFault.HUNG: (504, "camera-timeout", "did not answer in time"),
        CameraFault.HANG_MID_RESPONSE: (504, "camera-timeout", "did not answer in time"),
    }
    simulator = await start_cameras(*(CameraSpec(fault.value, fault=fault) for fault in cases))
    for fault, (status, slug, hint) in cases.items():
        camera = simulator[fault.value]
        started = time.monotonic()
        response = await clients.technician.post("/api/v1/cameras", json=onboarding(camera))
        assert time.monotonic() - started < 3.0, fault
        body = assert_problem(response, status, slug)
        assert hint in body["detail"] and f"{camera.host}:{camera.port}" in body["detail"], fault


async def test_addresses_outside_the_camera_subnets_are_refused_unprobed(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    camera = (await start_cameras(CameraSpec("lan")))["lan"]
    for host, reason in (("192.0.2.10", "outside the camera subnets"), ("cam.local", "names")):
        response = await clients.technician.post(
            "/api/v1/cameras", json=onboarding(camera, host=host)
        )
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "host" and reason in body["errors"][0]["message"]
    assert camera.stats.operations.total() == 0


async def test_a_camera_is_recognised_by_serial_and_followed_when_it_moves(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras, db: asyncpg.Connection
) -> None:
    camera = (await start_cameras(CameraSpec("porch")))["porch"]
    uid = (await onboard(clients.technician, camera))["uid"]

    again = await clients.technician.post(
        "/api/v1/cameras", json=onboarding(camera, uid="cam-porch-again", ward="ward-b")
    )
    assert assert_problem(again, 409, "camera-already-onboarded")["uid"] == uid

    old_port = camera.port
    await camera.move()
    moved = await clients.technician.post("/api/v1/cameras", json=onboarding(camera))
    assert moved.status_code == 200, moved.text
    assert moved.json()["uid"] == uid and moved.json()["port"] == camera.port != old_port
    assert await db.fetchval("SELECT count(*) FROM camera") == 1
    entry = await db.fetchrow(
        "SELECT before, after FROM audit_log WHERE action = 'camera.move' AND object_id = $1", uid
    )
    assert entry is not None
    assert json.loads(entry["before"])["port"] == old_port
    assert json.loads(entry["after"])["port"] == camera.port


async def test_only_technicians_and_admins_onboard(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    camera = (await start_cameras(CameraSpec("roles")))["roles"]
    for client in (clients.viewer, clients.staff_a):
        response = await client.post("/api/v1/cameras", json=onboarding(camera))
        assert_problem(response, 403)
    assert_problem(await clients.anonymous.post("/api/v1/cameras", json=onboarding(camera)), 401)
    assert camera.stats.operations.total() == 0
    await onboard(clients.admin, camera)


async def test_credentials_reprobe_and_decommission(
    hub: RunningHub,
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    spec = CameraSpec("yard")
    camera = (await start_cameras(spec))["yard"]
    uid = (await onboard(clients.technician, camera))["uid"]
    url = f"/api/v1/cameras/{uid}"

    spec.password = "Rotated-Passw0rd"
    rejected = await clients.technician.put(
        f"{url}/credentials", json={"username": "admin", "password": "Guess-1"}
    )
    assert_problem(rejected, 422, "camera-credentials-rejected")
    assert_problem(
        await clients.staff_a.put(
            f"{url}/credentials", json={"username": "admin", "password": spec.password}
        ),
        403,
    )
    accepted = await clients.technician.put(
        f"{url}/credentials", json={"username": "admin", "password": spec.password}
    )
    assert accepted.status_code == 200, accepted.text
    assert spec.password not in accepted.text
    sealed = await db.fetchval(
        "SELECT password_sealed FROM camera c JOIN device d ON d.id = c.device_id WHERE uid = $1",
        uid,
    )
    assert hub.settings.secret_box().open(sealed, f"camera:{uid}") == spec.password

    spec.firmware = "V5.8.0 build 250301"
    reprobed = await clients.technician.post(f"{url}/probe")
    assert reprobed.status_code == 200, reprobed.text
    assert reprobed.json()["firmware"] == spec.firmware
    device = await clients.viewer.get(f"/api/v1/devices/{uid}")
    assert device.json()["firmware_version"] == spec.firmware

    removed = await clients.technician.delete(url)
    assert removed.status_code == 200, removed.text
    assert removed.json()["lifecycle"] == "decommissioned"
    assert await db.fetchval("SELECT password_sealed FROM camera") is None
    assert (await clients.admin.get("/api/v1/cameras")).json()["items"] == []
    listed = await clients.admin.get("/api/v1/cameras", params={"decommissioned": True})
    assert [c["uid"] for c in listed.json()["items"]] == [uid]
    actions = await db.fetch("SELECT action FROM audit_log WHERE object_id = $1 ORDER BY id", uid)
    assert [a["action"] for a in actions] == [
        "camera.onboard",
        "camera.credentials",
        "camera.reprobe",
        "device.decommission",
    ]


async def test_list_is_scoped_to_wards_and_filtered(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("a1"), CameraSpec("b1"))
    a1 = (await onboard(clients.technician, simulator["a1"], "ward-a"))["uid"]
    b1 = (await onboard(clients.technician, simulator["b1"], "ward-b"))["uid"]

    def uids(response: object) -> list[str]:
        return [c["uid"] for c in response.json()["items"]]  # type: ignore[attr-defined]

    assert uids(await clients.staff_a.get("/api/v1/cameras")) == [a1]
    assert_problem(await clients.staff_a.get(f"/api/v1/cameras/{b1}"), 404)
    assert uids(await clients.viewer.get("/api/v1/cameras", params={"ward": "ward-b"})) == [b1]
    assert sorted(
        uids(await clients.viewer.get("/api/v1/cameras", params={"health": "up_auth"}))
    ) == sorted([a1, b1])
    assert uids(await clients.viewer.get("/api/v1/cameras", params={"health": "unreachable"})) == []
    page = await clients.viewer.get("/api/v1/cameras", params={"limit": 1})
    assert len(uids(page)) == 1 and page.json()["next_cursor"]
    rest = await clients.viewer.get(
        "/api/v1/cameras", params={"limit": 1, "cursor": page.json()["next_cursor"]}
    )
    assert uids(page) + uids(rest) == [a1, b1]
