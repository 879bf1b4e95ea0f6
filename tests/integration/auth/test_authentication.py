"""Every route but the health checks needs authentication; sessions, tokens, CSRF, lockout."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from litestar import Litestar

from hub.auth.api import LOGINS
from hub.server.app import create_app
from tests.conftest import PASSWORD, Clients
from tests.integration.devices.test_registry_api import assert_problem
from tests.support.hub import RunningHub

# The only routes without authentication: probes, the login itself, and audio and firmware
# images fetched by devices with an expiring signed URL (the signature is the authorisation).
# /metrics checks its callers itself: Prometheus' scrape token or address, else a person's
# credentials. The language switch only sets a cookie, so the login page can be read in English.
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/login",
    "/language/{language:str}",
    "/api/v1/auth/login",
    "/api/v1/speaker-audio/{asset_id:int}",
    "/api/v1/firmware/artifacts/{release_id:int}",
}


def every_route() -> list[tuple[str, str]]:
    app: Litestar = create_app()
    routes = []
    for route in app.routes:
        if route.path.startswith("/static") or route.path in OPEN_PATHS:
            continue
        path = re.sub(r"\{(\w+):int\}", "1", route.path)
        path = re.sub(r"\{(\w+):str\}", "x", path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            routes.append((method, path))
    return routes


@pytest.fixture(scope="module")
async def anonymous(hub: RunningHub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), every_route())
async def test_route_refuses_anonymous_callers(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await anonymous.request(method, path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_only_the_intended_routes_are_open() -> None:
    app: Litestar = create_app()
    open_paths = {
        route.path
        for route in app.routes
        if not route.path.startswith("/static")
        for handler in route.route_handlers
        if handler.opt.get("exclude_from_auth")
    }
    assert open_paths == OPEN_PATHS


async def test_route_list_covers_the_api() -> None:
    paths = {p for _, p in every_route()}
    assert {"/api/v1/devices", "/api/v1/devices/x", "/api/openapi.json", "/api/docs", "/"} <= paths


async def test_health_checks_are_open(clients: Clients) -> None:
    assert (await clients.anonymous.get("/healthz")).json() == {"status": "ok"}
    ready = await clients.anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    # The time-series maintenance jobs are watched too (ok while none fails).
    assert checks == {
        "backend": checks["backend"],
        "database": "ok",
        "migrations": "current",
        "maintenance_jobs": "ok",
        "broker": "ok",
    }


async def test_browser_pages_redirect_to_login(clients: Clients) -> None:
    response = await clients.anonymous.get("/", headers={"accept": "text/html"})
    assert response.status_code in (302, 307) and response.headers["location"] == "/login?next=/"


async def test_session_login_cookie_flags_and_csrf(clients: Clients, hub: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=hub.base_url) as browser:
        response = await browser.post(
            "/api/v1/auth/login", json={"username": "technician", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
        csrf = response.json()["csrf_token"]
        # httpx will not send a Secure cookie over http; a browser on localhost does.
        browser.cookies.set("iochub_session", response.cookies["iochub_session"])
        assert (await browser.get("/api/v1/devices")).status_code == 200
        device = {"uid": "csrf-1", "kind": "sensor", "ward": "ward-a"}
        assert_problem(await browser.post("/api/v1/devices", json=device), 403)
        assert_problem(
            await browser.post("/api/v1/devices", json=device, headers={"x-csrf-token": "wrong"}),
            403,
        )
        created = await browser.post("/api/v1/devices", json=device, headers={"x-csrf-token": csrf})
        assert created.status_code == 201, created.text
        await browser.post("/api/v1/auth/logout", headers={"x-csrf-token": csrf})
        assert_problem(await browser.get("/api/v1/devices"), 401)


async def test_wrong_password_is_refused_and_repeated_failures_lock(
    clients: Clients, hub: RunningHub, db: asyncpg.Connection
) -> None:
    from hub.auth import service
    from hub.auth.models import Role, User

    if not await User.filter(username="locky").exists():
        await service.create_user("locky", PASSWORD, Role.VIEWER)
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        for _ in range(5):
            assert_problem(
                await client.post(
                    "/api/v1/auth/login", json={"username": "locky", "password": "nope"}
                ),
                401,
            )
        locked = await client.post(
            "/api/v1/auth/login", json={"username": "locky", "password": PASSWORD}
        )
        assert "locked" in assert_problem(locked, 401)["detail"]
        assert await db.fetchval("SELECT locked_until > now() FROM hub_user WHERE username='locky'")
        assert_problem(
            await client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"}),
            401,
        )


async def test_login_attempts_per_address_are_throttled(clients: Clients, hub: RunningHub) -> None:
    throttle = hub.runtime.get(LOGINS).throttle
    throttle.attempts.clear()
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        statuses = [
            (
                await client.post(
                    "/api/v1/auth/login", json={"username": "nobody", "password": "x"}
                )
            ).status_code
            for _ in range(throttle.limit + 2)
        ]
    throttle.attempts.clear()
    assert statuses[: throttle.limit] == [401] * throttle.limit
    assert statuses[-1] == 429


async def test_api_tokens_are_named_hashed_and_revocable(
    clients: Clients, db: asyncpg.Connection
) -> None:
    created = await clients.viewer.post("/api/v1/auth/tokens", json={"name": "grafana"})
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    stored = await db.fetchrow("SELECT * FROM api_token WHERE id = $1", created.json()["id"])
    assert secret.encode() not in bytes(stored["token_hash"]) and stored["prefix"] == secret[:10]
    listed = (await clients.viewer.get("/api/v1/auth/tokens")).json()
    assert all(t["token"] is None for t in listed)
    headers = {"authorization": f"Bearer {secret}"}
    assert (await clients.anonymous.get("/api/v1/devices", headers=headers)).status_code == 200
    await clients.viewer.delete(f"/api/v1/auth/tokens/{created.json()['id']}")
    assert_problem(await clients.anonymous.get("/api/v1/devices", headers=headers), 401)
    assert_problem(await clients.staff_a.delete(f"/api/v1/auth/tokens/{created.json()['id']}"), 404)


async def test_only_admins_manage_users(clients: Clients, db: asyncpg.Connection) -> None:
    assert_problem(await clients.technician.get("/api/v1/users"), 403)
    body = {
        "username": "staff-new",
        "password": "short",
        "role": "ward_staff",
        "wards": ["nowhere"],
    }
    problem = assert_problem(await clients.admin.post("/api/v1/users", json=body), 422)
    assert {e["field"] for e in problem["errors"]} == {"password", "wards"}
    body |= {"password": PASSWORD * 2, "wards": ["ward-b"]}
    created = await clients.admin.post("/api/v1/users", json=body)
    assert created.status_code == 201 and created.json()["wards"] == ["ward-b"]
    assert_problem(await clients.admin.post("/api/v1/users", json=body), 409)
    row = await db.fetchrow("SELECT password_hash FROM hub_user WHERE username='staff-new'")
    assert row["password_hash"].startswith("$argon2id$")
    await db.execute("DELETE FROM hub_user WHERE username='staff-new'")


async def test_security_headers_and_closed_cors(clients: Clients) -> None:
    response = await clients.viewer.get(
        "/api/v1/devices", headers={"origin": "https://evil.example"}
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers


async def test_api_tokens_expire_and_show_their_last_use(
    clients: Clients, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from hub.auth import service

    moment = datetime.now(UTC)
    past = (moment - timedelta(minutes=1)).isoformat()
    refused = await clients.viewer.post(
        "/api/v1/auth/tokens", json={"name": "stale", "expires_at": past}
    )
    assert assert_problem(refused, 422)["errors"][0]["field"] == "expires_at"
    naive = await clients.viewer.post(
        "/api/v1/auth/tokens", json={"name": "naive", "expires_at": "2999-01-01T00:00:00"}
    )
    assert_problem(naive, 400)
    expires = moment + timedelta(hours=1)
    created = await clients.viewer.post(
        "/api/v1/auth/tokens", json={"name": "short-lived", "expires_at": expires.isoformat()}
    )
    assert created.status_code == 201, created.text
    assert datetime.fromisoformat(created.json()["expires_at"]) == expires
    assert created.json()["last_used_at"] is None
    headers = {"authorization": f"Bearer {created.json()['token']}"}
    assert (await clients.anonymous.get("/api/v1/devices", headers=headers)).status_code == 200
    [listed] = [
        t
        for t in (await clients.viewer.get("/api/v1/auth/tokens")).json()
        if t["name"] == "short-lived"
    ]
    assert (
        listed["last_used_at"] is not None and listed["expires_at"] == created.json()["expires_at"]
    )
    # The hub's clock one hour and a second later: the token authenticates nobody.
    monkeypatch.setattr(service, "now", lambda: expires + timedelta(seconds=1))
    assert_problem(await clients.anonymous.get("/api/v1/devices", headers=headers), 401)
    await db.execute("DELETE FROM api_token WHERE name = 'short-lived'")


async def test_an_admin_revokes_all_tokens_of_a_user_in_one_call(
    clients: Clients, db: asyncpg.Connection
) -> None:
    from hub.auth import service
    from hub.auth.models import Role, User

    await db.execute("DELETE FROM hub_user WHERE username = 'leaver'")
    user = await service.create_user("leaver", PASSWORD, Role.TECHNICIAN)
    secrets = [(await service.issue_token(user, f"t{n}"))[1] for n in range(3)]
    for secret in secrets:
        answer = await clients.anonymous.get(
            "/api/v1/devices", headers={"authorization": f"Bearer {secret}"}
        )
        assert answer.status_code == 200
    listed = (await clients.admin.get("/api/v1/users/leaver/tokens")).json()
    assert [t["name"] for t in listed] == ["t0", "t1", "t2"]
    assert all(t["last_used_at"] and t["token"] is None for t in listed)
    assert_problem(await clients.technician.delete("/api/v1/users/leaver/tokens"), 403)
    assert_problem(await clients.admin.delete("/api/v1/users/nobody/tokens"), 404)
    revoked = await clients.admin.delete("/api/v1/users/leaver/tokens")
    assert revoked.status_code == 200 and revoked.json() == {"revoked": 3}
    for secret in secrets:
        answer = await clients.anonymous.get(
            "/api/v1/devices", headers={"authorization": f"Bearer {secret}"}
        )
        assert_problem(answer, 401)
    assert (await clients.admin.delete("/api/v1/users/leaver/tokens")).json() == {"revoked": 0}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'token.revoke_all' AND object_id = $1",
            str((await User.get(username="leaver")).id),
        )
        == 1
    )
    await db.execute("DELETE FROM hub_user WHERE username = 'leaver'")
