"""Console fixtures: browser-like sessions (cookie and CSRF token) for the console's forms
(speakers and an announcement come from tests.support.broadcast_fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import PASSWORD, Clients
from tests.support.hub import RunningHub


@dataclass
class Session:
    """A logged-in browser, as far as the hub can tell: the session cookie, and the CSRF
    token its pages put in their forms."""

    client: httpx.AsyncClient
    csrf: str


async def log_in(hub: RunningHub, username: str) -> Session:
    client = httpx.AsyncClient(base_url=hub.base_url, timeout=60)
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    # httpx will not send a Secure cookie over http; a browser on localhost does.
    client.cookies.set("iochub_session", response.cookies["iochub_session"])
    return Session(client, response.json()["csrf_token"])


@pytest.fixture
async def staff_session(hub: RunningHub, clients: Clients) -> AsyncIterator[Session]:
    session = await log_in(hub, "staff-a")
    yield session
    await session.client.aclose()
