"""Bulk import (all or nothing, per-row report) and export as CSV and GeoJSON."""

from __future__ import annotations

import csv
import io
import json

import asyncpg

from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem, counts

GOOD_CSV = """uid,kind,name,ward,latitude,longitude,tags,serial
aq-a-01,sensor,Air A1,ward-a,20.861,106.701,air;pm,AQ1
aq-a-02,sensor,Air A2,ward-a,20.862,106.702,air,AQ2
cam-b-01,camera,Cam B1,ward-b,20.850,106.690,,
"""


async def test_csv_import_creates_every_row(clients: Clients, db: asyncpg.Connection) -> None:
    response = await clients.technician.post(
        "/api/v1/devices/import", content=GOOD_CSV.encode(), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"created": 3, "rows": 3}
    row = await db.fetchrow("SELECT * FROM device WHERE uid = 'aq-a-01'")
    assert row["tags"] == ["air", "pm"] and row["latitude"] == 20.861
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'device.import'") == 1


async def test_dry_run_creates_nothing(clients: Clients, db: asyncpg.Connection) -> None:
    response = await clients.technician.post(
        "/api/v1/devices/import?dry_run=true",
        content=GOOD_CSV.encode(),
        headers={"content-type": "text/csv"},
    )
    assert response.json() == {"created": 0, "rows": 3}
    assert await db.fetchval("SELECT count(*) FROM device") == 0


async def test_one_bad_row_rejects_the_whole_file_with_a_report(
    clients: Clients, db: asyncpg.Connection
) -> None:
    await clients.admin.post(
        "/api/v1/devices", json={"uid": "taken-1", "kind": "sensor", "ward": "ward-a"}
    )
    before = await counts(db)
    bad = (
        GOOD_CSV
        + "aq-a-03,sensor,x,nowhere,20.8,106.7,,\n"  # row 4: unknown ward
        + "aq-a-04,sensor,x,ward-a,north,106.7,,\n"  # row 5: latitude not a number
        + "aq-a-01,sensor,x,ward-a,20.8,106.7,,\n"  # row 6: uid twice in the file
        + "taken-1,sensor,x,ward-a,20.8,106.7,,\n"  # row 7: uid exists
        + "aq-a-05,fridge,x,ward-a,20.8,106.7,,\n"
    )  # row 8: unknown kind
    response = await clients.technician.post(
        "/api/v1/devices/import", content=bad.encode(), headers={"content-type": "text/csv"}
    )
    problem = assert_problem(response, 422)
    report = {(e["row"], e["field"]) for e in problem["errors"]}
    assert {(4, "ward"), (5, "latitude"), (1, "uid"), (6, "uid"), (7, "uid"), (8, "kind")} <= report
    assert "nothing was imported" in problem["detail"]
    assert await counts(db) == before


async def test_json_import_is_strict_about_types(clients: Clients, db: asyncpg.Connection) -> None:
    rows = [
        {"uid": "j-1", "kind": "speaker", "ward": "ward-a"},
        {"uid": "j-2", "kind": "speaker", "ward": "ward-a", "latitude": "20.1", "longitude": 106.0},
    ]
    response = await clients.admin.post("/api/v1/devices/import", json=rows)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["row"] == 2 and problem["errors"][0]["field"] == "latitude"
    ok = await clients.admin.post("/api/v1/devices/import", json={"devices": rows[:1]})
    assert ok.status_code == 201, ok.text
    assert await db.fetchval("SELECT count(*) FROM device") == 1


async def test_malformed_and_oversize_files_are_refused(
    clients: Clients, db: asyncpg.Connection
) -> None:
    before = await counts(db)
    for body, content_type, status, field in [
        (b'uid,kind\n"unterminated,sensor\n', "text/csv", 400, "file"),
        (b"name,colour\nx,red\n", "text/csv", 400, "header"),
        (b"uid,kind\na,sensor,extra\n", "text/csv", 400, "file"),
        (b"\xff\xfe\x00garbage", "text/csv", 400, "file"),
        (b"[1, 2]", "application/json", 400, "file"),
        (b"uid,kind\n", "text/csv", 422, "file"),
        (b"<devices/>", "application/xml", 400, "content-type"),
    ]:
        response = await clients.admin.post(
            "/api/v1/devices/import", content=body, headers={"content-type": content_type}
        )
        assert_problem(response, status, field)
    many = "uid,kind,ward\n" + "".join(f"d-{n},sensor,ward-a\n" for n in range(20_001))
    assert_problem(
        await clients.admin.post(
            "/api/v1/devices/import", content=many.encode(), headers={"content-type": "text/csv"}
        ),
        413,
    )
    huge = b"uid,kind,ward\n" + b"x" * (6 * 1024 * 1024)
    response = await clients.admin.post(
        "/api/v1/devices/import", content=huge, headers={"content-type": "text/csv"}
    )
    assert_problem(response, 413)
    assert await counts(db) == before


async def test_export_csv_round_trips_and_geojson_is_a_feature_collection(clients: Clients) -> None:
    await clients.admin.post(
        "/api/v1/devices/import", content=GOOD_CSV.encode(), headers={"content-type": "text/csv"}
    )
    exported = await clients.viewer.get("/api/v1/devices.csv", params={"ward": "ward-a"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["uid"] for r in rows] == ["aq-a-01", "aq-a-02"]
    assert rows[0]["tags"] == "air;pm" and rows[0]["status"] == "unknown"

    geo = await clients.viewer.get("/api/v1/devices.geojson", params={"kind": "camera"})
    assert geo.headers["content-type"].startswith("application/geo+json")
    collection = json.loads(geo.text)
    assert collection["type"] == "FeatureCollection"
    (feature,) = collection["features"]
    assert feature["geometry"] == {"type": "Point", "coordinates": [106.69, 20.85]}
    assert feature["properties"]["status"] == "unknown"
    assert feature["properties"]["href"].endswith("/api/v1/devices/cam-b-01")
