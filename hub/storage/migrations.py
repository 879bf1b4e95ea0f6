"""Versioned SQL migrations.

Files in migrations/ are named NNNN_name.sql. A migration may add
NNNN_name.timescaledb.sql or NNNN_name.postgres.sql, applied after the common
file on that time-series backend only. The backend is chosen once, at the first
migration, and recorded: a database keeps the layout it was created with.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.errors import HubError

log = logging.getLogger(__name__)

Backend = Literal["timescaledb", "postgres"]
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
_FILE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<backend>timescaledb|postgres))?\.sql$"
)

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS hub_meta (key text PRIMARY KEY, value text NOT NULL);
"""


class SchemaError(HubError):
    status = 503
    slug = "schema-not-current"
    title = "Database schema is not current"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common: str
    variants: dict[str, str]

    def sql_for(self, backend: Backend) -> str:
        return self.common + "\n" + self.variants.get(backend, "")

    def checksum(self, backend: Backend) -> str:
        return hashlib.sha256(self.sql_for(backend).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    backend: Backend | None
    applied: tuple[int, ...]
    pending: tuple[Migration, ...]
    unknown: tuple[int, ...]
    mismatched: tuple[int, ...]

    @property
    def current(self) -> bool:
        return not (self.pending or self.unknown or self.mismatched)

    def problem(self) -> str | None:
        if self.unknown:
            return (
                f"the database has migrations {list(self.unknown)} this hub does not know; "
                "it was migrated by a newer hub"
            )
        if self.mismatched:
            return f"migrations {list(self.mismatched)} differ from the ones applied"
        if self.pending:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in self.pending)
            return f"pending migrations: {names}; run `iochub migrate`"
        return None


def known_migrations() -> list[Migration]:
    files: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in resources.files("hub.storage").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version = int(match["version"])
        names.setdefault(version, match["name"])
        files.setdefault(version, {})[match["backend"] or ""] = entry.read_text("utf-8")
    migrations = []
    for version in sorted(files):
        parts = files[version]
        variants = {key: sql for key, sql in parts.items() if key}
        migrations.append(Migration(version, names[version], parts.get("", ""), variants))
    return migrations


async def recorded_backend(conn: Connection) -> Backend | None:
    exists = await conn.fetchval("SELECT to_regclass('hub_meta') IS NOT NULL")
    if not exists:
        return None
    value = await conn.fetchval("SELECT value FROM hub_meta WHERE key = 'timeseries_backend'")
    return value  # type: ignore[no-any-return]


async def timescaledb_available(conn: Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
    )


async def choose_backend(conn: Connection, preference: str) -> Backend:
    """Pick the time-series backend for a new database, creating the extension if allowed."""
    if preference == "off":
        return "postgres"
    if await timescaledb_available(conn):
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            return "timescaledb"
        except asyncpg.PostgresError as exc:
            reason = f"TimescaleDB is installed but could not be enabled: {exc}"
    else:
        reason = "the TimescaleDB extension is not installed on this PostgreSQL server"
    if preference == "require":
        raise SchemaError(f"TimescaleDB is required but {reason}")
    log.warning("time-series backend: plain PostgreSQL (%s)", reason)
    return "postgres"


async def status(conn: Connection) -> SchemaStatus:
    known = known_migrations()
    backend = await recorded_backend(conn)
    if backend is None:
        return SchemaStatus(None, (), tuple(known), (), ())
    rows = await conn.fetch("SELECT version, checksum FROM schema_migration ORDER BY version")
    applied = {row["version"]: row["checksum"] for row in rows}
    by_version = {m.version: m for m in known}
    return SchemaStatus(
        backend=backend,
        applied=tuple(applied),
        pending=tuple(m for m in known if m.version not in applied),
        unknown=tuple(v for v in applied if v not in by_version),
        mismatched=tuple(
            v
            for v, checksum in applied.items()
            if v in by_version and by_version[v].checksum(backend) != checksum
        ),
    )


async def migrate(conn: Connection, preference: str = "auto") -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return those applied."""
    # One migrator at a time, even with several hubs starting together.
    await conn.execute("SELECT pg_advisory_lock(hashtext('iochub.migrate'))")
    try:
        await conn.execute(BOOKKEEPING)
        backend = await recorded_backend(conn)
        if backend is None:
            backend = await choose_backend(conn, preference)
            await conn.execute(
                "INSERT INTO hub_meta (key, value) VALUES ('timeseries_backend', $1)", backend
            )
        current = await status(conn)
        if current.unknown or current.mismatched:
            raise SchemaError(current.problem() or "schema mismatch")
        applied = []
        for migration in current.pending:
            async with conn.transaction():
                await conn.execute(migration.sql_for(backend))
                await conn.execute(
                    "INSERT INTO schema_migration (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum(backend),
                )
            log.info("applied migration %04d_%s (%s)", migration.version, migration.name, backend)
            applied.append(migration)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('iochub.migrate'))")
