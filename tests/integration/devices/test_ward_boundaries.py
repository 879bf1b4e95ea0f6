"""Ward outlines through the registry's API: set, read, replace and clear (administrators,
audited), each ring checked against RFC 7946 with problem+json naming the position at fault,
the wards.geojson feed scoped to the wards a person serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem

SQUARE: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [
        [
            [106.690, 20.860],
            [106.695, 20.860],
            [106.695, 20.865],
            [106.690, 20.865],
            [106.690, 20.860],
        ]
    ],
}


@pytest.fixture
async def no_outlines(clients: Clients, db: asyncpg.Connection) -> AsyncIterator[None]:
    """Wards outlive each test (the suite keeps them): their outlines are cleared around it."""
    await db.execute("UPDATE ward SET boundary = NULL")
    yield
    await db.execute("UPDATE ward SET boundary = NULL")


async def test_an_admin_sets_reads_and_clears_a_wards_outline(
    clients: Clients, db: asyncpg.Connection, no_outlines: None
) -> None:
    assert_problem(await clients.admin.get("/api/v1/wards/ward-a/boundary"), 404)
    stored = await clients.admin.put("/api/v1/wards/ward-a/boundary", json=SQUARE)
    assert stored.status_code == 200, stored.text
    assert stored.json() == SQUARE
    read = await clients.staff_a.get("/api/v1/wards/ward-a/boundary")
    assert read.status_code == 200 and read.json() == SQUARE
    assert read.headers["content-type"].startswith("application/geo+json")
    two = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"], SQUARE["coordinates"]]}
    assert (await clients.admin.put("/api/v1/wards/ward-a/boundary", json=two)).status_code == 200
    await clients.admin.put("/api/v1/wards/ward-b/boundary", json=SQUARE)

    feed = await clients.viewer.get("/api/v1/wards.geojson")
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/geo+json")
    features = feed.json()["features"]
    assert [(f["id"], f["geometry"]["type"]) for f in features] == [
        ("ward-a", "MultiPolygon"),
        ("ward-b", "Polygon"),
    ]
    assert features[0]["properties"] == {"code": "ward-a", "name": "Phường A"}
    # Ward staff see only the wards they serve, and another ward's outline is not there.
    mine = (await clients.staff_a.get("/api/v1/wards.geojson")).json()["features"]
    assert [f["id"] for f in mine] == ["ward-a"]
    assert_problem(await clients.staff_a.get("/api/v1/wards/ward-b/boundary"), 404)

    cleared = await clients.admin.delete("/api/v1/wards/ward-a/boundary")
    assert cleared.status_code == 204
    assert_problem(await clients.admin.get("/api/v1/wards/ward-a/boundary"), 404)
    audit = await db.fetch(
        "SELECT action, after FROM audit_log WHERE object_type = 'ward' AND object_id = 'ward-a' "
        "ORDER BY id"
    )
    assert [a["action"] for a in audit] == ["ward.boundary", "ward.boundary", "ward.boundary_clear"]


async def test_only_administrators_change_outlines(
    clients: Clients, db: asyncpg.Connection, no_outlines: None
) -> None:
    for client in (clients.technician, clients.staff_a, clients.viewer):
        assert_problem(await client.put("/api/v1/wards/ward-a/boundary", json=SQUARE), 403)
        assert_problem(await client.delete("/api/v1/wards/ward-a/boundary"), 403)
    assert_problem(await clients.anonymous.put("/api/v1/wards/ward-a/boundary", json=SQUARE), 401)
    assert_problem(await clients.admin.put("/api/v1/wards/nowhere/boundary", json=SQUARE), 404)
    assert await db.fetchval("SELECT count(*) FROM ward WHERE boundary IS NOT NULL") == 0


def ring(*positions: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [list(positions)]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "Point", "coordinates": [106.69, 20.86]}, "type"),
        ({"type": "Feature", "geometry": SQUARE, "properties": {}}, "type"),
        ({**SQUARE, "crs": "EPSG:4326"}, "crs"),
        ({"type": "Polygon", "coordinates": []}, "coordinates"),
        (ring([106.69, 20.86], [106.70, 20.86], [106.69, 20.86]), "coordinates[0]"),
        (
            ring([106.69, 20.86], [106.70, 20.86], [106.70, 20.87], [106.69, 20.87]),
            "coordinates[0]",
        ),
        (
            ring([106.69, 20.86], [106.70, 95.0], [106.70, 20.87], [106.69, 20.86]),
            "coordinates[0][1]",
        ),
        (
            ring([106.69, 20.86], [190.0, 20.86], [106.70, 20.87], [106.69, 20.86]),
            "coordinates[0][1]",
        ),
        (
            ring([106.69, 20.86], ["106.70", 20.86], [106.70, 20.87], [106.69, 20.86]),
            "coordinates[0][1]",
        ),
        (ring([106.69, 20.86], [106.70], [106.70, 20.87], [106.69, 20.86]), "coordinates[0][1]"),
        ({"type": "MultiPolygon", "coordinates": [[]]}, "coordinates[0]"),
    ],
)
async def test_a_bad_outline_is_a_problem_naming_where(
    clients: Clients, db: asyncpg.Connection, no_outlines: None, body: dict[str, Any], field: str
) -> None:
    response = await clients.admin.put("/api/v1/wards/ward-a/boundary", json=body)
    assert_problem(response, 422, field)
    assert await db.fetchval("SELECT boundary FROM ward WHERE code = 'ward-a'") is None


async def test_an_outline_that_is_not_an_object_is_refused(
    clients: Clients, no_outlines: None
) -> None:
    for body in ([1, 2], "polygon"):
        response = await clients.admin.put("/api/v1/wards/ward-a/boundary", json=body)
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
