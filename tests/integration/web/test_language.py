"""The console speaks Vietnamese unless a person picks English in the header."""

from __future__ import annotations

import httpx

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
