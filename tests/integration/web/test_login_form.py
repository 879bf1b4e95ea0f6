"""The login form carries a CSRF token before any session exists (a double-submit cookie):
a form posted without it, or with another one, logs nobody in and says why."""

from __future__ import annotations

import re

import httpx

from tests.conftest import PASSWORD, Clients
from tests.support.hub import RunningHub


async def login_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/login", params={"next": "/alerts"})
    assert page.status_code == 200
    token = page.cookies["iochub_login_csrf"]
    # httpx sends no Secure cookie over http; a browser on localhost does.
    client.cookies.set("iochub_login_csrf", token)
    field = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert field is not None and field[1] == token
    return token


async def test_the_login_form_needs_its_token(hub: RunningHub, clients: Clients) -> None:
    async with httpx.AsyncClient(base_url=hub.base_url) as browser:
        browser.cookies.set("iochub_lang", "en")
        token = await login_form(browser)
        # The same token for a second tab: both forms work.
        assert await login_form(browser) == token
        form = {"username": "technician", "password": PASSWORD, "next": "/alerts"}

        missing = await browser.post("/login", data=form)
        assert missing.status_code == 403
        assert "did not come from this site" in missing.text
        assert "iochub_session" not in missing.cookies
        # A new token comes with the refusal, in the cookie and in the form.
        fresh = missing.cookies["iochub_login_csrf"]
        assert fresh != token and f'value="{fresh}"' in missing.text

        browser.cookies.set("iochub_login_csrf", fresh)
        forged = await browser.post("/login", data=form | {"csrf_token": "x" * 32})
        assert forged.status_code == 403 and "iochub_session" not in forged.cookies

        wrong = await browser.post(
            "/login", data=form | {"password": "not it", "csrf_token": fresh}
        )
        assert wrong.status_code == 401 and "wrong username or password" in wrong.text
        assert 'value="/alerts"' in wrong.text  # where to go next is kept

        right = await browser.post("/login", data=form | {"csrf_token": fresh})
        assert right.status_code == 303 and right.headers["location"] == "/alerts"
        assert right.cookies["iochub_session"]


async def test_refusals_are_in_vietnamese_by_default(hub: RunningHub, clients: Clients) -> None:
    async with httpx.AsyncClient(base_url=hub.base_url) as browser:
        await login_form(browser)
        missing = await browser.post("/login", data={"username": "x", "password": "y"})
        assert "biểu mẫu đăng nhập đã hết hạn" in missing.text
