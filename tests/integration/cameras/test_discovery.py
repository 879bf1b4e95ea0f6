"""Discovery through the hub: unicast WS-Discovery to the simulator, candidates, moves."""

from __future__ import annotations

from typing import Any

import asyncpg

from drivers.onvif.simulator import CameraFault, CameraSpec
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import assert_problem
from tests.support.cameras import StartCameras, onboard

QUICK = {"multicast": False, "wait_s": 0.4}


async def discover(clients: Clients, port: int) -> dict[str, Any]:
    response = await clients.technician.post(
        "/api/v1/cameras/discover", json={"targets": [f"127.0.0.1:{port}"], **QUICK}
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def test_discovered_cameras_become_candidates_and_can_be_onboarded(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras, db: asyncpg.Connection
) -> None:
    simulator = await start_cameras(CameraSpec("north"), CameraSpec("south"))
    port = await simulator.start_discovery()
    north, south = simulator["north"], simulator["south"]

    report = await discover(clients, port)
    assert report["found"] == 2 and report["known"] == [] and report["moved"] == []
    found = {c["endpoint_ref"]: c for c in report["candidates"]}
    assert set(found) == {north.endpoint_ref, south.endpoint_ref}
    assert (found[north.endpoint_ref]["host"], found[north.endpoint_ref]["port"]) == (
        north.host,
        north.port,
    )
    assert found[north.endpoint_ref]["name"] == "north"
    listed = await clients.technician.get("/api/v1/cameras/candidates")
    assert {c["endpoint_ref"] for c in listed.json()} == set(found)

    # The candidate gives the address: credentials and a ward are all a technician adds.
    created = await clients.technician.post(
        "/api/v1/cameras",
        json={
            "candidate": north.endpoint_ref.upper().replace("URN:UUID:", "urn:uuid:"),
            "username": "admin",
            "password": north.spec.password,
            "ward": "ward-a",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["endpoint_ref"] == north.endpoint_ref
    assert created.json()["port"] == north.port
    assert created.json()["name"] == f"{north.spec.manufacturer} {north.spec.model}"
    listed = await clients.technician.get("/api/v1/cameras/candidates")
    assert [c["endpoint_ref"] for c in listed.json()] == [south.endpoint_ref]

    # Seen again, the onboarded camera is known, not a candidate.
    again = await discover(clients, port)
    assert again["known"] == [created.json()["uid"]]
    assert [c["endpoint_ref"] for c in again["candidates"]] == [south.endpoint_ref]
    assert await db.fetchval("SELECT count(*) FROM camera_candidate") == 1


async def test_a_moved_camera_is_followed_and_a_moved_candidate_stays_one(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras, db: asyncpg.Connection
) -> None:
    simulator = await start_cameras(CameraSpec("east"), CameraSpec("west"))
    port = await simulator.start_discovery()
    east, west = simulator["east"], simulator["west"]
    await discover(clients, port)
    uid = (await onboard(clients.technician, east, candidate=east.endpoint_ref))["uid"]
    old_east = f"{east.host}:{east.port}"

    await east.move()
    await west.move()
    report = await discover(clients, port)

    assert report["moved"] == [
        {
            "uid": uid,
            "from_address": old_east,
            "to_address": f"{east.host}:{east.port}",
            "moved": True,
            "reason": None,
        }
    ]
    camera = (await clients.viewer.get(f"/api/v1/cameras/{uid}")).json()
    assert camera["port"] == east.port and camera["health"]["state"] == "up_auth"
    # The candidate that changed address is the same candidate, at its new address.
    rows = await db.fetch("SELECT endpoint_ref, addresses FROM camera_candidate")
    assert [(r["endpoint_ref"], r["addresses"]) for r in rows] == [
        (west.endpoint_ref, [west.xaddr])
    ]


async def test_a_move_is_not_followed_to_a_different_camera(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("real"))
    port = await simulator.start_discovery()
    real = simulator["real"]
    await discover(clients, port)
    uid = (await onboard(clients.technician, real, candidate=real.endpoint_ref))["uid"]

    # Another camera claims the endpoint reference from elsewhere.
    impostor = await simulator.add(CameraSpec("impostor", endpoint_ref=real.endpoint_ref))
    await real.set_fault(CameraFault.DOWN)
    report = await discover(clients, port)

    [move] = report["moved"]
    assert move["moved"] is False and "another camera" in move["reason"]
    camera = (await clients.viewer.get(f"/api/v1/cameras/{uid}")).json()
    assert camera["port"] == real.port != impostor.port


async def test_dismissed_candidates_stay_dismissed(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("spare"))
    port = await simulator.start_discovery()
    [candidate] = (await discover(clients, port))["candidates"]

    assert_problem(
        await clients.viewer.post(f"/api/v1/cameras/candidates/{candidate['id']}/dismiss"), 403
    )
    dismissed = await clients.technician.post(
        f"/api/v1/cameras/candidates/{candidate['id']}/dismiss"
    )
    assert dismissed.status_code == 200 and dismissed.json()["dismissed"] is True
    await discover(clients, port)
    assert (await clients.technician.get("/api/v1/cameras/candidates")).json() == []
    hidden = await clients.technician.get("/api/v1/cameras/candidates", params={"dismissed": True})
    assert [c["id"] for c in hidden.json()] == [candidate["id"]]


async def test_discovery_refuses_targets_outside_the_camera_subnets(
    clients: Clients, cameras: CameraService
) -> None:
    response = await clients.technician.post(
        "/api/v1/cameras/discover", json={"targets": ["192.0.2.0/24", "127.0.0.1:x"], **QUICK}
    )
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["targets[0]", "targets[1]"]
    assert_problem(
        await clients.staff_a.post("/api/v1/cameras/discover", json={"targets": ["127.0.0.1"]}),
        403,
    )
