"""Shared fixtures: a fresh PostgreSQL database per run, a private broker, a running hub,
and one HTTP client per role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx
import pytest
import time_machine

from hub.alerts.engine import ALERT_ENGINE
from hub.auth import service as auth
from hub.auth.api import LOGINS
from hub.auth.models import Role, User
from hub.broadcasts.service import BROADCASTS
from hub.devices import DIRECTORY
from hub.devices.models import Ward
from hub.health import HEALTH
from hub.storage.database import run_migrations
from tests.support.brokers import PrivateBroker, mosquitto_available, private_mosquitto
from tests.support.clock import INSTANTS, clock_at
from tests.support.hub import RunningHub, create_database, drop_database, hub_settings, running_hub

pytest_plugins = ["tests.support.broadcast_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-at",
        metavar="INSTANT",
        help="run with the clock moved to this ISO 8601 instant (ticking on from it), "
        "to see the suite at another hour or date",
    )


def pytest_configure(config: pytest.Config) -> None:
    moved_to = config.getoption("clock_at")
    if moved_to:
        traveller = time_machine.travel(datetime.fromisoformat(moved_to), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    moved_to = config.getoption("clock_at")
    return f"clock moved to {moved_to}" if moved_to else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # An any_hour test runs at the real clock and at each of the fixed instants.
    if metafunc.definition.get_closest_marker("any_hour"):
        metafunc.parametrize(
            "at_instant", [None, *INSTANTS.values()], ids=["now", *INSTANTS], indirect=True
        )


@pytest.fixture(autouse=True)
def at_instant(request: pytest.FixtureRequest) -> Iterator[None]:
    """The clock of an any_hour test's run (autouse, so it is moved before other fixtures)."""
    with clock_at(getattr(request, "param", None)):
        yield


WARDS = (("ward-a", "Phường A"), ("ward-b", "Phường B"), ("ward-c", "Phường C"))
PASSWORD = "correct horse battery staple"
# Reset before each test: everything but people, their tokens, wards and the schema itself.
KEEP_TABLES = {
    "schema_migration",
    "hub_meta",
    "hub_user",
    "hub_user_ward",
    "api_token",
    "login_session",
    "ward",
}


@dataclass
class Clients:
    admin: httpx.AsyncClient
    technician: httpx.AsyncClient
    staff_a: httpx.AsyncClient
    """ward_staff serving ward-a only"""
    viewer: httpx.AsyncClient
    anonymous: httpx.AsyncClient

    def all_roles(self) -> dict[str, httpx.AsyncClient]:
        return {
            "admin": self.admin,
            "technician": self.technician,
            "staff_a": self.staff_a,
            "viewer": self.viewer,
        }


@pytest.fixture(scope="session")
def broker() -> Iterator[PrivateBroker]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with private_mosquitto() as running:
        yield running


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    try:
        url = await create_database()
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.exit(f"no PostgreSQL for the tests ({exc}); set IOCHUB_TEST_DATABASE_URL", 2)
    await run_migrations(url)
    yield url
    await drop_database(url)


@pytest.fixture(scope="session")
async def hub(database_url: str, broker: PrivateBroker) -> AsyncIterator[RunningHub]:
    async with running_hub(hub_settings(database_url, broker.port)) as running:
        for code, name in WARDS:
            await Ward.get_or_create(code=code, defaults={"name": name})
        yield running


@pytest.fixture(scope="session")
async def tokens(hub: RunningHub) -> dict[str, str]:
    users = {
        "admin": (Role.ADMIN, ()),
        "technician": (Role.TECHNICIAN, ()),
        "staff_a": (Role.WARD_STAFF, ("ward-a",)),
        "viewer": (Role.VIEWER, ()),
    }
    issued = {}
    for name, (role, wards) in users.items():
        user = await User.get_or_none(username=name.replace("_", "-"))
        if user is None:
            user = await auth.create_user(name.replace("_", "-"), PASSWORD, role, wards)
        issued[name] = (await auth.issue_token(user, "tests"))[1]
    return issued


async def reset_database(db: asyncpg.Connection) -> None:
    """Empty every table a test may have filled (only those with rows: truncation is slow)."""
    tables = [
        r["tablename"]
        for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        if r["tablename"] not in KEEP_TABLES
    ]
    probe = " UNION ALL ".join(f"(SELECT '{t}' FROM {t} LIMIT 1)" for t in tables)
    filled = [r[0] for r in await db.fetch(probe)]
    for attempt in range(5):
        try:
            if filled:
                await db.execute(f"TRUNCATE {', '.join(filled)} RESTART IDENTITY CASCADE")
            break
        except asyncpg.DeadlockDetectedError:
            # the running hub's periodic work (health ticks, alert windows) holds a row lock
            # the truncation needs; PostgreSQL rolled the truncation back, so try it again
            if attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    for rollup in ("reading_1m", "reading_1h"):
        if await db.fetchval("SELECT to_regclass($1) IS NOT NULL", rollup) and await db.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {rollup})"
        ):
            await db.execute(f"TRUNCATE {rollup}")


@pytest.fixture
async def clients(
    hub: RunningHub, tokens: dict[str, str], db: asyncpg.Connection
) -> AsyncIterator[Clients]:
    await reset_database(db)
    # Device ids restart with the tables: what the hub cached about them is void.
    runtime = hub.runtime
    runtime.get(DIRECTORY).forget_all()
    runtime.get(HEALTH).forget_all()
    runtime.get(BROADCASTS).forget_all()
    runtime.get(LOGINS).throttle.attempts.clear()
    await runtime.get(ALERT_ENGINE).refresh()
    async with contextlib.AsyncExitStack() as stack:
        made = {}
        for name, token in tokens.items():
            made[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=hub.base_url, headers={"authorization": f"Bearer {token}"}, timeout=30
                )
            )
        anonymous = await stack.enter_async_context(
            httpx.AsyncClient(base_url=hub.base_url, timeout=30)
        )
        yield Clients(anonymous=anonymous, **made)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
