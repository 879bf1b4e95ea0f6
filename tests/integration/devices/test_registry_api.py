"""The registry through HTTP: CRUD, filters, pagination, ward scope, bad input."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Clients

SPEAKER = {
    "uid": "spk-a-001",
    "kind": "speaker",
    "name": "Loa A1",
    "ward": "ward-a",
    "latitude": 20.86,
    "longitude": 106.69,
    "tags": ["public-address"],
}


async def counts(db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        await db.fetchval("SELECT count(*) FROM device"),
        await db.fetchval("SELECT count(*) FROM device_group"),
        await db.fetchval("SELECT count(*) FROM audit_log"),
    )


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        fields = [e.get("field") for e in body.get("errors", [])]
        assert field in fields, f"{field} not named in {body}"
    return body


async def make_devices(
    client: httpx.AsyncClient,
    count: int,
    ward: str = "ward-a",
    kind: str = "sensor",
    prefix: str = "dev",
) -> None:
    for n in range(count):
        response = await client.post(
            "/api/v1/devices",
            json={
                "uid": f"{prefix}-{ward}-{n:03d}",
                "kind": kind,
                "ward": ward,
                "latitude": 20.85 + n / 1000,
                "longitude": 106.7,
                "tags": ["t"] if n % 2 else [],
            },
        )
        assert response.status_code == 201, response.text


async def test_create_read_update_decommission(clients: Clients, db: asyncpg.Connection) -> None:
    created = await clients.technician.post("/api/v1/devices", json=SPEAKER)
    assert created.status_code == 201, created.text
    assert created.json()["lifecycle"] == "active" and created.json()["status"] == "unknown"

    fetched = await clients.viewer.get("/api/v1/devices/spk-a-001")
    assert fetched.json()["ward"] == "ward-a"

    patched = await clients.technician.patch(
        "/api/v1/devices/spk-a-001", json={"firmware_version": "2.4.0", "tags": ["x", "x"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["firmware_version"] == "2.4.0" and patched.json()["tags"] == ["x"]

    removed = await clients.technician.delete("/api/v1/devices/spk-a-001")
    assert removed.json()["lifecycle"] == "decommissioned"
    back = await clients.technician.patch("/api/v1/devices/spk-a-001", json={"lifecycle": "active"})
    assert_problem(back, 422, "lifecycle")

    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["device.create", "device.update", "device.decommission"]
    update = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'device.update'")
    assert update["actor"] == "technician"
    assert '"firmware_version": ""' in update["before"] and '"2.4.0"' in update["after"]


async def test_pending_device_is_rejected_outright(
    clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.admin.post(
        "/api/v1/devices", json={"uid": "new-1", "kind": "sensor", "lifecycle": "pending"}
    )
    assert (await clients.admin.delete("/api/v1/devices/new-1")).json() is None
    assert await db.fetchval("SELECT count(*) FROM device") == 0


async def test_filters_and_cursor_pagination(clients: Clients) -> None:
    await make_devices(clients.admin, 7, "ward-a", "sensor")
    await make_devices(clients.admin, 3, "ward-b", "camera")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await clients.viewer.get("/api/v1/devices", params=params)).json()
        seen += [d["uid"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 10 and len(set(seen)) == 10

    async def uids(**params: Any) -> set[str]:
        response = await clients.viewer.get("/api/v1/devices", params=params)
        assert response.status_code == 200, response.text
        return {d["uid"] for d in response.json()["items"]}

    assert len(await uids(kind="camera")) == 3
    assert len(await uids(ward="ward-a")) == 7
    assert len(await uids(ward=["ward-a", "ward-b"])) == 10
    assert len(await uids(tag="t")) == 3 + 1
    assert await uids(q="WARD-B-001") == {"dev-ward-b-001"}
    assert await uids(status="online") == set()
    assert_problem(
        await clients.viewer.get("/api/v1/devices", params={"cursor": "garbage!"}), 400, "cursor"
    )
    assert_problem(
        await clients.viewer.get("/api/v1/devices", params={"ward": "nowhere"}), 422, "ward"
    )
    assert_problem(await clients.viewer.get("/api/v1/devices", params={"kind": "toaster"}), 400)


async def test_ward_staff_see_and_change_only_their_wards(clients: Clients) -> None:
    await make_devices(clients.admin, 2, "ward-a")
    await make_devices(clients.admin, 2, "ward-b")
    page = (await clients.staff_a.get("/api/v1/devices")).json()
    assert {d["ward"] for d in page["items"]} == {"ward-a"}
    # Another ward's device does not exist for them, whether they read or write it.
    assert_problem(await clients.staff_a.get("/api/v1/devices/dev-ward-b-000"), 404)
    assert [w["code"] for w in (await clients.staff_a.get("/api/v1/wards")).json()] == ["ward-a"]
    geo = (await clients.staff_a.get("/api/v1/devices.geojson")).json()
    assert {f["properties"]["ward"] for f in geo["features"]} == {"ward-a"}
    csv_text = (await clients.staff_a.get("/api/v1/devices.csv")).text
    assert "ward-b" not in csv_text and "dev-ward-a-000" in csv_text

    # Ward staff may group devices of their ward, not another's.
    ok = await clients.staff_a.post(
        "/api/v1/groups", json={"name": "Loa chợ", "ward": "ward-a", "members": ["dev-ward-a-000"]}
    )
    assert ok.status_code == 201, ok.text
    assert_problem(
        await clients.staff_a.post("/api/v1/groups", json={"name": "x", "ward": "ward-b"}), 403
    )
    assert_problem(
        await clients.staff_a.post(
            "/api/v1/groups", json={"name": "y", "ward": "ward-a", "members": ["dev-ward-b-000"]}
        ),
        422,
        "members",
    )
    assert_problem(await clients.staff_a.post("/api/v1/devices", json={**SPEAKER}), 403)
    assert_problem(
        await clients.staff_a.patch("/api/v1/devices/dev-ward-a-000", json={"name": "x"}), 403
    )
    admin_groups = (await clients.admin.get("/api/v1/groups")).json()
    assert [g["name"] for g in admin_groups] == ["Loa chợ"]


async def test_groups_static_and_saved_filter(clients: Clients) -> None:
    await make_devices(clients.admin, 4, "ward-a", "sensor")
    await make_devices(clients.admin, 2, "ward-a", "camera", prefix="cam")
    saved = await clients.technician.post(
        "/api/v1/groups",
        json={"name": "cameras of A", "filter": {"kind": "camera", "wards": ["ward-a"]}},
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["member_count"] == 2
    await make_devices(clients.admin, 1, "ward-a", "camera", prefix="cam2")
    members = await clients.viewer.get(f"/api/v1/groups/{saved.json()['id']}/devices")
    assert len(members.json()) == 3  # a saved filter stays current
    both = await clients.technician.post(
        "/api/v1/groups",
        json={"name": "bad", "members": ["dev-ward-a-000"], "filter": {"kind": "camera"}},
    )
    assert_problem(both, 422, "filter")
    assert_problem(
        await clients.technician.post(
            "/api/v1/groups",
            json={"name": "cameras of A", "filter": {"kind": "camera", "wards": ["ward-a"]}},
        ),
        409,
    )
    assert (
        await clients.technician.delete(f"/api/v1/groups/{saved.json()['id']}")
    ).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SPEAKER, "latitude": "north"}, "latitude"),
        ({**SPEAKER, "latitude": 91}, "latitude"),
        ({**SPEAKER, "kind": "toaster"}, "kind"),
        ({**SPEAKER, "uid": "has space"}, "uid"),
        ({**SPEAKER, "ward": "nowhere"}, "ward"),
        ({**SPEAKER, "longitude": None}, "longitude"),
        ({**SPEAKER, "colour": "red"}, "colour"),
        ({k: v for k, v in SPEAKER.items() if k != "kind"}, "kind"),
        ({**SPEAKER, "ward": None}, "ward"),
        ({**SPEAKER, "tags": ["Not A Tag"]}, "tags[0]"),
    ],
)
async def test_bad_device_is_refused_and_nothing_changes(
    clients: Clients, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    before = await counts(db)
    response = await clients.admin.post("/api/v1/devices", json=body)
    problem = assert_problem(response, response.status_code, field)
    assert response.status_code in (400, 422), problem
    assert await counts(db) == before


async def test_duplicate_uid_and_bad_patch_change_nothing(
    clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.admin.post("/api/v1/devices", json=SPEAKER)
    before = await counts(db)
    assert_problem(await clients.admin.post("/api/v1/devices", json=SPEAKER), 409, "uid")
    assert_problem(
        await clients.admin.patch("/api/v1/devices/spk-a-001", json={"latitude": "x"}),
        400,
        "latitude",
    )
    assert_problem(
        await clients.admin.patch("/api/v1/devices/spk-a-001", json={"ward": "nowhere"}),
        422,
        "ward",
    )
    assert_problem(
        await clients.admin.patch("/api/v1/devices/spk-a-001", json={"latitude": None}),
        422,
        "latitude",
    )
    assert_problem(await clients.admin.patch("/api/v1/devices/nope", json={"name": "x"}), 404)
    assert_problem(
        await clients.admin.post(
            "/api/v1/devices", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert await counts(db) == before


async def test_read_only_roles_cannot_write(clients: Clients, db: asyncpg.Connection) -> None:
    before = await counts(db)
    assert_problem(await clients.viewer.post("/api/v1/devices", json=SPEAKER), 403)
    assert_problem(await clients.viewer.post("/api/v1/groups", json={"name": "x"}), 403)
    assert_problem(
        await clients.technician.post("/api/v1/wards", json={"code": "ward-z", "name": "Z"}), 403
    )
    assert await counts(db) == before
