"""The cameras nearest a place, a device or an alert, on known coordinates."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import asyncpg

from drivers.onvif.simulator import CameraSpec
from hub.alerts import lifecycle
from hub.cameras.service import CameraService
from tests.conftest import Clients
from tests.integration.cameras.conftest import app_state, assert_problem
from tests.support.cameras import StartCameras, onboard
from tests.support.hub import RunningHub

CENTRE = (20.8600, 106.6900)
METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180  # along a meridian


def north(metres: float) -> tuple[float, float]:
    return CENTRE[0] + metres / METRES_PER_DEGREE, CENTRE[1]


def east(metres: float) -> tuple[float, float]:
    per_degree = METRES_PER_DEGREE * math.cos(math.radians(CENTRE[0]))
    return CENTRE[0], CENTRE[1] + metres / per_degree


async def place_cameras(clients: Clients, start_cameras: StartCameras) -> dict[str, str]:
    """Cameras at 100 m north, 200 m east, 250 m north, 450 m east (ward-a), 50 m (ward-b)."""
    places = {
        "n100": (north(100), "ward-a"),
        "e200": (east(200), "ward-a"),
        "n250": (north(250), "ward-a"),
        "e450": (east(450), "ward-a"),
        "b50": (east(-50), "ward-b"),
    }
    simulator = await start_cameras(*(CameraSpec(name) for name in places))
    uids = {}
    for name, ((lat, lon), ward) in places.items():
        created = await onboard(
            clients.technician, simulator[name], ward, latitude=lat, longitude=lon
        )
        uids[name] = created["uid"]
    return uids


async def test_nearest_cameras_to_a_point_in_order_within_the_radius(
    clients: Clients, cameras: CameraService, start_cameras: StartCameras
) -> None:
    uids = await place_cameras(clients, start_cameras)
    point = {"lat": CENTRE[0], "lon": CENTRE[1]}

    everyone = (await clients.admin.get("/api/v1/cameras/near", params=point)).json()
    staff = (await clients.staff_a.get("/api/v1/cameras/near", params=point)).json()
    wide = await clients.admin.get("/api/v1/cameras/near", params=point | {"radius_m": 500})

    assert everyone["radius_m"] == 300  # the default radius
    assert [c["uid"] for c in everyone["items"]] == [
        uids["b50"],
        uids["n100"],
        uids["e200"],
        uids["n250"],
    ]
    distances = [c["distance_m"] for c in everyone["items"]]
    for measured, expected in zip(distances, (50, 100, 200, 250), strict=True):
        assert abs(measured - expected) < 1.0, distances
    # Ward staff see the cameras of their own wards only.
    assert [c["uid"] for c in staff["items"]] == [uids["n100"], uids["e200"], uids["n250"]]
    assert [c["uid"] for c in wide.json()["items"]][-1] == uids["e450"]
    first = everyone["items"][0]
    assert first["links"]["hls"] == f"/api/v1/cameras/{uids['b50']}/live/sub/index.m3u8"
    assert first["links"]["view"] == f"/cameras/{uids['b50']}"

    missing = await clients.admin.get("/api/v1/cameras/near")
    assert assert_problem(missing, 422)["errors"][0]["field"] == "lat"


async def test_an_alert_lists_its_nearest_cameras_and_its_webhook_links_them(
    hub: RunningHub,
    clients: Clients,
    cameras: CameraService,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    uids = await place_cameras(clients, start_cameras)
    lat, lon = north(-10)
    sensor = await clients.admin.post(
        "/api/v1/devices",
        json={
            "uid": "flood-gauge",
            "kind": "sensor",
            "ward": "ward-a",
            "latitude": lat,
            "longitude": lon,
        },
    )
    assert sensor.status_code == 201, sensor.text
    near_device = await clients.staff_a.get(
        "/api/v1/cameras/near", params={"device": "flood-gauge"}
    )
    assert [c["uid"] for c in near_device.json()["items"]][:2] == [uids["n100"], uids["e200"]]

    rule = await clients.technician.post(
        "/api/v1/alert-rules",
        json={
            "name": "Water high",
            "kind": "threshold",
            "severity": "major",
            "metric": "water_level",
            "comparison": ">",
            "threshold": 1.0,
            "message": "Water {value:.1f} m at {device}",
        },
    )
    assert rule.status_code == 201, rule.text
    device_id, ward_id = await db.fetchrow(
        "SELECT id, ward_id FROM device WHERE uid = 'flood-gauge'"
    )
    pool = app_state(hub).database.pool
    alert_id = await lifecycle.fire(
        pool,
        lifecycle.NewAlert(
            rule.json()["id"],
            "Water high",
            device_id,
            ward_id,
            "major",
            1.4,
            1.0,
            "Water 1.4 m at flood-gauge",
            datetime.now(UTC),
        ),
    )

    alert = (await clients.staff_a.get(f"/api/v1/alerts/{alert_id}")).json()
    nearby = [c["uid"] for c in alert["nearby_cameras"]]
    assert nearby == [uids["n100"], uids["e200"], uids["n250"]]  # b50 is in ward-b
    # The console's alert page lays out the nearest cameras' players side by side.
    page = await clients.staff_a.get(f"/alerts/{alert_id}")
    assert page.status_code == 200, page.text
    players = re.findall(r'<figure class="player" data-uid="([^"]+)"', page.text)
    assert players == [uids["n100"], uids["e200"], uids["n250"]]
    assert f'data-hls="/api/v1/cameras/{uids["n100"]}/live/sub/index.m3u8"' in page.text
    assert "/static/vendor/hls.min.js" in page.text
    camera_page = await clients.staff_a.get(f"/cameras/{uids['n100']}")
    assert camera_page.status_code == 200
    assert 'data-health="up_auth"' in camera_page.text
    assert (await clients.staff_a.get(f"/cameras/{uids['b50']}")).status_code == 404

    by_alert = await clients.staff_a.get("/api/v1/cameras/near", params={"alert": alert_id})
    assert [c["uid"] for c in by_alert.json()["items"]] == nearby
    # An alert of another ward's device does not exist for ward-a's staff.
    other = await clients.admin.post(
        "/api/v1/devices",
        json={
            "uid": "b-gauge",
            "kind": "sensor",
            "ward": "ward-b",
            "latitude": lat,
            "longitude": lon,
        },
    )
    assert other.status_code == 201, other.text
    b_id, b_ward = await db.fetchrow("SELECT id, ward_id FROM device WHERE uid = 'b-gauge'")
    b_alert = await lifecycle.fire(
        pool,
        lifecycle.NewAlert(
            rule.json()["id"],
            "Water high",
            b_id,
            b_ward,
            "major",
            1.2,
            1.0,
            "Water",
            datetime.now(UTC),
        ),
    )
    hidden = await clients.staff_a.get("/api/v1/cameras/near", params={"alert": b_alert})
    assert_problem(hidden, 404)
    seen = await clients.admin.get("/api/v1/cameras/near", params={"alert": b_alert})
    assert seen.json()["items"][0]["uid"] == uids["b50"]  # admins see every ward

    payload: dict[str, Any] = json.loads(
        await db.fetchval(
            "SELECT data FROM outbox WHERE event_type = 'vn.iochub.alert.firing' "
            "AND data->>'alert_id' = $1",
            str(alert_id),
        )
    )
    linked = payload["nearby_cameras"]
    assert [c["uid"] for c in linked] == [uids["b50"], uids["n100"], uids["e200"], uids["n250"]]
    base = hub.settings.http.base_url
    assert linked[0]["links"]["view"] == f"{base}/cameras/{uids['b50']}"
    assert linked[0]["links"]["hls"].startswith(f"{base}/api/v1/cameras/")

    layer = (await clients.admin.get("/api/v1/devices.geojson")).json()
    features = {f["id"]: f["properties"] for f in layer["features"]}
    assert features["flood-gauge"]["nearby_cameras"].endswith(
        "/api/v1/cameras/near?device=flood-gauge"
    )
    assert features[uids["n100"]]["live_view"].endswith(f"/cameras/{uids['n100']}")
