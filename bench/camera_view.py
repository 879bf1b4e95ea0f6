"""Live camera views through the hub: time to the first segment, CPU per stream, streams held.

Simulated cameras serve real RTSP (an H.264 test pattern from ffmpeg, 640x360 at 15 fps,
a keyframe every second, as a sub-stream does); a hub in its own process onboards them
through its API and remuxes their streams to HLS with 2 s segments. A viewer here follows
each playlist as a player does and downloads every segment.

1. From request to first segment: the playlist asked for a camera nobody watches, until
   its first segment has arrived (goal: 3 s with 2 s segments; the first segments are cut
   at half that), for several cameras.
2. CPU per concurrent stream, without transcoding: the hub process and its ffmpeg
   remuxers, measured over a window at 1, 2, 4 ... streams (the cameras' own encoders run
   in this process's children and are reported apart: on real cameras they cost the hub
   nothing).
3. How many concurrent streams this machine holds: streams are added until a segment
   arrives later than one segment length behind its schedule (or fails), or --max-streams
   is reached; the largest count that kept up is the limit found.

    .venv/bin/python -m bench.camera_view [--max-streams 12] [--window 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import psutil

from bench.support import bench_broker, bench_database, row, start_hub
from drivers.onvif.client import preload_wsdls
from drivers.onvif.simulator import CameraSimulator, CameraSpec, SimulatedCamera, SimulatedProfile
from hub.storage.database import asyncpg_dsn

GOAL_FIRST_SEGMENT_S = 3.0
SEGMENT_S = 2.0
SUB = SimulatedProfile("sub", "subStream", "H264", 640, 360, 15)
MAIN = SimulatedProfile("main", "mainStream", "H264", 1280, 720, 15)
SEGMENT = re.compile(r"^(seg\d{5}\.ts)$", re.MULTILINE)


class Viewer:
    """Follows one camera's playlist like a player: every new segment is downloaded."""

    def __init__(self, client: httpx.AsyncClient, uid: str, camera: SimulatedCamera) -> None:
        self.client = client
        self.uid = uid
        self.camera = camera
        self.seen: set[str] = set()
        self.arrivals: list[float] = []
        self.bytes = 0
        self.errors = 0
        self.last_error = ""
        self.task: asyncio.Task[None] | None = None

    async def first_segment(self) -> float:
        # A real camera encodes all the time; a simulated one starts its encoder on demand,
        # so it is started (and given a second) before the clock starts.
        assert self.camera.rtsp is not None
        await self.camera.rtsp.warm(SUB.token)
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        while True:
            if await self._poll():
                return time.perf_counter() - started
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"no segment from {self.uid} in 30 s")
            await asyncio.sleep(0.1)

    async def _poll(self) -> bool:
        base = f"/api/v1/cameras/{self.uid}/live/sub"
        answer = await self.client.get(f"{base}/index.m3u8", timeout=30)
        if answer.status_code != 200:
            self.errors += 1
            self.last_error = f"playlist {answer.status_code}: {answer.text[:160]}"
            return False
        got = False
        for name in SEGMENT.findall(answer.text):
            if name in self.seen:
                continue
            segment = await self.client.get(f"{base}/{name}", timeout=30)
            if segment.status_code == 200:
                self.seen.add(name)
                self.arrivals.append(time.perf_counter())
                self.bytes += len(segment.content)
                got = True
            else:
                self.errors += 1
                self.last_error = f"{name} {segment.status_code}"
        return got

    async def follow(self) -> None:
        while True:
            await self._poll()
            await asyncio.sleep(SEGMENT_S / 4)

    def start(self) -> None:
        self.task = asyncio.create_task(self.follow())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def worst_gap(self, since: float) -> float:
        """The longest wait between two segments after ``since``, in seconds."""
        times = [t for t in self.arrivals if t >= since]
        if len(times) < 2:
            return float("inf")
        return max(b - a for a, b in itertools.pairwise(times))


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def remuxers(hub_pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [
            child
            for child in psutil.Process(hub_pid).children(recursive=True)
            if child.name() == "ffmpeg"
        ]
    return []


def encoders() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if c.name() == "ffmpeg"]


async def measure(
    viewers: list[Viewer], hub_pid: int, window: float
) -> tuple[float, float, float, float]:
    """(hub CPU %, remux CPU %, camera encoders CPU %, worst segment gap s) over ``window``."""
    hub = psutil.Process(hub_pid)
    await asyncio.sleep(SEGMENT_S)  # let the newest stream settle
    remux = remuxers(hub_pid)
    cams = encoders()
    began = time.perf_counter()
    hub0, remux0, cams0 = cpu_seconds([hub]), cpu_seconds(remux), cpu_seconds(cams)
    await asyncio.sleep(window)
    elapsed = time.perf_counter() - began
    hub1, remux1, cams1 = cpu_seconds([hub]), cpu_seconds(remux), cpu_seconds(cams)
    gap = max(v.worst_gap(began) for v in viewers)
    return (
        100 * (hub1 - hub0) / elapsed,
        100 * (remux1 - remux0) / elapsed,
        100 * (cams1 - cams0) / elapsed,
        gap,
    )


async def onboard(client: httpx.AsyncClient, simulator: CameraSimulator) -> list[str]:
    uids = []
    for camera in simulator.cameras.values():
        answer = await client.post(
            "/api/v1/cameras",
            json={
                "host": camera.host,
                "port": camera.port,
                "username": camera.spec.username,
                "password": camera.spec.password,
                "ward": "bench",
                "latitude": 20.86,
                "longitude": 106.69,
            },
            timeout=30,
        )
        answer.raise_for_status()
        uids.append(answer.json()["uid"])
    return uids


