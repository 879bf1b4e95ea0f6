"""Firmware helpers: the catalog imported into a test hub, speakers registered with a model
and version, simulated speakers that update themselves, waiting for campaigns."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from drivers.firmware.device import FirmwareFault, UpdateTiming
from drivers.speaker.simulator import Latency, SimulatorConfig, SpeakerSimulator, SpeakerSpec
from hub.firmware.catalog import import_catalog
from tests.support.broadcasts import eventually
from tests.support.hub import RunningHub

S30 = ("VNPT Technology", "IP Speaker S30")
FAST = UpdateTiming(verify_s=0.05, install_s=0.3, reboot_s=0.2)


@dataclass(frozen=True, slots=True)
class FleetSpeaker:
    uid: str
    ward: str
    version: str
    model: str = S30[1]


async def import_into(hub: RunningHub) -> dict[str, int]:
    """The shipped catalog in the hub's database; returns release ids by S30 version."""
    pool = hub.runtime.database.pool
    await import_catalog(pool)
    rows = await pool.fetch("SELECT version, id FROM firmware_release WHERE model = $1", S30[1])
    return {row["version"]: row["id"] for row in rows}


async def register(
    db: asyncpg.Connection,
    counts: Mapping[str, int],
    version: str = "2.4.1",
    model: str = S30[1],
) -> list[FleetSpeaker]:
    tag = uuid.uuid4().hex[:6]
    speakers = [
        FleetSpeaker(f"spk-{ward}-{tag}-{n:02d}", ward, version, model)
        for ward, count in counts.items()
        for n in range(count)
    ]
    await db.executemany(
        "INSERT INTO device (uid, kind, ward_id, name, vendor, model, firmware_version) "
        "SELECT $1, 'speaker', id, $1, $3, $4, $5 FROM ward WHERE code = $2",
        [(s.uid, s.ward, S30[0], s.model, s.version) for s in speakers],
    )
    return speakers


@contextlib.asynccontextmanager
async def updating_speakers(
    broker_port: int,
    speakers: Sequence[FleetSpeaker],
    faults: Mapping[str, frozenset[FirmwareFault]] | None = None,
    timing: UpdateTiming = FAST,
) -> AsyncIterator[SpeakerSimulator]:
    faults = faults or {}
    specs = [
        SpeakerSpec(
            s.uid,
            s.ward,
            firmware_version=s.version,
            model=s.model,
            firmware_faults=faults.get(s.uid, frozenset()),
        )
        for s in speakers
    ]
    config = SimulatorConfig(
        host="127.0.0.1",
        port=broker_port,
        latency=Latency(median_s=0.002, max_s=0.01),
        status_interval_s=3600,
        update_timing=timing,
    )
    async with SpeakerSimulator(specs, config) as fleet:
        yield fleet


async def campaign_when(
    client: httpx.AsyncClient, campaign_id: int, states: Sequence[str], within_s: float = 20
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/firmware/campaigns/{campaign_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["state"] in states else None

    result: dict[str, Any] = await eventually(probe, within_s, every_s=0.1)
    return result


async def devices_of(client: httpx.AsyncClient, campaign_id: int) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/api/v1/firmware/campaigns/{campaign_id}/devices")
    assert response.status_code == 200, response.text
    return {row["uid"]: row for row in response.json()}


def peak_updating(fleet: SpeakerSimulator, uids: Sequence[str]) -> int:
    """The most of these speakers that were between 'downloading' and their last report at
    the same moment, from the reports they published."""
    spans = []
    for uid in uids:
        reports = fleet.speaker(uid).firmware.reports
        by_command: dict[str, list[Any]] = {}
        for report in reports:
            by_command.setdefault(report.command_id, []).append(report.at)
        spans += [(min(ats), max(ats)) for ats in by_command.values()]
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def update_commands(fleet: SpeakerSimulator, uid: str) -> int:
    """How many distinct update commands a speaker acted on."""
    return len({r.command_id for r in fleet.speaker(uid).firmware.reports})
