"""Fixtures for alert delivery: a database of its own for the outbox workers, a webhook
receiver on a real socket, and a way to run workers (hub processes) against the database.

The workers under test get a database of their own because the session hub runs its own
workers on the shared one, and two sets of workers with different retry schedules would
race for the same deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from hub.integrations import ALERT_FIRING, enqueue
from hub.integrations.engine import DeliveryEngine
from hub.integrations.settings import DeliverySettings
from hub.storage.crypto import SecretBox
from hub.storage.database import run_migrations
from tests.support.hub import create_database, drop_database
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

WARD_CODES = ("ward-a", "ward-b")
DELIVERY_TABLES = ("outbox", "webhook_subscription")
HUB_ID = "test-hub"
HUB_KEY = "a test key that is not the production one"


def fast_settings(**overrides: Any) -> DeliverySettings:
    """Delivery settings with a retry schedule measured in tens of milliseconds."""
    values: dict[str, Any] = {
        "hub_id": HUB_ID,
        "request_timeout_s": 0.5,
        "retry_delays_s": [0.05, 0.1, 0.2],
        "retry_jitter": "none",
        "give_up_after_s": 60.0,
        "poll_interval_s": 0.5,
        "shutdown_grace_s": 0.2,
        "concurrency": 8,
    }
    values.update(overrides)
    return DeliverySettings.model_validate(values)


@dataclass
class DeliveryStore:
    url: str
    pool: asyncpg.Pool
    box: SecretBox
    wards: dict[str, int]

    @contextlib.asynccontextmanager
    async def engine(
        self, settings: DeliverySettings | None = None
    ) -> AsyncIterator[DeliveryEngine]:
        """The workers of one hub process, until the block ends."""
        engine = DeliveryEngine(self.url, settings=settings or fast_settings(), box=self.box)
        task = asyncio.create_task(engine.run())
        try:
            yield engine
        finally:
            await engine.stop()
            await asyncio.wait_for(task, 10)

    async def deliveries(self, **where: Any) -> list[asyncpg.Record]:
        conditions = " AND ".join(f"d.{column} = ${n}" for n, column in enumerate(where, 1))
        return await self.pool.fetch(
            "SELECT d.*, o.event_type, o.data::text AS data FROM outbox_delivery d "
            "JOIN outbox o ON o.id = d.outbox_id "
            f"{'WHERE ' + conditions if where else ''} ORDER BY d.id",
            *where.values(),
        )

    async def wait_until(self, query: str, *args: Any, within_s: float = 10.0) -> Any:
        """Poll until `query` returns a truthy value; return it."""
        deadline = time.monotonic() + within_s
        while True:
            value = await self.pool.fetchval(query, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {within_s} s: {query}")
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def delivery_database() -> AsyncIterator[str]:
    url = await create_database()
    await run_migrations(url)
    yield url
    await drop_database(url)


@pytest.fixture(scope="session")
async def delivery_pool(delivery_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(delivery_database, min_size=1, max_size=6)
    for code in WARD_CODES:
        await pool.execute(
            "INSERT INTO ward (code, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", code
        )
    yield pool
    await pool.close()


@pytest.fixture
async def store(delivery_database: str, delivery_pool: asyncpg.Pool) -> DeliveryStore:
    await delivery_pool.execute(f"TRUNCATE {', '.join(DELIVERY_TABLES)} RESTART IDENTITY CASCADE")
    wards = {r["code"]: r["id"] for r in await delivery_pool.fetch("SELECT id, code FROM ward")}
    return DeliveryStore(
        url=delivery_database,
        pool=delivery_pool,
        box=SecretBox(HUB_KEY),
        wards=wards,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as running:
        yield running


def alert_data(
    device: str, seq: int, *, ward: str | None = "ward-a", **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "alert_id": 1000 + seq,
        "fingerprint": f"fp-{device}",
        "rule": "pm25_high",
        "device_uid": device,
        "device_kind": "sensor",
        "ward": ward,
        "severity": "warning",
        "state": "firing",
        "value": 80.5 + seq,
        "threshold": 75.0,
        "message": f"PM2.5 {80.5 + seq} µg/m³ above 75",
        "started_at": datetime(2025, 3, 1, 8, 0, seq % 60, tzinfo=UTC),
        "resolved_at": None,
        "acknowledged_by": None,
        "seq": seq,
    }
    data.update(extra)
    return data


async def enqueue_alert(
    pool: asyncpg.Pool,
    device: str,
    seq: int,
    *,
    event_type: str = ALERT_FIRING,
    ward: str | None = "ward-a",
    ward_id: int | None = None,
    **extra: Any,
) -> int:
    """One alert change committed in its own transaction, the way the alerts slice does it."""
    async with pool.acquire() as conn, conn.transaction():
        return await enqueue(
            conn,
            event_type=event_type,
            subject=f"fp-{device}",
            ordering_key=device,
            ward_id=ward_id,
            data=alert_data(device, seq, ward=ward, **extra),
        )


def verify_standard_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: int = 300
) -> bool:
    """Standard Webhooks verification, written from the specification.

    signed content = "{webhook-id}.{webhook-timestamp}.{body}"; key = base64 decode of the
    secret after "whsec_"; signature = base64(HMAC-SHA256(key, signed content)); the header
    holds space-separated "v1,<signature>" entries, any one of which may match.
    """
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False
