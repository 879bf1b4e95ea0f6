"""The `iochub` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.errors import HubError
from hub.firmware import cli as firmware_cli
from hub.server import log_format
from hub.server.operator import system_principal, write_private
from hub.server.settings import Settings, describe

app = typer.Typer(
    help="iochub: the device hub of a district operations center.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
devices_app = typer.Typer(help="List, import and export devices.", no_args_is_help=True)
users_app = typer.Typer(help="Create users and API tokens.", no_args_is_help=True)
credentials_app = typer.Typer(
    help="Per-device MQTT credentials (the broker confines each device to its topics).",
    no_args_is_help=True,
)
devices_app.add_typer(credentials_app, name="credentials")
profiles_app = typer.Typer(
    help="Device profiles: how a model names its SenML records (docs/protocol/sensors.md).",
    no_args_is_help=True,
)
devices_app.add_typer(profiles_app, name="profiles")
secrets_app = typer.Typer(help="Secrets sealed at rest.", no_args_is_help=True)
simulate_app = typer.Typer(
    help="Run simulated devices speaking the real protocols.", no_args_is_help=True
)
app.add_typer(devices_app, name="devices")
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="API tokens: issue, list, revoke.", no_args_is_help=True)
users_app.add_typer(tokens_app, name="token")
app.add_typer(simulate_app, name="simulate")
app.add_typer(secrets_app, name="secrets")
grafana_app = typer.Typer(help="Grafana for the IOC's video wall.", no_args_is_help=True)
app.add_typer(grafana_app, name="grafana")
app.add_typer(
    firmware_cli.make_app(
        lambda: Settings().database.url.get_secret_value(), lambda: Settings().firmware
    ),
    name="firmware",
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; hub errors become a clear message and exit code 1."""
    from asyncpg import PostgresError
    from tortoise.exceptions import BaseORMException

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except HubError as exc:
        err.print(f"[bold red]error:[/] {exc.detail}", markup=True, highlight=False)
        for problem in exc.errors[:50]:
            where = f"row {problem.row} " if problem.row is not None else ""
            err.print(f"  {where}{problem.field}: {problem.message}", markup=False)
        raise typer.Exit(1) from None
    except (PostgresError, BaseORMException) as exc:
        # A refusal the command did not foresee. The database's message may quote the row
        # (a password hash, a secret): name only the kind of error and the constraint.
        cause = exc.__cause__ if isinstance(exc.__cause__, PostgresError) else exc
        constraint = getattr(cause, "constraint_name", None)
        err.print(
            f"[bold red]error:[/] the database refused the change ({type(cause).__name__}"
            + (f", constraint {constraint}" if constraint else "")
            + ")",
            highlight=False,
        )
        raise typer.Exit(1) from None


def setup_logging(settings: Settings) -> None:
    log_format.configure(settings.log_format, settings.log_level)


async def with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    from hub.storage import database

    db = await database.connect(settings.database.url.get_secret_value(), max_size=4)
    try:
        return await work()
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def sql_connection(settings: Settings) -> AsyncIterator[Any]:
    import asyncpg

    from hub.storage.database import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(settings.database.url.get_secret_value()))
    try:
        yield conn
    finally:
        await conn.close()


@app.command()
def serve() -> None:
    """Run the hub (HTTP API, console and background services)."""
    import uvicorn

    from hub.server.app import GRACEFUL_SHUTDOWN_S, create_app

    settings = Settings()
    setup_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        log_level=settings.log_level.lower(),
        log_config=log_format.uvicorn_log_config(settings.log_format)
        or uvicorn.config.LOGGING_CONFIG,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from hub.storage.database import run_migrations

    settings = Settings()
    setup_logging(settings)
    backend, applied = run(
        run_migrations(settings.database.url.get_secret_value(), settings.database.timescaledb)
    )
    for name in applied:
        console.print(f"applied {name}")
    console.print(f"schema current ({len(applied)} applied); time-series backend: {backend}")


@app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    table = Table("setting", "value", "meaning", show_lines=False)
    for env, value, doc in describe(Settings()):
        table.add_row(env, value, doc)
    console.print(table)


@app.command()
def demo(
    port: Annotated[
        int | None, typer.Option(help="HTTP port of the demo hub (default: IOCHUB_HTTP__PORT).")
    ] = None,
    simulate: Annotated[bool, typer.Option(help="Run the simulated fleet beside the hub.")] = True,
) -> None:
    """Run the hub with a seeded fleet and its simulated devices; start local PostgreSQL and a
    private MQTT broker when needed."""
    from hub.server.demo import run_demo

    run_demo(port, simulate)


