"""The console's alert pages: the list with its filters, an alert's page with its actions
(acknowledge, assign, comment, resolve) through forms with the session's CSRF token, each
audited as the API audits it; another ward's alert does not exist; the rules, read-only."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg
import httpx

from hub.alerts import lifecycle
from tests.conftest import Clients
from tests.integration.web.conftest import Session, log_in
from tests.support.hub import RunningHub

HTML = {"accept": "text/html"}


async def open_alert(
    hub: RunningHub, db: asyncpg.Connection, rule_id: int, uid: str, severity: str
) -> int:
    device_id, ward_id = await db.fetchrow("SELECT id, ward_id FROM device WHERE uid = $1", uid)
    alert_id = await lifecycle.fire(
        hub.runtime.database.pool,
        lifecycle.NewAlert(
            rule_id,
            "Water high",
            device_id,
            ward_id,
            severity,
            1.4,
            1.0,
            f"Water 1.4 m at {uid}",
            datetime(2026, 12, 7, 14, 5, tzinfo=UTC),
        ),
    )
    assert alert_id is not None
    return alert_id


async def two_alerts(hub: RunningHub, clients: Clients, db: asyncpg.Connection) -> tuple[int, int]:
    for uid, ward in (("gauge-a", "ward-a"), ("gauge-b", "ward-b")):
        made = await clients.admin.post(
            "/api/v1/devices", json={"uid": uid, "kind": "sensor", "ward": ward}
        )
        assert made.status_code == 201, made.text
    rule = await clients.technician.post(
        "/api/v1/alert-rules",
        json={
            "name": "Water high",
            "kind": "threshold",
            "severity": "major",
            "metric": "water_level",
            "comparison": ">",
            "threshold": 1.0,
        },
    )
    assert rule.status_code == 201, rule.text
    a = await open_alert(hub, db, rule.json()["id"], "gauge-a", "major")
    b = await open_alert(hub, db, rule.json()["id"], "gauge-b", "critical")
    return a, b


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="state-\w+" data-alert="(\d+)"', html)]


async def english(hub: RunningHub, username: str) -> Session:
    session = await log_in(hub, username)
    session.client.cookies.set("iochub_lang", "en")
    return session


async def test_the_list_filters_by_ward_severity_and_state(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    a, b = await two_alerts(hub, clients, db)
    technician = await english(hub, "technician")
    staff = await english(hub, "staff-a")
    try:
        every = await technician.client.get("/alerts")
        assert every.status_code == 200, every.text
        assert listed(every.text) == [b, a]  # newest first
        assert "Phường A" in every.text and ">Critical<" in every.text
        assert "07/12/2026 21:05" in every.text  # local time
        by_ward = await technician.client.get("/alerts", params={"ward": "ward-b"})
        assert listed(by_ward.text) == [b]
        by_severity = await technician.client.get("/alerts", params={"severity": "major"})
        assert listed(by_severity.text) == [a]
        assert '<option value="major" selected>' in by_severity.text
        resolved = await technician.client.get("/alerts", params={"state": "resolved"})
        assert listed(resolved.text) == []
        # Ward staff see their wards' alerts only, whatever the URL asks.
        assert listed((await staff.client.get("/alerts")).text) == [a]
        hidden = await staff.client.get("/alerts", params={"ward": "ward-b"}, headers=HTML)
        assert hidden.status_code == 404
        vietnamese = await clients.technician.get("/alerts")
        assert "Khẩn cấp" in vietnamese.text and "Đang báo" in vietnamese.text
    finally:
        await technician.client.aclose()
        await staff.client.aclose()


async def audit(db: asyncpg.Connection, alert_id: int) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT actor, action FROM audit_log WHERE object_type = 'alert' AND object_id = $1 "
        "ORDER BY id",
        str(alert_id),
    )
    return [(r["actor"], r["action"]) for r in rows]


async def post_form(session: Session, path: str, **fields: str) -> httpx.Response:
    return await session.client.post(path, data={"csrf_token": session.csrf, **fields})


async def test_acknowledge_assign_comment_resolve_from_the_alert_page(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    a, b = await two_alerts(hub, clients, db)
    staff = await english(hub, "staff-a")
    try:
        page = await staff.client.get(f"/alerts/{a}")
        assert page.status_code == 200, page.text
        assert f'action="/alerts/{a}/acknowledge"' in page.text
        assert f'name="csrf_token" value="{staff.csrf}"' in page.text
        # Whom it may go to: those handling alerts in ward-a (not the viewer).
        offered = re.findall(r'<option value="([^"]+)"', page.text.split('name="assignee"')[1])
        # Other tests add users of their own to the shared database: judge the suite's.
        suite_users = {"admin", "technician", "staff-a", "viewer"}
        assert [u for u in offered if u in suite_users] == ["admin", "staff-a", "technician"]

        # Without the form's token nothing happens.
        forged = await staff.client.post(f"/alerts/{a}/acknowledge", data={})
        assert forged.status_code == 403
        assert await audit(db, a) == []

        ack = await post_form(staff, f"/alerts/{a}/acknowledge")
        assert (
            ack.status_code == 303 and ack.headers["location"] == f"/alerts/{a}?done=acknowledged"
        )
        shown = await staff.client.get(ack.headers["location"])
        assert "You acknowledged this alert." in shown.text and ">Acknowledged<" in shown.text
        again = await post_form(staff, f"/alerts/{a}/acknowledge")
        assert again.status_code == 409 and "The hub refused this" in again.text

        assigned = await post_form(staff, f"/alerts/{a}/assign", assignee="technician")
        assert assigned.status_code == 303
        refused = await post_form(staff, f"/alerts/{a}/assign", assignee="viewer")
        assert refused.status_code == 422 and "does not handle alerts" in refused.text
        commented = await post_form(staff, f"/alerts/{a}/comments", text="crew on the way")
        assert commented.status_code == 303
        empty = await post_form(staff, f"/alerts/{a}/comments", text="  ")
        assert empty.status_code == 422
        resolved = await post_form(staff, f"/alerts/{a}/resolve")
        assert resolved.status_code == 303

        api = (await clients.viewer.get(f"/api/v1/alerts/{a}")).json()
        assert api["state"] == "resolved" and api["resolved_by"] == "staff-a"
        assert api["assignee"] == "technician" and api["acknowledged_by"] == "staff-a"
        final = await staff.client.get(f"/alerts/{a}")
        assert "crew on the way" in final.text and "by staff-a" in final.text
        assert f'action="/alerts/{a}/resolve"' not in final.text
        # Audited as the API audits: one entry per action, by the person.
        assert await audit(db, a) == [
            ("staff-a", "alert.acknowledge"),
            ("staff-a", "alert.assign"),
            ("staff-a", "alert.comment"),
            ("staff-a", "alert.resolve"),
        ]

        # Another ward's alert does not exist, by page or by form.
        other = await staff.client.get(f"/alerts/{b}", headers=HTML)
        assert other.status_code == 404 and "<html" in other.text
        other_ack = await post_form(staff, f"/alerts/{b}/acknowledge")
        assert other_ack.status_code == 404 and "<html" in other_ack.text
        assert await audit(db, b) == []
    finally:
        await staff.client.aclose()


async def test_a_viewer_reads_but_has_no_actions(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    a, _ = await two_alerts(hub, clients, db)
    viewer = await english(hub, "viewer")
    try:
        page = await viewer.client.get(f"/alerts/{a}")
        assert page.status_code == 200 and "/acknowledge" not in page.text
        refused = await post_form(viewer, f"/alerts/{a}/acknowledge")
        assert refused.status_code == 403
    finally:
        await viewer.client.aclose()


async def test_the_rules_page_shows_windows_in_local_time(
    hub: RunningHub, clients: Clients, db: asyncpg.Connection
) -> None:
    # A window holds what it opened only inside it: this rule opens nothing here.
    night = await clients.technician.post(
        "/api/v1/alert-rules",
        json={
            "name": "Noise at night",
            "kind": "threshold",
            "severity": "minor",
            "metric": "noise",
            "comparison": ">",
            "threshold": 55,
            "window": {"start": "21:00", "end": "06:00", "days": ["fri", "sat"]},
        },
    )
    assert night.status_code == 201, night.text
    await two_alerts(hub, clients, db)
    staff = await english(hub, "staff-a")
    try:
        page = await staff.client.get("/alerts/rules")
        assert page.status_code == 200, page.text
        assert "Water high" in page.text and "Noise at night" in page.text
        assert "21:00–06:00" in page.text and "Fri, Sat" in page.text
        assert "Vietnam time" in page.text and "always" in page.text
        assert "<code>water_level &gt; 1.0</code>" in page.text
    finally:
        await staff.client.aclose()
    vietnamese = await clients.viewer.get("/alerts/rules")
    assert "Quy tắc cảnh báo" in vietnamese.text and "T6, T7" in vietnamese.text
