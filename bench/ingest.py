"""Sensor ingest: MQTT (QoS 1) → hub → TimescaleDB/PostgreSQL, against the limits around it.

Measured in one run, on this machine:
  * the hub's sustained stored readings/s draining a backlog (readings published while it
    was down, delivered by its persistent session): one reading per message, and SenML
    packs of 10; and with two hub processes sharing a shared subscription;
  * publish-to-queryable latency p50/p99 at a steady 10% of the single-reading rate;
  * the limits: the broker's own relay rate (mosquitto_pub → mosquitto_sub) and the raw
    asyncpg COPY rate of the same rows.
Run: python -m bench.ingest [--messages 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho

from bench.support import (
    add_sensors,
    bench_broker,
    bench_database,
    percentile,
    row,
    start_hub,
)
from drivers.contract import Topics
from drivers.sensors.simulator import AIR_METRICS
from hub.storage.database import asyncpg_dsn

PACK_METRICS = (*AIR_METRICS, "battery")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def single_payload(n: int) -> bytes:
    at = (T0 + timedelta(microseconds=n * 10)).timestamp()
    return json.dumps({"ts": at, "readings": {"pm2_5": 20 + n % 50}}).encode()


def pack_payload(uid: str, n: int) -> bytes:
    at = (T0 + timedelta(microseconds=n * 10)).timestamp()
    records: list[dict[str, object]] = [
        {"bn": f"{uid}:", "bt": at, "n": PACK_METRICS[0], "v": 30.0}
    ]
    records += [{"n": metric, "v": 10.0 + i} for i, metric in enumerate(PACK_METRICS[1:])]
    return json.dumps(records).encode()


def publish(
    port: int,
    messages: list[tuple[str, bytes]],
    rate: float | None = None,
    sent_at: dict[int, float] | None = None,
) -> float:
    """Publish at QoS 1 (as fast as the broker acknowledges, or at `rate`/s); return seconds."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{time.time_ns()}",
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    done = threading.Event()
    acked = 0

    def on_publish(_c: object, _u: object, _mid: int, _rc: object, _p: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for index, (topic, payload) in enumerate(messages):
        if rate is not None:
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if sent_at is not None:
            sent_at[index] = time.time()
        client.publish(topic, payload, qos=1)
    done.wait(600)
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return elapsed


async def wait_rows(url: str, expected: int, timeout: float = 900) -> tuple[float, float]:
    """(first row seen, all rows stored) as perf_counter times."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    first = None
    deadline = time.perf_counter() + timeout
    try:
        while time.perf_counter() < deadline:
            count = await conn.fetchval("SELECT count(*) FROM reading")
            now = time.perf_counter()
            if count and first is None:
                first = now
            if count >= expected:
                return first or now, now
            await asyncio.sleep(0.05)
        raise TimeoutError(f"only {count} of {expected} rows after {timeout}s")
    finally:
        await conn.close()


async def drain(
    url: str,
    port: int,
    messages: list[tuple[str, bytes]],
    readings: int,
    hubs: int,
    logs: Path,
    tag: str,
) -> float:
    """Readings/s a hub (or several) stores while draining a backlog published meanwhile."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute("TRUNCATE reading, reading_latest")
    await conn.close()
    ids = [f"bench-{tag}-{n}" for n in range(hubs)]
    # Each hub subscribes once so the broker keeps its session, then goes away.
    # Each stage its own shared-subscription group: the broker keeps sharing messages with
    # the offline sessions of an earlier stage's group (as it would with a stopped hub).
    env = {"IOCHUB_MQTT__SHARED_GROUP": f"bench-{tag}"}
    for hub in [await start_hub(url, port, i, logs, env) for i in ids]:
        await asyncio.sleep(1.0)
        hub.stop()
    await asyncio.to_thread(publish, port, messages)
    # Watch from before the hubs start: they drain while the next one is still starting.
    watcher = asyncio.create_task(wait_rows(url, readings))
    running = [await start_hub(url, port, i, logs, env) for i in ids]
    try:
        first, last = await watcher
    finally:
        for hub in running:
            hub.stop()
    return readings / (last - first) if last > first else float("inf")


async def latency(
    url: str, port: int, uids: list[str], rate: float, seconds: float, logs: Path
) -> list[float]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute("TRUNCATE reading, reading_latest")
    hub = await start_hub(
        url, port, "bench-latency", logs, {"IOCHUB_MQTT__SHARED_GROUP": "bench-latency"}
    )
    try:
        count = int(rate * seconds)
        base = datetime.now(UTC)
        messages = []
        for n in range(count):
            at = base + timedelta(microseconds=n * 100)
            body = json.dumps({"ts": at.timestamp(), "readings": {"noise": 55.0}}).encode()
            messages.append((Topics.for_device(uids[n % len(uids)], Topics.TELEMETRY), body))
        sent_at: dict[int, float] = {}
        publisher = asyncio.create_task(asyncio.to_thread(publish, port, messages, rate, sent_at))
        samples: list[float] = []
        probe_every = max(1, count // 400)
        for n in range(0, count, probe_every):
            while n not in sent_at:
                await asyncio.sleep(0.001)
            at = base + timedelta(microseconds=n * 100)
            device = uids[n % len(uids)]
            while not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM reading r JOIN device d ON d.id = r.device_id "
                "WHERE d.uid = $1 AND r.metric = 'noise' AND r.time = $2)",
                device,
                at,
            ):
                await asyncio.sleep(0.002)
            samples.append(time.time() - sent_at[n])
        await publisher
        return samples
    finally:
        hub.stop()
        await conn.close()


def broker_relay_rate(port: int, count: int) -> float:
    """mosquitto_pub -l → mosquitto_sub at QoS 1: the broker's own ceiling here."""
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-p",
            str(port),
            "-t",
            "bench/relay",
            "-q",
            "1",
            "-C",
            str(count),
            "-i",
            "bench-sub",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    lines = "\n".join('{"ts":1,"readings":{"pm2_5":1}}' for _ in range(count)) + "\n"
    started = time.perf_counter()
    subprocess.run(
        ["mosquitto_pub", "-p", str(port), "-t", "bench/relay", "-q", "1", "-l"],
        input=lines.encode(),
        check=True,
    )
    sub.wait(600)
    return count / (time.perf_counter() - started)


async def copy_rate(url: str, rows: int) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "CREATE TABLE copy_bench (time timestamptz NOT NULL, device_id bigint "
            "NOT NULL, metric text NOT NULL, value double precision NOT NULL, "
            "PRIMARY KEY (device_id, metric, time))"
        )
        records = [
            (T0 + timedelta(microseconds=n * 10), n % 1000 + 1, "pm2_5", 20.0 + n % 50)
            for n in range(rows)
        ]
        started = time.perf_counter()
        for start in range(0, rows, 5000):
            await conn.copy_records_to_table(
                "copy_bench",
                records=records[start : start + 5000],
                columns=["time", "device_id", "metric", "value"],
            )
        return rows / (time.perf_counter() - started)
    finally:
        await conn.execute("DROP TABLE IF EXISTS copy_bench")
        await conn.close()