@devices_app.command("list")
def devices_list(
    kind: Annotated[
        str | None, typer.Option(help="camera, speaker or sensor (plurals too)")
    ] = None,
    ward: Annotated[list[str] | None, typer.Option(help="ward code (repeatable)")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    q: Annotated[str | None, typer.Option(help="text in uid, name, model, vendor, serial")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    output: Annotated[
        str | None,
        typer.Option(help="table, json or csv (default: a table on a terminal, else csv)"),
    ] = None,
) -> None:
    """List devices: a table for people, JSON or CSV with full values for scripts."""
    from hub.devices import service

    settings = Settings()
    chosen = output or ("table" if sys.stdout.isatty() else "csv")
    if chosen not in ("table", "json", "csv"):
        err.print(f"[bold red]error:[/] --output must be table, json or csv, not {chosen!r}")
        raise typer.Exit(2)
    kind = device_kind(kind)
    query = service.DeviceQuery(kind=kind, wards=tuple(ward or ()), status=status, tag=tag, q=q)

    async def work() -> list[Any]:
        principal = system_principal()
        items: list[Any] = []
        async for device in await service.iter_devices(principal, query):
            items.append(device)
            if len(items) >= limit:
                break
        return items

    items = run(with_database(settings, work))
    columns = ("uid", "kind", "ward", "status", "vendor", "model", "firmware_version", "last_seen")
    records = [
        {
            "uid": d.uid,
            "kind": d.kind,
            "ward": d.ward,
            "status": d.status,
            "vendor": d.vendor,
            "model": d.model,
            "firmware_version": d.firmware_version,
            "last_seen": d.last_seen.isoformat() if d.last_seen else None,
        }
        for d in items
    ]
    if chosen == "json":
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return
    if chosen == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return
    table = Table("uid", "kind", "ward", "status", "model", "firmware", "last seen")
    for d in items:
        table.add_row(
            d.uid,
            d.kind,
            d.ward or "—",
            d.status,
            f"{d.vendor} {d.model}".strip(),
            d.firmware_version,
            d.last_seen.isoformat(timespec="seconds") if d.last_seen else "never",
        )
    console.print(table)
    console.print(f"{len(items)} shown")


DEVICE_KINDS = ("camera", "speaker", "sensor")


def device_kind(name: str | None) -> str | None:
    """A device kind as a person types it: 'cameras' is 'camera'; anything else is refused."""
    if name is None:
        return None
    singular = name.strip().lower().removesuffix("s")
    if singular not in DEVICE_KINDS:
        err.print(f"[bold red]error:[/] unknown kind {name!r}; use {', '.join(DEVICE_KINDS)}")
        raise typer.Exit(2)
    return singular


@profiles_app.command("import")
def profiles_import(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="profile JSON files")
    ],
) -> None:
    """Import profiles (one JSON object per file); each replaces the model's profile."""
    from hub.devices.profiles import parse_profile, save_profile
    from hub.telemetry.names import mapping_problem

    settings = Settings()

    async def work() -> list[tuple[str, bool]]:
        profiles = [parse_profile(file.read_bytes(), mapping_problem) for file in files]
        async with sql_connection(settings) as conn, conn.transaction():
            return [(p.model, await save_profile(conn, p)) for p in profiles]

    for model, new in run(work()):
        console.print(f"{'imported' if new else 'replaced'} the profile of {model!r}")
    console.print("running hubs take it within 30 s")


@profiles_app.command("list")
def profiles_list() -> None:
    """Every profile in force: shipped with the hub, or imported."""
    from hub.devices.profiles import ProfileBook

    settings = Settings()
    book = ProfileBook()

    async def work() -> None:
        async with sql_connection(settings) as conn:
            await book.refresh(conn)

    run(work())
    table = Table("model", "identities", "names", "unmapped", "description")
    for model, profile in sorted(book.profiles.items()):
        table.add_row(
            model,
            " ".join(profile.identities),
            str(len(profile.names)),
            profile.unmapped,
            profile.description,
        )
    console.print(table)


def credential_service(settings: Settings) -> Any:
    from hub.devices.credentials import DeviceCredentials
    from hub.devices.wiring import broker_access

    return DeviceCredentials(broker_access(settings.mqtt))


