"""Rollout campaigns as people see them: create, follow, pause, resume, cancel, approve, retry.

These only write the campaign's rows (and wake the rollout driver with NOTIFY); the
driver, wherever it runs, is the one that sends anything to a device.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from firmware_meta import InvalidFirmwareVersion, parse_version, slug
from hub.auth import Permission, Principal
from hub.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from hub.firmware import store
from hub.firmware.artifacts import ArtifactStore
from hub.firmware.schemas import CampaignIn
from hub.firmware.settings import FirmwareSettings
from hub.firmware.store import CampaignRow, DeviceFirmware
from hub.runtime.context import RuntimeKey

OPEN = ("running", "waiting_approval", "paused")


class Target(Protocol):
    """What a refusal looks at: a release, or the campaign that carries its columns."""

    @property
    def vendor(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def min_version(self) -> str | None: ...


def refusal(device: DeviceFirmware, release: Target) -> str | None:
    """Why this release must not be sent to this device, or None. Checked when a campaign
    is created and again just before each command is sent."""
    if (slug(device.vendor), slug(device.model)) != (slug(release.vendor), slug(release.model)):
        return (
            f"wrong model: the device is a {device.vendor} {device.model}, the firmware is "
            f"for {release.vendor} {release.model}"
        )
    try:
        running = parse_version(device.firmware_version)
    except InvalidFirmwareVersion:
        return f"unknown running version {device.firmware_version!r}: cannot check the minimum"
    target = parse_version(release.version)
    if running == target:
        return f"already runs {release.version}"
    if running > target:
        return f"runs {device.firmware_version}, newer than {release.version}"
    if release.min_version is not None and running < parse_version(release.min_version):
        return (
            f"below minimum: runs {device.firmware_version}, {release.version} installs only "
            f"from {release.min_version}"
        )
    return None


def wave_sizes(total: int, cumulative_percents: Sequence[float]) -> list[int]:
    """Sizes of each wave from cumulative shares: [2, 10, 50, 100] of 272 -> 6, 22, 108, 136."""
    sizes: list[int] = []
    done = 0
    shares = sorted(set(cumulative_percents))
    if not shares or shares[-1] != 100:
        shares.append(100.0)
    for share in shares:
        reach = min(total, max(done + 1, math.ceil(total * share / 100)))
        if reach > done:
            sizes.append(reach - done)
            done = reach
    return sizes


def spread(devices: Sequence[DeviceFirmware], seed: int) -> list[DeviceFirmware]:
    """Interleave wards (a canary wave touches several) in a stable, seeded order."""
    by_ward: dict[str, list[DeviceFirmware]] = {}
    for device in sorted(
        devices, key=lambda d: hashlib.sha256(f"{seed}:{d.uid}".encode()).hexdigest()
    ):
        by_ward.setdefault(device.ward or "", []).append(device)
    ordered: list[DeviceFirmware] = []
    queues = [by_ward[w] for w in sorted(by_ward)]
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


@dataclass
class Created:
    campaign: CampaignRow
    refused: list[tuple[DeviceFirmware, str]]


class Campaigns:
    def __init__(self, pool: asyncpg.Pool, settings: FirmwareSettings) -> None:
        self.pool = pool
        self.settings = settings
        self.artifacts = ArtifactStore(settings.catalog_root)

    async def create(self, principal: Principal, data: CampaignIn) -> Created:
        principal.require(Permission.DEVICES_WRITE)
        async with self.pool.acquire() as conn, conn.transaction():
            release = await store.release(conn, data.release_id)
            if release is None:
                raise ValidationFailed(
                    "no such release", [FieldProblem("release_id", f"no release {data.release_id}")]
                )
            if release.kind not in ("speaker", "sensor"):
                raise ValidationFailed(
                    "cameras are updated with their vendor's tools",
                    [FieldProblem("release_id", f"{release.model} is a {release.kind}")],
                )
            self.artifacts.check(release)  # signature and image, before anything is planned
            devices, ward_ids = await self._select(conn, principal, data, release.kind)
            if not devices:
                raise ValidationFailed(
                    "the selection has no devices", [FieldProblem("wards", "no active devices")]
                )
            busy = await store.busy_in_campaigns(conn, [d.id for d in devices])
            eligible, refused = [], []
            for device in devices:
                reason = refusal(device, release)
                if reason is None and device.id in busy:
                    reason = f"already in open campaign {busy[device.id]}"
                if reason is None:
                    eligible.append(device)
                else:
                    refused.append((device, reason))
            if not eligible:
                raise Conflict(
                    f"none of the {len(devices)} selected devices can take {release.version}",
                    [FieldProblem(d.uid, reason) for d, reason in refused[:50]],
                )
            sizes = wave_sizes(len(eligible), data.waves)
            wave_of = [index for index, size in enumerate(sizes) for _ in range(size)]
            rows: list[tuple[object, ...]] = [
                (d.id, d.uid, d.ward_id, wave, "pending", d.firmware_version, None)
                for d, wave in zip(spread(eligible, data.release_id), wave_of, strict=True)
            ]
            rows += [
                (d.id, d.uid, d.ward_id, 0, "refused", d.firmware_version, reason)
                for d, reason in refused
            ]
            guard = (
                self.settings.broadcast_guard_min
                if data.broadcast_guard_min is None
                else data.broadcast_guard_min
            )
            campaign_id = await store.insert_campaign(
                conn,
                {
                    "name": data.name,
                    "release_id": release.id,
                    "selector": {"wards": data.wards, "group": data.group, "devices": data.devices},
                    "ward_ids": sorted(ward_ids),
                    "wave_sizes": sizes,
                    "success_percent": data.success_percent,
                    "error_percent": data.error_percent,
                    "require_approval": data.require_approval,
                    "max_ward_percent": data.max_ward_percent or self.settings.max_ward_percent,
                    "broadcast_guard_s": round(guard * 60),
                    "use_windows": data.use_windows,
                    "device_timeout_s": data.device_timeout_s or self.settings.device_timeout_s,
                    "created_by": principal.username,
                },
                rows,
            )
            campaign = await store.campaign(conn, campaign_id)
            await store.notify(conn, campaign_id)  # on commit: the driver starts it at once
        assert campaign is not None
        return Created(campaign, refused)

    async def _select(
        self, conn: Any, principal: Principal, data: CampaignIn, kind: str
    ) -> tuple[list[DeviceFirmware], set[int]]:
        ward_ids = principal.ward_ids
        uids: list[str] | None = None
        if data.wards:
            found = await store.ward_ids_by_code(conn, data.wards)
            missing = sorted(set(data.wards) - set(found))
            if missing:
                raise ValidationFailed("unknown wards", [FieldProblem("wards", ", ".join(missing))])
            principal.require_wards(found.values())
            ward_ids = frozenset(found.values())
        if data.group is not None:
            group = await store.group_member_uids(conn, data.group)
            if group is None:
                raise ValidationFailed("no such group", [FieldProblem("group", str(data.group))])
            uids = group[1]
        if data.devices:
            uids = sorted(set(data.devices) & set(uids)) if uids is not None else list(data.devices)
        devices = await store.devices(conn, ward_ids, kind=kind, uids=uids)
        if data.devices:
            missing = sorted(set(data.devices) - {d.uid for d in devices})
            if missing:
                raise ValidationFailed(
                    "devices not found in the wards you serve",
                    [FieldProblem("devices", ", ".join(missing[:20]))],
                )
        principal.require_wards(d.ward_id for d in devices)
        return devices, {d.ward_id for d in devices if d.ward_id is not None}

    async def get(self, principal: Principal, campaign_id: int) -> CampaignRow:
        async with self.pool.acquire() as conn:
            campaign = await store.campaign(conn, campaign_id)
        if campaign is None or not all(principal.sees_ward(w) for w in campaign.ward_ids):
            raise NotFound(f"no campaign {campaign_id} in the wards you serve")
        return campaign

    async def list(self, principal: Principal) -> list[CampaignRow]:
        async with self.pool.acquire() as conn:
            return await store.campaigns(conn, principal.ward_ids)

    async def _change(
        self,
        principal: Principal,
        campaign_id: int,
        allowed: Sequence[str],
        state: str,
        **columns: object,
    ) -> CampaignRow:
        principal.require(Permission.DEVICES_WRITE)
        campaign = await self.get(principal, campaign_id)
        if campaign.state not in allowed:
            raise Conflict(f"campaign {campaign_id} is {campaign.state}: cannot make it {state}")
        async with self.pool.acquire() as conn, conn.transaction():
            await store.set_state(conn, campaign_id, state, **columns)
            if state == "cancelled":
                await conn.execute(
                    "UPDATE firmware_campaign_device SET state = 'cancelled', reason = $2 "
                    "WHERE campaign_id = $1 AND state = 'pending'",
                    campaign_id,
                    f"campaign cancelled by {principal.username}",
                )
            await store.notify(conn, campaign_id)
        return await self.get(principal, campaign_id)

    async def pause(self, principal: Principal, campaign_id: int) -> CampaignRow:
        return await self._change(principal, campaign_id, ("running", "waiting_approval"), "paused")

    async def resume(self, principal: Principal, campaign_id: int) -> CampaignRow:
        return await self._change(principal, campaign_id, ("paused",), "running")

    async def cancel(self, principal: Principal, campaign_id: int, now: datetime) -> CampaignRow:
        return await self._change(principal, campaign_id, OPEN, "cancelled", finished_at=now)

    async def approve(self, principal: Principal, campaign_id: int, now: datetime) -> CampaignRow:
        principal.require(Permission.DEVICES_WRITE)
        campaign = await self.get(principal, campaign_id)
        if campaign.state != "waiting_approval":
            raise Conflict(f"campaign {campaign_id} is {campaign.state}, not waiting for approval")
        nxt = campaign.current_wave + 1
        async with self.pool.acquire() as conn, conn.transaction():
            await store.set_wave(
                conn, campaign_id, nxt, "running", started_at=now, approved_by=principal.username
            )
            await store.set_state(conn, campaign_id, "running", current_wave=nxt)
        return await self.get(principal, campaign_id)

    async def retry(self, principal: Principal, campaign_id: int) -> tuple[CampaignRow, int]:
        """Failed devices go back to pending; a stopped or finished campaign runs again."""
        principal.require(Permission.DEVICES_WRITE)
        campaign = await self.get(principal, campaign_id)
        if campaign.state == "cancelled":
            raise Conflict(f"campaign {campaign_id} was cancelled")
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE firmware_campaign_device SET state = 'pending', reason = NULL, "
                "command_id = NULL, updated_at = now() WHERE campaign_id = $1 AND state = 'failed'",
                campaign_id,
            )
            count = int(status.split()[-1])
            if count and campaign.state in ("stopped", "completed"):
                await store.set_state(
                    conn,
                    campaign_id,
                    "running",
                    stop_reason=None,
                    stopped_at=None,
                    finished_at=None,
                )
                await conn.execute(
                    "UPDATE firmware_campaign_wave SET state = 'running', finished_at = NULL "
                    "WHERE campaign_id = $1 AND wave = $2",
                    campaign_id,
                    campaign.current_wave,
                )
            await store.notify(conn, campaign_id)
        return await self.get(principal, campaign_id), count


CAMPAIGNS: RuntimeKey[Campaigns] = RuntimeKey("firmware campaigns")
