"""SQL for the camera tables (migration 0007_cameras.sql).

Reads go through the asyncpg pool; writes take the tortoise transaction of the change
so that the camera row, the registry row and the audit entry land together. Only
`load_access` and `load_targets` read the sealed password, and nothing here returns it
in the clear except `load_targets`, whose CameraTargets go straight to the driver.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from tortoise.backends.base.client import BaseDBAsyncClient

from drivers.onvif.client import CameraProbe, CameraTarget, pin_to_host
from drivers.onvif.health import CameraHealth
from hub.storage.crypto import SecretBox, SecretBoxError

log = logging.getLogger("hub.cameras")

# Every column an API answer shows; the password is not among them.
CAMERA_VIEW = """
SELECT d.id, d.uid, d.name, w.code AS ward, d.latitude, d.longitude, d.lifecycle, d.status,
       d.status_reason, d.last_seen, d.vendor, d.model, d.firmware_version, d.serial,
       c.host, c.port, c.username, c.endpoint_ref, c.hardware_id, c.hostname, c.mac_addresses,
       c.capabilities, c.profiles, c.snapshot_uri IS NOT NULL AS has_snapshot, c.health_state,
       c.latency_ms, c.clock_drift_s, c.clock_checked_at, c.last_probe_at, c.last_error, c.onboarded_at
FROM camera c
JOIN device d ON d.id = c.device_id
LEFT JOIN ward w ON w.id = d.ward_id
"""


def camera_context(uid: str) -> str:
    """What a camera's sealed password is bound to: it opens only for this camera."""
    return f"camera:{uid}"


@dataclass(frozen=True, slots=True)
class CameraAccess:
    """How to reach one camera; the password stays sealed until the moment it is used."""

    device_id: int
    uid: str
    lifecycle: str
    serial: str | None
    host: str
    port: int
    username: str
    password_sealed: str | None = field(repr=False)
    endpoint_ref: str | None
    snapshot_uri: str | None

    def password(self, box: SecretBox) -> str | None:
        if self.password_sealed is None:
            return None
        return box.open(self.password_sealed, camera_context(self.uid))


_ACCESS = """
SELECT d.id AS device_id, d.uid, d.lifecycle, d.serial, c.host, c.port, c.username,
       c.password_sealed, c.endpoint_ref, c.snapshot_uri
FROM camera c JOIN device d ON d.id = c.device_id
"""


def _access(row: asyncpg.Record | dict[str, Any]) -> CameraAccess:
    return CameraAccess(**{key: row[key] for key in CameraAccess.__slots__})


async def load_access(pool: asyncpg.Pool, device_id: int) -> CameraAccess | None:
    row = await pool.fetchrow(_ACCESS + " WHERE d.id = $1", device_id)
    return _access(row) if row is not None else None


async def find_known(
    pool: asyncpg.Pool, serial: str | None, endpoint_ref: str | None
) -> CameraAccess | None:
    """The onboarded camera with this endpoint reference or serial number, if any."""
    row = await pool.fetchrow(
        _ACCESS + " WHERE ($1::text IS NOT NULL AND c.endpoint_ref = $1) "
        "OR ($2::text IS NOT NULL AND d.kind = 'camera' AND d.serial = $2) "
        "ORDER BY (c.endpoint_ref = $1) DESC NULLS LAST LIMIT 1",
        endpoint_ref,
        serial or None,
    )
    return _access(row) if row is not None else None


async def camera_device_with_serial(pool: asyncpg.Pool, serial: str) -> str | None:
    """The uid of a camera registered (imported, say) without ONVIF access, by serial."""
    uid: str | None = await pool.fetchval(
        "SELECT uid FROM device WHERE kind = 'camera' AND serial = $1", serial
    )
    return uid