@credentials_app.command("issue")
def credentials_issue(
    uids: Annotated[list[str], typer.Argument(help="device uids")],
    output: Annotated[
        Path | None, typer.Option(help="write {uid: secret} here (mode 0600) instead of printing")
    ] = None,
) -> None:
    """Issue (or rotate) credentials; each secret is shown once. Refused when the hub cannot
    tell its broker (no broker admin configured): the device could not log in with them."""
    from hub.devices.broker.access import NoBrokerAccess
    from hub.devices.wiring import broker_access

    settings = Settings()
    if settings.mqtt.identities != "database" and isinstance(
        access := broker_access(settings.mqtt), NoBrokerAccess
    ):
        err.print(
            f"[bold red]error:[/] the broker at {settings.mqtt.host}:{settings.mqtt.port} would "
            f"not know these credentials: {access.reason}. Against `iochub demo`, load the "
            "settings it writes first: set -a; . .iochub-data/demo.env; set +a",
            highlight=False,
        )
        raise typer.Exit(1)

    async def work() -> dict[str, str]:
        service = credential_service(settings)
        principal = system_principal()
        issued = {}
        with progress_bar() as bar:
            task = bar.add_task("issuing", total=len(uids))
            for uid in uids:
                issued[uid] = (await service.issue(principal, uid)).secret
                bar.advance(task)
        return issued

    issued = run(with_database(settings, work))
    if output is not None:
        write_private(output, issued)
        console.print(f"wrote {len(issued)} secrets to {output} (readable by you only)")
    else:
        for uid, secret in issued.items():
            print(f"{uid}\t{secret}")


@credentials_app.command("revoke")
def credentials_revoke(uids: Annotated[list[str], typer.Argument(help="device uids")]) -> None:
    """Revoke credentials: the broker disconnects the device at once."""
    from hub.devices.service import get_scoped

    settings = Settings()

    async def work() -> None:
        service = credential_service(settings)
        principal = system_principal()
        for uid in uids:
            await service.revoke(principal, await get_scoped(principal, uid))

    run(with_database(settings, work))
    console.print(f"revoked {len(uids)} device credentials")


@secrets_app.command("reseal")
def secrets_reseal() -> None:
    """Re-encrypt every sealed secret with the current IOCHUB_SECRET_KEY (after rotation)."""
    from hub.storage.reseal import reseal_all

    settings = Settings()

    async def work() -> dict[str, int]:
        return await reseal_all(settings.database.url.get_secret_value(), settings.secret_box())

    counts = run(work())
    for what, count in counts.items():
        console.print(f"{what}: {count} resealed")
    console.print("old keys may now be removed from IOCHUB_PREVIOUS_SECRET_KEYS")


@devices_app.command("import")
def devices_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON file")],
    dry_run: Annotated[bool, typer.Option(help="Check every row, create nothing.")] = False,
) -> None:
    """Import devices from CSV or JSON: every row or none, with a per-row error report."""
    from hub.devices import service, transfer

    settings = Settings()
    data = file.read_bytes()
    if file.suffix.lower() not in (".csv", ".json"):
        err.print(
            f"[bold red]error:[/] import a .csv or .json file, not {file.name!r} "
            "(GeoJSON is an export for maps: export .csv or .json to import again)"
        )
        raise typer.Exit(2)
    if read_only := [c for c in transfer.READ_ONLY_COLUMNS if c.encode() in data]:
        console.print(f"note: {', '.join(read_only)} are set by the hub; ignored")

    async def work() -> int:
        rows = (
            transfer.parse_json(data)
            if file.suffix.lower() == ".json"
            else transfer.parse_csv(data)
        )
        wards = await service.WardDirectory.load()
        with progress_bar() as bar:
            task = bar.add_task("checking", total=len(rows))
            devices = await transfer.validate_rows(
                rows, wards.by_code, strict_types=file.suffix.lower() == ".json"
            )
            bar.update(task, completed=len(rows))
            if dry_run:
                return 0
            task = bar.add_task("importing", total=len(devices))
            return await service.bulk_create(
                system_principal(),
                devices,
                progress=lambda n: bar.advance(task, n),
                chunk=200,
            )

    created = run(with_database(settings, work))
    console.print(
        "every row is valid; nothing created (dry run)"
        if dry_run
        else f"imported {created} devices"
    )


GEOJSON_OPEN = '{"type":"FeatureCollection","features":['


