"""Sensor ingest: MQTT (QoS 1) → hub → TimescaleDB/PostgreSQL, against the limits around it.

Measured in one run, on this machine:
  * the hub's sustained stored readings/s draining a backlog (readings published while it
    was down, delivered by its persistent session): one reading per message, and SenML
    packs of 10; and with two hub processes sharing a shared subscription;
  * publish-to-queryable latency p50/p99 at a steady 10% of the single-reading rate;
  * the limits: the broker's own relay rate (the same backlog drained by mosquitto_sub's
    persistent session, every arrival counted) and the raw asyncpg COPY rate of the same rows.

Per stage: the rate, and the CPU per message (or reading) of the hub processes, the broker
and the bench database's PostgreSQL backends, from /proc over the measured window. Every
stage is bounded in time; a short count ends the run with a non-zero exit naming the stage.
With --profile DIR the single-reading hub runs under py-spy and the top of its profile is
printed (py-spy takes CPU of its own: compare figures from runs without it).

Run: python -m bench.ingest [--quick] [--messages 100000] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho

from bench.support import (
    PY_SPY,
    HubProcess,
    Profiler,
    add_sensors,
    bench_broker,
    bench_database,
    percentile,
    row,
    start_hub,
)
from drivers.contract import (
    Ack,
    DeviceEvent,
    Heartbeat,
    Reading,
    Rejected,
    StoreReport,
    Topics,
)
from drivers.sensors.mqtt import SensorMqttDriver
from drivers.sensors.simulator import AIR_METRICS
from hub.storage.database import asyncpg_dsn

PACK_METRICS = (*AIR_METRICS, "battery")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
WINDOW = 1000
"""QoS 1 messages a publisher keeps unacknowledged at most (MQTT 3.1.1 §4.3.2: each waits
for its PUBACK)."""
TICK = os.sysconf("SC_CLK_TCK")


class ShortCount(SystemExit):
    """A stage saw fewer messages or rows than it sent: the run fails with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(f"ingest benchmark FAILED: {message}")


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


# --- CPU from /proc -------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (proc(5): fields 14 and 15 of stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def backends_of(database: str) -> list[int]:
    """PostgreSQL backends serving `database` (their title names it: `postgres: … db …`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres:") and f" {database} ".encode() in title:
                pids.append(int(entry.name))
    return pids


@dataclass(frozen=True)
class Cpu:
    hub: float
    broker: float
    postgres: dict[int, float]


@dataclass
class CpuMeter:
    """CPU of the hubs, the broker and the bench database's backends, sampled together."""

    database: str
    broker_pid: int
    hub_pids: list[int]

    def sample(self) -> Cpu:
        return Cpu(
            hub=sum(process_cpu_s(pid) for pid in self.hub_pids),
            broker=process_cpu_s(self.broker_pid),
            postgres={pid: process_cpu_s(pid) for pid in backends_of(self.database)},
        )


@dataclass(frozen=True)
class Stage:
    rate: float
    count: int
    """Messages or readings over the measured window."""
    hub_us: float
    broker_us: float
    postgres_us: float

    @staticmethod
    def of(count: int, seconds: float, before: Cpu, after: Cpu) -> Stage:
        # A backend that ended during the window took its CPU with it; one that began
        # counts from zero.
        postgres = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items())
        per = 1e6 / max(count, 1)
        return Stage(
            rate=count / seconds if seconds > 0 else float("inf"),
            count=count,
            hub_us=(after.hub - before.hub) * per,
            broker_us=(after.broker - before.broker) * per,
            postgres_us=postgres * per,
        )

    def cpu(self, unit: str, who: str | None = "hub") -> str:
        first = f"{who} {self.hub_us:5.1f} µs/{unit}, " if who else f"µs/{unit}: "
        return f"{first}broker {self.broker_us:4.1f}, PostgreSQL {self.postgres_us:5.1f}"


# --- publishing ----------------------------------------------------------------------


