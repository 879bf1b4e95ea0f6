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
  process, from /proc), beside the same hub's CPU while idle for as long (measured once
  the fleet's first statuses are handled), and the simulated fleet's own CPU beside what
  the machine offers over the campaign: on two cores a fleet simulated faster than real
  time can need more CPU than the floor lasts, and then no hub reaches the floor here.
- **where the overhead went** (272 speakers): an MQTT observer on the broker timestamps
  every command and report; the slowest chain of devices (each started when the one
  before it in its ward's slot, or the wave before, finished) is split into the hub's
  reaction, command pickup by the device, the image download, and the device's steps
  beyond their simulated time (its timers, its reconnect after the reboot).
- **stop reaction.** A 272-speaker campaign where a fifth of the speakers fail their
  download: from the moment the failure that crosses the error threshold is committed to
  the campaign being stopped, and how many devices were started after it (must be 0).
  Goal: at most 1 s.

The broker runs with `set_tcp_nodelay true`, as deploy/mosquitto/mosquitto.conf does; the
machine's load average is printed before and after each campaign (it is shared).

Bounded: each campaign has a deadline (three times its floor plus a minute); a short count
is printed loudly. `--sizes 272` runs the small fleet only; `--profile DIR` samples the hub
with py-spy over each campaign and prints the top of its profile.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import asyncpg

from bench.support import (
    PY_SPY,
    HubProcess,
    Profiler,
    bench_broker,
    bench_database,
    row,
    start_hub,
)
from drivers.contract import Topics
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
TRACED_UP_TO = 1000
"""Fleets up to this size are observed on the broker (beyond, the observer's own load
would share the machine with what it measures)."""
STATUS_INTERVAL_S = 3600
"""The fleet's periodic status; the hub is told to expect it (left at its 60 s default, every
speaker silent since its first status turns late, then offline, in the middle of a campaign
on a slow or busy machine, and the health monitor's churn would be measured, not the rollout)."""
BROKER = "set_tcp_nodelay true\n"  # as deploy/mosquitto/mosquitto.conf
ADMIN = Principal(user_id=0, username="bench", role=Role.ADMIN, ward_ids=None, via="token")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


async def settled(pool: asyncpg.Pool, size: int, within_s: float = 300) -> float:
    """Wait until the hub has taken in the fleet's start: every speaker online in the
    registry and following its ward's group (told by the hub, said back in a status).
    Until then the hub is busy with that, and a campaign started would be measured with it.
    Returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < within_s:
        online, following = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM device WHERE status IN ('online', 'degraded')), "
            "(SELECT count(*) FROM speaker_group_follow WHERE groups <> '{}')"
        )
        if online >= size and following >= size:
            return time.monotonic() - began
        await asyncio.sleep(0.5)
    raise RuntimeError(
        f"the hub had not taken in the fleet's start after {within_s:.0f} s "
        f"({online} of {size} online, {following} following their group)"
    )


async def idle_rate(pid: int) -> float:
    """The hub's CPU (cores) once the fleet's first statuses are handled: one-second windows
    until one is under 5 % of a core or two agree (30 at most), then three seconds."""
    previous = math.inf
    for _ in range(30):
        start = cpu_seconds(pid)
        await asyncio.sleep(1)
        rate = cpu_seconds(pid) - start
        if rate < 0.05 or abs(rate - previous) < 0.02:
            break
        previous = rate
    start = cpu_seconds(pid)
    await asyncio.sleep(3)
    return (cpu_seconds(pid) - start) / 3


class Observer:
    """Every firmware command and report as the broker passes it on, with its arrival time."""

    def __init__(self, broker: PrivateBroker) -> None:
        self.broker = broker
        self.commands: dict[str, float] = {}
        self.reports: dict[str, dict[str, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Observer:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(30):
            await self._ready.wait()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client(
            self.broker.host, self.broker.port, identifier="bench-rollout-observer"
        ) as client:
            await client.subscribe(Topics.all_devices(Topics.FIRMWARE), qos=0)
            await client.subscribe(Topics.all_devices(Topics.FIRMWARE_STATE), qos=0)
            self._ready.set()
            async for message in client.messages:
                at = time.time()
                if not isinstance(message.payload, bytes | bytearray) or not message.payload:
                    continue
                body = json.loads(message.payload)
                if message.topic.value.endswith("/" + Topics.FIRMWARE):
                    if body.get("action") == "update":
                        self.commands[body["command_id"]] = at
                elif body.get("command_id"):
                    self.reports.setdefault(body["command_id"], {}).setdefault(body["state"], at)


@dataclass
class Split:
    devices: int
    simulated_s: float
    parts: list[tuple[str, float]]


def overhead_split(
    observer: Observer, times: tuple[float, float, float], created: float, finished: float
) -> Split | None:
    """The slowest chain: from the last device updated, back through the report that freed
    the slot it was started in, to the campaign's start."""
    steps = ("downloading", "verifying", "installing", "rebooting", "updated")
    done = sorted(
        (states["updated"], cid)
        for cid, states in observer.reports.items()
        if cid in observer.commands and all(step in states for step in steps)
    )
    if not done:
        return None
    ends = [at for at, _ in done]
    parts = dict.fromkeys(
        (
            "hub: created to first command",
            "hub: a report to the next command",
            "hub: last report to completed",
            "device: command to first report",
            "download (hub HTTP + device client)",
            "device: steps past simulated time",
        ),
        0.0,
    )
    keys = list(parts)
    parts[keys[2]] = finished - ends[-1]
    devices = 0
    index = len(done) - 1
    while True:
        states = observer.reports[done[index][1]]
        sent = observer.commands[done[index][1]]
        devices += 1
        parts[keys[3]] += states["downloading"] - sent
        parts[keys[4]] += states["verifying"] - states["downloading"]
        parts[keys[5]] += states["updated"] - states["verifying"] - sum(times)
        before = bisect.bisect_left(ends, sent) - 1
        if before < 0:
            parts[keys[0]] += sent - created
            break
        parts[keys[1]] += sent - ends[before]
        index = before
    return Split(devices, devices * sum(times), list(parts.items()))


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
) -> AsyncIterator[list[int]]:
    """The simulated fleet, ready; yields its processes' ids."""
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
            "--status-interval", str(STATUS_INTERVAL_S), "--seed", "11",
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
        yield [process.pid for process in processes]
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
    fleet_cpu_s: float
    broker_cpu_s: float
    split: Split | None
    load_before: str
    load_after: str
    profile: list[str]