async def cameras_for_discovery(
    pool: asyncpg.Pool, endpoint_refs: Sequence[str], addresses: Sequence[str]
) -> list[CameraAccess]:
    """Onboarded cameras known by one of the references, or sitting at one of the addresses."""
    rows = await pool.fetch(
        _ACCESS + " WHERE c.endpoint_ref = ANY($1::text[]) "
        "OR (c.host || ':' || c.port) = ANY($2::text[])",
        list(endpoint_refs),
        list(addresses),
    )
    return [_access(row) for row in rows]


def probe_values(probe: CameraProbe) -> list[Any]:
    """What a probe fills in, in column order: hardware_id, hostname, mac_addresses,
    capabilities, profiles, snapshot_uri, clock_drift_s. URIs already carry no credentials."""
    capabilities = {
        "events": probe.supports_events,
        "pullpoint": probe.supports_pullpoint,
        "ptz": probe.supports_ptz,
        "event_topics": list(probe.event_topics),
        "services": dict(probe.services),
        "unavailable": dict(probe.unavailable),
    }
    profiles = [
        {
            "token": p.token,
            "name": p.name,
            "codec": p.encoding,
            "width": p.width,
            "height": p.height,
            "frame_rate": p.frame_rate,
            "stream_uri": p.stream_uri,
            "ptz": p.ptz,
        }
        for p in probe.profiles
    ]
    snapshot = probe.snapshot_uri
    return [
        probe.hardware_id,
        probe.hostname,
        list(probe.mac_addresses),
        json.dumps(capabilities),
        json.dumps(profiles),
        # Snapshot credentials go to the camera's own address and nowhere else.
        pin_to_host(snapshot, probe.host) if snapshot else None,
        probe.clock_drift_s,
    ]


def device_endpoint(probe: CameraProbe) -> str:
    return probe.services.get("device") or f"http://{probe.host}:{probe.port}/onvif/device_service"


async def insert_camera(
    conn: BaseDBAsyncClient,
    device_id: int,
    probe: CameraProbe,
    username: str,
    password_sealed: str,
    endpoint_ref: str | None,
) -> None:
    await conn.execute_query(
        "INSERT INTO camera (device_id, host, port, username, password_sealed, endpoint_ref, "
        "hardware_id, hostname, mac_addresses, capabilities, profiles, snapshot_uri, "
        "clock_drift_s, clock_checked_at, health_state, last_probe_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13, "
        "CASE WHEN $13::float8 IS NULL THEN NULL ELSE now() END, 'up_auth', now())",
        [
            device_id,
            probe.host,
            probe.port,
            username,
            password_sealed,
            endpoint_ref,
            *probe_values(probe),
        ],
    )


async def apply_probe(conn: BaseDBAsyncClient, device_id: int, probe: CameraProbe) -> None:
    """Store what a successful probe read, at the address it reached the camera on."""
    await conn.execute_query(
        "UPDATE camera SET host = $2, port = $3, hardware_id = $4, hostname = $5, "
        "mac_addresses = $6, capabilities = $7::jsonb, profiles = $8::jsonb, snapshot_uri = $9, "
        "clock_drift_s = coalesce($10, clock_drift_s), "
        "clock_checked_at = CASE WHEN $10::float8 IS NULL THEN clock_checked_at ELSE now() END, "
        "health_state = 'up_auth', last_probe_at = now(), "
        "last_error = NULL, updated_at = now() WHERE device_id = $1",
        [device_id, probe.host, probe.port, *probe_values(probe)],
    )
    await conn.execute_query(
        "UPDATE device SET vendor = $2, model = $3, firmware_version = $4, "
        "serial = coalesce(nullif($5, ''), serial), endpoint = $6, updated_at = now() "
        "WHERE id = $1",
        [
            device_id,
            probe.manufacturer,
            probe.model,
            probe.firmware,
            probe.serial,
            device_endpoint(probe),
        ],
    )


async def set_credentials(
    conn: BaseDBAsyncClient, device_id: int, username: str, password_sealed: str | None
) -> None:
    await conn.execute_query(
        "UPDATE camera SET username = $2, password_sealed = $3, updated_at = now() "
        "WHERE device_id = $1",
        [device_id, username, password_sealed],
    )


