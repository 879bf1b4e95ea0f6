"""Alerts end to end: a threshold breach published over MQTT until the IOC receives the
signed webhook, with 1,000 active rules and the demo fleet's sensors publishing meanwhile;
and the rule evaluator's own throughput against the raw COPY rate of the same rows.

Run: python -m bench.alerts [--breaches 60] [--rules 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import paho.mqtt.client as paho

from bench.support import add_sensors, bench_broker, bench_database, percentile, row, start_hub
from drivers.contract import Topics
from hub.alerts.engine import AlertEngine
from hub.storage.database import asyncpg_dsn
from tests.support.webhook_receiver import WebhookReceiver


async def admin_token(url: str) -> str:
    env = {**os.environ, "IOCHUB_DATABASE__URL": url, "IOCHUB_LOG_LEVEL": "WARNING"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.server",
            "users",
            "create",
            "bench-admin",
            "--role",
            "admin",
            "--password",
            "bench admin password",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    made = subprocess.run(
        [sys.executable, "-m", "hub.server", "users", "token", "bench-admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip().splitlines()[-1]


async def add_rules(url: str, count: int) -> None:
    """`count` rules over the fleet: most never fire, a few watch the breach devices."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        metrics = ("pm2_5", "pm10", "o3", "no2", "noise", "temperature", "humidity")
        records = [
            (
                f"rule {n}",
                "threshold",
                "device" if n % 3 else "all",
                f"bench-{n % 100:05d}" if n % 3 else "",
                metrics[n % len(metrics)],
                ">",
                10_000.0 + n,
                9_000.0 + n,
                "minor",
            )
            for n in range(count - 1)
        ]
        await conn.copy_records_to_table(
            "alert_rule",
            records=records,
            columns=[
                "name",
                "kind",
                "scope_type",
                "scope_value",
                "metric",
                "comparison",
                "threshold",
                "clear_threshold",
                "severity",
            ],
        )
        await conn.execute(
            "INSERT INTO alert_rule (name, kind, scope_type, metric, comparison, threshold, "
            "clear_threshold, severity) VALUES ('water rising', 'threshold', 'all', "
            "'water_level', '>=', 300, 200, 'major')"
        )
    finally:
        await conn.close()


def publisher(port: int) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-breach")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


async def breach_latency(
    hub_url: str, token: str, port: int, uids: list[str], breaches: int, receiver: WebhookReceiver
) -> list[float]:
    async with httpx.AsyncClient(
        base_url=hub_url, headers={"authorization": f"Bearer {token}"}
    ) as api:
        created = await api.post(
            "/api/v1/webhooks",
            json={"name": "IOC", "url": receiver.url, "event_types": ["vn.iochub.alert.firing"]},
        )
        created.raise_for_status()
    client = publisher(port)
    sent: dict[str, float] = {}
    try:
        for n in range(breaches):
            uid = uids[n]
            body = {"ts": datetime.now(UTC).isoformat(), "readings": {"water_level": 350.0 + n}}
            sent[uid] = time.monotonic()
            client.publish(Topics.for_device(uid, Topics.TELEMETRY), json.dumps(body), qos=1)
            await asyncio.sleep(0.25)
        await receiver.wait_accepted(breaches, within_s=60)
    finally:
        client.loop_stop()
        client.disconnect()
    return [
        r.received_at - sent[r.json()["data"]["device_uid"]] for r in receiver.accepted.values()
    ]


async def evaluator_rate(url: str, rows: int) -> tuple[float, float]:
    """Readings/s through the rule evaluator (no alert fires), and COPY of the same rows."""
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2)
    try:
        engine = AlertEngine(pool)
        await engine.refresh()
        ids = sorted(engine.devices)
        metrics = ("pm2_5", "pm10", "o3", "no2", "noise", "temperature", "humidity")
        start = datetime.now(UTC) - timedelta(days=1)
        batch = [
            (start + timedelta(milliseconds=n), ids[n % len(ids)], metrics[n % 7], 20.0)
            for n in range(rows)
        ]
        began = time.perf_counter()
        for first in range(0, rows, 5000):
            await engine.readings_stored(batch[first : first + 5000])
        evaluated = rows / (time.perf_counter() - began)
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE copy_probe (LIKE reading INCLUDING ALL)")
            began = time.perf_counter()
            for first in range(0, rows, 5000):
                await conn.copy_records_to_table(
                    "copy_probe",
                    records=batch[first : first + 5000],
                    columns=["time", "device_id", "metric", "value"],
                )
            copied = rows / (time.perf_counter() - began)
        return evaluated, copied
    finally:
        await pool.close()


async def main(breaches: int, rules: int) -> None:
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-alerts-"))
    receiver = WebhookReceiver()
    await receiver.up()
    with bench_broker() as broker:
        async with bench_database() as url:
            uids = await add_sensors(url, 200)
            await add_rules(url, rules)
            token = await admin_token(url)
            evaluated, copied = await evaluator_rate(url, 200_000)
            hub = await start_hub(url, broker.port, "bench-alerts", logs)
            fleet = subprocess.Popen(
                [sys.executable, "-m", "hub.server", "simulate", "sensors", "--interval", "1"],
                env={**os.environ, "IOCHUB_MQTT__PORT": str(broker.port)},
                stdout=(logs / "fleet.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            try:
                await asyncio.sleep(3)  # the fleet connects and starts publishing
                latencies = await breach_latency(
                    hub.base_url, token, broker.port, uids[150:], breaches, receiver
                )
            finally:
                fleet.terminate()
                hub.stop()
    await receiver.down()
    print(
        f"alerts benchmark: {rules} active rules, {breaches} breaches, the demo fleet's "
        "sensors publishing every second"
    )
    row(
        "MQTT publish → signed webhook received, p50", f"{percentile(latencies, 50) * 1000:,.0f} ms"
    )
    row(
        "MQTT publish → signed webhook received, p99",
        f"{percentile(latencies, 99) * 1000:,.0f} ms",
        f"goal ≤ 1,000 ms ({percentile(latencies, 99):.2f} of it)",
    )
    row("rule evaluator, readings/s", f"{evaluated:,.0f}", f"{rules} rules")
    row(
        "COPY of the same rows (limit)",
        f"{copied:,.0f}",
        f"the evaluator keeps up with {evaluated / copied:.1f}× the raw write rate",
    )
    print(f"\n  logs: {logs}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--breaches", type=int, default=60)
    parser.add_argument("--rules", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.breaches, arguments.rules))
