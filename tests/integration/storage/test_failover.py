"""A database URL listing a primary and its hot standby: the hub writes to the primary, and
when the primary dies and the standby is promoted under ingest it carries on there, with
every reading the broker acknowledged at QoS 1 stored once.

The pair is PostgreSQL 15's own binaries on free ports (initdb, pg_basebackup -R, pg_ctl
promote), run as the postgres OS user; replication is synchronous, so a commit the hub was
told of is on the standby too (what a deployment that must lose nothing configures)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import asyncpg
import pytest

from drivers.contract import Topics
from hub.storage.database import asyncpg_dsn, run_migrations
from tests.support.broadcasts import eventually
from tests.support.brokers import PrivateBroker, free_port, mosquitto_available, private_mosquitto
from tests.support.hub_processes import HubProcess, hub_env

BIN = Path("/usr/lib/postgresql/15/bin")
SENSORS = [f"aq-failover-{n}" for n in range(3)]

pytestmark = [
    pytest.mark.skipif(not (BIN / "initdb").exists(), reason="PostgreSQL 15 is not installed"),
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]


def as_postgres(*command: str | Path) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *map(str, command)], check=True, capture_output=True, timeout=120)


class Pair:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary, self.standby = root / "primary", root / "standby"
        self.primary_port, self.standby_port = free_port(), free_port()

    def start(self, data: Path, port: int) -> None:
        as_postgres(
            BIN / "pg_ctl", "-D", data, "-l", self.root / f"{data.name}.log", "-w", "-t", "60",
            "-o", f"-p {port} -k {self.root}", "start",
        )  # fmt: skip

    def url(self, database: str) -> str:
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}"
            f"/{database}"
        )


@pytest.fixture
def pair() -> Iterator[Pair]:
    root = Path(tempfile.mkdtemp(prefix="iochub-failover-"))
    shutil.chown(root, "postgres", "postgres")
    pair = Pair(root)
    try:
        as_postgres(BIN / "initdb", "-D", pair.primary, "-U", "postgres", "--auth=trust")
        with (pair.primary / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\nwal_level = replica\nhot_standby = on\n"
                "max_wal_senders = 5\nsynchronous_standby_names = '*'\nfsync = off\n"
            )
        pair.start(pair.primary, pair.primary_port)
        as_postgres(
            BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", pair.primary_port, "-U", "postgres",
            "-D", pair.standby, "-R", "-X", "stream",
        )  # fmt: skip
        with (pair.standby / "postgresql.conf").open("a") as conf:
            # Promoted, it has no standby of its own to wait for.
            conf.write("synchronous_standby_names = ''\n")
        pair.start(pair.standby, pair.standby_port)
        yield pair
    finally:
        for data in (pair.standby, pair.primary):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                as_postgres(BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_broker() -> Iterator[PrivateBroker]:
    with private_mosquitto() as broker:
        yield broker


async def test_the_hub_carries_on_on_the_promoted_standby_with_nothing_acknowledged_lost(
    pair: Pair, own_broker: PrivateBroker
) -> None:
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pair.primary_port}/postgres")
    await admin.execute("CREATE DATABASE iochub")
    await admin.close()
    url = pair.url("iochub")
    await run_migrations(url)
    db = await asyncpg.connect(asyncpg_dsn(url))
    assert not await db.fetchval("SELECT pg_is_in_recovery()")  # the writable one of the two
    await db.executemany(
        "INSERT INTO device (uid, kind, name, lifecycle) VALUES ($1, 'sensor', $1, 'active')",
        [(uid,) for uid in SENSORS],
    )
    await db.close()

    acknowledged: set[tuple[str, datetime]] = set()
    stop = asyncio.Event()

    async def publish() -> None:
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        n = 0
        async with aiomqtt.Client("127.0.0.1", own_broker.port, identifier="failover") as c:
            while not stop.is_set():
                uid, at = SENSORS[n % len(SENSORS)], base + timedelta(milliseconds=10 * n)
                body = json.dumps({"ts": at.isoformat(), "readings": {"pm2_5": n % 90}})
                await c.publish(Topics.for_device(uid, Topics.TELEMETRY), body, qos=1)
                acknowledged.add((uid, at))
                n += 1
                await asyncio.sleep(0.02)

    async def stored() -> set[tuple[str, datetime]]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch(
                "SELECT d.uid, r.time FROM reading r JOIN device d ON d.id = r.device_id"
            )
        finally:
            await conn.close()
        return {(r["uid"], r["time"]) for r in rows}

    # Its own OS process, as deployed (and the test session's hub holds the ORM's one
    # global context in this one).
    logs = Path(tempfile.mkdtemp(prefix="iochub-failover-hub-"))
    hub = HubProcess(
        "iochub-failover", hub_env(url, own_broker.port, logs / "data"), logs / "hub.log"
    )
    await hub.start()
    try:
        publisher = asyncio.create_task(publish())
        await eventually(lambda: len(acknowledged) > 60, within_s=30)

        async def some_stored() -> bool:
            return len(await stored()) >= 30

        await eventually(some_stored, within_s=30, every_s=0.2)

        # The primary dies (no clean shutdown) under ingest; the standby is promoted.
        as_postgres(BIN / "pg_ctl", "-D", pair.primary, "-m", "immediate", "stop")
        died_at = time.monotonic()
        await asyncio.sleep(0.5)  # readings keep arriving with nowhere to be written
        as_postgres(BIN / "pg_ctl", "-D", pair.standby, "-w", "promote")
        after = len(acknowledged)
        await eventually(lambda: len(acknowledged) > after + 60, within_s=60)
        stop.set()
        await publisher

        async def all_stored() -> bool:
            return acknowledged <= await stored()

        with contextlib.suppress(AssertionError):
            await eventually(all_stored, within_s=60, every_s=0.5)
        recovered_s = time.monotonic() - died_at
        have = await stored()
        lost = acknowledged - have
        assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged readings lost"
        assert have == acknowledged
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            # It is the former standby, now writable, that holds them.
            assert await conn.fetchval("SHOW port") == str(pair.standby_port)
            assert not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()
        assert recovered_s < 120
    finally:
        await hub.stop()