async def link_endpoint(conn: BaseDBAsyncClient, device_id: int, endpoint_ref: str) -> None:
    """Remember the endpoint reference of a camera onboarded by address alone."""
    await conn.execute_query(
        "UPDATE camera SET endpoint_ref = $2, updated_at = now() "
        "WHERE device_id = $1 AND endpoint_ref IS NULL",
        [device_id, endpoint_ref],
    )


async def forget_password(pool: asyncpg.Pool, device_id: int) -> None:
    """A decommissioned camera's password has no use left: drop it."""
    await pool.execute(
        "UPDATE camera SET password_sealed = NULL, updated_at = now() WHERE device_id = $1",
        device_id,
    )


# -- health ----------------------------------------------------------------------------------


async def load_targets(
    pool: asyncpg.Pool, box: SecretBox, *, pullpoint_only: bool = False
) -> list[CameraTarget]:
    """Every active camera the hub can talk to, credentials opened for the driver."""
    rows = await pool.fetch(
        _ACCESS + " WHERE d.lifecycle = 'active' AND c.password_sealed IS NOT NULL "
        "AND (NOT $1 OR (c.capabilities ->> 'pullpoint')::boolean) "
        # Cameras that failed last time go first: their deadlines then run alongside the
        # healthy cameras' checks instead of after them, at the end of the sweep.
        "ORDER BY coalesce(c.health_state IN ('up_auth', 'up_no_auth'), false), d.id",
        pullpoint_only,
    )
    targets = []
    unreadable = []
    for row in rows:
        access = _access(row)
        try:
            password = access.password(box)
        except SecretBoxError as error:
            log.error("camera %s skipped: %s", access.uid, error.detail)
            unreadable.append((access.device_id, error.detail))
            continue
        assert password is not None
        targets.append(
            CameraTarget(access.uid, access.host, access.port, access.username, password)
        )
    if unreadable:
        await pool.executemany("UPDATE camera SET last_error = $2 WHERE device_id = $1", unreadable)
    return targets


async def record_health(pool: asyncpg.Pool, results: Iterable[CameraHealth]) -> None:
    """Keep each camera's latest check next to it, for the API and the console."""
    rows = [r for r in results if r.device_uid is not None]
    if not rows:
        return
    await pool.execute(
        "UPDATE camera c SET health_state = r.state, latency_ms = r.latency_ms, "
        # A check that could not read the clock keeps the last reading, with its own time.
        "clock_drift_s = coalesce(r.drift, c.clock_drift_s), "
        "clock_checked_at = CASE WHEN r.drift IS NULL THEN c.clock_checked_at ELSE r.at END, "
        "last_probe_at = r.at, "
        "last_error = r.reason "
        "FROM device d, unnest($1::text[], $2::text[], $3::float8[], $4::float8[], "
        "$5::timestamptz[], $6::text[]) AS r(uid, state, latency_ms, drift, at, reason) "
        "WHERE d.uid = r.uid AND c.device_id = d.id",
        [r.device_uid for r in rows],
        [r.state.value for r in rows],
        [None if r.latency_s is None else round(r.latency_s * 1000, 1) for r in rows],
        [r.clock_drift_s for r in rows],
        [r.checked_at for r in rows],
        [r.reason for r in rows],
    )


async def faults_of(pool: asyncpg.Pool, uids: Sequence[str]) -> dict[str, list[str]]:
    rows = await pool.fetch(
        "SELECT uid, faults FROM device WHERE uid = ANY($1::text[])", list(uids)
    )
    return {row["uid"]: list(row["faults"]) for row in rows}


# -- reads -----------------------------------------------------------------------------------


