"""Broadcast helpers shared by the API, console and browser tests: speakers in the registry,
uploaded audio, simulated speakers on the hub's broker, and waiting for what the hub reports."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from drivers.speaker.simulator import Fault, Latency, SimulatorConfig, SpeakerSimulator, SpeakerSpec
from tests.support.hub import RunningHub
from tests.unit.broadcasts.sounds import tone

PROBLEM = "application/problem+json"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass
class Speakers:
    """Speakers registered in the hub, by ward code."""

    by_ward: dict[str, list[str]]

    def __getitem__(self, ward: str) -> list[str]:
        return self.by_ward[ward]

    @property
    def all(self) -> list[str]:
        return [uid for uids in self.by_ward.values() for uid in uids]


async def register_speakers(db: asyncpg.Connection, counts: dict[str, int]) -> Speakers:
    # Fresh uids each time, so no retained status or broker session leaks between tests.
    tag = uuid.uuid4().hex[:6]
    by_ward: dict[str, list[str]] = {}
    for ward, count in counts.items():
        uids = [f"spk-{ward}-{tag}-{n}" for n in range(count)]
        await db.executemany(
            "INSERT INTO device (uid, kind, ward_id, name) "
            "SELECT $1, 'speaker', id, $1 FROM ward WHERE code = $2",
            [(uid, ward) for uid in uids],
        )
        by_ward[ward] = uids
    return Speakers(by_ward)


async def upload(
    client: httpx.AsyncClient,
    raw: bytes,
    *,
    name: str = "announcement",
    ward: str | None = None,
    content_type: str = "audio/wav",
) -> httpx.Response:
    params = {"name": name} | ({"ward": ward} if ward else {})
    return await client.post(
        "/api/v1/audio", content=raw, params=params, headers={"content-type": content_type}
    )


async def upload_jingle(client: httpx.AsyncClient) -> dict[str, Any]:
    """A 2-second announcement uploaded to the district library (by an admin's client)."""
    response = await upload(client, tone(2.0), name="jingle")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def local_in(seconds: float) -> str:
    """An instant this many seconds from now, with its offset."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def heard_since(client: httpx.AsyncClient, uids: Sequence[str], since: datetime) -> None:
    """Wait until the hub has taken in a status from each speaker since ``since``: a speaker
    that reports online after a play went out is sent it again at once (its acknowledgement
    may simply be late), so a test counting sends lets the fleet's hellos land first."""

    async def all_heard() -> bool:
        for uid in uids:
            seen = (await client.get(f"/api/v1/devices/{uid}")).json().get("last_seen")
            if seen is None or datetime.fromisoformat(seen) < since:
                return False
        return True

    await eventually(all_heard, within_s=30.0, every_s=0.1)


def tomorrow_local(hour: int, minute: int = 0) -> str:
    """Local wall-clock time tomorrow (Asia/Ho_Chi_Minh), with its offset: always ahead, and
    outside the default quiet hours for 5 <= hour < 22, whatever the hour of the run."""
    day = datetime.now(LOCAL) + timedelta(days=1)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0).isoformat()


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    return [e["field"] for e in response.json().get("errors", [])]


async def eventually(
    probe: Callable[[], Any],
    within_s: float = 10.0,
    every_s: float = 0.05,
) -> Any:
    """Call ``probe`` (sync or async) until it gives something truthy; return that."""
    deadline = time.monotonic() + within_s
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {within_s} s (last: {value!r})")
        await asyncio.sleep(every_s)


async def first_occurrence(
    client: httpx.AsyncClient, broadcast_id: int, within_s: float = 10
) -> int:
    async def probe() -> int | None:
        response = await client.get(f"/api/v1/broadcasts/{broadcast_id}/occurrences")
        items = response.json()
        return items[-1]["id"] if items else None

    return await eventually(probe, within_s)  # type: ignore[no-any-return]


async def report_when(
    client: httpx.AsyncClient,
    occurrence_id: int,
    done: Callable[[dict[str, Any]], bool],
    within_s: float = 10,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/broadcasts/occurrences/{occurrence_id}")
        assert response.status_code == 200, response.text
        report = response.json()
        return report if done(report) else None

    return await eventually(probe, within_s)  # type: ignore[no-any-return]


def by_speaker(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["speaker"]: row for row in report["speakers"]}


@contextlib.asynccontextmanager
async def simulated(
    hub: RunningHub,
    uids: Sequence[str],
    faults: dict[str, frozenset[Fault]] | None = None,
    *,
    without_groups: Sequence[str] = (),
    **overrides: Any,
) -> AsyncIterator[SpeakerSimulator]:
    """Simulated speakers on the hub's broker, playing ``speed`` times faster than real;
    those ``without_groups`` run firmware that follows no group topics."""
    faults = faults or {}
    specs = [
        SpeakerSpec(
            uid,
            "ward",
            faults=faults.get(uid, frozenset()),
            follows_groups=uid not in without_groups,
        )
        for uid in uids
    ]
    config = SimulatorConfig(
        host="127.0.0.1",
        port=hub.settings.mqtt.port,
        speed=4.0,
        latency=Latency(median_s=0.003, max_s=0.02),
        status_interval_s=3600,
    )
    async with SpeakerSimulator(specs, replace(config, **overrides)) as fleet:
        yield fleet
