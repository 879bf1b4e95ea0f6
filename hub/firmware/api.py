"""Firmware routes under /api/v1/firmware: catalog, compliance, windows, campaigns."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time
from typing import Annotated, Any, TypeAlias

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.response import File, Response

from hub.auth import CurrentUser, Permission
from hub.errors import FieldProblem, NotFound, ValidationFailed
from hub.firmware import store
from hub.firmware.artifacts import ARTIFACT_PATH, ARTIFACT_SIGNER
from hub.firmware.campaigns import CAMPAIGNS, Campaigns
from hub.firmware.compliance import CatalogRelease, Compliance, ComplianceState
from hub.firmware.schemas import (
    CampaignCreated,
    CampaignDeviceOut,
    CampaignIn,
    CampaignOut,
    CompliancePage,
    CveOut,
    DeviceComplianceOut,
    KindName,
    ReleaseOut,
    StateName,
    SummaryOut,
    WaveOut,
    WindowIn,
    WindowOut,
)
from hub.firmware.service import FIRMWARE, FirmwareService
from hub.firmware.store import CampaignRow
from hub.runtime import runtime_of, slice_object

Firmware: TypeAlias = NamedDependency[FirmwareService]
WardParam = Annotated[str, PathParameter(max_length=64, description="The ward's code.")]
MAX_PAGE = 1000


def cves_out(release: CatalogRelease | None) -> list[CveOut]:
    if release is None:
        return []
    return [
        CveOut(c.id, c.cvss, c.severity.value, c.summary, c.source)
        for c in sorted(release.cves, key=lambda c: (-c.cvss, c.id))
    ]


def release_out(release: CatalogRelease) -> ReleaseOut:
    row = release.row
    return ReleaseOut(
        id=row.id,
        vendor=row.vendor,
        model=row.model,
        kind=row.kind,
        version=row.version,
        released_on=row.released_on,
        min_version=row.min_version,
        end_of_support=row.end_of_support,
        notes=row.notes,
        prerelease=release.version.is_prerelease,
        artifact_size=row.artifact_size,
        artifact_sha256=row.artifact_sha256,
        artifact_url=row.artifact_url,
        signature_key=row.signature_key,
        vulnerabilities=cves_out(release),
    )


def compliance_out(item: Compliance) -> DeviceComplianceOut:
    d = item.device
    return DeviceComplianceOut(
        uid=d.uid,
        kind=d.kind,
        ward=d.ward,
        vendor=d.vendor,
        model=d.model,
        version=d.firmware_version,
        state=item.state.value,
        reason=item.reason,
        latest_version=None if item.latest is None else item.latest.row.version,
        versions_behind=item.versions_behind,
        days_behind=item.days_behind,
        end_of_support=item.end_of_support,
        worst_severity=None if item.worst_severity is None else item.worst_severity.value,
        vulnerabilities=cves_out(item.release),
    )


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


class FirmwareController(Controller):
    path = "/api/v1/firmware"
    tags = ["firmware"]
    dependencies = {"firmware": Provide(slice_object(FIRMWARE), sync_to_thread=False)}

    @get("/catalog")
    async def catalog(
        self,
        principal: CurrentUser,
        firmware: Firmware,
        kind: FromQuery[KindName | None] = None,
        model: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> list[ReleaseOut]:
        """Every imported release, per model newest first, with its known CVEs."""
        principal.require(Permission.DEVICES_READ)
        catalog = await firmware.catalog()
        models = sorted(
            catalog.models.values(),
            key=lambda rs: (rs[0].row.kind, rs[0].row.vendor, rs[0].row.model),
        )
        return [
            release_out(release)
            for releases in models
            for release in reversed(releases)
            if (kind is None or release.row.kind == kind)
            and (model is None or release.row.model == model)
        ]

    @get("/devices")
    async def devices(
        self,
        principal: CurrentUser,
        firmware: Firmware,
        ward: Annotated[
            list[str] | None, QueryParameter(description="Ward code; repeat for several.")
        ] = None,
        kind: FromQuery[KindName | None] = None,
        states: Annotated[
            list[StateName] | None,
            QueryParameter(query="state", description="Compliance state; repeatable."),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> CompliancePage:
        """Each device in the wards you serve against the catalog: current, outdated (how
        far behind), vulnerable (which CVEs), end of support, or unknown model/version."""
        principal.require(Permission.DEVICES_READ)
        items = await firmware.compliance(principal, ward_codes=ward or (), kind=kind)
        counts = Counter(i.state.value for i in items)
        if states:
            items = [i for i in items if i.state.value in states]
        return CompliancePage(
            items=[compliance_out(i) for i in items[offset : offset + limit]],
            total=len(items),
            counts={s.value: counts.get(s.value, 0) for s in ComplianceState},
        )

    @get("/devices/{uid:str}")
    async def device(
        self,
        principal: CurrentUser,
        firmware: Firmware,
        uid: Annotated[str, PathParameter(max_length=128)],
    ) -> DeviceComplianceOut:
        """One device's firmware compliance."""
        principal.require(Permission.DEVICES_READ)
        return compliance_out(await firmware.device(principal, uid))

    @get("/summary")
    async def summary(self, principal: CurrentUser, firmware: Firmware) -> list[SummaryOut]:
        """Device counts per compliance state, per ward × kind × model."""
        principal.require(Permission.DEVICES_READ)
        return [
            SummaryOut(r.ward, r.kind, r.vendor, r.model, r.total, r.counts)
            for r in await firmware.summary(principal)
        ]

    @get("/windows")
    async def windows(self, principal: CurrentUser, firmware: Firmware) -> list[WindowOut]:
        """Maintenance windows (local time) of the wards you serve that have one."""
        principal.require(Permission.DEVICES_READ)
        spans = await firmware.windows(principal)
        return [WindowOut(w, _hhmm(a), _hhmm(b)) for w, (a, b) in sorted(spans.items())]

    @put("/windows/{ward:str}")
    async def set_window(
        self,
        principal: CurrentUser,
        firmware: Firmware,
        ward: WardParam,
        data: JSONBody[WindowIn],
    ) -> WindowOut:
        """Allow updates in this ward only between starts and ends, local time."""
        principal.require(Permission.DEVICES_WRITE)
        starts, ends = time.fromisoformat(data.starts), time.fromisoformat(data.ends)
        if starts == ends:
            raise ValidationFailed(
                "an empty window", [FieldProblem("ends", "must differ from starts")]
            )
        await firmware.set_window(principal, ward, (starts, ends))
        return WindowOut(ward, data.starts, data.ends)

    @delete("/windows/{ward:str}", status_code=204)
    async def clear_window(
        self, principal: CurrentUser, firmware: Firmware, ward: WardParam
    ) -> None:
        """Let updates start in this ward at any hour."""
        principal.require(Permission.DEVICES_WRITE)
        await firmware.set_window(principal, ward, None)


