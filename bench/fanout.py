"""Broadcast fan-out: one announcement to 272 simulated speakers, and to 10,000.

A hub runs in its own process (scheduler leader, speaker driver, delivery recorder, the
signed audio download) against a scratch database and a private mosquitto; the speakers
run in another process (``drivers.speaker.simulator``, downloads shared across the
fleet), so neither steals the other's event loop. Once the hub has taken in the fleet's
first statuses and every speaker follows its ward's group, the speakers hear the standing
announcement once; then each round saves three emergency broadcasts to every ward: for
"now" with that standing audio (a siren, a standing message: speakers hold it), for "now"
with audio no speaker has yet (each downloads it first), and one scheduled ahead (sent
``send_ahead_s`` before its start, as the hub does). Each is read back from the database
once every speaker reported ``started``.

Printed per fleet size, over the rounds (p50 / p99 / max):
  * from the occurrence's start (the moment the emergency was saved) to the last
    ``started``, by the speakers' clocks, against the goal (272 speakers: 500 ms p99;
    10,000: 5 s); the start instant the hub gave them; when the hub had every
    ``started`` ack stored;
  * for the scheduled broadcast, how far the last speaker started after the planned
    instant, and the scheduler's drift (fan-out begun against its plan);
  * how many plays the hub published (one per ward group, one per speaker without groups);
  * as the limit measured in the same run, the same emergency play published straight to
    the ward groups by a bare client, no hub in the loop (broker and speakers alone), and
    the hub serving the audio to that many downloads (what new audio costs a fleet whose
    speakers each fetch it: the simulator fetches it once for all).

    .venv/bin/python -m bench.fanout [--quick] [--sizes 272 10000] [--rounds 3]

Every wait is bounded; a speaker count short at a bound ends the run with a non-zero exit,
and so does the whole run outlasting its budget. --quick: 272 speakers, one round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import asyncpg
import numpy as np
import soundfile  # type: ignore[import-untyped]
from pydantic import SecretStr

from bench.support import ADMIN_SERVER, HubProcess, percentile, row, start_hub
from drivers.contract import AckStage, Topics
from drivers.speaker.protocol import PlayCommand, Priority, decode_ack, encode_command
from drivers.speaker.simulator import district_pairs
from hub.broadcasts.audio import AudioStore, PreparedAudio, prepare_audio
from hub.broadcasts.settings import BroadcastSettings
from hub.broadcasts.urls import AudioUrlSigner, url_key
from hub.storage.database import run_migrations
from tests.support.brokers import PrivateBroker, private_mosquitto

GOALS_S = {272: 0.5, 10_000: 5.0}
SETTLE_PAUSE_S = 2.0
SECRET_KEY = "bench-key"  # noqa: S105 (what bench.support.start_hub gives the hub)
WARDS = 8
SPEED = 50.0  # a 1 s announcement plays for 20 ms: rounds follow each other quickly
DOWNLOAD_CONNECTIONS = 64


def send_ahead_s(speakers: int) -> float:
    """How early plays go out: long enough for this fleet's fan-out (the hub's default is
    10 s; shorter here for small fleets, so a scheduled round does not take half a minute)."""
    return max(4.0, speakers / 500)


BROKER_CONFIG = (
    "max_queued_messages 1000000\nmax_queued_bytes 0\nmemory_limit 0\n"
    "max_inflight_messages 1000\nmax_connections -1\n"
)


@dataclass
class Round:
    speakers: int
    started_last_s: float
    """Last speaker's ``started`` (its own clock) after the occurrence's start."""
    recorded_last_s: float
    """When the hub had every ``started`` ack stored, after the occurrence's start."""
    start_given_s: float
    """The start instant the hub sent the speakers, after the occurrence's start."""
    drift_s: float


