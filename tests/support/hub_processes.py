"""Real hub processes (`python -m hub.server serve`, each its own OS process) on one database
and one broker, as a scaled-out deployment runs them; and what they hold in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from hub.broadcasts.scheduler import LEADER_LOCK_KEY
from hub.storage.leadership import lock_key
from tests.support.brokers import free_port, free_udp_port

SCRAPE_TOKEN = "scrape-only-token-of-the-tests"
# Every singleton's advisory-lock key, by name (docs/operations.md, "Running several hub
# processes"): the broadcast scheduler has its own key, the others go through led().
SINGLETONS = {
    "broadcast-scheduler": LEADER_LOCK_KEY,
    **{
        name: lock_key(f"iochub.{name}")
        for name in ("health-ticks", "camera-health", "camera-events", "maintenance-jobs")
    },
}


@dataclass
class HubProcess:
    """One `hub.server serve` process; restarted with the same client id (and so the same
    broker session and its queued share of the telemetry), as a StatefulSet pod is."""

    client_id: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready_within_s: float = 90.0) -> None:
        env = {
            **self.env,
            "IOCHUB_HTTP__PORT": str(self.port),
            "IOCHUB_COAP__PORT": str(free_udp_port()),
            "IOCHUB_MQTT__CLIENT_ID": self.client_id,
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.server",
            "serve",
            env=env,
            stdout=self.log.open("ab"),
            stderr=asyncio.subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_within_s
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.client_id} exited: {self.log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.client_id} not ready in {ready_within_s} s; see {self.log}")

    def kill_9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def metric(self, name: str) -> float | None:
        """A gauge's value from this process's /metrics (None when it does not answer)."""
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(
                    self.base_url + "/metrics",
                    headers={"authorization": f"Bearer {SCRAPE_TOKEN}"},
                )
        except httpx.HTTPError:
            return None
        response.raise_for_status()
        for line in response.text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


def hub_env(database_url: str, broker_port: int, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "IOCHUB_DATABASE__URL": database_url,
        "IOCHUB_MQTT__HOST": "127.0.0.1",
        "IOCHUB_MQTT__PORT": str(broker_port),
        "IOCHUB_BROADCASTS__SPEAKER_SUBSCRIPTION_GROUP": "iochub-speakers",
        "IOCHUB_METRICS__SCRAPE_TOKEN": SCRAPE_TOKEN,
        "IOCHUB_SECRET_KEY": "test-secret-key-not-for-production",
        "IOCHUB_LOG_LEVEL": "INFO",
        # Every process serves the same uploaded audio (a shared volume in production).
        "IOCHUB_DATA_DIR": str(data_dir),
    }


async def lock_holders(db: asyncpg.Connection, keys: Iterable[int]) -> dict[int, int]:
    """Backend pid holding each advisory lock key that is held in this database (pg_locks
    lists every database's, and splits a 64-bit key into classid, high half, and objid)."""
    rows = await db.fetch(
        "SELECT classid::bigint AS high, objid::bigint AS low, pid FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    held = {row["high"] << 32 | row["low"]: row["pid"] for row in rows}
    unsigned = {key: key & 0xFFFF_FFFF_FFFF_FFFF for key in keys}
    return {key: held[u] for key, u in unsigned.items() if u in held}