async def main(messages: int, devices: int, latency_seconds: float) -> None:
    if not shutil.which("mosquitto_pub"):
        raise SystemExit("mosquitto-clients is needed (scripts/system-deps installs it)")
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-ingest-"))
    with bench_broker() as broker:
        async with bench_database() as url:
            uids = await add_sensors(url, devices)
            backend = await (await asyncpg.connect(asyncpg_dsn(url))).fetchval(
                "SELECT value FROM hub_meta WHERE key = 'timeseries_backend'"
            )
            topics = [Topics.for_device(u, Topics.TELEMETRY) for u in uids]
            singles = [(topics[n % devices], single_payload(n)) for n in range(messages)]
            packs_count = max(1, messages // 5)
            packs = [
                (topics[n % devices], pack_payload(uids[n % devices], n))
                for n in range(packs_count)
            ]

            print(
                f"ingest benchmark: {messages} messages, {devices} sensors, backend {backend}",
                flush=True,
            )
            relay = await asyncio.to_thread(broker_relay_rate, broker.port, messages)
            copy = await copy_rate(url, messages)
            single = await drain(url, broker.port, singles, messages, 1, logs, "single")
            packed = await drain(url, broker.port, packs, packs_count * 10, 1, logs, "pack")
            two = await drain(url, broker.port, singles, messages, 2, logs, "two")
            samples = await latency(url, broker.port, uids, single * 0.1, latency_seconds, logs)

    print()
    row("broker relay, QoS 1 (limit)", f"{relay:,.0f} msg/s")
    row("asyncpg COPY of the same rows (limit)", f"{copy:,.0f} rows/s")
    row(
        "one hub, one reading per message",
        f"{single:,.0f} msg/s",
        f"{single / relay:.0%} of the broker, {single / copy:.0%} of COPY; goal 25,000",
    )
    row(
        "one hub, SenML packs of 10",
        f"{packed:,.0f} readings/s",
        f"{packed / copy:.0%} of COPY; goal 150,000",
    )
    row("two hubs, shared subscription", f"{two:,.0f} msg/s", f"{two / single:.2f}× one hub")
    row("latency at 10% load, p50", f"{percentile(samples, 50) * 1000:,.0f} ms")
    row("latency at 10% load, p99", f"{percentile(samples, 99) * 1000:,.0f} ms", "goal ≤ 1,000 ms")
    print(f"\n  hub logs: {logs}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.devices, args.latency_seconds))