async def recent_events(
    pool: asyncpg.Pool, device_id: int, limit: int = 20
) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT at, kind, active, data FROM device_event WHERE device_id = $1 "
        "ORDER BY at DESC, id DESC LIMIT $2",
        device_id,
        limit,
    )


# -- candidates ------------------------------------------------------------------------------

CANDIDATE_COLUMNS = "id, endpoint_ref, addresses, scopes, serial, first_seen, last_seen, dismissed"


def xaddr_address(xaddr: str) -> tuple[str, int] | None:
    """(host, port) of an advertised device service URL."""
    try:
        parts = urlsplit(xaddr)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


async def upsert_candidate(
    conn: BaseDBAsyncClient,
    endpoint_ref: str,
    addresses: Sequence[str],
    scopes: Sequence[str],
    serial: str | None,
    seen_at: datetime,
) -> dict[str, Any]:
    """A camera seen again keeps its row: same endpoint reference, new addresses."""
    rows = await conn.execute_query_dict(
        "INSERT INTO camera_candidate (endpoint_ref, addresses, scopes, serial, first_seen, "
        "last_seen) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (endpoint_ref) DO UPDATE SET "
        "addresses = EXCLUDED.addresses, scopes = EXCLUDED.scopes, "
        "serial = coalesce(EXCLUDED.serial, camera_candidate.serial), "
        f"last_seen = EXCLUDED.last_seen RETURNING {CANDIDATE_COLUMNS}",
        [endpoint_ref, list(addresses), list(scopes), serial, seen_at],
    )
    return rows[0]


async def list_candidates(pool: asyncpg.Pool, include_dismissed: bool) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {CANDIDATE_COLUMNS} FROM camera_candidate WHERE $1 OR NOT dismissed "
        "ORDER BY last_seen DESC, id",
        include_dismissed,
    )


async def candidate_by_ref(pool: asyncpg.Pool, endpoint_ref: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        f"SELECT {CANDIDATE_COLUMNS} FROM camera_candidate WHERE endpoint_ref = $1", endpoint_ref
    )


async def candidate_at(pool: asyncpg.Pool, host: str, port: int) -> str | None:
    """The endpoint reference of the candidate advertising host:port, if exactly one does."""
    rows = await pool.fetch("SELECT endpoint_ref, addresses FROM camera_candidate")
    refs = [
        row["endpoint_ref"]
        for row in rows
        if (host, port) in {xaddr_address(address) for address in row["addresses"]}
    ]
    return refs[0] if len(refs) == 1 else None


async def dismiss_candidate(
    conn: BaseDBAsyncClient, candidate_id: int, username: str
) -> dict[str, Any] | None:
    rows = await conn.execute_query_dict(
        "UPDATE camera_candidate SET dismissed = true, dismissed_by = $2 WHERE id = $1 "
        f"RETURNING {CANDIDATE_COLUMNS}",
        [candidate_id, username],
    )
    return rows[0] if rows else None


async def delete_candidate(conn: BaseDBAsyncClient, endpoint_ref: str) -> None:
    await conn.execute_query("DELETE FROM camera_candidate WHERE endpoint_ref = $1", [endpoint_ref])


# -- viewing ---------------------------------------------------------------------------------


async def stream_profiles(pool: asyncpg.Pool, device_id: int) -> list[dict[str, Any]]:
    """The camera's profiles as its last probe read them (stream URIs without credentials)."""
    value = await pool.fetchval("SELECT profiles FROM camera WHERE device_id = $1", device_id)
    profiles = json.loads(value) if isinstance(value, str) else value
    return list(profiles or [])


async def health_of(pool: asyncpg.Pool, device_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT c.health_state, c.last_probe_at, c.last_error, d.status FROM camera c "
        "JOIN device d ON d.id = c.device_id WHERE c.device_id = $1",
        device_id,
    )


# Anything that runs a query: the pool, or a connection (inside another slice's transaction).
Queryable: TypeAlias = "asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]"

EARTH_RADIUS_M = 6_371_008.8  # the mean Earth radius (IUGG)