@dataclass
class Results:
    now: list[Round] = field(default_factory=list)
    """Emergency "now" with audio the speakers hold (played before: a siren, a standing
    message)."""
    now_new_audio: list[Round] = field(default_factory=list)
    """Emergency "now" with audio no speaker has yet: every speaker downloads it first."""
    publishes: list[tuple[int, int]] = field(default_factory=list)
    intake_s: float = 0.0
    """From the fleet connected to every speaker online and following its ward's group."""
    """Per occurrence: group publishes and direct publishes of the play."""
    scheduled: list[Round] = field(default_factory=list)
    bare_fan_out_s: list[float] = field(default_factory=list)
    downloads_s: list[float] = field(default_factory=list)


def announcement(number: int) -> PreparedAudio:
    """A one-second tone of its own pitch: each number is audio no speaker holds yet."""
    rate = 22_050
    t = np.arange(rate) / rate
    wave = (0.2 * np.sin(2 * np.pi * (523.25 + 7 * number) * t)).astype(np.float32)
    raw = io.BytesIO()
    soundfile.write(raw, wave, rate, format="WAV", subtype="PCM_16")
    return prepare_audio(raw.getvalue(), target_lufs=-16.0, max_gain_db=24.0, max_duration_s=60.0)


async def seed(url: str, count: int) -> None:
    """Wards and their speakers."""
    conn = await asyncpg.connect(url)
    try:
        wards = {}
        for n in range(1, WARDS + 1):
            code = f"ward-{n:02d}"
            wards[code] = await conn.fetchval(
                "INSERT INTO ward (code, name) VALUES ($1, $1) RETURNING id", code
            )
        await conn.copy_records_to_table(
            "device",
            records=[
                (uid, "speaker", wards[ward], "active")
                for uid, ward in district_pairs(count, WARDS)
            ],
            columns=["uid", "kind", "ward_id", "lifecycle"],
        )
    finally:
        await conn.close()


async def add_announcement(pool: asyncpg.Pool, data_dir: Path, number: int) -> int:
    """Announcement ``number`` in the library; returns its asset id."""
    audio = announcement(number)
    AudioStore(data_dir / "audio").save(audio)
    async with pool.acquire() as conn:
        asset_id: int = await conn.fetchval(
            "INSERT INTO audio_asset (name, source, original_format, original_sha256, "
            "original_bytes, sha256, size_bytes, duration_s, sample_rate, created_by) "
            "VALUES ('bench', 'upload', 'WAV', $1, $2, $3, $4, $5, $6, 'bench') RETURNING id",
            audio.original_sha256,
            audio.original_bytes,
            audio.sha256,
            len(audio.wav),
            audio.duration_s,
            audio.sample_rate,
        )
    return asset_id


async def broadcast(pool: asyncpg.Pool, asset_id: int, starts_at: datetime, priority: str) -> int:
    """Saved as the API saves it: the broadcast, its slot, and the NOTIFY that wakes the leader."""
    async with pool.acquire() as conn, conn.transaction():
        ward_ids = [r["id"] for r in await conn.fetch("SELECT id FROM ward ORDER BY id")]
        broadcast_id: int = await conn.fetchval(
            "INSERT INTO broadcast (title, priority, volume, audio_asset_id, duration_s, "
            "target_all, ward_ids, starts_at, timezone, retry_window_s, created_by) "
            "SELECT 'bench', $1, 80, id, duration_s, true, $2, $3, 'Asia/Ho_Chi_Minh', 60, "
            "'bench' FROM audio_asset WHERE id = $4 RETURNING id",
            priority,
            ward_ids,
            starts_at,
            asset_id,
        )
        await conn.execute(
            "INSERT INTO broadcast_slot (broadcast_id, starts_at, ends_at) VALUES ($1, $2, $3)",
            broadcast_id,
            starts_at,
            starts_at + timedelta(seconds=1),
        )
    return broadcast_id


async def until_all_started(
    pool: asyncpg.Pool, broadcast_id: int, speakers: int, timeout_s: float
) -> tuple[asyncpg.Record, datetime]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = await pool.fetchrow(
            "SELECT o.id, o.scheduled_at, o.send_due_at, o.send_started_at, o.start_at, "
            "count(d.started_at) AS started, max(d.started_at) AS last_started "
            "FROM broadcast_occurrence o LEFT JOIN broadcast_delivery d ON d.occurrence_id = o.id "
            "WHERE o.broadcast_id = $1 GROUP BY o.id",
            broadcast_id,
        )
        if state is not None and state["started"] >= speakers:
            return state, datetime.now(UTC)
        await asyncio.sleep(0.01)
    raise TimeoutError(f"not every speaker started broadcast {broadcast_id} in {timeout_s} s")


