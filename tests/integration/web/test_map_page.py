"""The console's map page: the devices a person may see with their kind and status, the
outlines of their wards, filters from the URL, and tiles only from the configured server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from hub.web import ConsoleSettings
from tests.conftest import Clients
from tests.integration.devices.test_ward_boundaries import SQUARE
from tests.integration.web.conftest import Session
from tests.support.hub import RunningHub

HTML = {"accept": "text/html"}


def map_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', html, re.S)
    assert found, html[:2000]
    data: dict[str, Any] = json.loads(found.group(1))
    return data


@pytest.fixture
async def placed(clients: Clients, db: asyncpg.Connection) -> AsyncIterator[None]:
    """Four devices in ward-a (one offline, one unplaced), two in ward-b; both wards outlined."""
    for uid, kind, ward, place in (
        ("m-spk-a1", "speaker", "ward-a", (20.861, 106.691)),
        ("m-spk-a2", "speaker", "ward-a", (20.862, 106.692)),
        ("m-aq-a1", "sensor", "ward-a", (20.863, 106.693)),
        ("m-aq-a2", "sensor", "ward-a", None),
        ("m-spk-b1", "speaker", "ward-b", (20.851, 106.681)),
        ("m-aq-b1", "sensor", "ward-b", (20.852, 106.682)),
    ):
        body: dict[str, Any] = {"uid": uid, "kind": kind, "ward": ward, "name": f"Tên {uid}"}
        if place:
            body |= {"latitude": place[0], "longitude": place[1]}
        assert (await clients.admin.post("/api/v1/devices", json=body)).status_code == 201
    await db.execute("UPDATE device SET status = 'offline' WHERE uid = 'm-spk-a2'")
    for code in ("ward-a", "ward-b"):
        put = await clients.admin.put(f"/api/v1/wards/{code}/boundary", json=SQUARE)
        assert put.status_code == 200, put.text
    yield
    await db.execute("UPDATE ward SET boundary = NULL")


async def test_ward_staff_see_their_wards_devices_and_outline(
    staff_session: Session, placed: None
) -> None:
    page = await staff_session.client.get("/map", headers=HTML)
    assert page.status_code == 200, page.text
    data = map_data(page.text)
    assert sorted((d["uid"], d["kind"], d["status"]) for d in data["devices"]) == [
        ("m-aq-a1", "sensor", "unknown"),
        ("m-spk-a1", "speaker", "unknown"),
        ("m-spk-a2", "speaker", "offline"),
    ]
    assert [f["id"] for f in data["wards"]["features"]] == ["ward-a"]
    assert data["tiles"] is None
    assert data["words"]["status"]["unknown"] == "không rõ"
    assert data["words"]["kind"]["speaker"] == "loa"
    # Leaflet from the hub itself, and a legend that explains every colour.
    assert 'src="/static/vendor/leaflet/leaflet.js"' in page.text
    assert "leaflet.markercluster.js" in page.text
    assert "màu xám: chưa từng liên lạc" in page.text
    assert "img-src 'self' data:;" in page.headers["content-security-policy"]


async def test_filters_come_from_the_url(staff_session: Session, placed: None) -> None:
    speakers = map_data((await staff_session.client.get("/map?kind=speaker", headers=HTML)).text)
    assert sorted(d["uid"] for d in speakers["devices"]) == ["m-spk-a1", "m-spk-a2"]
    offline = map_data(
        (await staff_session.client.get("/map?kind=speaker&status=offline", headers=HTML)).text
    )
    assert [d["uid"] for d in offline["devices"]] == ["m-spk-a2"]
    # A ward the person does not serve gives nothing; an unknown filter is no filter.
    other = map_data((await staff_session.client.get("/map?ward=ward-b", headers=HTML)).text)
    assert other["devices"] == []
    loose = map_data((await staff_session.client.get("/map?kind=tank", headers=HTML)).text)
    assert len(loose["devices"]) == 3


async def test_tiles_come_only_from_the_configured_server(
    hub: RunningHub, staff_session: Session, placed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = hub.runtime.settings.group(ConsoleSettings)
    monkeypatch.setattr(settings, "tile_url", "https://tiles.ioc.example/{z}/{x}/{y}.png")
    monkeypatch.setattr(settings, "tile_attribution", "© IOC Hải Phòng")
    page = await staff_session.client.get("/map", headers=HTML)
    data = map_data(page.text)
    assert data["tiles"] == {
        "url": "https://tiles.ioc.example/{z}/{x}/{y}.png",
        "attribution": "© IOC Hải Phòng",
        "max_zoom": 19,
    }
    policy = page.headers["content-security-policy"]
    assert "img-src 'self' data: https://tiles.ioc.example;" in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_a_tile_url_must_be_a_template_of_a_server() -> None:
    for bad in ("tiles.example/{z}/{x}/{y}.png", "https://tiles.example/tile.png", "file:///x"):
        with pytest.raises(ValueError):
            ConsoleSettings(tile_url=bad)
    assert ConsoleSettings(tile_url=" https://t.example/{z}/{x}/{y}.png ").tile_origin() == (
        "https://t.example"
    )