@dataclass(frozen=True, slots=True)
class NearbyCamera:
    uid: str
    name: str
    ward: str | None
    latitude: float
    longitude: float
    distance_m: float
    status: str
    health_state: str | None
    has_snapshot: bool


async def cameras_near(
    conn: Queryable,
    latitude: float,
    longitude: float,
    radius_m: float,
    *,
    ward_ids: Sequence[int] | None = None,
    exclude_uid: str | None = None,
    limit: int = 20,
) -> list[NearbyCamera]:
    """Active cameras within ``radius_m`` of a point, nearest first.

    Great-circle distance by the haversine formula on the registry's WGS 84 coordinates
    (good to about 0.5 % at district scale); a bounding box on the indexed coordinates
    keeps the query from measuring every camera in the city.
    """
    lat_span = math.degrees(radius_m / EARTH_RADIUS_M)
    lon_span = lat_span / max(math.cos(math.radians(latitude)), 1e-6)
    rows = await conn.fetch(
        "SELECT * FROM (SELECT d.uid, d.name, w.code AS ward, d.latitude, d.longitude, "
        "d.status, c.health_state, c.snapshot_uri IS NOT NULL AS has_snapshot, "
        "2 * $9::float8 * asin(sqrt(power(sin(radians(d.latitude - $1) / 2), 2) + "
        "cos(radians($1)) * cos(radians(d.latitude)) * "
        "power(sin(radians(d.longitude - $2) / 2), 2))) AS distance_m "
        "FROM camera c JOIN device d ON d.id = c.device_id LEFT JOIN ward w ON w.id = d.ward_id "
        "WHERE d.kind = 'camera' AND d.lifecycle = 'active' "
        "AND d.latitude BETWEEN $1 - $3 AND $1 + $3 AND d.longitude BETWEEN $2 - $4 AND $2 + $4 "
        "AND ($5::int[] IS NULL OR d.ward_id = ANY($5)) AND ($6::text IS NULL OR d.uid <> $6)"
        ") near WHERE distance_m <= $7 ORDER BY distance_m, uid LIMIT $8",
        latitude,
        longitude,
        lat_span,
        lon_span,
        list(ward_ids) if ward_ids is not None else None,
        exclude_uid,
        radius_m,
        limit,
        EARTH_RADIUS_M,
    )
    return [NearbyCamera(**dict(row.items())) for row in rows]


async def location_of(conn: Queryable, uid: str) -> tuple[float, float] | None:
    row = await conn.fetchrow("SELECT latitude, longitude FROM device WHERE uid = $1", uid)
    if row is None or row["latitude"] is None or row["longitude"] is None:
        return None
    return float(row["latitude"]), float(row["longitude"])


async def alert_place(pool: asyncpg.Pool, alert_id: int) -> asyncpg.Record | None:
    """An alert's device and ward: where to look for cameras (the alerts slice owns the row)."""
    return await pool.fetchrow(
        "SELECT d.uid AS device_uid, a.ward_id FROM alert a JOIN device d ON d.id = a.device_id "
        "WHERE a.id = $1",
        alert_id,
    )


async def last_moves(
    pool: asyncpg.Pool, uids: Sequence[str], ward_ids: Sequence[int] | None
) -> list[asyncpg.Record]:
    """Each camera's latest move (the audit entry written when its new address was stored)."""
    return await pool.fetch(
        "SELECT DISTINCT ON (a.object_id) a.object_id AS uid, a.at, a.actor, a.before, a.after "
        "FROM audit_log a JOIN device d ON d.uid = a.object_id "
        "WHERE a.object_type = 'camera' AND a.action = 'camera.move' "
        "AND a.object_id = ANY($1::text[]) AND ($2::int[] IS NULL OR d.ward_id = ANY($2)) "
        "ORDER BY a.object_id, a.at DESC",
        list(uids),
        list(ward_ids) if ward_ids is not None else None,
    )
