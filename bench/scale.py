"""Scale-out: ingest and broadcast fan-out with 1, 2 and 3 hub processes on this machine.

Every stage runs real `hub.server serve` processes against the same private mosquitto and
one PostgreSQL server. Printed per number of hubs, beside limits measured in the same run:
  * ingest: stored readings/s draining a backlog of single-reading QoS 1 messages shared
    among the hubs (MQTT shared subscription), and the hubs' CPU seconds per 1,000 readings
    (from /proc), against the broker's own relay rate and a raw asyncpg COPY of the rows;
  * fan-out: an emergency broadcast to every ward of a simulated district's speakers, from
    its start to the last speaker's ``started`` (speaker clocks), against the same play
    published straight to the ward groups by a bare client;
  * the scaling ratio (n hubs over one).
This machine's cores are shared by the hubs, the broker, PostgreSQL and the publishers
(2 cores here): the ratio is bounded by cores, and the CPU per reading is the figure that
carries to a bigger machine. Every wait is bounded; a short count ends the run non-zero.

    .venv/bin/python -m bench.scale [--messages 20000] [--speakers 272] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from bench.fanout import (
    SECRET_KEY,
    WARDS,
    add_announcement,
    bare_fan_out,
    one_round,
    scratch_database,
    seed,
    send_ahead_s,
    settled,
    speaker_fleet,
)
from bench.ingest import (
    CpuMeter,
    Stage,
    broker_relay,
    copy_limit,
    publish,
    single_payload,
    wait_rows,
)
from bench.support import (
    HubProcess,
    add_sensors,
    bench_broker,
    bench_database,
    percentile,
    row,
    start_hub,
)
from drivers.contract import Topics
from hub.broadcasts.settings import BroadcastSettings
from hub.broadcasts.urls import AudioUrlSigner, url_key
from tests.support.brokers import PrivateBroker

HUBS = (1, 2, 3)


async def ingest_stage(
    url: str,
    port: int,
    messages: list[tuple[str, bytes]],
    hubs: int,
    logs: Path,
    meter: CpuMeter,
    timeout: float,
) -> tuple[Stage, float]:
    """Stored readings/s with ``hubs`` processes running and sharing the telemetry, while
    one publisher sends as fast as the broker acknowledges; and the publisher's rate (a
    limit: the hubs cannot store faster than readings arrive)."""
    conn = await asyncpg.connect(url)
    await conn.execute("TRUNCATE reading, reading_latest")
    await conn.close()
    env = {"IOCHUB_MQTT__SHARED_GROUP": f"scale-{hubs}"}
    meter.hub_pids = []
    running: list[HubProcess] = []
    try:
        for n in range(hubs):
            running.append(
                await start_hub(
                    url, port, f"scale-ingest-{hubs}-{n}", logs, env, meter.hub_pids.append
                )
            )
        watcher = asyncio.create_task(wait_rows(url, len(messages), timeout, meter, f"{hubs}"))
        seconds = await asyncio.to_thread(publish, port, messages, timeout)
        return await watcher, len(messages) / seconds
    finally:
        for hub in running:
            hub.stop()


@dataclass
class FanOut:
    last_started_s: list[float]
    bare_s: float


async def fan_out(hubs: int, size: int, rounds: int, broker: PrivateBroker, logs: Path) -> FanOut:
    async with scratch_database() as url:
        data_dir = logs / f"data-{hubs}"  # one audio folder for every hub, as in production
        await seed(url, size)
        env = {
            "IOCHUB_DATA_DIR": str(data_dir),
            "IOCHUB_TELEMETRY__MQTT_INGEST": "false",
            "IOCHUB_DELIVERY__ENABLED": "false",
            "IOCHUB_DATABASE__POOL_MAX_SIZE": "20",
            "IOCHUB_BROADCASTS__PREPARE_S": str(send_ahead_s(size) + 2),
            "IOCHUB_BROADCASTS__SEND_AHEAD_S": str(send_ahead_s(size)),
            "IOCHUB_BROADCASTS__SPEAKER_SUBSCRIPTION_GROUP": f"scale-{hubs}",
        }
        running: list[HubProcess] = []
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            for n in range(hubs):
                running.append(
                    await start_hub(url, broker.port, f"scale-fan-{hubs}-{n}", logs, env)
                )
            asset_id = await add_announcement(pool, data_dir, 0)
            expiry = datetime.now(UTC) + timedelta(hours=1)
            signer = AudioUrlSigner(url_key(SecretStr(SECRET_KEY), data_dir), running[0].base_url)
            sha256 = await pool.fetchval("SELECT sha256 FROM audio_asset WHERE id = $1", asset_id)
            async with speaker_fleet(broker, size):
                await settled(pool, size)
                await one_round(pool, asset_id, size, scheduled=False)  # audio now held
                samples = [
                    (await one_round(pool, asset_id, size, scheduled=False)).started_last_s
                    for _ in range(rounds)
                ]
                bare = await bare_fan_out(
                    broker,
                    size,
                    signer.url(asset_id, expiry),
                    sha256,
                    BroadcastSettings().start_lead_s(WARDS),
                )
            return FanOut(samples, bare)
        finally:
            await pool.close()
            for hub in running:
                hub.stop()


async def main(messages: int, speakers: int, rounds: int) -> None:
    if not shutil.which("mosquitto_sub"):
        raise SystemExit("mosquitto-clients is needed (scripts/system-deps installs it)")
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-scale-"))
    timeout = 60 + messages / 500
    ingest: dict[int, Stage] = {}
    publisher: dict[int, float] = {}
    fan: dict[int, FanOut] = {}
    began = time.monotonic()

    def done(what: str) -> None:
        print(f"  [{time.monotonic() - began:5.1f} s] {what}", flush=True)

    print(
        f"scale-out benchmark: {messages} messages, {speakers} speakers, hubs {HUBS}, "
        f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    with bench_broker() as broker:
        async with bench_database() as url:
            database = url.rsplit("/", 1)[1].split("?")[0]
            meter = CpuMeter(database, broker.process.pid, [])
            uids = await add_sensors(url, 200)
            topics = [Topics.for_device(u, Topics.TELEMETRY) for u in uids]
            singles = [(topics[n % len(uids)], single_payload(n)) for n in range(messages)]
            relay = await asyncio.to_thread(broker_relay, broker.port, singles, meter, timeout)
            done(f"broker relay measured ({relay.rate:,.0f} msg/s)")
            copy = await copy_limit(url, messages, database)
            done(f"COPY measured ({copy.rate:,.0f} rows/s)")
            for hubs in HUBS:
                ingest[hubs], publisher[hubs] = await ingest_stage(
                    url, broker.port, singles, hubs, logs, meter, timeout
                )
                stage = ingest[hubs]
                done(
                    f"{hubs} hub(s), ingest: {stage.rate:,.0f} readings/s, hub CPU "
                    f"{stage.hub_us / 1000:.3f} s per 1,000 (publisher {publisher[hubs]:,.0f}/s)"
                )
        for hubs in HUBS:
            fan[hubs] = await fan_out(hubs, speakers, rounds, broker, logs)
            samples = fan[hubs].last_started_s
            done(
                f"{hubs} hub(s), fan-out: last started p50 {percentile(samples, 50) * 1000:,.0f} "
                f"ms, max {max(samples) * 1000:,.0f} ms (bare {fan[hubs].bare_s * 1000:,.0f} ms)"
            )

    print()
    row("broker relay, QoS 1 (limit)", f"{relay.rate:,.0f} msg/s", relay.cpu("msg", None))
    row("asyncpg COPY of the same rows (limit)", f"{copy.rate:,.0f} rows/s")
    for hubs in HUBS:
        stage = ingest[hubs]
        row(
            f"{hubs} hub(s): stored readings/s",
            f"{stage.rate:,.0f}",
            f"{stage.rate / ingest[1].rate:.2f}× one hub; publisher (limit) "
            f"{publisher[hubs]:,.0f} msg/s; {stage.rate / relay.rate:.0%} of the relay, "
            f"{stage.rate / copy.rate:.0%} of COPY",
        )
        row(
            f"{hubs} hub(s): CPU s per 1,000 readings",
            f"hub {stage.hub_us / 1000:.3f}",
            f"broker {stage.broker_us / 1000:.3f}, PostgreSQL {stage.postgres_us / 1000:.3f}",
        )
    for hubs in HUBS:
        samples = fan[hubs].last_started_s
        row(
            f"{hubs} hub(s): fan-out to {speakers} speakers, last started",
            f"p50 {percentile(samples, 50) * 1000:,.0f} ms",
            f"max {max(samples) * 1000:,.0f} ms; bare client (limit) "
            f"{fan[hubs].bare_s * 1000:,.0f} ms",
        )
    print(
        f"\n  {os.cpu_count()} cores shared by hubs, broker, PostgreSQL and publishers: the "
        "scaling ratio is bounded by cores; CPU per reading is what carries to a bigger "
        f"machine.\n  hub logs: {logs}"
    )


def budget_s(messages: int, speakers: int, rounds: int) -> float:
    """The whole run's bound (several times the slowest run seen on this machine)."""
    return 180 + 6 * messages / 1000 + len(HUBS) * (90 + rounds * (20 + speakers / 100))


async def bounded(messages: int, speakers: int, rounds: int) -> None:
    limit = budget_s(messages, speakers, rounds)
    try:
        async with asyncio.timeout(limit):
            await main(messages, speakers, rounds)
    except TimeoutError as error:
        raise SystemExit(f"scale benchmark FAILED: {error or f'over {limit:.0f} s'}") from None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--speakers", type=int, default=272)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bounded(arguments.messages, arguments.speakers, arguments.rounds))
