"""A migrated database of its own, with a small pool on it (max_connections is shared)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.support.hub import migrated_database


@asynccontextmanager
async def migrated_pool(backend: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """(URL, pool) of a freshly migrated database on `backend`, dropped afterwards."""
    async with migrated_database(backend) as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        try:
            yield url, pool
        finally:
            await pool.close()