# ---------------------------------------------------------------------------- campaigns


CampaignsDep: TypeAlias = NamedDependency[Campaigns]
CampaignParam = Annotated[int, PathParameter(ge=1, description="The campaign's id.")]


async def campaign_out(campaigns: Campaigns, campaign: CampaignRow) -> CampaignOut:
    async with campaigns.pool.acquire() as conn:
        counts = await store.wave_counts(conn, campaign.id)
        waves = await store.waves(conn, campaign.id)
    total: Counter[str] = Counter()
    for per_wave in counts.values():
        total.update(per_wave)
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        state=campaign.state,
        vendor=campaign.vendor,
        model=campaign.model,
        version=campaign.version,
        current_wave=campaign.current_wave,
        require_approval=campaign.require_approval,
        success_percent=campaign.success_percent,
        error_percent=campaign.error_percent,
        max_ward_percent=campaign.max_ward_percent,
        broadcast_guard_min=campaign.broadcast_guard_s / 60,
        use_windows=campaign.use_windows,
        device_timeout_s=campaign.device_timeout_s,
        stop_reason=campaign.stop_reason,
        created_by=campaign.created_by,
        created_at=campaign.created_at,
        finished_at=campaign.finished_at,
        counts=dict(total),
        waves=[
            WaveOut(
                wave=w["wave"],
                size=w["size"],
                state=w["state"],
                counts=counts.get(w["wave"], {}),
                started_at=w["started_at"],
                finished_at=w["finished_at"],
                approved_by=w["approved_by"],
            )
            for w in waves
        ],
    )


def device_out(row: Any) -> CampaignDeviceOut:
    return CampaignDeviceOut(
        uid=row["uid"],
        ward=row["ward"],
        wave=row["wave"],
        state=row["state"],
        from_version=row["from_version"],
        reported_version=row["reported_version"],
        attempts=row["attempts"],
        reason=row["reason"],
        updated_at=row["updated_at"],
    )