@devices_app.command("export")
def devices_export(
    output: Annotated[
        Path, typer.Argument(dir_okay=False, help="file to write (.csv, .json or .geojson)")
    ],
    kind: Annotated[str | None, typer.Option()] = None,
    ward: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """Export devices as CSV or GeoJSON."""
    from hub.devices import service, transfer

    settings = Settings()
    query = service.DeviceQuery(kind=device_kind(kind), wards=tuple(ward or ()))
    form = output.suffix.lower()
    if form not in (".csv", ".json", ".geojson"):
        err.print(f"[bold red]error:[/] write a .csv, .json or .geojson file, not {output.name!r}")
        raise typer.Exit(2)

    async def work() -> int:
        principal = system_principal()
        count = 0
        with output.open("w", encoding="utf-8", newline="") as out:
            out.write({".csv": transfer.csv_header(), ".json": "[", ".geojson": GEOJSON_OPEN}[form])
            async for device in await service.iter_devices(principal, query):
                if form == ".csv":
                    out.write(transfer.csv_record(device))
                else:
                    record = (
                        transfer.json_record(device)
                        if form == ".json"
                        else transfer.geojson_feature(device)
                    )
                    out.write(("," if count else "") + json.dumps(record, ensure_ascii=False))
                count += 1
            out.write({".csv": "", ".json": "]", ".geojson": "]}"}[form])
        return count

    console.print(f"wrote {run(with_database(settings, work))} devices to {output}")


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin, technician, ward_staff or viewer")],
    ward: Annotated[
        list[str] | None, typer.Option(help="ward code, for ward_staff (repeatable)")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(envvar="IOCHUB_NEW_PASSWORD", help="omit to be asked (on a terminal)"),
    ] = None,
) -> None:
    """Create a user."""
    from hub.auth import service
    from hub.auth.models import Role

    try:
        role_value = Role(role)
    except ValueError:
        err.print(f"[bold red]error:[/] role must be one of {', '.join(r.value for r in Role)}")
        raise typer.Exit(2) from None
    if password is None and not sys.stdin.isatty():
        err.print(
            "[bold red]error:[/] no terminal to ask for the password on: give --password "
            "(or IOCHUB_NEW_PASSWORD)"
        )
        raise typer.Exit(2)
    secret = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
    run(
        with_database(
            Settings(), lambda: service.create_user(username, secret, role_value, ward or ())
        )
    )
    console.print(f"created {role_value.value} {username}")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    from hub.auth.models import User

    async def work() -> list[tuple[str, str, str, str]]:
        rows = []
        for user in await User.all().order_by("username").prefetch_related("wards"):
            wards = ", ".join(sorted(w.code for w in user.wards))
            rows.append(
                (
                    user.username,
                    user.role,
                    wards or "all",
                    "active" if user.is_active else "disabled",
                )
            )
        return rows

    table = Table("username", "role", "wards", "state")
    for row in run(with_database(Settings(), work)):
        table.add_row(*row)
    console.print(table)


@tokens_app.command("issue")
def users_token_issue(
    username: str,
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="days until the token stops working (default: never)")
    ] = None,
) -> None:
    """Issue an API token for a user; the secret is printed once."""
    from datetime import UTC, datetime, timedelta

    from hub.auth import service

    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def work() -> str:
        user = await service.user_named(username)
        return (await service.issue_token(user, name, expires_at=expires_at))[1]

    token = run(with_database(Settings(), work))
    console.print("API token (shown once; store it now):")
    print(token)


def when(moment: Any) -> str:
    return moment.isoformat(timespec="minutes") if moment else "—"


@tokens_app.command("list")
def users_token_list(
    username: Annotated[str | None, typer.Argument(help="only this user's tokens")] = None,
) -> None:
    """List API tokens (never their secrets): prefix, expiry, last use, revocation."""
    from hub.auth import service
    from hub.auth.models import ApiToken

    async def rows() -> list[tuple[str, ...]]:
        if username is not None:
            tokens = await service.tokens_of(await service.user_named(username))
        else:
            tokens = await ApiToken.all().order_by("user_id", "id").select_related("user")
        return [
            (
                t.user.username,
                t.name,
                t.prefix,
                when(t.created_at),
                when(t.expires_at),
                when(t.last_used_at),
                when(t.revoked_at),
            )
            for t in tokens
        ]

    table = Table("user", "name", "prefix", "created", "expires", "last used", "revoked")
    for row in run(with_database(Settings(), rows)):
        table.add_row(*row)
    console.print(table)


