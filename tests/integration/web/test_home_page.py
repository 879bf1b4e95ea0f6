"""The technician's home page: devices per ward, kind and status, and the list with the
unhealthy first, why, and since when, in local time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.conftest import Clients
from tests.integration.web.conftest import log_in
from tests.support.hub import RunningHub

ENGLISH = {"cookie": "iochub_lang=en"}
# A fixed instant: 21:05 in Hà Nội. Nothing here depends on the hour of the run.
AT = datetime(2026, 12, 7, 14, 5, tzinfo=UTC)


async def add_device(
    db: asyncpg.Connection,
    uid: str,
    ward: str,
    status: str,
    changed: datetime | None,
    *,
    kind: str = "speaker",
    reason: str = "",
    last_seen: datetime | None = None,
    faults: tuple[str, ...] = (),
) -> None:
    # Pending devices are outside the health monitor's ticks: their statuses hold as set.
    await db.execute(
        "INSERT INTO device (uid, kind, ward_id, name, lifecycle, status, status_reason, "
        "status_changed_at, last_seen, faults) "
        "SELECT $1, $2, id, $1, 'pending', $3, $4, $5, $6, $7 FROM ward WHERE code = $8",
        uid,
        kind,
        status,
        reason,
        changed,
        last_seen,
        list(faults),
        ward,
    )


async def fleet(db: asyncpg.Connection) -> None:
    await add_device(db, "a-online", "ward-a", "online", AT - timedelta(hours=3))
    await add_device(
        db,
        "a-offline-old",
        "ward-a",
        "offline",
        AT - timedelta(hours=2),
        reason="silent for 2 h",
        last_seen=AT - timedelta(hours=2),
    )
    await add_device(
        db, "a-offline-new", "ward-a", "offline", AT - timedelta(minutes=5), reason="disconnected"
    )
    await add_device(
        db,
        "a-cam-degraded",
        "ward-a",
        "degraded",
        AT - timedelta(minutes=30),
        kind="camera",
        reason="amplifier_fault",
        faults=("amplifier_fault",),
    )
    await add_device(db, "a-sensor-late", "ward-a", "late", AT, kind="sensor")
    await add_device(db, "a-unknown", "ward-a", "unknown", None, reason="never heard from")
    await add_device(db, "a-maintenance", "ward-a", "maintenance", AT - timedelta(days=1))
    await add_device(db, "b-offline", "ward-b", "offline", AT - timedelta(hours=1))


def listed(html: str) -> list[str]:
    table = html.split('<table class="devices">', 1)[1]
    return re.findall(r'<tr class="status-\w+" data-uid="([^"]+)"', table)


async def test_the_unhealthy_come_first_with_why_and_since_when(
    clients: Clients, db: asyncpg.Connection
) -> None:
    await fleet(db)
    page = await clients.technician.get("/", headers=ENGLISH)
    assert page.status_code == 200, page.text
    # Offline (latest change first), degraded, late, unknown, maintenance, online.
    assert listed(page.text) == [
        "a-offline-new",
        "b-offline",
        "a-offline-old",
        "a-cam-degraded",
        "a-sensor-late",
        "a-unknown",
        "a-maintenance",
        "a-online",
    ]
    # Why, in words, and since when, in local time (UTC+7, day first, 24 h).
    assert "disconnected" in page.text
    assert "silent since 07/12/2026 19:05" in page.text
    assert "amplifier fault" in page.text
    assert "07/12/2026 21:00" in page.text  # a-offline-new's change, 14:00 UTC
    # Wards by their names, statuses and kinds in words.
    assert "Phường A" in page.text and "Phường B" in page.text
    assert ">Offline<" in page.text and ">Speaker<" in page.text

    vietnamese = await clients.technician.get("/")
    assert "Ngoại tuyến" in vietnamese.text and "mất kết nối" in vietnamese.text
    assert "im lặng từ 07/12/2026 19:05" in vietnamese.text


async def test_counts_per_ward_kind_and_status_link_to_the_filtered_list(
    clients: Clients, db: asyncpg.Connection
) -> None:
    await fleet(db)
    page = (await clients.technician.get("/", headers=ENGLISH)).text
    grid = page.split('<table class="list wards-grid">', 1)[1].split("</table>", 1)[0]
    cells = dict(
        re.findall(r'<a class="count status-\w+" href="([^"]+)"[^>]*>.*?</span>(\d+) ', grid, re.S)
    )
    assert cells["/?ward=ward-a&amp;kind=speaker&amp;status=offline"] == "2"
    assert cells["/?ward=ward-b&amp;kind=speaker&amp;status=offline"] == "1"
    assert cells["/?ward=ward-a&amp;kind=camera&amp;status=degraded"] == "1"
    assert "Phường A" in grid and "ward-a<" not in grid

    filtered = await clients.technician.get(
        "/", params={"ward": "ward-a", "kind": "speaker", "status": "offline"}, headers=ENGLISH
    )
    assert listed(filtered.text) == ["a-offline-new", "a-offline-old"]
    searched = await clients.technician.get("/", params={"q": "OFFLINE-n"}, headers=ENGLISH)
    assert listed(searched.text) == ["a-offline-new"]
    # The filters stay in the form, so the URL can be shared and reloaded.
    assert '<option value="offline" selected>' in filtered.text
    unknown_ward = await clients.technician.get(
        "/", params={"ward": "nowhere"}, headers={"accept": "text/html"}
    )
    assert unknown_ward.status_code == 404


async def test_ward_staff_see_their_wards_only(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    await fleet(db)
    staff = await log_in(hub, "staff-a")
    staff.client.cookies.set("iochub_lang", "en")
    try:
        page = await staff.client.get("/")
        assert page.status_code == 200, page.text
        assert "b-offline" not in listed(page.text) and len(listed(page.text)) == 7
        assert "Phường B" not in page.text
        other = await staff.client.get(
            "/", params={"ward": "ward-b"}, headers={"accept": "text/html"}
        )
        assert other.status_code == 404
    finally:
        await staff.client.aclose()


async def test_a_long_list_pages_on(clients: Clients, db: asyncpg.Connection) -> None:
    for n in range(105):
        await add_device(db, f"bulk-{n:03}", "ward-c", "online", AT - timedelta(seconds=n))
    first = await clients.technician.get("/", headers=ENGLISH)
    assert len(listed(first.text)) == 100 and 'class="more" href="/?page=2"' in first.text
    second = await clients.technician.get("/", params={"page": 2}, headers=ENGLISH)
    assert listed(second.text) == [f"bulk-{n:03}" for n in range(100, 105)]
    assert 'class="more"' not in second.text and 'class="less" href="/"' in second.text
