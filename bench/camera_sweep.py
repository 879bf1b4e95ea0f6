"""Camera health sweep through the hub: 150 simulated cameras, 10 % of them hung or down.

Runs the hub's CameraHealthService against a scratch PostgreSQL database (targets read
and passwords unsealed from it, results recorded in it, heartbeats through the health
monitor) and prints the sweep time against the 10 s goal; then, as the limit measured in
the same run, the sweep of the healthy cameras alone.

    .venv/bin/python bench/camera_sweep.py [--cameras 150] [--faulty 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import secrets
import statistics
import time
from collections import Counter

import asyncpg

from drivers.contract import Ack, DeviceEvent, Heartbeat, Reading, Rejected
from drivers.onvif.client import preload_wsdls
from drivers.onvif.health import CameraHealth
from drivers.onvif.simulator import CameraFault, CameraSimulator, fleet
from hub.cameras.health import CameraHealthService
from hub.cameras.settings import CameraSettings
from hub.cameras.store import camera_context
from hub.devices.directory import DeviceDirectory
from hub.health.monitor import HealthMonitor
from hub.storage.crypto import SecretBox
from hub.storage.database import run_migrations

GOAL_S = 10.0


class HealthSink:
    """The part of the hub's sink a camera sweep uses: the health monitor."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    async def readings(self, items: list[Reading], source: str) -> None:
        raise AssertionError("a health sweep sends no readings")

    async def heartbeat(self, item: Heartbeat) -> None:
        await self.monitor.heartbeat(item)

    async def event(self, item: DeviceEvent) -> None:
        await self.monitor.event(item)

    async def ack(self, item: Ack) -> None:
        raise AssertionError("a health sweep sends no acks")

    async def rejected(self, item: Rejected) -> None:
        raise AssertionError("a health sweep rejects nothing")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def describe(label: str, elapsed: float, results: list[CameraHealth]) -> None:
    states = Counter(r.state.value for r in results)
    latencies = [
        r.latency_s * 1000 for r in results if r.latency_s is not None and r.state.connected
    ]
    print(f"{label}: {len(results)} cameras in {elapsed:.2f} s  ({dict(sorted(states.items()))})")
    if latencies:
        print(
            f"  ONVIF latency per camera (ms): p50 {percentile(latencies, 0.5):.1f}  "
            f"p90 {percentile(latencies, 0.9):.1f}  p99 {percentile(latencies, 0.99):.1f}  "
            f"max {max(latencies):.1f}  mean {statistics.fmean(latencies):.1f}"
        )
    print(f"  ratio to the {GOAL_S:.0f} s goal: {elapsed / GOAL_S:.2f}")


async def seed(pool: asyncpg.Pool, box: SecretBox, simulator: CameraSimulator) -> None:
    ward_id = await pool.fetchval(
        "INSERT INTO ward (code, name) VALUES ('bench', 'Bench') RETURNING id"
    )
    for camera in simulator.cameras.values():
        uid = f"cam-{camera.name}"
        device_id = await pool.fetchval(
            "INSERT INTO device (uid, kind, ward_id, serial) VALUES ($1, 'camera', $2, $3) "
            "RETURNING id",
            uid,
            ward_id,
            camera.spec.serial,
        )
        await pool.execute(
            "INSERT INTO camera (device_id, host, port, username, password_sealed, "
            "capabilities) VALUES ($1, $2, $3, $4, $5, '{\"pullpoint\": true}')",
            device_id,
            camera.host,
            camera.port,
            camera.spec.username,
            box.seal(camera.spec.password, camera_context(uid)),
        )


async def bench(args: argparse.Namespace) -> None:
    specs = fleet(args.cameras, prefix="bench")
    faulty = specs[:: max(1, round(1 / args.faulty))] if args.faulty > 0 else []
    for index, spec in enumerate(faulty):
        spec.fault = CameraFault.HUNG if index % 2 == 0 else CameraFault.DOWN
    hung = sum(1 for spec in faulty if spec.fault is CameraFault.HUNG)
    print(
        f"{args.cameras} simulated cameras, {hung} hung and {len(faulty) - hung} down; "
        f"{args.concurrency} checks at once, {args.timeout:.0f} s per camera "
        f"(bound: {math.ceil(args.cameras / args.concurrency) * args.timeout:.0f} s)"
    )

    logging.getLogger("hub").setLevel(logging.WARNING)
    admin = await asyncpg.connect(args.database_url)
    name = f"iochub_bench_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.database_url.rsplit("/", 1)[0] + "/" + name
    try:
        await run_migrations(url, "off")
        pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
        box = SecretBox(secrets.token_urlsafe(32))
        settings = CameraSettings(
            health_concurrency=args.concurrency, health_timeout_s=args.timeout
        )
        service = CameraHealthService(
            pool, box, HealthSink(HealthMonitor(pool, DeviceDirectory(pool))), settings
        )
        await preload_wsdls()  # once per process, before any deadline runs
        simulator = CameraSimulator(specs)
        try:
            # One by one: started together, cameras can be handed the same free port.
            for camera in simulator.cameras.values():
                await camera.start()
            await seed(pool, box, simulator)

            started = time.perf_counter()
            results = await service.sweep_once()
            describe("first sweep (no history)", time.perf_counter() - started, results)

            # From then on the cameras that failed last time are checked first.
            started = time.perf_counter()
            results = await service.sweep_once()
            describe("steady sweep", time.perf_counter() - started, results)

            await pool.execute(
                "UPDATE device SET lifecycle = 'decommissioned' WHERE uid = ANY($1::text[])",
                [f"cam-{spec.name}" for spec in faulty],
            )
            started = time.perf_counter()
            results = await service.sweep_once()
            describe("healthy cameras alone (the limit)", time.perf_counter() - started, results)
        finally:
            await simulator.stop()
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cameras", type=int, default=150)
    parser.add_argument("--faulty", type=float, default=0.1, help="share hung or down")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per camera")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server where a scratch database may be created",
    )
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