async def settled(pool: asyncpg.Pool, speakers: int) -> None:
    """Wait until the hub has taken in the fleet's first statuses (health intake done) and
    every speaker follows its ward's group."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        online = await pool.fetchval("SELECT count(*) FROM device WHERE connected")
        following = await pool.fetchval(
            "SELECT count(*) FROM speaker_group_follow WHERE cardinality(groups) > 0"
        )
        if online >= speakers and following >= speakers:
            await asyncio.sleep(SETTLE_PAUSE_S)
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("the hub did not see the whole fleet online and in its groups")


async def until_finished(pool: asyncpg.Pool, broadcast_id: int, speakers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = await pool.fetchval(
            "SELECT count(*) FILTER (WHERE d.finished_at IS NOT NULL OR d.preempted_at IS NOT NULL) "
            "FROM broadcast_occurrence o JOIN broadcast_delivery d ON d.occurrence_id = o.id "
            "WHERE o.broadcast_id = $1",
            broadcast_id,
        )
        if done >= speakers:
            return
        await asyncio.sleep(0.05)


async def one_round(pool: asyncpg.Pool, asset_id: int, speakers: int, scheduled: bool) -> Round:
    ahead = send_ahead_s(speakers) + 4 if scheduled else 0.0
    timeout = ahead + 30 + speakers / 200
    start = datetime.now(UTC) + timedelta(seconds=ahead)
    # Emergency priority either way: the fan-out is the same, and quiet hours (when the
    # bench runs at night in Asia/Ho_Chi_Minh) do not silence it.
    broadcast_id = await broadcast(pool, asset_id, start, "emergency")
    state, recorded_at = await until_all_started(pool, broadcast_id, speakers, timeout)
    await until_finished(pool, broadcast_id, speakers)
    drift = (state["send_started_at"] - state["send_due_at"]).total_seconds()
    return Round(
        speakers=speakers,
        started_last_s=(state["last_started"] - start).total_seconds(),
        recorded_last_s=(recorded_at - start).total_seconds(),
        start_given_s=(state["start_at"] - start).total_seconds(),
        drift_s=drift,
    )


async def publishes(pool: asyncpg.Pool) -> tuple[int, int]:
    """Group and direct publishes of the latest occurrence's play."""
    row = await pool.fetchrow(
        "SELECT count(DISTINCT via_group) AS groups, count(*) FILTER (WHERE via_group IS NULL) "
        "AS direct FROM broadcast_delivery WHERE occurrence_id = "
        "(SELECT max(id) FROM broadcast_occurrence)"
    )
    assert row is not None
    return row["groups"], row["direct"]


async def bare_fan_out(
    broker: PrivateBroker, size: int, audio_url: str, sha256: str, lead_s: float
) -> float:
    """The limit: the same emergency play published straight to every ward's group topic by
    a bare client, no hub in the loop; seconds from publishing to the last ``started``
    (speaker clock). The speakers hold this audio, as in the "now" rounds."""
    tag = secrets.token_hex(3)
    started = datetime.now(UTC)
    play = PlayCommand(
        command_id=f"bare-{tag}",
        issued_at=started,
        expires_at=started + timedelta(minutes=5),
        audio_url=audio_url,
        sha256=sha256,
        duration_s=1.0,
        volume=80,
        priority=Priority.EMERGENCY,
        broadcast_id=f"bare-{tag}",
        start_at=started + timedelta(seconds=lead_s),
    )
    payload = encode_command(play)
    last = started
    count = 0
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"bare-{tag}") as client:
        await client.subscribe(Topics.all_devices(Topics.ACK), qos=1)
        for n in range(1, WARDS + 1):
            await client.publish(Topics.for_group(f"ward-ward-{n:02d}"), payload, qos=1)
        async with asyncio.timeout(120):
            async for message in client.messages:
                ack = decode_ack(bytes(message.payload), "-")  # type: ignore[arg-type]
                if ack.command_id == play.command_id and ack.stage is AckStage.STARTED:
                    last, count = max(last, ack.time), count + 1
                    if count >= size:
                        break
    return (last - started).total_seconds()