async def rollout(
    size: int, broker: PrivateBroker, logs: Path, profile: Path | None = None
) -> Measured:
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
                "IOCHUB_HEALTH__SPEAKER_INTERVAL_S": str(STATUS_INTERVAL_S),
                "IOCHUB_LOG_LEVEL": "INFO",  # the driver says when publishing is slow
            },
        )  # fmt: skip
        observer = Observer(broker) if size <= TRACED_UP_TO else None
        profiler: Profiler | None = None
        try:
            async with speakers(broker, size, times) as fleet, contextlib.AsyncExitStack() as stack:
                if observer is not None:
                    await stack.enter_async_context(observer)
                await settled(pool, size)
                idle = await idle_rate(hub.process.pid)
                load_before = machine_load()
                cpu_from = cpu_seconds(hub.process.pid)
                fleet_from = sum(cpu_seconds(pid) for pid in fleet)
                broker_from = cpu_seconds(broker.process.pid)
                if profile is not None:
                    # The campaign only: py-spy's own CPU shares the machine with it.
                    profiler = Profiler(hub.process.pid, profile / f"rollout-{size}.txt")
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
                if profiler is not None:
                    profiler.stop()
                cpu = cpu_seconds(hub.process.pid) - cpu_from
                fleet_cpu = sum(cpu_seconds(pid) for pid in fleet) - fleet_from
                broker_cpu = cpu_seconds(broker.process.pid) - broker_from
                load_after = machine_load()
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
                split = (
                    None
                    if observer is None
                    else overhead_split(
                        observer,
                        times,
                        times_row["created_at"].timestamp(),
                        times_row["finished_at"].timestamp(),
                    )
                )
        finally:
            if profiler is not None and profiler.process.poll() is None:
                profiler.stop()
            hub.stop()
            await pool.close()
    return Measured(
        size, wall, floor, generations, cpu, idle * wall, updated, state, failures,
        float(device_median_s or 0), fleet_cpu, broker_cpu, split, load_before, load_after,
        profiler.top() if profiler is not None else [],
    )  # fmt: skip


@dataclass
class StopMeasured:
    reaction_s: float
    started_after: int
    reason: str
    failed: int
    load: str


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
                "IOCHUB_HEALTH__SPEAKER_INTERVAL_S": str(STATUS_INTERVAL_S),
            },
        )  # fmt: skip
        try:
            async with speakers(broker, size, times, faults="fw_download_fails=0.2"):
                await settled(pool, size)
                load = machine_load()
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
                    return StopMeasured(float("nan"), -1, f"campaign {state}, not stopped", 0, load)
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
                return StopMeasured(reaction, after, campaign["stop_reason"], len(failures), load)
        finally:
            hub.stop()
            await pool.close()


async def main(sizes: Sequence[int], profile: Path | None = None) -> int:
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-rollout-"))
    short = False
    print(f"firmware rollout benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, logs in {logs})")
    with bench_broker(extra=BROKER) as broker:
        for size in sizes:
            m = await rollout(size, broker, logs, profile)
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
            cores = os.cpu_count() or 1
            row(
                "CPU over the campaign: hub + fleet + broker",
                f"{m.cpu_s:.1f} + {m.fleet_cpu_s:.1f} + {m.broker_cpu_s:.1f} s",
                f"the machine offers {cores} cores x {m.wall_s:.1f} s = {cores * m.wall_s:.0f} s",
            )
            if m.fleet_cpu_s > 0.5 * cores * m.floor_s:
                print(
                    f"  !!! the simulated fleet alone used {m.fleet_cpu_s:.0f} CPU-s, "
                    f"{m.fleet_cpu_s / (cores * m.floor_s):.0%} of what {cores} cores offer over "
                    "the floor: at this time scale the machine, not the hub, sets the pace"
                )
            if m.split is not None:
                print(
                    f"  where the overhead went: the slowest chain, {m.split.devices} devices, "
                    f"{m.split.simulated_s:.1f} s simulated"
                )
                for label, seconds in m.split.parts:
                    row(
                        f"  {label}", f"{seconds:.2f} s", f"{seconds / m.floor_s:+.1%} of the floor"
                    )
            print(f"  machine: {m.load_before} before, {m.load_after} after")
            if m.profile:
                print(
                    "  the hub's profile over the campaign (py-spy; its figures above include it):"
                )
                for line in m.profile:
                    print(f"    {line}")
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
        print(f"  machine: {stop.load} at its start")
        if stop.started_after != 0:
            short = True
    return 1 if short else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[272, 10_000]
    )
    parser.add_argument(
        "--profile", type=Path, help="sample the hub with py-spy over each campaign (stacks here)"
    )
    args = parser.parse_args()
    if args.profile is not None:
        if not Path(PY_SPY).exists():
            raise SystemExit("py-spy is needed for --profile (the dev extras install it)")
        args.profile.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main(args.sizes, args.profile)))
