"""The console's camera pages over HTTP: the list in ward scope, discovery from a form,
onboarding a candidate (good and bad credentials, unreachable, not allowed), dismissing,
re-probing, a moved camera, and the CSRF protection of every form."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from drivers.onvif.simulator import CameraFault, CameraSpec, SimulatedCamera
from tests.conftest import Clients
from tests.integration.web.conftest import Session, log_in
from tests.support.cameras import StartCameras, camera_starter, onboard
from tests.support.hub import RunningHub

HTML = {"accept": "text/html"}
LOCAL_DATETIME = re.compile(r"\d\d/\d\d/\d{4} \d\d:\d\d")


@pytest.fixture
async def start_cameras(db: asyncpg.Connection, clients: Clients) -> AsyncIterator[StartCameras]:
    await db.execute("TRUNCATE camera_candidate RESTART IDENTITY")
    async with camera_starter() as start:
        yield start


@pytest.fixture
async def technician(hub: RunningHub, clients: Clients) -> AsyncIterator[Session]:
    session = await log_in(hub, "technician")
    yield session
    await session.client.aclose()


async def onboard_api(clients: Clients, camera: SimulatedCamera, ward: str) -> str:
    uid: str = (await onboard(clients.technician, camera, ward))["uid"]
    return uid


async def discover(session: Session, port: int, **fields: str) -> httpx.Response:
    return await session.client.post(
        "/cameras/discover",
        data={"csrf_token": session.csrf, "targets": f"127.0.0.1:{port}", "wait_s": "0.4"} | fields,
        headers=HTML,
    )


def onboarding(camera: SimulatedCamera, session: Session, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": session.csrf,
        "candidate": camera.endpoint_ref,
        "name": "Cổng chợ",
        "ward": "ward-a",
        "username": camera.spec.username,
        "password": camera.spec.password,
    } | fields


def candidate_id(page: str, camera: SimulatedCamera) -> int:
    """The id in the dismiss form of the candidate whose onboarding form names this camera."""
    article = page[page.index(f'value="{camera.endpoint_ref}"') :]
    found = re.search(r"/cameras/candidates/(\d+)/dismiss", article)
    assert found, article[:2000]
    return int(found[1])


async def test_the_list_shows_the_cameras_of_the_wards_one_serves(
    hub: RunningHub,
    clients: Clients,
    technician: Session,
    staff_session: Session,
    start_cameras: StartCameras,
) -> None:
    simulator = await start_cameras(CameraSpec("market"), CameraSpec("harbour"))
    market = await onboard_api(clients, simulator["market"], "ward-a")
    harbour = await onboard_api(clients, simulator["harbour"], "ward-b")

    page = await technician.client.get("/cameras", headers=HTML)
    assert page.status_code == 200, page.text
    assert "Camera market" in page.text and "Camera harbour" in page.text
    assert "Phường A" in page.text and "Phường B" in page.text  # ward names, not codes
    assert "Trả lời ONVIF, chấp nhận thông tin đăng nhập" in page.text  # health, in Vietnamese
    assert f'src="/api/v1/cameras/{market}/snapshot"' in page.text  # a thumbnail via the hub
    assert LOCAL_DATETIME.search(page.text)  # last seen, day first

    # Filters are in the URL.
    only_b = await technician.client.get("/cameras", params={"ward": "ward-b"}, headers=HTML)
    assert "Camera harbour" in only_b.text and "Camera market" not in only_b.text
    none_up = await technician.client.get(
        "/cameras", params={"health": "unreachable"}, headers=HTML
    )
    assert "Camera market" not in none_up.text and "Không có camera nào khớp" in none_up.text

    # Ward staff see their ward's camera, and nothing of the other ward's, whatever they ask.
    staff = await staff_session.client.get("/cameras", headers=HTML)
    assert "Camera market" in staff.text and "Camera harbour" not in staff.text
    assert "Phường B" not in staff.text
    assert "/cameras/discover" not in staff.text  # onboarding is for technicians
    asked = await staff_session.client.get("/cameras", params={"ward": "ward-b"}, headers=HTML)
    assert "Camera harbour" not in asked.text
    hidden = await staff_session.client.get(f"/cameras/{harbour}", headers=HTML)
    assert hidden.status_code == 404 and hidden.headers["content-type"].startswith("text/html")
    assert "Không tìm thấy camera" in hidden.text and "Camera harbour" not in hidden.text
    # A client that does not ask for HTML gets the API's problem instead.
    problem = await clients.staff_a.get(f"/cameras/{harbour}")
    assert problem.status_code == 404
    assert problem.headers["content-type"].startswith("application/problem+json")
    own = await staff_session.client.get(f"/cameras/{market}", headers=HTML)
    assert own.status_code == 200 and "Camera market" in own.text

    english = await technician.client.get("/cameras", headers=HTML, cookies={"iochub_lang": "en"})
    assert "Answers ONVIF, credentials accepted" in english.text


async def test_discovery_from_the_form_lists_the_candidates_to_onboard(
    hub: RunningHub, technician: Session, staff_session: Session, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("north"), CameraSpec("south"))
    port = await simulator.start_discovery()

    page = await discover(technician, port)
    assert page.status_code == 200, page.text
    for camera in (simulator["north"], simulator["south"]):
        assert f'name="candidate" value="{camera.endpoint_ref}"' in page.text
        assert f"{camera.host}:{camera.port}" in page.text
    assert "AV4M-R2" in page.text or "AV-IPC-4M" in page.text  # the model it advertises
    assert "Thiết bị đã trả lời: 2" in page.text
    listed = await technician.client.get("/cameras/discover", headers=HTML)
    assert listed.text.count('name="candidate" value="urn:') == 2

    # Targets outside the camera subnets are refused on the page, saying which and why.
    refused = await discover(technician, port, targets="8.8.8.8")
    assert refused.status_code == 422
    assert "Một phần thông tin đã nhập không dùng được" in refused.text
    assert "8.8.8.8 is outside the camera subnets" in refused.text
    too_many = await discover(technician, port, targets=" ".join(["10.0.0.1"] * 65))
    assert too_many.status_code == 422 and "at most 64" in too_many.text

    # Ward staff may not discover: a page says so.
    staff = await staff_session.client.get("/cameras/discover", headers=HTML)
    assert staff.status_code == 403 and "Không được phép" in staff.text
    tried = await discover(staff_session, port)
    assert tried.status_code == 403 and "Không được phép" in tried.text


async def test_onboarding_a_candidate_with_bad_then_good_credentials(
    hub: RunningHub,
    clients: Clients,
    technician: Session,
    staff_session: Session,
    start_cameras: StartCameras,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    simulator = await start_cameras(CameraSpec("gate", password="Gate-S3cret-Pw"))
    port = await simulator.start_discovery()
    gate = simulator["gate"]
    await discover(technician, port)

    wrong = await technician.client.post(
        "/cameras/onboard",
        data=onboarding(gate, technician, password="Not-The-Pw-123"),
        headers=HTML,
    )
    assert wrong.status_code == 422, wrong.text
    assert "Camera từ chối tên đăng nhập hoặc mật khẩu" in wrong.text
    assert 'value="Cổng chợ"' in wrong.text  # the form comes back as typed...
    assert "Not-The-Pw-123" not in wrong.text  # ...but for its password

    # Ward staff may not onboard, not even into their own ward.
    staff = await staff_session.client.post(
        "/cameras/onboard", data=onboarding(gate, staff_session), headers=HTML
    )
    assert staff.status_code == 403 and "Không được phép" in staff.text
    unknown_ward = await technician.client.post(
        "/cameras/onboard", data=onboarding(gate, technician, ward="ward-z"), headers=HTML
    )
    assert unknown_ward.status_code == 422 and "ward-z" in unknown_ward.text

    done = await technician.client.post(
        "/cameras/onboard", data=onboarding(gate, technician), headers=HTML
    )
    assert done.status_code == 303, done.text
    target = done.headers["location"]
    uid = target.split("/")[2].split("?")[0]
    assert target == f"/cameras/{uid}?onboarded=1"
    camera = await technician.client.get(target, headers=HTML)
    assert camera.status_code == 200
    assert "Camera đã được thêm" in camera.text and "Cổng chợ" in camera.text
    assert f'src="/api/v1/cameras/{uid}/snapshot"' in camera.text
    assert "Phường A" in camera.text and "Lệch đồng hồ" in camera.text
    snapshot = await technician.client.get(f"/api/v1/cameras/{uid}/snapshot")
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
    listed = await technician.client.get("/cameras/discover", headers=HTML)
    assert gate.endpoint_ref not in listed.text
    stored = (await clients.viewer.get(f"/api/v1/cameras/{uid}")).json()
    assert stored["ward"] == "ward-a" and stored["endpoint_ref"] == gate.endpoint_ref

    # An address where nothing answers: the page says what to check.
    await gate.set_fault(CameraFault.DOWN)
    unreachable = await technician.client.post(
        "/cameras/onboard",
        data=onboarding(gate, technician, candidate="", host=gate.host, port=str(gate.port)),
        headers=HTML,
    )
    assert unreachable.status_code == 502, unreachable.text
    assert "Không kết nối được với camera" in unreachable.text
    assert f'value="{gate.host}"' in unreachable.text

    for secret in ("Gate-S3cret-Pw", "Not-The-Pw-123"):
        assert secret not in caplog.text


async def test_dismissing_a_candidate_hides_it(
    hub: RunningHub, technician: Session, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("printer"))
    port = await simulator.start_discovery()
    printer = simulator["printer"]
    found = await discover(technician, port)
    candidate = candidate_id(found.text, printer)

    dismissed = await technician.client.post(
        f"/cameras/candidates/{candidate}/dismiss", data={"csrf_token": technician.csrf}
    )
    assert dismissed.status_code == 303
    assert dismissed.headers["location"] == f"/cameras/discover?hidden={candidate}"
    page = await technician.client.get(dismissed.headers["location"], headers=HTML)
    assert "Đã bỏ qua" in page.text
    assert f'value="{printer.endpoint_ref}"' not in page.text
    shown = await technician.client.get("/cameras/discover?dismissed=true", headers=HTML)
    assert f'value="{printer.endpoint_ref}"' in shown.text and "đã bỏ qua" in shown.text

    missing = await technician.client.post(
        "/cameras/candidates/999999/dismiss", data={"csrf_token": technician.csrf}, headers=HTML
    )
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


async def test_forms_without_the_session_token_are_refused(
    hub: RunningHub,
    clients: Clients,
    technician: Session,
    start_cameras: StartCameras,
    db: asyncpg.Connection,
) -> None:
    simulator = await start_cameras(CameraSpec("east"))
    port = await simulator.start_discovery()
    east = simulator["east"]
    candidate = candidate_id((await discover(technician, port)).text, east)

    forged: dict[str, Any] = {"csrf_token": "forged"}
    attempts = [
        ("/cameras/discover", {"targets": f"127.0.0.1:{port}"}),
        ("/cameras/onboard", onboarding(east, technician)),
        (f"/cameras/candidates/{candidate}/dismiss", {}),
    ]
    for path, fields in attempts:
        for data in (fields | forged, {k: v for k, v in fields.items() if k != "csrf_token"}):
            refused = await technician.client.post(path, data=data, headers=HTML)
            assert refused.status_code == 403, (path, refused.text)
            assert "text/html" in refused.headers["content-type"]
            assert "Không được phép" in refused.text
    assert await db.fetchval("SELECT count(*) FROM camera") == 0
    assert not await db.fetchval("SELECT dismissed FROM camera_candidate WHERE id = $1", candidate)


async def test_a_moved_camera_is_shown_and_a_camera_can_be_probed_again(
    hub: RunningHub, technician: Session, start_cameras: StartCameras
) -> None:
    simulator = await start_cameras(CameraSpec("kiosk"))
    port = await simulator.start_discovery()
    kiosk = simulator["kiosk"]
    await discover(technician, port)
    done = await technician.client.post(
        "/cameras/onboard", data=onboarding(kiosk, technician, name="Ki-ốt"), headers=HTML
    )
    uid = done.headers["location"].split("/")[2].split("?")[0]
    old = f"{kiosk.host}:{kiosk.port}"

    await kiosk.move()
    new = f"{kiosk.host}:{kiosk.port}"
    report = await discover(technician, port)
    assert "Camera xuất hiện ở địa chỉ khác" in report.text
    assert f"đã theo từ {old} sang {new}" in report.text
    listed = await technician.client.get("/cameras", headers=HTML)
    assert f"từ {old} sang {new}" in listed.text
    page = await technician.client.get(f"/cameras/{uid}", headers=HTML)
    assert f"từ {old} sang {new}" in page.text and new in page.text

    probed = await technician.client.post(
        f"/cameras/{uid}/probe", data={"csrf_token": technician.csrf}
    )
    assert probed.status_code == 303 and probed.headers["location"] == f"/cameras/{uid}?probed=1"
    # Someone changed the camera's password: new credentials are tried, then kept.
    kiosk.spec.password = "Changed-Pw-77"
    wrong = await technician.client.post(
        f"/cameras/{uid}/credentials",
        data={"csrf_token": technician.csrf, "username": "admin", "password": "Guess-1"},
        headers=HTML,
    )
    assert wrong.status_code == 422, wrong.text
    assert (
        "Camera từ chối tên đăng nhập hoặc mật khẩu" in wrong.text and "Guess-1" not in wrong.text
    )
    replaced = await technician.client.post(
        f"/cameras/{uid}/credentials",
        data={"csrf_token": technician.csrf, "username": "admin", "password": "Changed-Pw-77"},
    )
    assert replaced.status_code == 303, replaced.text
    assert replaced.headers["location"] == f"/cameras/{uid}?credentials=1"
    forged = await technician.client.post(
        f"/cameras/{uid}/credentials",
        data={"csrf_token": "forged", "username": "admin", "password": "Other-Pw-1"},
        headers=HTML,
    )
    assert forged.status_code == 403 and "Không được phép" in forged.text

    await kiosk.set_fault(CameraFault.DOWN)
    failed = await technician.client.post(
        f"/cameras/{uid}/probe", data={"csrf_token": technician.csrf}, headers=HTML
    )
    assert failed.status_code == 502, failed.text
    assert "Không kết nối được với camera" in failed.text and "Ki-ốt" in failed.text
