"""`iochub demo` as a visitor runs it: a real process with its private broker and simulators,
on a fresh database; stopped with SIGTERM as a service manager stops it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import psutil
import pytest

from drivers.contract import Topics
from hub.devices.fleet import demo_fleet
from hub.server.demo import HUNG_CAMERA, LOCKED_CAMERA, SKEWED_CAMERA, backfill_readings
from hub.server.history import POWER_CUT_WARD, backfill_broadcasts, backfill_health
from hub.server.local_broker import free_port, port_free, unavailable_reason
from hub.server.settings import Settings
from tests.support.hub import create_database, drop_database

IOCHUB = [sys.executable, "-m", "hub.server"]


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    base_url: str
    mqtt_port: int
    output: Path
    passwords: dict[str, str]
    started_in: float
    data_dir: Path
    database_url: str
    launched_at: datetime
    tokens: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.output.read_text()


def demo_env(database_url: str, data_dir: Path, mqtt_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOCHUB_")}
    return {
        **env,
        "IOCHUB_DATABASE__URL": database_url,
        "IOCHUB_MQTT__PORT": str(mqtt_port),
        "IOCHUB_DATA_DIR": str(data_dir),
        "COLUMNS": "200",
        # sensors due every 6 s (the demo's simulators then report every 2 s): the hung
        # noise meter is offline in 18 s, not 3 minutes
        "IOCHUB_HEALTH__SENSOR_INTERVAL_S": "6",
        "IOCHUB_HEALTH__CHECK_INTERVAL_S": "2",
        "IOCHUB_HEALTH__CAMERA_INTERVAL_S": "10",
    }


@pytest.fixture(scope="module")
async def demo_database() -> AsyncIterator[str]:
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture(scope="module")
def demo(demo_database: str) -> Iterator[Demo]:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    # mosquitto drops root for its own user, who must reach its folder: not under pytest's
    # private (0700) temporary root
    data_dir = Path(tempfile.mkdtemp(prefix="iochub-demo-"))
    data_dir.chmod(0o755)
    http_port, mqtt_port = free_port(), free_port()
    output = data_dir / "demo.out"
    began, launched_at = time.monotonic(), datetime.now(UTC)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [*IOCHUB, "demo", "--port", str(http_port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=demo_env(demo_database, data_dir, mqtt_port),
        )
    try:
        deadline = time.monotonic() + 90
        while "Stop with Ctrl-C" not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        passwords = dict(re.findall(r"^Login (\S+) / (\S+)", output.read_text(), re.M))
        yield Demo(
            process,
            f"http://127.0.0.1:{http_port}",
            mqtt_port,
            output,
            passwords,
            time.monotonic() - began,
            data_dir,
            demo_database,
            launched_at,
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_start_is_quiet_and_ends_with_the_url_and_the_logins(demo: Demo) -> None:
    lines = [line for line in demo.text().splitlines() if line.strip()]
    # one line per phase, no per-device chatter, then the banner last
    assert len(lines) < 24, "\n".join(lines)
    assert not any("spk-" in line or "aq-" in line for line in lines), lines
    assert lines[-1].startswith("Passwords are new each run")
    assert any(line.startswith(f"Open  {demo.base_url}/") for line in lines)
    assert set(demo.passwords) == {"admin", "technician", "ward-staff"}
    assert f"127.0.0.1:{demo.mqtt_port}" in demo.text()  # the configured port, kept


async def test_the_seeded_users_log_in_with_the_printed_passwords(demo: Demo) -> None:
    async with httpx.AsyncClient(base_url=demo.base_url, timeout=30) as client:
        for username, password in demo.passwords.items():
            answer = await client.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["username"] == username
        staff = answer.json()
        assert staff["role"] == "ward_staff" and len(staff["wards"]) == 1


async def test_the_fleet_raises_an_alert_that_reaches_the_ioc_signed(demo: Demo) -> None:
    conn = await asyncpg.connect(demo.database_url)
    try:
        rules = {r["name"]: r for r in await conn.fetch("SELECT * FROM alert_rule")}
        pm = rules["Bụi mịn PM2.5 ở mức Kém (VN_AQI > 100)"]
        assert (pm["threshold"], pm["clear_threshold"], pm["for_seconds"]) == (50, 45, 600)
        assert {r["kind"] for r in rules.values()} == {"threshold", "offline"}
        deadline = time.monotonic() + 120
        delivered = None
        while delivered is None:
            assert time.monotonic() < deadline, await conn.fetch("SELECT * FROM alert")
            delivered = await conn.fetchrow(
                """
                SELECT a.rule_name, dev.uid, d.webhook_id FROM alert a
                JOIN device dev ON dev.id = a.device_id
                JOIN outbox o ON o.subject = a.fingerprint
                JOIN outbox_delivery d ON d.outbox_id = o.id
                WHERE d.destination = 'webhook' AND d.status = 'delivered'
                LIMIT 1
                """
            )
            await asyncio.sleep(1)
    finally:
        await conn.close()
    # the hung noise meter (or the hung camera) went offline and stayed so
    assert delivered["rule_name"] == "Thiết bị mất kết nối"
    assert delivered["uid"] in ("ns-may-to-01", HUNG_CAMERA)
    received = [
        json.loads(line)
        for line in (demo.data_dir / "logs" / "ioc-webhooks.jsonl").read_text().splitlines()
    ]
    assert delivered["webhook_id"] in {r["webhook_id"] for r in received}


async def test_history_of_48_hours_gives_every_ward_its_aqi_at_once(demo: Demo) -> None:
    conn = await asyncpg.connect(demo.database_url)
    try:
        span = await conn.fetchrow(
            "SELECT min(time) AS first, count(DISTINCT date_trunc('hour', time)) AS hours "
            "FROM reading"
        )
        hourly = await conn.fetchval("SELECT count(DISTINCT bucket) FROM reading_1h")
    finally:
        await conn.close()
    assert span["first"] <= datetime.now(UTC) - timedelta(hours=47, minutes=50)
    assert span["hours"] >= 48 and hourly >= 48
    took = re.search(
        r"history: ([\d,]+) sensor readings of the last 48 h written in ([\d.]+) s", demo.text()
    )
    assert took, demo.text()
    async with api_as(demo, "admin") as client:
        wards = (await client.get("/api/v1/telemetry/wards")).json()
        assert len(wards) == 8
        for ward in wards:
            assert ward["aqi"] is not None, ward
            assert ward["daily_aqi"] is not None, ward  # yesterday's, from the history
        hours = await client.get(
            "/api/v1/telemetry/aqi",
            params={
                "resolution": "hour",
                "start": (datetime.now(UTC) - timedelta(hours=47)).isoformat(),
                "end": datetime.now(UTC).isoformat(),
            },
        )
        assert hours.status_code == 200, hours.text


@asynccontextmanager
async def api_as(demo: Demo, username: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client with an API token of the demo user, issued by the CLI beside the demo
    (once per user: a user's token names are unique)."""
    token = demo.tokens.get(username)
    if token is None:
        issued = subprocess.run(
            [*IOCHUB, "users", "token", "issue", username],
            env=demo_env(demo.database_url, demo.data_dir, demo.mqtt_port),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert issued.returncode == 0, issued.stdout + issued.stderr
        token = demo.tokens[username] = issued.stdout.split()[-1]
    async with httpx.AsyncClient(
        base_url=demo.base_url, headers={"authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


async def test_every_registry_camera_is_onboarded_and_its_health_is_real(demo: Demo) -> None:
    installed = {d.uid for d in demo_fleet().devices if d.kind == "camera"}
    misbehaving = {
        HUNG_CAMERA: ("offline", "disconnected"),
        SKEWED_CAMERA: ("degraded", "clock_drift"),
        LOCKED_CAMERA: ("degraded", "auth_failed"),
    }
    async with api_as(demo, "technician") as client:
        deadline = time.monotonic() + 90
        while True:
            answer = await client.get("/api/v1/cameras", params={"limit": 100})
            assert answer.status_code == 200, answer.text
            cameras = {c["uid"]: c for c in answer.json()["items"]}
            states = {uid: (c["status"], c["status_reason"]) for uid, c in cameras.items()}
            settled = all(states.get(uid) == state for uid, state in misbehaving.items())
            if settled and all(
                states[uid] == ("online", "") for uid in set(states) - set(misbehaving)
            ):
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(1)
        # every camera of the registry is a camera on the wire, onboarded: none is left
        # "never heard from", and no second kind of demo camera exists beside them
        assert set(cameras) == installed
        devices = await client.get("/api/v1/devices", params={"kind": "camera", "limit": 100})
        assert {d["uid"] for d in devices.json()["items"]} == installed, devices.text
        hung, skewed, locked = (cameras[uid] for uid in misbehaving)
        assert "did not answer" in hung["health"]["error"], hung["health"]
        assert abs(skewed["health"]["clock_drift_s"] - 3 * 3600) < 60, skewed["health"]
        assert "rejected the credentials" in locked["health"]["error"], locked["health"]
        # what the camera said of itself is what the registry holds (the firmware catalog
        # knows these models and versions)
        planned = next(d for d in demo_fleet().devices if d.uid == "cam-may-chai-01")
        first = cameras[planned.uid]
        said = (first["manufacturer"], first["model"], first["firmware"], first["serial"])
        assert said == (planned.vendor, planned.model, planned.firmware_version, planned.serial)
        assert (first["ward"], first["latitude"]) == (planned.ward, planned.latitude)
        snapshot = await client.get("/api/v1/cameras/cam-may-chai-01/snapshot")
        assert snapshot.status_code == 200, snapshot.text
        assert snapshot.headers["content-type"] == "image/jpeg"


async def test_health_history_and_availability_cover_the_backfill_window(demo: Demo) -> None:
    took = re.search(
        r"history: ([\d,]+) device health transitions of the last 48 h written in ([\d.]+) s",
        demo.text(),
    )
    assert took, demo.text()
    async with api_as(demo, "technician") as client:
        answer = await client.get("/api/v1/health/availability", params={"hours": 47})
        assert answer.status_code == 200, answer.text
        wards = {w["ward"]: w["percent"] for w in answer.json()}
        history = {
            uid: (await client.get(f"/api/v1/devices/{uid}/health")).json()["history"]
            for uid in (f"spk-{POWER_CUT_WARD}-001", LOCKED_CAMERA, "aq-dong-khe-01")
        }
    # only the modelled faults lower a ward: the hung camera (Máy Chai), the hung noise
    # meter (Máy Tơ), yesterday's power cut (Lạc Viên); degraded cameras are up
    faulty = {"may-chai", "may-to", POWER_CUT_WARD}
    assert len(wards) == 8, wards
    for ward, percent in wards.items():
        assert (90 < percent < 99.5) if ward in faulty else percent >= 99.9, wards
    now = datetime.now(UTC)
    for uid, changes in history.items():
        oldest = min(datetime.fromisoformat(h["at"]) for h in changes)
        assert oldest <= now - timedelta(hours=47, minutes=50), (uid, changes)
    said = [
        (h["from_status"], h["to_status"], h["reason"])
        for h in history[f"spk-{POWER_CUT_WARD}-001"]
    ]
    assert ("online", "offline", "disconnected") in said and ("offline", "online", "") in said
    cut = next(h for h in history[f"spk-{POWER_CUT_WARD}-001"] if h["to_status"] == "offline")
    local = datetime.fromisoformat(cut["at"]).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert time_of_day(8, 0) <= local.time() < time_of_day(8, 1), cut
    # the history is newest first: the oldest auth failure is the backfill's
    locked = [h for h in history[LOCKED_CAMERA] if h["reason"] == "auth_failed"][-1]
    assert locked["from_status"] == "online" and locked["to_status"] == "degraded"
    since = now - datetime.fromisoformat(locked["at"])
    assert timedelta(hours=2, minutes=55) < since < timedelta(hours=3, minutes=5), locked
    # the history is there: a second start writes none again
    pool = await asyncpg.create_pool(demo.database_url, min_size=1, max_size=2)
    try:
        assert await backfill_health(pool, 48, now) == 0
        assert await backfill_readings(pool, "postgres", 48, now) == 0
    finally:
        await pool.close()


async def test_past_broadcasts_are_there_with_every_speakers_report(demo: Demo) -> None:
    took = re.search(
        r"history: (\d+) past occurrences of 8 ward programmes, ([\d,]+) speaker reports, "
        r"written in ([\d.]+) s",
        demo.text(),
    )
    assert took, demo.text()
    now = datetime.now(UTC)
    local = ZoneInfo("Asia/Ho_Chi_Minh")
    async with api_as(demo, "ward-staff") as staff, api_as(demo, "technician") as technician:
        # ward staff of Máy Chai see their ward's programme, not the other wards'
        mine = (await staff.get("/api/v1/broadcasts/")).json()
        assert [b["title"] for b in mine] == ["Bản tin phường Máy Chai"], mine
        everyone = (await technician.get("/api/v1/broadcasts/")).json()
        assert len(everyone) == 8 and all(b["next_occurrence"] for b in everyone), everyone
        listed = (await staff.get(f"/api/v1/broadcasts/{mine[0]['id']}/occurrences")).json()
        # twice a day over the 48 h before the start: every slot surely inside the window
        # (minutes clear of its ends: the history's instant is a little after the launch)
        # was fired and has its outcome
        launched = demo.launched_at
        past = {datetime.fromisoformat(o["scheduled_at"]): o for o in listed}
        assert min(past) > launched - timedelta(hours=48, minutes=1), listed
        day = (launched - timedelta(hours=48)).astimezone(local).date()
        slots = [
            datetime.combine(day + timedelta(days=n), at, local)
            for n in range(4)
            for at in (time_of_day(6, 30), time_of_day(17, 30))
        ]
        inside = [
            s
            for s in slots
            if launched - timedelta(hours=48) + timedelta(minutes=2) < s
            and s < launched - timedelta(minutes=1)
        ]
        assert len(inside) >= 3 and set(inside) <= set(past), (inside, sorted(past))
        for at in inside:
            occurrence = past[at]
            assert occurrence["status"] in ("completed", "partially_failed"), occurrence
            assert occurrence["summary"]["speakers"] == 34, occurrence
        oldest = past[inside[0]]
        report = (await staff.get(f"/api/v1/broadcasts/occurrences/{oldest['id']}")).json()
        assert len(report["speakers"]) == 34
        for speaker in report["speakers"]:
            assert speaker["ward"] == "may-chai" and speaker["received_at"], speaker
            if speaker["state"] == "finished":
                started = datetime.fromisoformat(speaker["started_at"])
                assert abs(started - datetime.fromisoformat(report["start_at"])) < timedelta(
                    seconds=1
                ), speaker
            else:
                assert speaker["failure_reason"] == "amplifier_fault", speaker
        # across the district a few amplifiers failed: some occurrences only partly played
        outcomes = Counter()
        for broadcast in everyone:
            for occurrence in (
                await technician.get(f"/api/v1/broadcasts/{broadcast['id']}/occurrences")
            ).json():
                outcomes[occurrence["status"]] += 1
        assert outcomes["completed"] > outcomes["partially_failed"] > 0, outcomes
    pool = await asyncpg.create_pool(demo.database_url, min_size=1, max_size=2)
    try:
        assert await backfill_broadcasts(Settings(), pool, 48, now) is None  # there already
    finally:
        await pool.close()


async def test_a_credential_issued_from_the_cli_is_live_in_the_demo_broker(demo: Demo) -> None:
    import aiomqtt

    uid = "aq-may-chai-02"
    plain = demo_env(demo.database_url, demo.data_dir, demo.mqtt_port)
    refused = subprocess.run(
        [*IOCHUB, "devices", "credentials", "issue", uid],
        env=plain,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "would not know these credentials" in refused.stderr  # and says why, and how
    written = dict(
        line.split("=", 1) for line in shlex.split((demo.data_dir / "demo.env").read_text())
    )
    issued = subprocess.run(
        [*IOCHUB, "devices", "credentials", "issue", uid],
        env={**plain, **written},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert issued.returncode == 0, issued.stdout + issued.stderr
    assert "authentication is OFF" not in issued.stderr + issued.stdout
    secret = dict(line.split("\t") for line in issued.stdout.splitlines() if "\t" in line)[uid]
    async with aiomqtt.Client(
        "127.0.0.1", demo.mqtt_port, username=uid, password=secret, identifier=uid
    ) as client:
        await client.publish(Topics.for_device(uid, Topics.TELEMETRY), b'{"pm2_5": 12.5}', qos=1)


def test_a_taken_mqtt_port_is_refused_not_moved(demo: Demo, tmp_path: Path) -> None:
    # the running demo's broker holds its port: a second demo configured for it must say so
    result = subprocess.run(
        [*IOCHUB, "demo", "--port", str(free_port()), "--no-simulate"],
        env=demo_env("postgresql://nobody@127.0.0.1:1/none", tmp_path, demo.mqtt_port),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"MQTT port {demo.mqtt_port} (IOCHUB_MQTT__PORT) is taken" in result.stdout


def test_a_taken_http_port_is_refused(demo: Demo, tmp_path: Path) -> None:
    taken = int(demo.base_url.rsplit(":", 1)[1])
    result = subprocess.run(
        [*IOCHUB, "demo", "--no-simulate"],
        env={
            **demo_env("postgresql://nobody@127.0.0.1:1/none", tmp_path, free_port()),
            "IOCHUB_HTTP__PORT": str(taken),  # honoured when --port is not given
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"HTTP port {taken}" in result.stdout and "is taken" in result.stdout


def test_sigterm_stops_the_broker_and_every_child(demo: Demo) -> None:
    """Runs last in this module: it stops the demo."""
    parent = psutil.Process(demo.process.pid)
    children = parent.children(recursive=True)
    names = {child.name() for child in children}
    assert "mosquitto" in names, names
    assert len(children) >= 3, names  # the broker and the sensor and speaker simulators
    demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(30) == 0, demo.text()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.name() for p in alive]
    assert port_free(demo.mqtt_port)  # nobody listens there any more
    assert "demo stopped" in demo.text()