def publish(
    port: int,
    messages: list[tuple[str, bytes]],
    timeout: float,
    rate: float | None = None,
    sent_at: dict[int, float] | None = None,
) -> float:
    """Publish every message at QoS 1 and return the seconds until the broker acknowledged
    the last one; at most WINDOW unacknowledged at a time, so nothing waits in the client.
    Raises ShortCount if any PUBACK is missing by `timeout`, or the connection drops."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{time.time_ns()}",
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    progress = threading.Condition()
    acked = 0
    dropped: list[str] = []

    def on_publish(_c: object, _u: object, _mid: int, _rc: object, _p: object) -> None:
        nonlocal acked
        with progress:
            acked += 1
            progress.notify_all()

    def on_disconnect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        with progress:
            dropped.append(str(reason))
            progress.notify_all()

    def wait_for(condition: Callable[[], bool], deadline: float) -> None:
        with progress:
            while not condition():
                left = deadline - time.monotonic()
                if dropped or left <= 0:
                    raise ShortCount(
                        f"publisher: {acked} of {len(messages)} acknowledged "
                        f"({'disconnected: ' + dropped[0] if dropped else f'after {timeout:.0f} s'})"
                    )
                progress.wait(min(left, 1.0))

    def room_for(index: int) -> bool:
        return index - acked < WINDOW

    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    try:
        for index, (topic, payload) in enumerate(messages):
            if index - acked >= WINDOW:
                wait_for(functools.partial(room_for, index), deadline)
            if rate is not None:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            if sent_at is not None:
                sent_at[index] = time.time()
            info = client.publish(topic, payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise ShortCount(
                    f"publisher: message {index} refused ({paho.error_string(info.rc)})"
                )
        wait_for(lambda: acked >= len(messages), deadline)
        return time.perf_counter() - started
    finally:
        client.loop_stop()
        client.disconnect()


# --- the limits ----------------------------------------------------------------------


def broker_relay(
    port: int, messages: list[tuple[str, bytes]], meter: CpuMeter, timeout: float
) -> Stage:
    """The same backlog drained by mosquitto_sub's persistent session at QoS 1, as the hub
    drains its own: the broker's delivery ceiling here. Arrivals are counted from its output."""
    client_id = f"bench-relay-{time.time_ns()}"
    subscribe = ["mosquitto_sub", "-p", str(port), "-i", client_id, "-c", "-q", "1"]
    subscribe += ["-t", Topics.all_devices(Topics.TELEMETRY), "-N"]
    # A first visit leaves the session (and its subscription) with the broker.
    subprocess.run(
        [*subscribe, "-W", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # "Timed out": what -W is for
        check=False,
        timeout=30,
    )
    publish(port, messages, timeout)
    with tempfile.TemporaryFile() as out:
        before, started = meter.sample(), time.perf_counter()
        # -N: payloads without separators; each is one JSON object, so count its braces' ends.
        sub = subprocess.Popen([*subscribe, "-C", str(len(messages))], stdout=out)
        try:
            sub.wait(timeout)
        except subprocess.TimeoutExpired:
            sub.kill()
            sub.wait()
        elapsed, after = time.perf_counter() - started, meter.sample()
        out.seek(0)
        arrived = out.read().count(b"}}")
    if arrived < len(messages):
        raise ShortCount(f"broker relay: {arrived} of {len(messages)} arrived in {timeout:.0f} s")
    return Stage.of(arrived, elapsed, before, after)


async def copy_limit(url: str, rows: int, database: str) -> Stage:
    """Raw asyncpg COPY of the same rows into a table shaped like `reading`."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    meter = CpuMeter(database, 0, [os.getpid()])
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
        before, started = meter.sample(), time.perf_counter()
        for start in range(0, rows, 5000):
            await conn.copy_records_to_table(
                "copy_bench",
                records=records[start : start + 5000],
                columns=["time", "device_id", "metric", "value"],
            )
        elapsed, after = time.perf_counter() - started, meter.sample()
        stored = await conn.fetchval("SELECT count(*) FROM copy_bench")
        if stored != rows:
            raise ShortCount(f"COPY: {stored} of {rows} rows stored")
        return Stage.of(rows, elapsed, before, after)
    finally:
        await conn.execute("DROP TABLE IF EXISTS copy_bench")
        await conn.close()


# --- the hub -------------------------------------------------------------------------


async def wait_rows(
    url: str,
    expected: int,
    timeout: float,
    meter: CpuMeter,
    stage: str,
    on_first: Callable[[], None] = lambda: None,
) -> Stage:
    """Stored readings from the first row seen to the last, with the CPU taken meanwhile;
    `on_first` is called when the first row is seen."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    deadline = time.perf_counter() + timeout
    first: tuple[float, int, Cpu] | None = None
    count = 0
    try:
        while time.perf_counter() < deadline:
            count = await conn.fetchval("SELECT count(*) FROM reading")
            now = time.perf_counter()
            if count and first is None:
                first = (now, count, meter.sample())
                on_first()
            if count >= expected:
                assert first is not None
                at, seen, cpu = first
                if count == seen:  # everything landed between two looks
                    return Stage.of(count, now - at, cpu, meter.sample())
                return Stage.of(count - seen, now - at, cpu, meter.sample())
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise ShortCount(f"{stage}: {count} of {expected} readings stored after {timeout:.0f} s")


class NothingExpected:
    """The sink of a driver that only subscribes: nothing is published to it yet."""

    async def readings(self, items: list[Reading], source: str) -> StoreReport | None:
        raise RuntimeError(f"{len(items)} readings before the backlog was published")

    async def heartbeat(self, item: Heartbeat) -> None:
        return None

    async def event(self, item: DeviceEvent) -> None:
        return None

    async def ack(self, item: Ack) -> None:
        return None

    async def rejected(self, item: Rejected) -> None:
        return None


async def leave_session(port: int, client_id: str, group: str) -> None:
    """The hub's sensor subscription, made by the hub's own driver (client id and shared
    group as the hub's settings give them) and left with the broker as a stopped hub
    leaves it; saves a hub start per stage."""
    driver = SensorMqttDriver(
        "127.0.0.1", port, client_id=f"{client_id}-sensors", shared_group=group
    )
    task = asyncio.create_task(driver.run(NothingExpected()))
    try:
        async with asyncio.timeout(30):
            await driver.wait_connected()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drain(
    url: str,
    port: int,
    messages: list[tuple[str, bytes]],
    readings: int,
    hubs: int,
    logs: Path,
    tag: str,
    meter: CpuMeter,
    timeout: float,
    profile: Path | None = None,
) -> tuple[Stage, list[str]]:
    """Readings/s a hub (or several) stores while draining a backlog published meanwhile."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute("TRUNCATE reading, reading_latest")
    await conn.close()
    ids = [f"bench-{tag}-{n}" for n in range(hubs)]
    # Each stage its own shared-subscription group: the broker keeps sharing messages with
    # the offline sessions of an earlier stage's group (as it would with a stopped hub).
    env = {"IOCHUB_MQTT__SHARED_GROUP": f"bench-{tag}"}
    for client_id in ids:
        await leave_session(port, client_id, f"bench-{tag}")
    await asyncio.to_thread(publish, port, messages, timeout)
    meter.hub_pids = []
    running: list[HubProcess] = []
    profiler: Profiler | None = None

    def profile_first_hub() -> None:
        # The drain only: not the hub's start (nor py-spy's attaching to it).
        nonlocal profiler
        if profile is not None and meter.hub_pids:
            profiler = Profiler(meter.hub_pids[0], profile / f"{tag}.txt")

    # Watch from before the hubs start: they drain while the next one is still starting.
    watcher = asyncio.create_task(
        wait_rows(url, readings, timeout, meter, tag, on_first=profile_first_hub)
    )
    try:
        for i in ids:
            running.append(await start_hub(url, port, i, logs, env, meter.hub_pids.append))
        stage = await watcher
    finally:
        watcher.cancel()
        if profiler is not None:
            profiler.stop()
        for hub in running:
            hub.stop()
    return stage, profiler.top() if profiler is not None else []


async def latency(
    url: str, port: int, uids: list[str], rate: float, seconds: float, logs: Path
) -> list[float]:
    """Publish → queryable at a steady `rate`: a sample of the messages, polled for."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute("TRUNCATE reading, reading_latest")
    hub = await start_hub(
        url, port, "bench-latency", logs, {"IOCHUB_MQTT__SHARED_GROUP": "bench-latency"}
    )
    try:
        count = max(1, int(rate * seconds))
        base = datetime.now(UTC)
        messages = []
        for n in range(count):
            at = base + timedelta(microseconds=n * 100)
            body = json.dumps({"ts": at.timestamp(), "readings": {"noise": 55.0}}).encode()
            messages.append((Topics.for_device(uids[n % len(uids)], Topics.TELEMETRY), body))
        sent_at: dict[int, float] = {}
        publisher = asyncio.create_task(
            asyncio.to_thread(publish, port, messages, seconds + 60, rate, sent_at)
        )
        samples: list[float] = []
        probe_every = max(1, count // 400)
        try:
            async with asyncio.timeout(seconds + 60):
                for n in range(0, count, probe_every):
                    while n not in sent_at:
                        if publisher.done():
                            await publisher  # raises what stopped it
                        await asyncio.sleep(0.001)
                    at = base + timedelta(microseconds=n * 100)
                    device = uids[n % len(uids)]
                    while not await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM reading r JOIN device d "
                        "ON d.id = r.device_id WHERE d.uid = $1 AND r.metric = 'noise' "
                        "AND r.time = $2)",
                        device,
                        at,
                    ):
                        await asyncio.sleep(0.002)
                    samples.append(time.time() - sent_at[n])
                await publisher
        except TimeoutError:
            raise ShortCount(
                f"latency: {len(samples)} of {len(range(0, count, probe_every))} probes "
                f"queryable after {seconds + 60:.0f} s"
            ) from None
        return samples
    finally:
        hub.stop()
        await conn.close()


# --- the run -------------------------------------------------------------------------


async def main(
    messages: int, devices: int, latency_seconds: float, two_hubs: bool, profile: Path | None
) -> None:
    if not shutil.which("mosquitto_sub"):
        raise SystemExit("mosquitto-clients is needed (scripts/system-deps installs it)")
    if profile is not None and not Path(PY_SPY).exists():
        raise SystemExit("py-spy is needed for --profile (the dev extras install it)")
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-ingest-"))
    # Bounds: a stage that has not finished by then failed (the machine's spread is ±20%,
    # these are several times the slowest run seen).
    timeout = 60 + messages / 1000
    with bench_broker() as broker:
        async with bench_database() as url:
            database = url.rsplit("/", 1)[1].split("?")[0]
            meter = CpuMeter(database, broker.process.pid, [])
            uids = await add_sensors(url, devices)
            conn = await asyncpg.connect(asyncpg_dsn(url))
            backend = await conn.fetchval(
                "SELECT value FROM hub_meta WHERE key = 'timeseries_backend'"
            )
            await conn.close()
            topics = [Topics.for_device(u, Topics.TELEMETRY) for u in uids]
            singles = [(topics[n % devices], single_payload(n)) for n in range(messages)]
            packs_count = max(1, messages // 5)
            packs = [
                (topics[n % devices], pack_payload(uids[n % devices], n))
                for n in range(packs_count)
            ]

            print(
                f"ingest benchmark: {messages} messages, {devices} sensors, backend {backend}, "
                f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                flush=True,
            )
            began = time.monotonic()

            def done(what: str) -> None:
                print(f"  [{time.monotonic() - began:5.1f} s] {what}", flush=True)

            relay = await asyncio.to_thread(broker_relay, broker.port, singles, meter, timeout)
            done(f"broker relay measured ({relay.rate:,.0f} msg/s)")
            copy = await copy_limit(url, messages, database)
            done(f"COPY measured ({copy.rate:,.0f} rows/s)")
            single, top = await drain(
                url, broker.port, singles, messages, 1, logs, "single", meter, timeout, profile
            )
            done(f"one hub, single readings measured ({single.rate:,.0f} msg/s)")
            packed, _ = await drain(
                url, broker.port, packs, packs_count * 10, 1, logs, "pack", meter, timeout
            )
            done(f"one hub, packs measured ({packed.rate:,.0f} readings/s)")
            two = None
            if two_hubs:
                two, _ = await drain(
                    url, broker.port, singles, messages, 2, logs, "two", meter, timeout
                )
                done(f"two hubs measured ({two.rate:,.0f} msg/s)")
            samples = await latency(
                url, broker.port, uids, single.rate * 0.1, latency_seconds, logs
            )
            done("latency measured")

    print()
    row("broker relay, QoS 1 (limit)", f"{relay.rate:,.0f} msg/s", relay.cpu("msg", None))
    row(
        "asyncpg COPY of the same rows (limit)",
        f"{copy.rate:,.0f} rows/s",
        copy.cpu("row", "client"),
    )
    row(
        "one hub, one reading per message",
        f"{single.rate:,.0f} msg/s",
        f"{single.rate / relay.rate:.0%} of the relay, {single.rate / copy.rate:.0%} of COPY; "
        "goal 35,000",
    )
    row("", "", single.cpu("msg") + "; goal hub ≤ 15")
    row(
        "one hub, SenML packs of 10",
        f"{packed.rate:,.0f} readings/s",
        f"{packed.rate / copy.rate:.0%} of COPY; goal 60%",
    )
    row("", "", packed.cpu("reading") + "; goal hub ≤ 3")
    if two is not None:
        row(
            "two hubs, shared subscription",
            f"{two.rate:,.0f} msg/s",
            f"{two.rate / single.rate:.2f}× one hub, {two.rate / relay.rate:.0%} of the relay",
        )
        row("", "", two.cpu("msg"))
    row("latency at 10% load, p50", f"{percentile(samples, 50) * 1000:,.0f} ms")
    row("latency at 10% load, p99", f"{percentile(samples, 99) * 1000:,.0f} ms", "goal ≤ 100 ms")
    if top:
        print("\n  profile of the single-reading hub (py-spy, top by self time):")
        for line in top:
            print(f"    {line}")
    print(f"\n  hub logs: {logs}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k messages, one hub: < 1 min")
    parser.add_argument("--messages", type=int)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float)
    parser.add_argument("--profile", type=Path, help="py-spy the single-reading hub into DIR")
    args = parser.parse_args()
    count = args.messages or (10_000 if args.quick else 100_000)
    seconds = args.latency_seconds or (3.0 if args.quick else 10.0)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    # The whole run is bounded too: hub starts and set-up included.
    limit = 120 if args.quick else 300 + count / 200

    async def bounded() -> None:
        try:
            async with asyncio.timeout(limit):
                await main(count, args.devices, seconds, not args.quick, args.profile)
        except TimeoutError:
            raise ShortCount(f"the run took more than {limit:.0f} s") from None

    asyncio.run(bounded())
