"""Alert delivery latency: from an alert change's commit to the IOC receiving its webhook.

Runs the hub's outbox workers against a scratch PostgreSQL database and a local webhook
receiver (uvicorn on loopback), commits alert events for the 272 loudspeakers and some
sensors at a steady rate, and prints the commit-to-receipt latency against the budget this
stage has in the 1 s end-to-end goal (sensor reading to received webhook, p99); then, as the
limit measured in the same run, a bare HTTP POST to the same receiver.

    .venv/bin/python bench/alerts_delivery.py [--events 2000] [--rate 100] [--devices 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx

from hub.integrations import ALERT_FIRING, enqueue, subscriptions
from hub.integrations.engine import DeliveryEngine
from hub.integrations.schemas import SubscriptionIn
from hub.integrations.settings import DeliverySettings
from hub.storage.crypto import SecretBox
from hub.storage.database import run_migrations
from tests.support.asgi import Receive, Scope, Send, read_body, serving
from tests.support.brokers import free_port

END_TO_END_GOAL_S = 1.0
# What this stage may take of the end-to-end goal; ingest and rule evaluation take the rest.
BUDGET_S = 0.1
ADMIN_URL = os.environ.get(
    "IOCHUB_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Receiver:
    """Records when each event (by its seq) first arrives; answers 204."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self.all_in = asyncio.Event()
        self.expected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        arrived = time.perf_counter()
        if body:
            seq = json.loads(body)["data"]["seq"]
            self.received.setdefault(seq, arrived)
            if len(self.received) >= self.expected:
                self.all_in.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def receiving(app: Receiver) -> AsyncIterator[str]:
    """Serve the receiver on loopback; yields the webhook URL to deliver to."""
    port = free_port()
    async with serving(app, port):
        yield f"http://127.0.0.1:{port}/hooks"


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    name = f"iochub_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        await run_migrations(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def bare_post_s(url: str, count: int) -> list[float]:
    async with httpx.AsyncClient() as client:
        took = []
        for _ in range(count):
            started = time.perf_counter()
            await client.post(url, content=b"")
            took.append(time.perf_counter() - started)
        return took


async def main(events: int, rate: float, devices: int) -> None:
    receiver = Receiver()
    receiver.expected = events
    async with scratch_database() as url, receiving(receiver) as hook_url:
        pool = await asyncpg.create_pool(url, min_size=4, max_size=12)
        box = SecretBox(secrets.token_urlsafe(32))
        await subscriptions.create(pool, box, SubscriptionIn(name="ioc", url=hook_url))
        ward_id = await pool.fetchval(
            "INSERT INTO ward (code, name) VALUES ('bench', 'Bench') RETURNING id"
        )
        engine = DeliveryEngine(url, settings=DeliverySettings(concurrency=32), box=box)
        running = asyncio.create_task(engine.run())
        await asyncio.sleep(0.5)

        committed: dict[int, float] = {}
        started = time.perf_counter()
        for seq in range(events):
            device = f"spk-{seq % devices:03d}"
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(
                    conn,
                    event_type=ALERT_FIRING,
                    subject=f"bench/{device}",
                    ordering_key=device,
                    ward_id=ward_id,
                    data={"seq": seq, "device_uid": device, "severity": "warning"},
                )
            committed[seq] = time.perf_counter()
            await asyncio.sleep(max(0.0, started + (seq + 1) / rate - time.perf_counter()))
        await asyncio.wait_for(receiver.all_in.wait(), 60)
        elapsed = time.perf_counter() - started
        await engine.stop()
        await running
        await pool.close()
        bare = await bare_post_s(hook_url, 200)

    latency = [receiver.received[s] - committed[s] for s in committed]
    p99 = percentile(latency, 0.99)
    print(f"events: {events} over {devices} devices at {rate:g}/s ({events / elapsed:.0f}/s done)")
    print(
        f"commit -> webhook received: p50 {percentile(latency, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(latency, 0.95) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(latency) * 1000:.1f} ms, mean {statistics.fmean(latency) * 1000:.1f} ms"
    )
    print(
        f"p99 / stage budget {BUDGET_S * 1000:.0f} ms = {p99 / BUDGET_S:.2f}; "
        f"p99 / end-to-end goal {END_TO_END_GOAL_S:g} s = {p99 / END_TO_END_GOAL_S:.3f}"
    )
    print(
        f"limit: a bare POST to the receiver takes p50 {percentile(bare, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(bare, 0.99) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="events committed per second")
    parser.add_argument("--devices", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.rate, arguments.devices))
