"""tortoise-orm's asyncpg backend, connecting from the hub's own database URL.

tortoise splits a URL into one host and one port; a URL listing several hosts (a primary and
its standbys, `postgresql://db1:5432,db2:5432/iochub?target_session_attrs=read-write`) must
reach asyncpg whole, so the registry follows the writable server as the SQL pool does.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient

from hub.storage.database import connect_writable


class UrlAsyncpgClient(AsyncpgDBClient):
    async def create_pool(self, **kwargs: Any) -> asyncpg.Pool:
        dsn = kwargs.pop("dsn")
        for split_out in ("host", "port", "user", "database"):
            kwargs.pop(split_out, None)
        if kwargs.get("password") is None:
            kwargs.pop("password", None)
        pool: asyncpg.Pool = await asyncpg.create_pool(  # type: ignore[call-overload]
            dsn, connect=connect_writable, **kwargs
        )
        return pool


client_class = UrlAsyncpgClient