@tokens_app.command("revoke-all")
def users_token_revoke_all(username: str) -> None:
    """Revoke every API token of a user at once."""
    from hub.auth import service

    async def work() -> int:
        return await service.revoke_all_tokens(await service.user_named(username))

    console.print(f"revoked {run(with_database(Settings(), work))} tokens of {username}")


CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        help="JSON file {uid: secret} of per-device broker credentials (the demo writes one)"
    ),
]


@simulate_app.command("sensors")
def simulate_sensors(
    credentials: CredentialsOption = None,
    interval: Annotated[float, typer.Option(help="seconds between readings")] = 10.0,
    time_scale: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
    malformed: Annotated[float, typer.Option(help="share of malformed payloads")] = 0.0,
) -> None:
    """The demo fleet's ~120 environmental sensors, publishing over MQTT."""
    from hub.server.simulate import read_credentials
    from hub.server.simulate import simulate_sensors as run_sensors

    mqtt = Settings().mqtt
    console.print(f"simulating sensors against {mqtt.host}:{mqtt.port}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_sensors(
                mqtt.host,
                mqtt.port,
                read_credentials(credentials),
                interval=interval,
                time_scale=time_scale,
                malformed=malformed,
            )
        )


@simulate_app.command("speakers")
def simulate_speakers(
    credentials: CredentialsOption = None,
    speed: Annotated[float, typer.Option(help="playback speed factor")] = 1.0,
    status_interval: Annotated[float, typer.Option(help="seconds between status reports")] = 30.0,
) -> None:
    """The demo fleet's 272 loudspeakers: they download, verify and play what they are sent."""
    from hub.server.simulate import read_credentials
    from hub.server.simulate import simulate_speakers as run_speakers

    mqtt = Settings().mqtt
    console.print(f"simulating speakers against {mqtt.host}:{mqtt.port}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_speakers(
                mqtt.host,
                mqtt.port,
                read_credentials(credentials),
                speed=speed,
                status_interval=status_interval,
            )
        )


@simulate_app.command("cameras")
def simulate_cameras(
    count: Annotated[int, typer.Option(help="how many cameras")] = 8,
    register_ward: Annotated[
        str | None, typer.Option(help="also onboard them into this ward")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="their password (default: the simulator's)")
    ] = None,
    rtsp: Annotated[
        bool, typer.Option(help="stream H.264 over RTSP for live views (needs ffmpeg)")
    ] = True,
) -> None:
    """Simulated ONVIF cameras on loopback (real SOAP, WS-Security, WS-Discovery, RTSP)."""
    import shutil

    from hub.cameras.simulate import run_camera_simulation

    settings = Settings()
    setup_logging(settings)
    with contextlib.suppress(KeyboardInterrupt):
        run(
            run_camera_simulation(
                count,
                password=password,
                register_ward=register_ward,
                settings=settings,
                rtsp=rtsp and shutil.which("ffmpeg") is not None,
            )
        )


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


@grafana_app.command("sync")
def grafana_sync(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite dashboards changed in Grafana.")
    ] = False,
    lang: Annotated[str | None, typer.Option(help="vi or en (default: the settings').")] = None,
) -> None:
    """Provision Grafana: the IOC folder, the data source (read-only role) and every
    dashboard. Exits 1 when a dashboard was left alone because of a conflict or refusal."""
    from hub.integrations.grafana_sync import sync_grafana

    settings = Settings()
    setup_logging(settings)
    if lang not in (None, "vi", "en"):
        err.print("[bold red]error:[/] --lang must be vi or en")
        raise typer.Exit(2)

    async def work() -> list[Any]:
        from hub.storage import database

        url = settings.database.url.get_secret_value()
        db = await database.connect(url, min_size=1, max_size=2, orm=False)
        try:
            return await sync_grafana(
                db.pool, settings.delivery.grafana, url, dry_run=dry_run, force=force, lang=lang
            )
        finally:
            await db.close()

    outcomes = run(work())
    table = Table("kind", "uid", "title", "action", "detail", title="dry run" if dry_run else None)
    for outcome in outcomes:
        table.add_row(outcome.kind, outcome.uid, outcome.title, outcome.action, outcome.detail)
    console.print(table)
    if any(outcome.action in ("conflict", "refused") for outcome in outcomes):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
