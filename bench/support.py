"""What every benchmark needs: a private broker, a fresh database, a hub in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from hub.storage.database import asyncpg_dsn, run_migrations, with_database
from tests.support.brokers import PrivateBroker, free_port, free_udp_port, private_mosquitto

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
ADMIN_SERVER = os.environ.get(
    "IOCHUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<48} {value:>16}  {note}")


@contextlib.contextmanager
def bench_broker(queued: int = 5_000_000, extra: str = "") -> Iterator[PrivateBroker]:
    config = f"max_queued_messages {queued}\nmax_queued_bytes 0\nmemory_limit 0\n{extra}"
    with private_mosquitto(extra_config=config) as broker:
        yield broker


@contextlib.asynccontextmanager
async def bench_database(backend: str = "auto") -> AsyncIterator[str]:
    name = f"iochub_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(ADMIN_SERVER)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = with_database(ADMIN_SERVER, name)
    try:
        await run_migrations(url, backend)
        yield url
    finally:
        conn = await asyncpg.connect(ADMIN_SERVER)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def add_sensors(url: str, count: int, prefix: str = "bench") -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        ward = await conn.fetchval(
            "INSERT INTO ward (code, name) VALUES ('bench', 'Bench') "
            "ON CONFLICT (code) DO UPDATE SET name = excluded.name RETURNING id"
        )
        uids = [f"{prefix}-{n:05d}" for n in range(count)]
        await conn.copy_records_to_table(
            "device",
            records=[(u, "sensor", ward, "active") for u in uids],
            columns=["uid", "kind", "ward_id", "lifecycle"],
        )
        return uids
    finally:
        await conn.close()


@dataclass
class HubProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def start_hub(
    database_url: str,
    broker_port: int,
    client_id: str,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    on_spawn: Callable[[int], None] = lambda _pid: None,
) -> HubProcess:
    """A hub in its own process, once ready; `on_spawn` gets its pid as soon as it exists
    (a hub with a backlog waiting starts on it before it answers /readyz).

    On a shared machine a free port can be taken between choosing it and the hub binding
    it: then the hub is started again on other ports, at most twice."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{client_id}.log"
    for _attempt in range(3):
        started = log.stat().st_size if log.exists() else 0
        hub = await _spawn_hub(database_url, broker_port, client_id, log, extra_env, on_spawn)
        if hub is not None:
            return hub
        with log.open("rb") as text:
            text.seek(started)
            if b"address already in use" not in text.read():
                break
    raise RuntimeError(f"the hub exited; see {log}")


async def _spawn_hub(
    database_url: str,
    broker_port: int,
    client_id: str,
    log: Path,
    extra_env: dict[str, str] | None,
    on_spawn: Callable[[int], None],
) -> HubProcess | None:
    """The hub once ready, or None if it exited first."""
    port = free_port()
    env = {
        **os.environ,
        "IOCHUB_DATABASE__URL": database_url,
        "IOCHUB_MQTT__PORT": str(broker_port),
        "IOCHUB_MQTT__CLIENT_ID": client_id,
        "IOCHUB_HTTP__PORT": str(port),
        "IOCHUB_COAP__PORT": str(free_udp_port()),
        "IOCHUB_LOG_LEVEL": "WARNING",
        "IOCHUB_SECRET_KEY": "bench-key",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.server", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    on_spawn(process.pid)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return None
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base_url + "/readyz")).status_code == 200:
                    return HubProcess(process, base_url, log)
            await asyncio.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the hub did not become ready; see {log}")


class Profiler:
    """py-spy sampling a hub; the top of its profile (self time and total, per function)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                *(PY_SPY, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"),
                *("--format", "raw", "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def top(self, lines: int = 15) -> list[str]:
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        samples = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            n = int(count)
            samples += n
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
        if not samples:
            return ["(no samples)"]
        result = [f"{samples} samples; self %, total %, function (file:line)"]
        for frame, n in own.most_common(lines):
            result.append(f"{100 * n / samples:5.1f} {100 * total[frame] / samples:5.1f}  {frame}")
        # Beneath the event loop (frames in nearly every sample): where the work goes.
        result.append("by total, beneath the event loop:")
        inner = [(f, n) for f, n in total.most_common() if n < 0.9 * samples]
        for frame, n in inner[:lines]:
            result.append(f"      {100 * n / samples:5.1f}  {frame}")
        return result