async def serve_downloads(base_url: str, path: str, count: int) -> float:
    """The hub serving ``count`` signed downloads over a pool of keep-alive connections.

    A lean HTTP/1.1 client: it measures the hub, not an HTTP library.
    """
    host, port = base_url.removeprefix("http://").split(":")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not queue.empty():
                queue.get_nowait()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(DOWNLOAD_CONNECTIONS, count))))
    return time.perf_counter() - started


def simulator_processes(count: int) -> int:
    """One simulator process per core for large fleets: 10,000 speakers' acks are more
    than one Python process publishes in the seconds the goal allows."""
    return 2 if count >= 5000 else 1


@contextlib.asynccontextmanager
async def speaker_fleet(broker: PrivateBroker, count: int) -> AsyncIterator[None]:
    shards = simulator_processes(count)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "drivers.speaker.simulator",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--count",
            str(count),
            "--wards",
            str(WARDS),
            "--speed",
            str(SPEED),
            "--status-interval",
            "3600",
            "--seed",
            "7",
            "--shared-downloads",
            "--shard",
            f"{index}/{shards}",
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        for index in range(shards)
    ]
    drains: list[asyncio.Task[bytes]] = []
    try:
        for process in processes:
            assert process.stderr is not None
            async with asyncio.timeout(180):
                while True:
                    line = await process.stderr.readline()
                    if not line:
                        raise RuntimeError("the speaker simulator exited")
                    if b"speaker simulator ready" in line:
                        break
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
            if process.returncode is None:
                process.kill()


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A database of this run's own, dropped afterwards."""
    name = f"fanout_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_SERVER)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = ADMIN_SERVER.rsplit("/", 1)[0] + "/" + name
        await run_migrations(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def raised_file_limit() -> Iterator[None]:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield


async def measure(size: int, rounds: int, broker: PrivateBroker, log_dir: Path) -> Results:
    results = Results()
    async with scratch_database() as url:
        data_dir = log_dir / f"data-{size}"
        await seed(url, size)
        hub: HubProcess = await start_hub(
            url,
            broker.port,
            f"bench-fanout-{size}",
            log_dir,
            extra_env={
                "IOCHUB_DATA_DIR": str(data_dir),
                "IOCHUB_TELEMETRY__MQTT_INGEST": "false",
                "IOCHUB_DELIVERY__ENABLED": "false",
                "IOCHUB_DATABASE__POOL_MAX_SIZE": "20",
                "IOCHUB_BROADCASTS__PREPARE_S": str(send_ahead_s(size) + 2),
                "IOCHUB_BROADCASTS__SEND_AHEAD_S": str(send_ahead_s(size)),
            },
        )
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        asset_id = await add_announcement(pool, data_dir, 0)
        signer = AudioUrlSigner(url_key(SecretStr(SECRET_KEY), data_dir), hub.base_url)
        expiry = datetime.now(UTC) + timedelta(hours=1)
        link = signer.url(asset_id, expiry).removeprefix(hub.base_url)
        sha256 = await pool.fetchval("SELECT sha256 FROM audio_asset WHERE id = $1", asset_id)
        # The lead the hub gives a fan-out of this many publishes (one per ward).
        lead = BroadcastSettings().start_lead_s(WARDS)
        try:
            async with speaker_fleet(broker, size):
                began = time.monotonic()
                await settled(pool, size)
                results.intake_s = time.monotonic() - began - SETTLE_PAUSE_S
                # The speakers hear the standing announcement once before the clock starts.
                await one_round(pool, asset_id, size, scheduled=False)
                for number in range(1, rounds + 1):
                    results.now.append(await one_round(pool, asset_id, size, scheduled=False))
                    new_audio = await add_announcement(pool, data_dir, number)
                    results.now_new_audio.append(
                        await one_round(pool, new_audio, size, scheduled=False)
                    )
                    results.scheduled.append(await one_round(pool, asset_id, size, scheduled=True))
                    results.publishes.append(await publishes(pool))
                    results.bare_fan_out_s.append(
                        await bare_fan_out(broker, size, signer.url(asset_id, expiry), sha256, lead)
                    )
                    results.downloads_s.append(await serve_downloads(hub.base_url, link, size))
        except Exception:
            print(f"the run failed; the end of the hub's log ({hub.log}):", file=sys.stderr)
            print(hub.log.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            await pool.close()
            hub.stop()
    return results


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{percentile(ms, 50):7.0f} {percentile(ms, 99):7.0f} {max(ms):7.0f} ms"


def report(size: int, results: Results) -> None:
    goal = GOALS_S.get(size)
    p99 = percentile([r.started_last_s for r in results.now], 99)
    print(f"\n{size} speakers, {len(results.now)} rounds  (p50 / p99 / max)")
    row(
        "emergency now: start -> last started (speaker clock)",
        summary([r.started_last_s for r in results.now]),
    )
    row(
        "emergency now, new audio: start -> last started",
        summary([r.started_last_s for r in results.now_new_audio]),
    )
    row(
        "emergency now: start -> start instant sent to speakers",
        summary([r.start_given_s for r in results.now]),
    )
    row(
        "emergency now: start -> all started acks stored",
        summary([r.recorded_last_s for r in results.now]),
    )
    if goal is not None:
        row(
            "ratio to the goal (p99, speaker clock)",
            f"{p99 / goal:.2f}",
            f"goal {goal * 1000:.0f} ms",
        )
    row(
        "scheduled: planned start -> last started",
        summary([r.started_last_s for r in results.scheduled]),
    )
    row(
        "scheduled: planned start -> all started acks stored",
        summary([r.recorded_last_s for r in results.scheduled]),
    )
    row(
        "scheduler drift (fan-out begun vs planned)",
        summary([r.drift_s for r in results.scheduled]),
    )
    row(
        "hub taking in the fleet: all online, all in their groups",
        f"{results.intake_s * 1000:7.0f} ms",
        "statuses and group assignments of a fleet that just connected",
    )
    publishes = results.publishes[-1] if results.publishes else (0, 0)
    row(
        "plays the hub published per occurrence",
        f"{sum(publishes):>16}",
        f"{publishes[0]} to ward groups, {publishes[1]} to single speakers",
    )
    row("limit: bare client to the ward groups, no hub", summary(results.bare_fan_out_s))
    ratio = percentile([r.started_last_s for r in results.now], 99) / percentile(
        results.bare_fan_out_s, 99
    )
    row("ratio of emergency now to that limit (p99)", f"{ratio:.2f}")
    row(
        f"hub serving the audio: {size} downloads, {DOWNLOAD_CONNECTIONS} connections",
        summary(results.downloads_s),
    )


async def main(sizes: list[int], rounds: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with (
        raised_file_limit(),
        tempfile.TemporaryDirectory(prefix="iochub-fanout-") as workdir,
        private_mosquitto(extra_config=BROKER_CONFIG) as broker,
    ):
        for size in sizes:
            report(size, await measure(size, rounds, broker, Path(workdir)))


def budget_s(sizes: list[int], rounds: int) -> float:
    """The whole run's bound: hub and fleet starts, then each round's broadcasts (several
    times the slowest run seen on this machine)."""
    return sum(120 + size / 50 + rounds * (60 + size / 100) for size in sizes)


async def bounded(sizes: list[int], rounds: int) -> None:
    limit = budget_s(sizes, rounds)
    try:
        async with asyncio.timeout(limit):
            await main(sizes, rounds)
    except TimeoutError as error:
        raise SystemExit(f"fan-out benchmark FAILED: {error or f'over {limit:.0f} s'}") from None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="272 speakers, one round")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--rounds", type=int)
    arguments = parser.parse_args()
    sizes = arguments.sizes or ([272] if arguments.quick else [272, 10_000])
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bounded(sizes, rounds))