class CampaignController(Controller):
    path = "/api/v1/firmware/campaigns"
    tags = ["firmware"]
    dependencies = {"campaigns": Provide(slice_object(CAMPAIGNS), sync_to_thread=False)}

    @post("", status_code=201)
    async def create(
        self, principal: CurrentUser, campaigns: CampaignsDep, data: JSONBody[CampaignIn]
    ) -> CampaignCreated:
        """Plan a staged rollout of one release to a model's devices (wards, a group or a
        list): a canary wave first, then growing waves. Devices that must not get it (other
        model, below the minimum version, already on it) are listed as refused."""
        created = await campaigns.create(principal, data)
        refused = [
            CampaignDeviceOut(
                d.uid,
                d.ward,
                0,
                "refused",
                d.firmware_version,
                None,
                0,
                why,
                created.campaign.created_at,
            )
            for d, why in created.refused
        ]
        return CampaignCreated(await campaign_out(campaigns, created.campaign), refused)

    @get("")
    async def list_campaigns(
        self, principal: CurrentUser, campaigns: CampaignsDep
    ) -> list[CampaignOut]:
        """Campaigns whose devices are all in wards you serve, newest first."""
        principal.require(Permission.DEVICES_READ)
        return [await campaign_out(campaigns, c) for c in await campaigns.list(principal)]

    @get("/{campaign_id:int}")
    async def get_campaign(
        self, principal: CurrentUser, campaigns: CampaignsDep, campaign_id: CampaignParam
    ) -> CampaignOut:
        """A campaign with its waves and per-state counts."""
        principal.require(Permission.DEVICES_READ)
        return await campaign_out(campaigns, await campaigns.get(principal, campaign_id))

    @get("/{campaign_id:int}/devices")
    async def devices(
        self,
        principal: CurrentUser,
        campaigns: CampaignsDep,
        campaign_id: CampaignParam,
        states: Annotated[list[str] | None, QueryParameter(query="state", max_length=20)] = None,
    ) -> list[CampaignDeviceOut]:
        """Every device of a campaign: its wave, state, attempts and the reason."""
        principal.require(Permission.DEVICES_READ)
        campaign = await campaigns.get(principal, campaign_id)
        async with campaigns.pool.acquire() as conn:
            rows = await store.campaign_devices(conn, campaign.id, states)
        return [device_out(row) for row in rows]

    @post("/{campaign_id:int}/pause", status_code=200)
    async def pause(
        self, principal: CurrentUser, campaigns: CampaignsDep, campaign_id: CampaignParam
    ) -> CampaignOut:
        """Start no more devices (those updating finish)."""
        return await campaign_out(campaigns, await campaigns.pause(principal, campaign_id))

    @post("/{campaign_id:int}/resume", status_code=200)
    async def resume(
        self, principal: CurrentUser, campaigns: CampaignsDep, campaign_id: CampaignParam
    ) -> CampaignOut:
        return await campaign_out(campaigns, await campaigns.resume(principal, campaign_id))

    @post("/{campaign_id:int}/cancel", status_code=200)
    async def cancel(
        self, principal: CurrentUser, campaigns: CampaignsDep, campaign_id: CampaignParam
    ) -> CampaignOut:
        """Stop for good: pending devices are dropped, those not yet installing are told to
        abandon the update; those installing finish (an interrupted install bricks)."""
        return await campaign_out(
            campaigns, await campaigns.cancel(principal, campaign_id, datetime.now(UTC))
        )

    @post("/{campaign_id:int}/approve", status_code=200)
    async def approve(
        self, principal: CurrentUser, campaigns: CampaignsDep, campaign_id: CampaignParam
    ) -> CampaignOut:
        """Let a campaign that requires approval start its next wave."""
        return await campaign_out(
            campaigns, await campaigns.approve(principal, campaign_id, datetime.now(UTC))
        )

    @post("/{campaign_id:int}/retry", status_code=200)
    async def retry(
        self, principal: CurrentUser, campaigns: CampaignsDep, campaign_id: CampaignParam
    ) -> CampaignOut:
        """Send the firmware again to the devices that failed."""
        campaign, _ = await campaigns.retry(principal, campaign_id)
        return await campaign_out(campaigns, campaign)


@get(
    ARTIFACT_PATH + "/{release_id:int}",
    exclude_from_auth=True,
    tags=["firmware"],
    media_type="application/octet-stream",
    security=[],
)
async def firmware_artifact(
    request: Request[Any, Any, Any],
    release_id: Annotated[int, PathParameter(ge=1)],
    device: Annotated[str, QueryParameter(max_length=128)],
    expires: Annotated[int, QueryParameter(ge=0)],
    sig: Annotated[str, QueryParameter(max_length=128)],
) -> File | Response[bytes]:
    """A firmware image, for devices: the signed link is the authorisation."""
    hub = runtime_of(request)
    hub.get(ARTIFACT_SIGNER).verify(release_id, device, expires, sig)
    campaigns = hub.get(CAMPAIGNS)

    async def load(release_id: int) -> store.ReleaseRow | None:
        async with campaigns.pool.acquire() as conn:
            return await store.release(conn, release_id)

    release = await campaigns.artifacts.release(release_id, load)
    if release is None:
        raise NotFound(f"no release {release_id}")
    image = campaigns.artifacts.image(release)
    name = campaigns.artifacts.path(release).name
    if isinstance(image, bytes):
        return Response(
            image,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return File(image, media_type="application/octet-stream", filename=name)
