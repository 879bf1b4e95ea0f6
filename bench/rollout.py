"""Benchmark: staged firmware rollouts over 272 and 10,000 simulated speakers.

A hub runs in its own process on a private broker and a fresh database; simulated
speakers (separate processes, one MQTT connection each for 272, pooled for 10,000) run
the real device side: they download the image from the hub over HTTP, check its size and
SHA-256, "install" for a scaled-down time, drop off for the reboot and report the version
they came back on. The campaign is the default one: waves of 2 %, 10 %, 50 % and 100 %,
at most 25 % of a ward updating at once.

Figures, each beside its limit:

- **overhead over the floor.** The floor is what the waves cannot go below: for each wave,
  the largest number of "generations" any ward needs (its devices in that wave divided by
  the ward's share, rounded up) times one device's simulated update time (verify + install
  + reboot). Everything else (the hub's rounds, commands, reports, the real downloads, the
  speakers reconnecting) is overhead. Goal: the campaign takes at most 10 % longer.
- **hub CPU seconds per 1,000 devices** over the campaign (user + system of the hub
  process, from /proc), beside the same hub's CPU while idle for as long.
- **stop reaction.** A 272-speaker campaign where a fifth of the speakers fail their
  download: from the moment the failure that crosses the error threshold is committed to
  the campaign being stopped, and how many devices were started after it (must be 0).
  Goal: at most 1 s.

Bounded: each campaign has a deadline (three times its floor plus a minute); a short count
is printed loudly. `--sizes 272` runs the small fleet only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.support import HubProcess, bench_broker, bench_database, row, start_hub
from drivers.speaker.simulator import district_pairs
from hub.auth.models import Role
from hub.auth.principal import Principal
from hub.firmware.campaigns import Campaigns
from hub.firmware.catalog import import_catalog
from hub.firmware.schemas import CampaignIn
from hub.firmware.settings import FirmwareSettings
from tests.support.brokers import PrivateBroker

WARDS = 8
MAX_WARD_PERCENT = 25.0
WAVES = [2.0, 10.0, 50.0, 100.0]
# (verify, install, reboot) seconds per size: long enough that the floor dominates noise.
TIMES = {272: (0.2, 1.5, 0.3), 10_000: (0.2, 2.4, 0.4)}
OVERHEAD_GOAL = 0.10
STOP_GOAL_S = 1.0
ADMIN = Principal(user_id=0, username="bench", role=Role.ADMIN, ward_ids=None, via="token")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


async def seed(url: str, count: int) -> tuple[asyncpg.Pool, int]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO ward (code, name) VALUES ($1, $2)",
            [(f"ward-{n:02d}", f"Phường {n}") for n in range(1, WARDS + 1)],
        )
        wards = {r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM ward")}
        await conn.copy_records_to_table(
            "device",
            records=[
                (uid, "speaker", wards[ward], uid, "VNPT Technology", "IP Speaker S30", "2.4.1")
                for uid, ward in district_pairs(count, WARDS)
            ],
            columns=["uid", "kind", "ward_id", "name", "vendor", "model", "firmware_version"],
        )
    await import_catalog(pool)
    release: int = await pool.fetchval(
        "SELECT id FROM firmware_release WHERE model = 'IP Speaker S30' AND version = '2.10.0'"
    )
    return pool, release


@contextlib.asynccontextmanager
async def speakers(
    broker: PrivateBroker, count: int, times: tuple[float, float, float], faults: str = ""
) -> AsyncIterator[None]:
    shards = 2 if count >= 5000 else 1
    extra = ["--fw-fault", faults] if faults else []
    if count >= 5000:
        # 10,000 image downloads from one simulator process would measure the simulator's
        # HTTP client, not the hub: the pooled fleet fetches the image once (as bench.fanout
        # does for audio), and the hub still signs and serves it.
        extra.append("--shared-downloads")
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "drivers.speaker.simulator",
            "--host", broker.host, "--port", str(broker.port),
            "--count", str(count), "--wards", str(WARDS),
            "--status-interval", "3600", "--seed", "11",
            "--update-times", ",".join(str(t) for t in times),
            "--shard", f"{index}/{shards}", *extra,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )
        for index in range(shards)
    ]  # fmt: skip
    drains = []
    try:
        for process in processes:
            assert process.stderr is not None
            async with asyncio.timeout(240):
                while b"speaker simulator ready" not in (line := await process.stderr.readline()):
                    if not line:
                        raise RuntimeError("the speaker simulator exited")
            drains.append(asyncio.create_task(process.stderr.read()))
        yield
    finally:
        for drain in drains:
            drain.cancel()
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)


async def floor_s(pool: asyncpg.Pool, campaign_id: int, update_s: float) -> tuple[float, int]:
    """The campaign's floor and its number of generations (see the module's doc)."""
    rows = await pool.fetch(
        "SELECT cd.wave, cd.ward_id, count(*) AS n, "
        "(SELECT count(*) FROM device d WHERE d.ward_id = cd.ward_id) AS ward_total "
        "FROM firmware_campaign_device cd WHERE cd.campaign_id = $1 AND cd.state <> 'refused' "
        "GROUP BY cd.wave, cd.ward_id",
        campaign_id,
    )
    per_wave: dict[int, int] = {}
    for r in rows:
        cap = max(1, min(r["ward_total"] - 1, math.floor(r["ward_total"] * MAX_WARD_PERCENT / 100)))
        per_wave[r["wave"]] = max(per_wave.get(r["wave"], 0), math.ceil(r["n"] / cap))
    generations = sum(per_wave.values())
    return generations * update_s, generations


async def wait_final(pool: asyncpg.Pool, campaign_id: int, deadline_s: float) -> str:
    until = time.monotonic() + deadline_s
    last_print = 0.0
    while time.monotonic() < until:
        state = await pool.fetchval(
            "SELECT state FROM firmware_campaign WHERE id = $1", campaign_id
        )
        if state in ("completed", "stopped", "cancelled"):
            return str(state)
        if time.monotonic() - last_print > 10:
            counts = await pool.fetch(
                "SELECT state, count(*) AS n FROM firmware_campaign_device WHERE campaign_id = $1 "
                "GROUP BY state ORDER BY state",
                campaign_id,
            )
            print("    ", ", ".join(f"{r['state']} {r['n']}" for r in counts), flush=True)
            last_print = time.monotonic()
        await asyncio.sleep(0.2)
    return "timed out"


@dataclass
class Measured:
    size: int
    wall_s: float
    floor_s: float
    generations: int
    cpu_s: float
    idle_cpu_s: float
    updated: int
    state: str
    failures: list[str]
    device_median_s: float


async def rollout(size: int, broker: PrivateBroker, logs: Path) -> Measured:
    times = TIMES[size]
    update_s = sum(times)
    async with bench_database() as url:
        pool, release = await seed(url, size)
        hub: HubProcess = await start_hub(
            url, broker.port, f"bench-rollout-{size}", logs,
            extra_env={
                "IOCHUB_DATA_DIR": str(logs / f"data-{size}"),
                "IOCHUB_TELEMETRY__MQTT_INGEST": "false",
                "IOCHUB_DELIVERY__ENABLED": "false",
                "IOCHUB_DATABASE__POOL_MAX_SIZE": "20",
                "IOCHUB_FIRMWARE__COMPLIANCE_REFRESH_S": "3600",
                "IOCHUB_FIRMWARE__LEADER_RETRY_S": "0.5",
                "IOCHUB_LOG_LEVEL": "INFO",  # the driver says when publishing is slow
            },
        )  # fmt: skip
        try:
            async with speakers(broker, size, times):
                await asyncio.sleep(3)  # let the fleet's first statuses settle
                idle_from = cpu_seconds(hub.process.pid)
                await asyncio.sleep(3)
                idle_rate = (cpu_seconds(hub.process.pid) - idle_from) / 3
                cpu_from = cpu_seconds(hub.process.pid)
                created = await Campaigns(pool, FirmwareSettings()).create(
                    ADMIN,
                    CampaignIn(
                        name=f"bench {size}", release_id=release, waves=WAVES,
                        max_ward_percent=MAX_WARD_PERCENT, device_timeout_s=600,
                    ),
                )  # fmt: skip
                campaign_id = created.campaign.id
                floor, generations = await floor_s(pool, campaign_id, update_s)
                state = await wait_final(pool, campaign_id, floor * 3 + 60)
                cpu = cpu_seconds(hub.process.pid) - cpu_from
                times_row = await pool.fetchrow(
                    "SELECT created_at, coalesce(finished_at, now()) AS finished_at "
                    "FROM firmware_campaign WHERE id = $1",
                    campaign_id,
                )
                wall = (times_row["finished_at"] - times_row["created_at"]).total_seconds()
                updated = await pool.fetchval(
                    "SELECT count(*) FROM firmware_campaign_device "
                    "WHERE campaign_id = $1 AND state = 'updated'",
                    campaign_id,
                )
                device_median_s = await pool.fetchval(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                    "updated_at - sent_at)) FROM firmware_campaign_device "
                    "WHERE campaign_id = $1 AND state = 'updated'",
                    campaign_id,
                )
                failures = [
                    f"{r['n']} x {r['reason']}"
                    for r in await pool.fetch(
                        "SELECT reason, count(*) AS n FROM firmware_campaign_device "
                        "WHERE campaign_id = $1 AND state <> 'updated' GROUP BY reason",
                        campaign_id,
                    )
                ]
        finally:
            hub.stop()
            await pool.close()
    return Measured(
        size, wall, floor, generations, cpu, idle_rate * wall, updated, state, failures,
        float(device_median_s or 0),
    )  # fmt: skip


@dataclass
class StopMeasured:
    reaction_s: float
    started_after: int
    reason: str
    failed: int


async def stop_reaction(broker: PrivateBroker, logs: Path) -> StopMeasured:
    size, times = 272, TIMES[272]
    async with bench_database() as url:
        pool, release = await seed(url, size)
        hub = await start_hub(
            url, broker.port, "bench-rollout-stop", logs,
            extra_env={
                "IOCHUB_DATA_DIR": str(logs / "data-stop"),
                "IOCHUB_TELEMETRY__MQTT_INGEST": "false",
                "IOCHUB_DELIVERY__ENABLED": "false",
                "IOCHUB_FIRMWARE__COMPLIANCE_REFRESH_S": "3600",
            },
        )  # fmt: skip
        try:
            async with speakers(broker, size, times, faults="fw_download_fails=0.2"):
                await asyncio.sleep(2)
                created = await Campaigns(pool, FirmwareSettings()).create(
                    ADMIN,
                    CampaignIn(
                        name="bench stop", release_id=release, waves=WAVES,
                        max_ward_percent=MAX_WARD_PERCENT, error_percent=10,
                    ),
                )  # fmt: skip
                campaign_id = created.campaign.id
                state = await wait_final(pool, campaign_id, 120)
                campaign = await pool.fetchrow(
                    "SELECT current_wave, stopped_at, stop_reason, error_percent::float8 AS err "
                    "FROM firmware_campaign WHERE id = $1",
                    campaign_id,
                )
                if state != "stopped":
                    return StopMeasured(float("nan"), -1, f"campaign {state}, not stopped", 0)
                wave = campaign["current_wave"]
                size_of_wave = await pool.fetchval(
                    "SELECT count(*) FROM firmware_campaign_device WHERE campaign_id = $1 "
                    "AND wave = $2 AND state <> 'refused'",
                    campaign_id,
                    wave,
                )
                crossing_index = math.floor(campaign["err"] * size_of_wave / 100) + 1
                failures = await pool.fetch(
                    "SELECT updated_at FROM firmware_campaign_device WHERE campaign_id = $1 "
                    "AND wave = $2 AND state = 'failed' ORDER BY updated_at",
                    campaign_id,
                    wave,
                )
                crossed: datetime = failures[crossing_index - 1]["updated_at"]
                after = await pool.fetchval(
                    "SELECT count(*) FROM firmware_campaign_device WHERE campaign_id = $1 "
                    "AND sent_at > $2",
                    campaign_id,
                    crossed,
                )
                reaction = (campaign["stopped_at"] - crossed).total_seconds()
                return StopMeasured(reaction, after, campaign["stop_reason"], len(failures))
        finally:
            hub.stop()
            await pool.close()


async def main(sizes: Sequence[int]) -> int:
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-rollout-"))
    short = False
    print(f"firmware rollout benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, logs in {logs})")
    with bench_broker() as broker:
        for size in sizes:
            m = await rollout(size, broker, logs)
            overhead = m.wall_s / m.floor_s - 1
            print(
                f"\n{size} speakers, waves {WAVES} %, at most {MAX_WARD_PERCENT:g} % of a ward at once"
            )
            row("campaign", m.state, f"{m.updated} of {size} updated")
            row(
                "start to all waves done",
                f"{m.wall_s:.2f} s",
                f"floor {m.floor_s:.2f} s ({m.generations} generations x {sum(TIMES[size]):.1f} s)",
            )
            row(
                "overhead over the floor",
                f"{overhead:+.1%}",
                f"goal <= +{OVERHEAD_GOAL:.0%}: {'ok' if overhead <= OVERHEAD_GOAL else 'MISSED'}",
            )
            row(
                "one device, command sent to updated (median)",
                f"{m.device_median_s:.2f} s",
                f"simulated {sum(TIMES[size]):.1f} s; the rest: download, reconnect, reports",
            )
            row(
                "hub CPU per 1,000 devices",
                f"{m.cpu_s / size * 1000:.2f} s",
                f"idle for as long: {m.idle_cpu_s / size * 1000:.2f} s; total {m.cpu_s:.1f} s",
            )
            if m.updated != size or m.state != "completed":
                short = True
                print(f"  !!! SHORT: {m.updated} of {size} updated, campaign {m.state}")
                for line in m.failures:
                    print(f"      {line}")
        stop = await stop_reaction(broker, logs)
        print("\n272 speakers, a fifth fail their download, error threshold 10 %")
        row(
            "threshold crossed to campaign stopped",
            f"{stop.reaction_s * 1000:.0f} ms",
            f"goal <= {STOP_GOAL_S * 1000:.0f} ms: {'ok' if stop.reaction_s <= STOP_GOAL_S else 'MISSED'}",
        )
        row("devices started after the crossing", str(stop.started_after), "goal 0")
        print(f"  ({stop.reason}; {stop.failed} failed in that wave)")
        if stop.started_after != 0:
            short = True
    return 1 if short else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[272, 10_000]
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.sizes)))
