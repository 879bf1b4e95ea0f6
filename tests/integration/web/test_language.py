"""The console speaks Vietnamese unless a person picks English in the header."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, Clients
from tests.integration.web.conftest import log_in
from tests.integration.web.test_login_form import login_form
from tests.support.hub import RunningHub


async def test_vietnamese_by_default_english_by_the_switch(hub: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        page = await client.get("/login")
        assert '<html lang="vi">' in page.text and "Đăng nhập iochub" in page.text

        switched = await client.get("/language/en", params={"next": "/login"})
        assert switched.status_code == 303 and switched.headers["location"] == "/login"
        assert client.cookies["iochub_lang"] == "en"
        page = await client.get("/login")
        assert '<html lang="en">' in page.text and "Log in to iochub" in page.text

        # Only this site's paths, and only known languages.
        odd = await client.get("/language/fr", params={"next": "//elsewhere.example"})
        assert odd.headers["location"] == "/" and client.cookies["iochub_lang"] == "vi"


async def test_the_language_follows_the_account_to_another_browser(
    hub: RunningHub, clients: Clients
) -> None:
    session = await log_in(hub, "technician")
    try:
        switched = await session.client.get("/language/en", params={"next": "/"})
        assert switched.status_code == 303
        # Another browser: no language cookie, but logging in brings the account's choice.
        async with httpx.AsyncClient(base_url=hub.base_url) as other:
            token = await login_form(other)
            assert "iochub_lang" not in other.cookies
            answer = await other.post(
                "/login",
                data={"username": "technician", "password": PASSWORD, "csrf_token": token},
            )
            assert answer.status_code == 303, answer.text
            assert other.cookies["iochub_lang"] == "en"
            # httpx sends no Secure cookie over http; a browser on localhost does.
            other.cookies.set("iochub_session", answer.cookies["iochub_session"])
            page = await other.get("/", headers={"accept": "text/html"})
            assert '<html lang="en">' in page.text
    finally:
        # Back to Vietnamese, as the other tests' browsers expect.
        await session.client.get("/language/vi", params={"next": "/"})
        await session.client.aclose()
