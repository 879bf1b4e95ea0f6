"""Cameras: onboarding, credentials, re-probes, discovery candidates, snapshots and reads.

Every camera is a registry device (kind camera) plus a camera row with its address, its
sealed credentials and what its last probe said. Ward scope comes from the registry:
outside the caller's wards a camera does not exist. Passwords are sealed with the hub's
SecretBox, bound to the camera's uid, and never returned, logged or audited.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from drivers.contract import DeviceEvent, DriverSink, Heartbeat
from drivers.onvif.client import CameraError, CameraProbe, pin_to_host, probe_camera
from drivers.onvif.discovery import discover, normalize_endpoint_ref, parse_targets, scope_value
from drivers.onvif.health import HEARTBEAT_SOURCE
from drivers.onvif.hls import PLAYLIST, SEGMENT_NAME, with_credentials
from drivers.onvif.snapshot import Snapshot, fetch_snapshot
from hub.auth import Permission, Principal, audit
from hub.cameras import store
from hub.cameras.errors import (
    CameraAlreadyOnboarded,
    CameraUnavailable,
    onboarding_error,
    snapshot_error,
    stream_error,
)
from hub.cameras.events import ChangeSignal
from hub.cameras.live import LiveViews, StreamKey
from hub.cameras.nearby import nearby_out
from hub.cameras.schemas import (
    CameraDetail,
    CameraEventOut,
    CameraHealthOut,
    CameraIn,
    CameraMoveOut,
    CameraOut,
    CameraPage,
    CandidateOut,
    CapabilitiesOut,
    CredentialsIn,
    DiscoverIn,
    DiscoveryOut,
    IgnoredOut,
    MoveOut,
    NearbyCamerasOut,
    ProfileOut,
)
from hub.cameras.settings import CameraSettings
from hub.devices import Device, Lifecycle, registry
from hub.errors import (
    Conflict,
    FieldProblem,
    HubError,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from hub.runtime import RuntimeKey
from hub.storage.crypto import SecretBox

log = logging.getLogger("hub.cameras")
MAX_PAGE = 500
MOVE_CHECKS_AT_ONCE = 8
_UID_UNSAFE = re.compile(r"[^a-z0-9._-]+")


MJPEG_BOUNDARY = "iochub-frame"


def pick_profile(profiles: Sequence[dict[str, Any]], which: str) -> dict[str, Any] | None:
    """The sub-stream (the smallest picture with an RTSP URI) or the main one (the largest)."""
    streams = [p for p in profiles if p.get("stream_uri")]
    if not streams:
        return None
    by_size = sorted(streams, key=lambda p: (p.get("width") or 0) * (p.get("height") or 0))
    return by_size[-1] if which == "main" else by_size[0]


def derive_uid(serial: str) -> str | None:
    """cam-<serial>, lower case, in the registry's uid alphabet."""
    slug = _UID_UNSAFE.sub("-", serial.lower()).strip("-._")
    return f"cam-{slug}"[:128] if slug else None


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_refusal(host: str, subnets: Sequence[ipaddress.IPv4Network]) -> str | None:
    """Why the hub must not send camera credentials to this host, or None."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "give the camera's IPv4 address; names are not resolved"
    if not isinstance(ip, ipaddress.IPv4Address):
        return "cameras are reached over IPv4"
    if not any(ip in subnet for subnet in subnets):
        return (
            f"{host} is outside the camera subnets (IOCHUB_CAMERAS__ALLOWED_SUBNETS): "
            "the hub sends camera credentials nowhere else"
        )
    return None


def target_refusal(target: str, subnets: Sequence[ipaddress.IPv4Network]) -> str | None:
    """Why a discovery target may not be probed, or None."""
    text = target.strip()
    try:
        if "/" in text:
            network = ipaddress.IPv4Network(text, strict=False)
            if not any(network.subnet_of(subnet) for subnet in subnets):
                return f"{text} is not inside the camera subnets"
            return None
        if text.count(":") > 1:
            return "discovery is IPv4 only"
        host, _, port = text.partition(":")
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"{port!r} is not a port"
    except ValueError as error:
        return str(error)
    return host_refusal(host, subnets)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def camera_out(row: asyncpg.Record | dict[str, Any]) -> CameraOut:
    capabilities = _json(row["capabilities"]) or {}
    return CameraOut(
        uid=row["uid"],
        name=row["name"],
        ward=row["ward"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        lifecycle=row["lifecycle"],
        status=row["status"],
        status_reason=row["status_reason"],
        last_seen=row["last_seen"],
        host=row["host"],
        port=row["port"],
        username=row["username"],
        endpoint_ref=row["endpoint_ref"],
        manufacturer=row["vendor"],
        model=row["model"],
        firmware=row["firmware_version"],
        serial=row["serial"],
        hardware_id=row["hardware_id"],
        hostname=row["hostname"],
        mac_addresses=list(row["mac_addresses"]),
        capabilities=CapabilitiesOut(
            events=bool(capabilities.get("events")),
            pullpoint=bool(capabilities.get("pullpoint")),
            ptz=bool(capabilities.get("ptz")),
            event_topics=list(capabilities.get("event_topics", [])),
            services=dict(capabilities.get("services", {})),
            unavailable=dict(capabilities.get("unavailable", {})),
        ),
        profiles=[msgspec.convert(p, ProfileOut) for p in _json(row["profiles"]) or []],
        snapshot=f"/api/v1/cameras/{row['uid']}/snapshot" if row["has_snapshot"] else None,
        health=CameraHealthOut(
            state=row["health_state"],
            latency_ms=row["latency_ms"],
            clock_drift_s=row["clock_drift_s"],
            clock_checked_at=row["clock_checked_at"],
            checked_at=row["last_probe_at"],
            error=row["last_error"],
        ),
        onboarded_at=row["onboarded_at"],
    )


def candidate_out(row: asyncpg.Record | dict[str, Any]) -> CandidateOut:
    addresses = list(row["addresses"])
    scopes = list(row["scopes"])
    reachable = next((a for x in addresses if (a := store.xaddr_address(x))), None)
    return CandidateOut(
        id=row["id"],
        endpoint_ref=row["endpoint_ref"],
        addresses=addresses,
        host=reachable[0] if reachable else None,
        port=reachable[1] if reachable else None,
        name=scope_value(scopes, "name"),
        hardware=scope_value(scopes, "hardware"),
        location=scope_value(scopes, "location"),
        scopes=scopes,
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        dismissed=row["dismissed"],
    )


def audit_view(camera: CameraOut) -> dict[str, Any]:
    """What the audit log keeps of a camera: identity and address, never credentials."""
    view: dict[str, Any] = msgspec.to_builtins(camera)
    for transient in ("status", "status_reason", "last_seen", "health", "recent_events"):
        view.pop(transient, None)
    return view


@dataclass
class CameraService:
    pool: asyncpg.Pool
    box: SecretBox
    settings: CameraSettings
    # The hub's sink: a successful probe is news about the camera's health.
    sink: DriverSink | None = None
    changes: ChangeSignal = field(default_factory=ChangeSignal)
    # The health sweep's assessment of some cameras, run once a probe has succeeded.
    assess: Callable[[Sequence[str]], Awaitable[object]] | None = None
    live: LiveViews | None = None
    _discovering: asyncio.Lock = field(default_factory=asyncio.Lock)

    # -- reads ---------------------------------------------------------------------------

    async def list_cameras(
        self,
        principal: Principal,
        *,
        wards: Sequence[str] = (),
        health: str | None = None,
        status: str | None = None,
        lifecycle: str = Lifecycle.ACTIVE.value,
        limit: int = 100,
        cursor: str | None = None,
    ) -> CameraPage:
        principal.require(Permission.DEVICES_READ)
        ward_ids = (await registry.WardDirectory.load()).ids(wards) if wards else None
        scope = sorted(principal.ward_ids) if principal.ward_ids is not None else None
        after = registry.decode_cursor(cursor) if cursor else 0
        limit = min(limit, MAX_PAGE)
        rows = await self.pool.fetch(
            store.CAMERA_VIEW + " WHERE d.lifecycle = $1 AND d.id > $2 "
            "AND ($3::int[] IS NULL OR d.ward_id = ANY($3)) "
            "AND ($4::int[] IS NULL OR d.ward_id = ANY($4)) "
            "AND ($5::text IS NULL OR c.health_state = $5) "
            "AND ($6::text IS NULL OR d.status = $6) ORDER BY d.id LIMIT $7",
            lifecycle,
            after,
            scope,
            ward_ids,
            health,
            status,
            limit + 1,
        )
        page = rows[:limit]
        more = len(rows) > limit
        return CameraPage(
            items=[camera_out(row) for row in page],
            next_cursor=registry.encode_cursor(page[-1]["id"]) if more and page else None,
        )

    async def get_camera(self, principal: Principal, uid: str) -> CameraDetail:
        device = await self._scoped_camera(principal, uid)
        return await self._detail(device.id)

    async def _detail(self, device_id: int) -> CameraDetail:
        row = await self.pool.fetchrow(store.CAMERA_VIEW + " WHERE d.id = $1", device_id)
        if row is None:
            raise NotFound(f"device {device_id} is not an onboarded camera")
        events = await store.recent_events(self.pool, device_id)
        return CameraDetail(
            **msgspec.structs.asdict(camera_out(row)),
            recent_events=[
                CameraEventOut(
                    at=e["at"], kind=e["kind"], active=e["active"], data=_json(e["data"])
                )
                for e in events
            ],
        )

    async def last_moves(
        self, principal: Principal, uids: Sequence[str]
    ) -> dict[str, CameraMoveOut]:
        """The latest move of each of these cameras the caller may see, by uid."""
        principal.require(Permission.DEVICES_READ)
        scope = sorted(principal.ward_ids) if principal.ward_ids is not None else None
        moves = {}
        for row in await store.last_moves(self.pool, uids, scope):
            before, after = _json(row["before"]) or {}, _json(row["after"]) or {}
            moves[row["uid"]] = CameraMoveOut(
                uid=row["uid"],
                at=row["at"],
                from_address=address(str(before.get("host")), int(before.get("port") or 0)),
                to_address=address(str(after.get("host")), int(after.get("port") or 0)),
                actor=row["actor"],
            )
        return moves

    async def _scoped_camera(self, principal: Principal, uid: str) -> Device:
        device = await registry.get_scoped(principal, uid)
        if device.kind != "camera" or not await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM camera WHERE device_id = $1)", device.id
        ):
            raise NotFound(f"{uid!r} is not an onboarded camera")
        return device

    async def snapshot(self, principal: Principal, uid: str) -> Snapshot:
        """One image from the camera, fetched with its stored credentials, bounded."""
        device = await self._scoped_camera(principal, uid)
        access = await store.load_access(self.pool, device.id)
        if access is None or not access.snapshot_uri:
            raise NotFound(f"camera {uid} offers no snapshot")
        password = access.password(self.box)
        if password is None or access.lifecycle != Lifecycle.ACTIVE:
            raise NotFound(f"camera {uid} is decommissioned")
        limit = self.settings.snapshot_max_bytes
        try:
            return await fetch_snapshot(
                access.snapshot_uri,
                access.username,
                password,
                camera_host=access.host,
                max_bytes=limit,
                timeout=self.settings.snapshot_timeout_s,
            )
        except CameraError as error:
            raise snapshot_error(error, uid, limit) from error

    # -- viewing -------------------------------------------------------------------------

    async def _viewable(self, principal: Principal, uid: str) -> tuple[Device, store.CameraAccess]:
        device = await self._scoped_camera(principal, uid)
        access = await store.load_access(self.pool, device.id)
        if access is None or access.lifecycle != Lifecycle.ACTIVE or not access.password_sealed:
            raise NotFound(f"camera {uid} is decommissioned")
        return device, access

    async def _cannot_stream(self, device: Device, error: CameraError) -> CameraUnavailable:
        health = await store.health_of(self.pool, device.id)
        state = health["health_state"] if health else None
        checked = health["last_probe_at"].isoformat() if health and health["last_probe_at"] else ""
        said = f"; last check: {state}" if state else ""
        if checked:
            said += f" at {checked}"
        if health and health["last_error"]:
            said += f" ({health['last_error']})"
        failure = stream_error(error, device.uid)
        failure.detail = f"{failure.detail}{said}"
        failure.args = (failure.detail,)
        return failure

    async def live_playlist(self, principal: Principal, uid: str, which: str) -> bytes:
        """The HLS playlist of the camera's sub (default) or main stream, started on demand."""
        live = self._live()
        device, access = await self._viewable(principal, uid)
        profile = pick_profile(await store.stream_profiles(self.pool, device.id), which)
        if profile is None:
            raise NotFound(f"camera {uid} offers no RTSP stream; use its MJPEG fallback")
        key: StreamKey = (uid, which)

        def source() -> str:
            password = access.password(self.box) or ""
            uri = pin_to_host(str(profile["stream_uri"]), access.host)
            return with_credentials(uri, access.username, password)

        try:
            stream, _ = await live.open(key, source, profile.get("codec"), uid)
        except CameraError as error:
            raise await self._cannot_stream(device, error) from error
        if live.touch(stream, principal):
            await self._audit_view(principal, device, which, "hls")
        try:
            return (stream.directory / PLAYLIST).read_bytes()
        except OSError as error:
            raise NotFound(f"the live stream of camera {uid} just ended; reload") from error

    async def live_segment(self, principal: Principal, uid: str, which: str, name: str) -> Path:
        """One HLS segment of a running stream (ward scope checked on every one)."""
        live = self._live()
        await self._scoped_camera(principal, uid)
        stream = live.running((uid, which))
        if stream is None or not SEGMENT_NAME.fullmatch(name):
            raise NotFound(f"no live segment {name!r} for camera {uid}")
        path = stream.directory / name
        if not path.is_file():
            raise NotFound(f"segment {name} of camera {uid} has expired; reload the playlist")
        live.touch(stream, principal)
        return path

    def _live(self) -> LiveViews:
        if self.live is None:
            raise Unavailable("live camera views are not running on this hub")
        return self.live

    async def _audit_view(self, principal: Principal, device: Device, which: str, via: str) -> None:
        await audit.record(
            principal,
            "camera.view",
            "camera",
            device.uid,
            ward_id=device.ward_id,
            after={"profile": which, "via": via},
        )

    async def view_ended(
        self, principal: Principal, key: StreamKey, since: float, until: float
    ) -> None:
        """Audit the end of someone's live view, with when it began and how long it lasted."""
        ward_id = await self.pool.fetchval("SELECT ward_id FROM device WHERE uid = $1", key[0])
        await audit.record(
            principal,
            "camera.view.end",
            "camera",
            key[0],
            ward_id=ward_id,
            after={
                "profile": key[1],
                "started_at": datetime.fromtimestamp(since, UTC).isoformat(),
                "ended_at": datetime.fromtimestamp(until, UTC).isoformat(),
                "seconds": round(until - since, 1),
            },
        )

    async def mjpeg(self, principal: Principal, uid: str, fps: float) -> AsyncIterator[bytes]:
        """A multipart/x-mixed-replace stream of snapshots at ``fps``, for any ONVIF camera.

        The first image is fetched before this returns, so a camera that cannot send one
        answers with a problem, not with an empty stream.
        """
        device, _ = await self._viewable(principal, uid)
        first = await self.snapshot(principal, uid)
        await self._audit_view(principal, device, "snapshot", "mjpeg")
        interval = 1.0 / fps
        longest = self.settings.mjpeg_max_s

        async def frames() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            started = loop.time()
            image = first
            try:
                while True:
                    began = loop.time()
                    yield (
                        (
                            f"--{MJPEG_BOUNDARY}\r\nContent-Type: {image.content_type}\r\n"
                            f"Content-Length: {image.size}\r\n\r\n"
                        ).encode()
                        + image.content
                        + b"\r\n"
                    )
                    if loop.time() - started >= longest:
                        return
                    await asyncio.sleep(max(0.0, interval - (loop.time() - began)))
                    try:
                        image = await self.snapshot(principal, uid)
                    except HubError as error:
                        log.info("MJPEG view of %s ended: %s", uid, error.detail)
                        return
            finally:
                now = datetime.now(UTC).timestamp()
                await self.view_ended(principal, (uid, "mjpeg"), now - (loop.time() - started), now)

        return frames()

    async def nearby(
        self,
        principal: Principal,
        *,
        latitude: float | None,
        longitude: float | None,
        device_uid: str | None,
        radius_m: float | None,
        alert_id: int | None = None,
    ) -> NearbyCamerasOut:
        """The cameras within the radius of a point, a device or an alert's device,
        nearest first."""
        principal.require(Permission.DEVICES_READ)
        radius = radius_m or self.settings.near_radius_m
        exclude = None
        if alert_id is not None:
            place = await store.alert_place(self.pool, alert_id)
            if place is None or not principal.sees_ward(place["ward_id"]):
                raise NotFound(f"no alert {alert_id}")
            device_uid = str(place["device_uid"])
        if device_uid is not None:
            device = await registry.get_scoped(principal, device_uid)
            if device.latitude is None or device.longitude is None:
                raise ValidationFailed(
                    f"device {device_uid} has no location",
                    [FieldProblem("device", "the device has no coordinates in the registry")],
                )
            latitude, longitude, exclude = device.latitude, device.longitude, device.uid
        if latitude is None or longitude is None:
            raise ValidationFailed(
                "say where: an alert, a device, or a latitude and a longitude",
                [FieldProblem("lat", "give lat and lon, or device, or alert")],
            )
        scope = sorted(principal.ward_ids) if principal.ward_ids is not None else None
        found = await store.cameras_near(
            self.pool, latitude, longitude, radius, ward_ids=scope, exclude_uid=exclude
        )
        return NearbyCamerasOut(
            latitude=latitude,
            longitude=longitude,
            radius_m=radius,
            items=[nearby_out(camera) for camera in found],
        )

    # -- onboarding and changes ------------------------------------------------------------

    async def _probe(self, host: str, port: int, username: str, password: str) -> CameraProbe:
        try:
            return await probe_camera(host, port, username, password, self.settings.probe_timeout_s)
        except CameraError as error:
            log.info("probe of %s failed: %s", address(host, port), error)
            raise onboarding_error(error, host, port) from error

    def _check_host(self, host: str) -> None:
        reason = host_refusal(host, self.settings.subnets())
        if reason:
            raise ValidationFailed(
                "the hub will not contact that address", [FieldProblem("host", reason)]
            )

    async def onboard(self, principal: Principal, data: CameraIn) -> tuple[CameraDetail, bool]:
        """Probe the camera and register it; (camera, True) when it is new.

        A camera onboarded already (same serial number or endpoint reference) is not
        registered twice: at its stored address it is a Conflict naming its uid; found at
        another address, its stored address and credentials are moved there (False).
        """
        principal.require(Permission.DEVICES_WRITE)
        wards = await registry.WardDirectory.load()
        ward_id = wards.ids([data.ward])[0]
        principal.require_wards([ward_id])
        problems = registry.check_location(data.latitude, data.longitude)
        if problems:
            raise ValidationFailed("the camera cannot be saved as given", problems)
        endpoint_ref, host, port = await self._resolve_address(data)
        self._check_host(host)
        probe = await self._probe(host, port, data.username, data.password)
        endpoint_ref = endpoint_ref or await store.candidate_at(self.pool, host, port)

        known = await store.find_known(self.pool, probe.serial, endpoint_ref)
        if known is not None:
            if known.lifecycle != Lifecycle.ACTIVE:
                raise Conflict(
                    f"this camera was decommissioned as {known.uid}; the registry keeps its "
                    "history under that uid",
                    [FieldProblem("uid", f"the camera was {known.uid}")],
                )
            if (known.host, known.port) == (host, port):
                raise CameraAlreadyOnboarded(
                    f"this camera is onboarded already as {known.uid}", known.uid
                )
            moved = await self._move(
                principal, known, probe, (data.username, data.password), endpoint_ref
            )
            return moved, False
        if probe.serial and (
            registered := await store.camera_device_with_serial(self.pool, probe.serial)
        ):
            raise Conflict(
                f"a camera with serial {probe.serial} is registered as {registered} without "
                "ONVIF access; decommission it or give this one another serial",
                [FieldProblem("uid", f"the camera is {registered}")],
            )
        uid = data.uid or derive_uid(probe.serial)
        if uid is None:
            raise ValidationFailed(
                "the camera reports no serial number to derive its uid from",
                [FieldProblem("uid", "give the camera a uid")],
            )
        if await Device.filter(uid=uid).exists():
            raise Conflict(
                f"a device with uid {uid!r} exists already",
                [FieldProblem("uid", "choose another uid")],
            )
        sealed = self.box.seal(data.password, store.camera_context(uid))
        try:
            async with in_transaction() as conn:
                device = await Device.create(
                    uid=uid,
                    kind="camera",
                    name=data.name or f"{probe.manufacturer} {probe.model}".strip(),
                    serial=probe.serial or None,
                    vendor=probe.manufacturer,
                    model=probe.model,
                    firmware_version=probe.firmware,
                    ward_id=ward_id,
                    latitude=data.latitude,
                    longitude=data.longitude,
                    endpoint=store.device_endpoint(probe),
                    tags=sorted(set(data.tags)),
                    lifecycle=Lifecycle.ACTIVE.value,
                    discovered_from="onvif-discovery" if endpoint_ref else "onvif-onboarding",
                    using_db=conn,
                )
                await store.insert_camera(
                    conn, device.id, probe, data.username, sealed, endpoint_ref
                )
                if endpoint_ref:
                    await store.delete_candidate(conn, endpoint_ref)
                row = await conn.execute_query_dict(
                    store.CAMERA_VIEW + " WHERE d.id = $1", [device.id]
                )
                await audit.record(
                    principal,
                    "camera.onboard",
                    "camera",
                    uid,
                    ward_id=ward_id,
                    after=audit_view(camera_out(row[0])),
                    connection=conn,
                )
        except IntegrityError as error:
            raise Conflict(f"the camera clashes with one registered meanwhile: {error}") from error
        log.info("onboarded camera %s at %s", uid, address(host, port), extra={"device_uid": uid})
        self.changes.notify()
        await self._report_up(uid, probe)
        return await self._detail(device.id), True

    async def _resolve_address(self, data: CameraIn) -> tuple[str | None, str, int]:
        """(endpoint reference, host, port) from the request and the candidate it names."""
        if data.candidate is None:
            if data.host is None:
                raise ValidationFailed(
                    "say where the camera is", [FieldProblem("host", "give host, or a candidate")]
                )
            return None, data.host, data.port or 80
        endpoint_ref = normalize_endpoint_ref(data.candidate)
        candidate = await store.candidate_by_ref(self.pool, endpoint_ref)
        if candidate is None:
            raise ValidationFailed(
                "no such discovered camera",
                [FieldProblem("candidate", "not among the candidates; run a discovery first")],
            )
        advertised = next(
            (a for x in candidate["addresses"] if (a := store.xaddr_address(x))), None
        )
        host = data.host or (advertised[0] if advertised else None)
        if host is None:
            raise ValidationFailed(
                "the candidate advertises no usable address", [FieldProblem("host", "give host")]
            )
        port = data.port or (advertised[1] if advertised and advertised[0] == host else 80)
        return endpoint_ref, host, port

    async def _move(
        self,
        principal: Principal,
        known: store.CameraAccess,
        probe: CameraProbe,
        credentials: tuple[str, str] | None,
        endpoint_ref: str | None,
    ) -> CameraDetail:
        """Store a camera's new address (its probe there just succeeded)."""
        before = {"host": known.host, "port": known.port}
        after: dict[str, Any] = {"host": probe.host, "port": probe.port}
        async with in_transaction() as conn:
            await store.apply_probe(conn, known.device_id, probe)
            if credentials is not None:
                username, password = credentials
                sealed = self.box.seal(password, store.camera_context(known.uid))
                await store.set_credentials(conn, known.device_id, username, sealed)
                after["credentials_replaced"] = True
            if endpoint_ref and known.endpoint_ref is None:
                await store.link_endpoint(conn, known.device_id, endpoint_ref)
                await store.delete_candidate(conn, endpoint_ref)
            await audit.record(
                principal,
                "camera.move",
                "camera",
                known.uid,
                ward_id=await self._ward_of(known.device_id),
                before=before,
                after=after,
                connection=conn,
            )
        log.info(
            "camera %s moved from %s to %s",
            known.uid,
            address(known.host, known.port),
            address(probe.host, probe.port),
        )
        self.changes.notify()
        await self._report_up(known.uid, probe)
        return await self._detail(known.device_id)

    async def _ward_of(self, device_id: int) -> int | None:
        ward_id: int | None = await self.pool.fetchval(
            "SELECT ward_id FROM device WHERE id = $1", device_id
        )
        return ward_id

    async def _usable(self, principal: Principal, uid: str) -> tuple[Device, store.CameraAccess]:
        principal.require(Permission.DEVICES_WRITE)
        device = await self._scoped_camera(principal, uid)
        access = await store.load_access(self.pool, device.id)
        if access is None or access.lifecycle != Lifecycle.ACTIVE:
            raise Conflict(f"camera {uid} is decommissioned")
        return device, access

    def _check_same_camera(self, access: store.CameraAccess, probe: CameraProbe) -> None:
        if access.serial and probe.serial and access.serial != probe.serial:
            raise Conflict(
                f"another camera (serial {probe.serial}) answers at "
                f"{address(probe.host, probe.port)}, not {access.uid} (serial {access.serial}): "
                "onboard it as a new camera, and find where this one went",
                [FieldProblem("serial", f"expected {access.serial}, found {probe.serial}")],
            )

    async def reprobe(self, principal: Principal, uid: str) -> CameraDetail:
        """Read the camera again with its stored credentials: firmware, profiles, features."""
        device, access = await self._usable(principal, uid)
        password = access.password(self.box)
        assert password is not None
        before = audit_view(await self._detail(device.id))
        probe = await self._probe(access.host, access.port, access.username, password)
        self._check_same_camera(access, probe)
        async with in_transaction() as conn:
            await store.apply_probe(conn, device.id, probe)
            row = await conn.execute_query_dict(store.CAMERA_VIEW + " WHERE d.id = $1", [device.id])
            await audit.record(
                principal,
                "camera.reprobe",
                "camera",
                uid,
                ward_id=device.ward_id,
                before=before,
                after=audit_view(camera_out(row[0])),
                connection=conn,
            )
        self.changes.notify()
        await self._report_up(uid, probe)
        return await self._detail(device.id)

    async def update_credentials(
        self, principal: Principal, uid: str, data: CredentialsIn
    ) -> CameraDetail:
        """Store new credentials once the camera has accepted them."""
        device, access = await self._usable(principal, uid)
        probe = await self._probe(access.host, access.port, data.username, data.password)
        self._check_same_camera(access, probe)
        sealed = self.box.seal(data.password, store.camera_context(uid))
        async with in_transaction() as conn:
            await store.apply_probe(conn, device.id, probe)
            await store.set_credentials(conn, device.id, data.username, sealed)
            await audit.record(
                principal,
                "camera.credentials",
                "camera",
                uid,
                ward_id=device.ward_id,
                before={"username": access.username},
                after={"username": data.username, "password": "replaced"},
                connection=conn,
            )
        self.changes.notify()
        await self._report_up(uid, probe)
        if "auth_failed" in (await store.faults_of(self.pool, [uid])).get(uid, []):
            await self._tell(
                DeviceEvent(
                    uid, datetime.now(UTC), "auth_failed", False, {"reason": "credentials updated"}
                )
            )
        return await self._detail(device.id)

    async def decommission(self, principal: Principal, uid: str) -> CameraDetail:
        """Decommission through the registry, then forget the camera's password."""
        device, _ = await self._usable(principal, uid)
        await registry.remove_device(principal, uid)
        await store.forget_password(self.pool, device.id)
        self.changes.notify()
        return await self._detail(device.id)

    async def _report_up(self, uid: str, probe: CameraProbe) -> None:
        """After a probe, the same health assessment a sweep makes (clock drift included).

        Without a health service, the probe itself is the news: up, credentials accepted.
        """
        if self.assess is not None:
            try:
                await self.assess([uid])
                return
            except Exception:
                log.warning("health assessment of camera %s failed", uid, exc_info=True)
        drift = None if probe.clock_drift_s is None else round(probe.clock_drift_s, 1)
        detail = {"state": "up_auth", "latency_ms": None, "clock_drift_s": drift, "reason": None}
        await self._tell(Heartbeat(uid, datetime.now(UTC), True, HEARTBEAT_SOURCE, detail))

    async def _tell(self, news: Heartbeat | DeviceEvent) -> None:
        if self.sink is None:
            return
        try:
            if isinstance(news, Heartbeat):
                await self.sink.heartbeat(news)
            else:
                await self.sink.event(news)
        except Exception:
            log.warning("the hub did not take news of camera %s", news.device_uid, exc_info=True)

    # -- discovery -----------------------------------------------------------------------

    async def discover(self, principal: Principal, data: DiscoverIn) -> DiscoveryOut:
        """Probe the network, record cameras not onboarded yet, follow cameras that moved."""
        principal.require(Permission.DEVICES_WRITE)
        subnets = self.settings.subnets()
        problems = [
            FieldProblem(f"targets[{index}]", reason)
            for index, target in enumerate(data.targets)
            if (reason := target_refusal(target, subnets))
        ]
        if problems:
            raise ValidationFailed("the hub will not probe those targets", problems)
        targets = [*self.settings.discovery_targets, *data.targets]
        interfaces = self.settings.discovery_interfaces if data.multicast else []
        if not targets and not interfaces:
            raise ValidationFailed(
                "nothing to probe",
                [
                    FieldProblem(
                        "targets",
                        "give targets, or configure IOCHUB_CAMERAS__DISCOVERY_TARGETS or "
                        "IOCHUB_CAMERAS__DISCOVERY_INTERFACES",
                    )
                ],
            )
        try:
            parse_targets(targets, self.settings.discovery_port)
        except ValueError as error:
            raise ValidationFailed(str(error), [FieldProblem("targets", str(error))]) from error
        async with self._discovering:
            try:
                report = await discover(
                    allowed_subnets=subnets,
                    interfaces=interfaces,
                    unicast_targets=targets,
                    wait=data.wait_s or self.settings.discovery_wait_s,
                    port=self.settings.discovery_port,
                )
            except OSError as error:
                raise Unavailable(f"discovery could not use the network: {error}") from error

        refs = [found.endpoint_ref for found in report.found]
        advertised = {
            found.endpoint_ref: [a for x in found.addresses if (a := store.xaddr_address(x))]
            for found in report.found
        }
        onboarded = await store.cameras_for_discovery(
            self.pool,
            refs,
            [address(*a) for addresses in advertised.values() for a in addresses],
        )
        by_ref = {c.endpoint_ref: c for c in onboarded if c.endpoint_ref}
        by_address = {(c.host, c.port): c for c in onboarded if c.endpoint_ref is None}

        known: list[str] = []
        moves: list[tuple[store.CameraAccess, str, tuple[str, int]]] = []
        candidates: list[CandidateOut] = []
        new_candidates: list[str] = []
        now = datetime.now(UTC)
        async with in_transaction() as conn:
            for found in report.found:
                places = advertised[found.endpoint_ref]
                camera = by_ref.get(found.endpoint_ref) or next(
                    (by_address[p] for p in places if p in by_address), None
                )
                if camera is None:
                    row = await store.upsert_candidate(
                        conn, found.endpoint_ref, found.addresses, found.scopes, found.serial, now
                    )
                    candidates.append(candidate_out(row))
                    if row["first_seen"] == now:
                        new_candidates.append(found.endpoint_ref)
                elif camera.lifecycle != Lifecycle.ACTIVE:
                    continue
                elif (camera.host, camera.port) in places:
                    known.append(camera.uid)
                    if camera.endpoint_ref is None:
                        await store.link_endpoint(conn, camera.device_id, found.endpoint_ref)
                elif places:
                    moves.append((camera, found.endpoint_ref, places[0]))
            await audit.record(
                principal,
                "camera.discover",
                "camera",
                "discovery",
                after={
                    "targets": targets,
                    "multicast": bool(interfaces),
                    "found": len(report.found),
                    "new_candidates": new_candidates,
                    "moved": [camera.uid for camera, _, _ in moves],
                },
                connection=conn,
            )

        checks = asyncio.Semaphore(MOVE_CHECKS_AT_ONCE)

        async def follow(move: tuple[store.CameraAccess, str, tuple[str, int]]) -> MoveOut:
            async with checks:
                return await self._follow_move(principal, *move)

        moved = list(await asyncio.gather(*(follow(move) for move in moves)))
        return DiscoveryOut(
            found=len(report.found),
            candidates=candidates,
            known=sorted(known),
            moved=moved,
            filtered=[IgnoredOut(f.xaddr, f.reason) for f in report.filtered],
            skipped=[IgnoredOut(s.sender, s.reason) for s in report.skipped],
        )

    async def _follow_move(
        self,
        principal: Principal,
        camera: store.CameraAccess,
        endpoint_ref: str,
        place: tuple[str, int],
    ) -> MoveOut:
        """Move a camera to where discovery heard it, once it proves to be the same camera."""
        host, port = place
        outcome = MoveOut(camera.uid, address(camera.host, camera.port), address(host, port), False)
        password = camera.password(self.box)
        if password is None:
            return msgspec.structs.replace(outcome, reason="the camera has no stored credentials")
        try:
            probe = await probe_camera(
                host, port, camera.username, password, self.settings.probe_timeout_s
            )
        except CameraError as error:
            return msgspec.structs.replace(outcome, reason=str(error))
        try:
            self._check_same_camera(camera, probe)
        except Conflict as conflict:
            return msgspec.structs.replace(outcome, reason=conflict.detail)
        await self._move(principal, camera, probe, None, endpoint_ref)
        return msgspec.structs.replace(outcome, moved=True)

    async def list_candidates(
        self, principal: Principal, include_dismissed: bool = False
    ) -> list[CandidateOut]:
        principal.require(Permission.DEVICES_WRITE)
        return [
            candidate_out(row) for row in await store.list_candidates(self.pool, include_dismissed)
        ]

    async def dismiss_candidate(self, principal: Principal, candidate_id: int) -> CandidateOut:
        """Hide a discovered camera nobody wants onboarded; it stays hidden when seen again."""
        principal.require(Permission.DEVICES_WRITE)
        async with in_transaction() as conn:
            row = await store.dismiss_candidate(conn, candidate_id, principal.username)
            if row is None:
                raise NotFound(f"no camera candidate {candidate_id}")
            await audit.record(
                principal,
                "camera.candidate.dismiss",
                "camera_candidate",
                candidate_id,
                after={"endpoint_ref": row["endpoint_ref"], "addresses": list(row["addresses"])},
                connection=conn,
            )
        return candidate_out(row)


CAMERAS: RuntimeKey[CameraService] = RuntimeKey("the camera service")
