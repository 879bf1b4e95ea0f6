"""Versioned migrations: applied once, checked at start, a newer schema refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from hub.storage import database, migrations
from hub.storage.migrations import SchemaError
from tests.support.hub import create_database, drop_database


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    url = await create_database()
    yield url
    await drop_database(url)


async def test_hub_refuses_an_unmigrated_database(empty_database: str) -> None:
    with pytest.raises(SchemaError, match="run `iochub migrate`"):
        await database.connect(empty_database, orm=False)


async def test_migrate_applies_everything_once_and_records_the_backend(empty_database: str) -> None:
    backend, applied = await database.run_migrations(empty_database)
    assert applied == [f"{m.version:04d}_{m.name}" for m in migrations.known_migrations()]
    assert (await database.run_migrations(empty_database))[1] == []
    conn = await asyncpg.connect(empty_database)
    try:
        state = await migrations.status(conn)
        assert state.current and state.backend == backend
        expected = "timescaledb" if await migrations.timescaledb_available(conn) else "postgres"
        assert backend == expected
    finally:
        await conn.close()
    db = await database.connect(empty_database, orm=False)
    await db.close()


async def test_a_schema_from_a_newer_hub_is_refused(empty_database: str) -> None:
    await database.run_migrations(empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute("INSERT INTO schema_migration VALUES (9999, 'future', 'x')")
    finally:
        await conn.close()
    with pytest.raises(SchemaError, match="newer hub"):
        await database.connect(empty_database, orm=False)
    with pytest.raises(SchemaError, match="newer hub"):
        await database.run_migrations(empty_database)


async def test_an_edited_migration_is_detected(empty_database: str) -> None:
    await database.run_migrations(empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute("UPDATE schema_migration SET checksum = 'edited' WHERE version = 1")
        assert (await migrations.status(conn)).mismatched == (1,)
    finally:
        await conn.close()
    with pytest.raises(SchemaError, match="differ"):
        await database.connect(empty_database, orm=False)


async def test_timescaledb_required_but_missing_is_a_clear_error(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        if await migrations.timescaledb_available(conn):
            pytest.skip("TimescaleDB is installed here; the missing-extension path cannot be shown")
    finally:
        await conn.close()
    with pytest.raises(SchemaError, match="TimescaleDB is required"):
        await database.run_migrations(empty_database, timescaledb="require")


async def test_auto_migrate_at_start(empty_database: str) -> None:
    db = await database.connect(empty_database, auto_migrate=True, timescaledb="off", orm=False)
    try:
        assert db.backend == "postgres"
    finally:
        await db.close()