def admin_token(url: str) -> str:
    env = {**os.environ, "IOCHUB_DATABASE__URL": url, "IOCHUB_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "hub.server", "users"]
    subprocess.run(
        [*cli, "create", "bench-admin", "--role", "admin", "--password", "bench admin password"],
        env=env,
        check=True,
        capture_output=True,
    )
    made = subprocess.run(
        [*cli, "token", "issue", "bench-admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip().splitlines()[-1].split()[-1]


async def add_ward(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO ward (code, name) VALUES ('bench', 'Bench') ON CONFLICT DO NOTHING"
        )
    finally:
        await conn.close()


async def main(max_streams: int, window: float, samples: int) -> None:
    await preload_wsdls()
    logs = Path(tempfile.mkdtemp(prefix="iochub-bench-camera-view-"))
    specs = [
        CameraSpec(f"view-{n:02d}", rtsp=True, profiles=(MAIN, SUB)) for n in range(max_streams)
    ]
    cores = psutil.cpu_count() or 1
    with bench_broker() as broker:
        async with bench_database() as url, CameraSimulator(specs) as simulator:
            await add_ward(url)
            token = admin_token(url)
            hub = await start_hub(
                url,
                broker.port,
                "bench-camera-view",
                logs,
                {
                    "IOCHUB_CAMERAS__LIVE_MAX_STREAMS": str(max_streams),
                    "IOCHUB_CAMERAS__LIVE_SEGMENT_S": str(SEGMENT_S),
                    "IOCHUB_CAMERAS__LIVE_IDLE_TIMEOUT_S": "20",
                    "IOCHUB_CAMERAS__EVENTS_ENABLED": "false",
                },
            )
            try:
                async with httpx.AsyncClient(
                    base_url=hub.base_url, headers={"authorization": f"Bearer {token}"}
                ) as client:
                    uids = await onboard(client, simulator)
                    viewers = [
                        Viewer(client, uid, camera)
                        for uid, camera in zip(uids, simulator.cameras.values(), strict=True)
                    ]
                    await report(viewers, hub.process.pid, window, samples, cores, max_streams)
            finally:
                hub.stop()
    print(f"  (hub log: {logs})")


async def report(
    viewers: list[Viewer], hub_pid: int, window: float, samples: int, cores: int, most: int
) -> None:
    print(
        f"camera view benchmark: {most} simulated cameras streaming H.264 640x360 at 15 fps "
        f"over RTSP on loopback, {SEGMENT_S:g} s HLS segments, {cores} cores"
    )
    # 1. Request to first segment, each on a camera nobody watches yet.
    firsts = []
    for viewer in viewers[:samples]:
        firsts.append(await viewer.first_segment())
        viewer.start()
    median = statistics.median(firsts)
    row(
        "request -> first segment (median)",
        f"{median:.2f} s",
        f"goal {GOAL_FIRST_SEGMENT_S:g} s: {median / GOAL_FIRST_SEGMENT_S:.0%} of it "
        f"(worst {max(firsts):.2f} s, {len(firsts)} cameras)",
    )
    row(
        "  the shortest possible: the first, half-length segment",
        f"{SEGMENT_S / 2:.2f} s",
        "ffmpeg closes it after this much video (at a keyframe)",
    )

    # 2 and 3. Add streams until one cannot keep up.
    running = len(firsts)
    held = 0
    levels = sorted({1, 2, 4, 6, 8, 10, 12, 16, most} & set(range(len(firsts), most + 1)))
    print(
        f"  {'streams':>8} {'hub CPU':>10} {'ffmpeg remux':>14} {'per stream':>12} "
        f"{'cameras enc.':>14} {'worst gap':>10}"
    )
    for level in levels:
        while running < level:
            await viewers[running].first_segment()
            viewers[running].start()
            running += 1
        hub_cpu, remux_cpu, cams_cpu, gap = await measure(viewers[:running], hub_pid, window)
        per = (hub_cpu + remux_cpu) / running
        print(
            f"  {running:>8} {hub_cpu:>9.1f}% {remux_cpu:>13.1f}% {per:>11.1f}% "
            f"{cams_cpu:>13.1f}% {gap:>9.2f}s"
        )
        kept_up = gap <= 2 * SEGMENT_S and not any(v.errors for v in viewers[:running])
        if not kept_up:
            failed = [v.last_error for v in viewers[:running] if v.errors]
            print(
                f"  stopped at {running} streams: "
                + (f"{len(failed)} failed ({failed[0]})" if failed else "a segment came late")
            )
            break
        held = running
    for viewer in viewers[:running]:
        await viewer.stop()
    limit_note = f"a segment at most {2 * SEGMENT_S:g} s after the previous one; " + (
        "reached --max-streams, the machine may hold more" if held == most else "limit found"
    )
    row("concurrent streams held", f"{held}", limit_note)
    if held < 1:
        raise SystemExit("no stream kept up: the count is short")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-streams", type=int, default=12)
    parser.add_argument("--window", type=float, default=12.0, help="seconds per CPU window")
    parser.add_argument("--samples", type=int, default=3, help="first-segment samples")
    args = parser.parse_args()
    os.environ.setdefault("IOCHUB_LOG_LEVEL", "WARNING")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(main(args.max_streams, args.window, args.samples))
