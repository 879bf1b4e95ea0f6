"""The database: one asyncpg pool for SQL and telemetry, tortoise-orm for the registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise

from hub.errors import Unavailable
from hub.storage import migrations
from hub.storage.migrations import Backend, SchemaError

log = logging.getLogger(__name__)

# Every slice's tortoise models, registered under one app label.
MODEL_MODULES = ["hub.devices.models", "hub.auth.models"]


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database (query options such as host= kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def asyncpg_dsn(url: str) -> str:
    """The URL as asyncpg takes it. One listing several hosts (`db1:5432,db2:5432`) reaches
    the writable one: asyncpg tries them in order (libpq's multi-host connection strings),
    and target_session_attrs defaults to read-write where the URL says nothing."""
    dsn = "postgresql://" + url.split("://", 1)[1] if "://" in url else url
    parts = urlsplit(dsn)
    if "," in parts.netloc and "target_session_attrs" not in parse_qs(parts.query):
        query = parts.query + ("&" if parts.query else "") + "target_session_attrs=read-write"
        dsn = urlunsplit(parts._replace(query=query))
    return dsn


class NoWritableServer(ConnectionRefusedError):
    """None of the URL's hosts takes writes just now (a failover under way): an OSError, so
    whatever retries an unreachable database retries this too."""


async def connect_writable(dsn: str, **options: Any) -> asyncpg.Connection[asyncpg.Record]:
    """asyncpg.connect, with "no host matches target_session_attrs" as NoWritableServer."""
    try:
        conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(dsn, **options)
        return conn
    except asyncpg.exceptions.TargetServerAttributeNotMatched as exc:
        raise NoWritableServer(str(exc)) from exc


@dataclass
class Database:
    pool: asyncpg.Pool
    backend: Backend
    url: str

    orm: bool = True

    async def close(self) -> None:
        if self.orm:
            await Tortoise.close_connections()
        await self.pool.close()


async def connect(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    statement_timeout_ms: int = 30_000,
    auto_migrate: bool = False,
    timescaledb: str = "auto",
    orm: bool = True,
) -> Database:
    """Open the pools and check the schema; refuse a schema this hub does not know."""
    try:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url),
            connect=connect_writable,  # type: ignore[call-overload]  # stubs: one signature
            min_size=min_size,
            max_size=max_size,
            server_settings={
                "statement_timeout": str(statement_timeout_ms),
                "application_name": "iochub",
                "timezone": "UTC",
            },
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"cannot reach the database: {exc}") from exc
    try:
        async with pool.acquire() as conn:
            if auto_migrate:
                await migrations.migrate(conn, timescaledb)
            state = await migrations.status(conn)
        problem = state.problem()
        if problem or state.backend is None:
            raise SchemaError(problem or "the database has no schema; run `iochub migrate`")
        if orm:
            await init_orm(url, max_size=max_size)
    except BaseException:
        await pool.close()
        raise
    log.info("database ready; time-series backend: %s", state.backend)
    return Database(pool=pool, backend=state.backend, url=url, orm=orm)


async def init_orm(url: str, *, max_size: int = 10) -> None:
    config: dict[str, Any] = {
        "connections": {
            "default": {
                "engine": "hub.storage.orm_backend",
                "credentials": {"dsn": asyncpg_dsn(url), "minsize": 1, "maxsize": max_size},
            }
        },
        "apps": {"hub": {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }
    # The lifespan runs in another task than the requests: queries must find the ORM.
    await Tortoise.init(config=config, _enable_global_fallback=True)


async def run_migrations(url: str, timescaledb: str = "auto") -> tuple[Backend, list[str]]:
    try:
        conn = await connect_writable(asyncpg_dsn(url))
    except (OSError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"cannot reach the database: {exc}") from exc
    try:
        applied = await migrations.migrate(conn, timescaledb)
        state = await migrations.status(conn)
    finally:
        await conn.close()
    assert state.backend is not None
    return state.backend, [f"{m.version:04d}_{m.name}" for m in applied]


__all__ = [
    "Database",
    "NoWritableServer",
    "SchemaError",
    "connect",
    "connect_writable",
    "run_migrations",
]
