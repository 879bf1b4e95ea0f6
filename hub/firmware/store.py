"""SQL of the firmware slice (migration 0015_firmware.sql), in one place.

Catalog rows are written by `iochub firmware import` and `advisories import`; the
compliance view and the rollout driver read them. Campaign rows are the rollout's
memory: every decision the driver takes is written here before it acts on a device, so
a restarted or new leader resumes from these rows and never sends a command twice.

The broadcast guard reads the broadcasts slice's plan (broadcast, broadcast_slot) and
group memberships read-only: which speakers have an announcement due or playing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import asyncpg

# ---------------------------------------------------------------------------- catalog


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    id: int
    vendor: str
    model: str
    kind: str
    version: str
    released_on: date
    min_version: str | None
    end_of_support: date | None
    notes: str
    artifact_file: str | None
    artifact_url: str | None
    artifact_size: int
    artifact_sha256: str
    manifest: dict[str, Any]
    manifest_sha256: str
    signature_key: str
    signature: str


@dataclass(frozen=True, slots=True)
class VulnerabilityRow:
    release_id: int
    cve: str
    cvss: float
    summary: str
    source: str


RELEASE_COLUMNS = """
id, vendor, model, kind, version, released_on, min_version, end_of_support, notes,
artifact_file, artifact_url, artifact_size, artifact_sha256, manifest, manifest_sha256,
signature_key, signature
"""


def _release(row: asyncpg.Record) -> ReleaseRow:
    values = dict(row)
    values["manifest"] = json.loads(values["manifest"])
    return ReleaseRow(**values)


async def releases(conn: Any) -> list[ReleaseRow]:
    rows = await conn.fetch(f"SELECT {RELEASE_COLUMNS} FROM firmware_release ORDER BY id")
    return [_release(row) for row in rows]


async def release(conn: Any, release_id: int) -> ReleaseRow | None:
    row = await conn.fetchrow(
        f"SELECT {RELEASE_COLUMNS} FROM firmware_release WHERE id = $1", release_id
    )
    return None if row is None else _release(row)


async def release_digests(conn: Any) -> dict[tuple[str, str, str], tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT id, vendor, model, version, manifest_sha256 FROM firmware_release"
    )
    return {(r["vendor"], r["model"], r["version"]): (r["id"], r["manifest_sha256"]) for r in rows}


async def upsert_release(conn: Any, values: dict[str, Any]) -> int:
    release_id: int = await conn.fetchval(
        """
        INSERT INTO firmware_release (vendor, model, kind, version, released_on, min_version,
            end_of_support, notes, artifact_file, artifact_url, artifact_size, artifact_sha256,
            manifest, manifest_sha256, signature_key, signature, source)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        ON CONFLICT (vendor, model, version) DO UPDATE SET
            kind = EXCLUDED.kind, released_on = EXCLUDED.released_on,
            min_version = EXCLUDED.min_version, end_of_support = EXCLUDED.end_of_support,
            notes = EXCLUDED.notes, artifact_file = EXCLUDED.artifact_file,
            artifact_url = EXCLUDED.artifact_url, artifact_size = EXCLUDED.artifact_size,
            artifact_sha256 = EXCLUDED.artifact_sha256, manifest = EXCLUDED.manifest,
            manifest_sha256 = EXCLUDED.manifest_sha256, signature_key = EXCLUDED.signature_key,
            signature = EXCLUDED.signature, source = EXCLUDED.source, imported_at = now()
        RETURNING id
        """,
        values["vendor"],
        values["model"],
        values["kind"],
        values["version"],
        values["released_on"],
        values["min_version"],
        values["end_of_support"],
        values["notes"],
        values["artifact_file"],
        values["artifact_url"],
        values["artifact_size"],
        values["artifact_sha256"],
        json.dumps(values["manifest"]),
        values["manifest_sha256"],
        values["signature_key"],
        values["signature"],
        values["source"],
    )
    return release_id


async def replace_manifest_vulnerabilities(
    conn: Any, release_id: int, items: Sequence[tuple[str, float, str]]
) -> None:
    await conn.execute(
        "DELETE FROM firmware_vulnerability WHERE release_id = $1 AND source = 'manifest'",
        release_id,
    )
    await conn.executemany(
        "INSERT INTO firmware_vulnerability (release_id, cve, cvss, summary, source) "
        "VALUES ($1, $2, $3, $4, 'manifest') ON CONFLICT (release_id, cve) DO UPDATE SET "
        "cvss = EXCLUDED.cvss, summary = EXCLUDED.summary, source = 'manifest'",
        [(release_id, cve, cvss, summary) for cve, cvss, summary in items],
    )


async def add_advisory(
    conn: Any, release_id: int, cve: str, cvss: float, summary: str, source: str
) -> bool:
    """Attach a CVE from an advisory; the manifest's own word on a CVE is kept. True if new."""
    status: str = await conn.execute(
        "INSERT INTO firmware_vulnerability (release_id, cve, cvss, summary, source) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (release_id, cve) DO UPDATE SET "
        "cvss = EXCLUDED.cvss, summary = EXCLUDED.summary, source = EXCLUDED.source "
        "WHERE firmware_vulnerability.source <> 'manifest' "
        "AND (firmware_vulnerability.cvss, firmware_vulnerability.summary) "
        "IS DISTINCT FROM (EXCLUDED.cvss, EXCLUDED.summary)",
        release_id,
        cve,
        cvss,
        summary,
        source,
    )
    return status.endswith(" 1")


async def vulnerabilities(conn: Any) -> list[VulnerabilityRow]:
    rows = await conn.fetch(
        "SELECT release_id, cve, cvss::float8 AS cvss, summary, source "
        "FROM firmware_vulnerability ORDER BY release_id, cvss DESC, cve"
    )
    return [VulnerabilityRow(**dict(row)) for row in rows]


# ---------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True)
class DeviceFirmware:
    id: int
    uid: str
    kind: str
    ward_id: int | None
    ward: str | None
    vendor: str
    model: str
    firmware_version: str
    status: str


DEVICE_COLUMNS = """
SELECT d.id, d.uid, d.kind, d.ward_id, w.code AS ward, d.vendor, d.model, d.firmware_version,
       d.status
FROM device d LEFT JOIN ward w ON w.id = d.ward_id
WHERE d.lifecycle = 'active'
"""


async def devices(
    conn: Any,
    ward_ids: frozenset[int] | None,
    *,
    kind: str | None = None,
    uids: Sequence[str] | None = None,
) -> list[DeviceFirmware]:
    rows = await conn.fetch(
        DEVICE_COLUMNS
        + " AND ($1::int[] IS NULL OR d.ward_id = ANY($1)) AND ($2::text IS NULL OR d.kind = $2)"
        " AND ($3::text[] IS NULL OR d.uid = ANY($3)) ORDER BY d.uid",
        None if ward_ids is None else sorted(ward_ids),
        kind,
        None if uids is None else list(uids),
    )
    return [DeviceFirmware(**dict(row)) for row in rows]


async def set_reported_versions(conn: Any, versions: dict[str, str]) -> list[str]:
    """Store what devices say they run; returns the uids whose version changed."""
    rows = await conn.fetch(
        "UPDATE device d SET firmware_version = n.version, updated_at = now() "
        "FROM unnest($1::text[], $2::text[]) AS n(uid, version) "
        "WHERE d.uid = n.uid AND d.firmware_version IS DISTINCT FROM n.version RETURNING d.uid",
        list(versions),
        list(versions.values()),
    )
    return [row["uid"] for row in rows]


async def ward_ids_by_code(conn: Any, codes: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT code, id FROM ward WHERE code = ANY($1::text[])", list(codes))
    return {row["code"]: row["id"] for row in rows}


async def group_member_uids(conn: Any, group_id: int) -> tuple[int | None, list[str]] | None:
    group = await conn.fetchrow("SELECT id, ward_id FROM device_group WHERE id = $1", group_id)
    if group is None:
        return None
    rows = await conn.fetch(
        "SELECT d.uid FROM device_group_member m JOIN device d ON d.id = m.device_id "
        "WHERE m.group_id = $1 ORDER BY d.uid",
        group_id,
    )
    return group["ward_id"], [row["uid"] for row in rows]


# ---------------------------------------------------------------------------- windows


async def windows(conn: Any) -> dict[int, tuple[time, time]]:
    rows = await conn.fetch("SELECT ward_id, starts, ends FROM firmware_ward_window")
    return {row["ward_id"]: (row["starts"], row["ends"]) for row in rows}


async def set_window(
    conn: Any, ward_id: int, span: tuple[time, time] | None, username: str
) -> None:
    if span is None:
        await conn.execute("DELETE FROM firmware_ward_window WHERE ward_id = $1", ward_id)
        return
    await conn.execute(
        "INSERT INTO firmware_ward_window (ward_id, starts, ends, updated_by) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (ward_id) DO UPDATE SET starts = EXCLUDED.starts, "
        "ends = EXCLUDED.ends, updated_by = EXCLUDED.updated_by, updated_at = now()",
        ward_id,
        span[0],
        span[1],
        username,
    )


async def ward_codes(conn: Any) -> dict[int, str]:
    rows = await conn.fetch("SELECT id, code FROM ward")
    return {row["id"]: row["code"] for row in rows}


# ---------------------------------------------------------------------------- compliance


async def write_compliance(conn: Any, items: Sequence[Any], now: Any) -> None:
    """Replace the compliance snapshot Grafana reads (items are compliance.Compliance)."""
    await conn.execute("DELETE FROM firmware_device_compliance")
    await conn.copy_records_to_table(
        "firmware_device_compliance",
        records=[
            (
                i.device.id,
                i.state.value,
                i.device.firmware_version,
                None if i.latest is None else i.latest.row.version,
                i.versions_behind,
                i.days_behind,
                None if i.worst_severity is None else i.worst_severity.value,
                [c.id for c in i.cves],
                i.end_of_support,
                now,
            )
            for i in items
        ],
        columns=[
            "device_id",
            "state",
            "version",
            "latest_version",
            "versions_behind",
            "days_behind",
            "worst_severity",
            "cves",
            "end_of_support",
            "computed_at",
        ],
    )


async def set_firmware_faults(conn: Any, faults: dict[int, str | None], prefix: str) -> list[int]:
    """Make each device's firmware fault (the one fault starting with ``prefix``) the given
    one, or none; returns the devices whose faults changed (health must look again)."""
    rows = await conn.fetch(
        """
        UPDATE device d SET faults = array_remove(
                ARRAY(SELECT f FROM unnest(d.faults) AS f WHERE f NOT LIKE $3 || '%')
                || n.fault, NULL)
        FROM unnest($1::bigint[], $2::text[]) AS n(id, fault)
        WHERE d.id = n.id
          AND ARRAY(SELECT f FROM unnest(d.faults) AS f WHERE f LIKE $3 || '%')
              IS DISTINCT FROM array_remove(ARRAY[n.fault], NULL)
        RETURNING d.id
        """,
        list(faults),
        list(faults.values()),
        prefix,
    )
    return [row["id"] for row in rows]


# ---------------------------------------------------------------------------- campaigns

IN_FLIGHT = ("sent", "downloading", "verifying", "installing", "rebooting")
PRE_INSTALL = ("sent", "downloading", "verifying")
STATE_RANK = {s: i for i, s in enumerate(("pending", *IN_FLIGHT))}


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: int
    name: str
    release_id: int
    vendor: str
    model: str
    kind: str
    version: str
    min_version: str | None
    artifact_size: int
    artifact_sha256: str
    selector: dict[str, Any]
    ward_ids: list[int]
    state: str
    wave_sizes: list[int]
    success_percent: float
    error_percent: float
    require_approval: bool
    max_ward_percent: float
    broadcast_guard_s: int
    use_windows: bool
    device_timeout_s: int
    current_wave: int
    stop_reason: str | None
    stopped_at: datetime | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None


CAMPAIGN_SELECT = """
SELECT c.id, c.name, c.release_id, r.vendor, r.model, r.kind, r.version, r.min_version,
       r.artifact_size, r.artifact_sha256, c.selector, c.ward_ids, c.state, c.wave_sizes,
       c.success_percent::float8 AS success_percent, c.error_percent::float8 AS error_percent,
       c.require_approval, c.max_ward_percent::float8 AS max_ward_percent, c.broadcast_guard_s,
       c.use_windows, c.device_timeout_s, c.current_wave, c.stop_reason, c.stopped_at,
       c.created_by, c.created_at, c.finished_at
FROM firmware_campaign c JOIN firmware_release r ON r.id = c.release_id
"""


def _campaign(row: asyncpg.Record) -> CampaignRow:
    values = dict(row)
    values["selector"] = json.loads(values["selector"])
    values["ward_ids"] = list(values["ward_ids"])
    values["wave_sizes"] = list(values["wave_sizes"])
    return CampaignRow(**values)


async def campaign(conn: Any, campaign_id: int) -> CampaignRow | None:
    row = await conn.fetchrow(CAMPAIGN_SELECT + " WHERE c.id = $1", campaign_id)
    return None if row is None else _campaign(row)


async def campaigns(conn: Any, ward_ids: frozenset[int] | None) -> list[CampaignRow]:
    rows = await conn.fetch(
        CAMPAIGN_SELECT + " WHERE $1::int[] IS NULL OR c.ward_ids <@ $1 ORDER BY c.id DESC",
        None if ward_ids is None else sorted(ward_ids),
    )
    return [_campaign(row) for row in rows]


async def open_campaigns(conn: Any) -> list[CampaignRow]:
    rows = await conn.fetch(
        CAMPAIGN_SELECT + " WHERE c.state IN ('running', 'waiting_approval', 'paused') "
        "ORDER BY c.id"
    )
    return [_campaign(row) for row in rows]


async def busy_in_campaigns(conn: Any, device_ids: Sequence[int]) -> dict[int, int]:
    """Devices already pending or updating in an open campaign: device id -> campaign id."""
    rows = await conn.fetch(
        "SELECT cd.device_id, cd.campaign_id FROM firmware_campaign_device cd "
        "JOIN firmware_campaign c ON c.id = cd.campaign_id "
        "WHERE cd.device_id = ANY($1::bigint[]) AND c.state IN ('running', 'waiting_approval', "
        "'paused') AND cd.state IN ('pending', 'sent', 'downloading', 'verifying', "
        "'installing', 'rebooting')",
        list(device_ids),
    )
    return {row["device_id"]: row["campaign_id"] for row in rows}


async def insert_campaign(
    conn: Any, values: dict[str, Any], devices: Sequence[tuple[Any, ...]]
) -> int:
    """The campaign, its waves and its devices (device_id, uid, ward_id, wave, state,
    from_version, reason) in the caller's transaction."""
    campaign_id: int = await conn.fetchval(
        """
        INSERT INTO firmware_campaign (name, release_id, selector, ward_ids, wave_sizes,
            success_percent, error_percent, require_approval, max_ward_percent,
            broadcast_guard_s, use_windows, device_timeout_s, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id
        """,
        values["name"],
        values["release_id"],
        json.dumps(values["selector"]),
        values["ward_ids"],
        values["wave_sizes"],
        values["success_percent"],
        values["error_percent"],
        values["require_approval"],
        values["max_ward_percent"],
        values["broadcast_guard_s"],
        values["use_windows"],
        values["device_timeout_s"],
        values["created_by"],
    )
    await conn.executemany(
        "INSERT INTO firmware_campaign_wave (campaign_id, wave, size, state, started_at) "
        "VALUES ($1, $2, $3, $4, CASE WHEN $2 = 0 THEN now() END)",
        [
            (campaign_id, index, size, "running" if index == 0 else "pending")
            for index, size in enumerate(values["wave_sizes"])
        ],
    )
    await conn.copy_records_to_table(
        "firmware_campaign_device",
        records=[(campaign_id, *device) for device in devices],
        columns=[
            "campaign_id",
            "device_id",
            "device_uid",
            "ward_id",
            "wave",
            "state",
            "from_version",
            "reason",
        ],
    )
    return campaign_id


async def wave_counts(conn: Any, campaign_id: int) -> dict[int, dict[str, int]]:
    rows = await conn.fetch(
        "SELECT wave, state, count(*) AS n FROM firmware_campaign_device "
        "WHERE campaign_id = $1 GROUP BY wave, state",
        campaign_id,
    )
    counts: dict[int, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["wave"], {})[row["state"]] = row["n"]
    return counts


async def waves(conn: Any, campaign_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT wave, size, state, started_at, finished_at, approved_by "
        "FROM firmware_campaign_wave WHERE campaign_id = $1 ORDER BY wave",
        campaign_id,
    )
    return rows


async def campaign_devices(
    conn: Any, campaign_id: int, states: Sequence[str] | None = None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT cd.device_uid AS uid, w.code AS ward, cd.wave, cd.state, cd.from_version, "
        "cd.reported_version, cd.attempts, cd.reason, cd.updated_at "
        "FROM firmware_campaign_device cd LEFT JOIN ward w ON w.id = cd.ward_id "
        "WHERE cd.campaign_id = $1 AND ($2::text[] IS NULL OR cd.state = ANY($2)) "
        "ORDER BY cd.wave, cd.device_uid",
        campaign_id,
        None if states is None else list(states),
    )
    return rows


async def set_state(conn: Any, campaign_id: int, state: str, **columns: Any) -> None:
    sets = ["state = $2", "updated_at = now()"]
    args: list[Any] = [campaign_id, state]
    for name, value in columns.items():
        args.append(value)
        sets.append(f"{name} = ${len(args)}")
    await conn.execute(f"UPDATE firmware_campaign SET {', '.join(sets)} WHERE id = $1", *args)


async def set_wave(conn: Any, campaign_id: int, wave: int, state: str, **columns: Any) -> None:
    sets = ["state = $3"]
    args: list[Any] = [campaign_id, wave, state]
    for name, value in columns.items():
        args.append(value)
        sets.append(f"{name} = ${len(args)}")
    await conn.execute(
        f"UPDATE firmware_campaign_wave SET {', '.join(sets)} WHERE campaign_id = $1 AND wave = $2",
        *args,
    )


# ---------------------------------------------------------------------------- the driver


@dataclass(frozen=True, slots=True)
class Candidate:
    device_id: int
    uid: str
    ward_id: int | None
    kind: str
    vendor: str
    model: str
    firmware_version: str
    wave: int


async def candidates(
    conn: Any, campaign_id: int, up_to_wave: int, per_ward: int
) -> list[Candidate]:
    """Pending devices of the waves so far, at most ``per_ward`` from each ward (a round
    can start no more than a ward's free share anyway)."""
    rows = await conn.fetch(
        "SELECT device_id, uid, ward_id, kind, vendor, model, firmware_version, wave FROM ("
        " SELECT cd.device_id, cd.device_uid AS uid, cd.ward_id, d.kind, d.vendor, d.model,"
        " d.firmware_version, cd.wave, row_number() OVER (PARTITION BY cd.ward_id"
        "   ORDER BY cd.wave, cd.attempts, cd.device_id) AS n"
        " FROM firmware_campaign_device cd JOIN device d ON d.id = cd.device_id"
        " WHERE cd.campaign_id = $1 AND cd.state = 'pending' AND cd.wave <= $2"
        " AND d.lifecycle = 'active') AS c WHERE n <= $3 ORDER BY wave, n, device_id",
        campaign_id,
        up_to_wave,
        per_ward,
    )
    return [Candidate(**dict(row)) for row in rows]


async def updating_per_ward(conn: Any) -> dict[tuple[int | None, str], int]:
    rows = await conn.fetch(
        "SELECT cd.ward_id, d.kind, count(*) AS n FROM firmware_campaign_device cd "
        "JOIN device d ON d.id = cd.device_id "
        "WHERE cd.state IN ('sent', 'downloading', 'verifying', 'installing', 'rebooting') "
        "GROUP BY cd.ward_id, d.kind"
    )
    return {(row["ward_id"], row["kind"]): row["n"] for row in rows}


async def devices_per_ward(conn: Any) -> dict[tuple[int | None, str], int]:
    rows = await conn.fetch(
        "SELECT ward_id, kind, count(*) AS n FROM device WHERE lifecycle = 'active' "
        "GROUP BY ward_id, kind"
    )
    return {(row["ward_id"], row["kind"]): row["n"] for row in rows}


async def busy_speakers(
    conn: Any, device_ids: Sequence[int], now: datetime, until: datetime, *, emergency: bool
) -> dict[int, str]:
    """Speakers with a broadcast playing or due before ``until`` (the broadcasts slice's
    plan, read-only): device id -> why. ``emergency``: only emergency broadcasts."""
    if not device_ids:
        return {}
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (d.id) d.id, b.id AS broadcast_id, b.priority, s.starts_at
        FROM device d
        JOIN broadcast b ON b.state = 'active'
             AND ($4::bool IS FALSE OR b.priority = 'emergency')
             AND (b.target_all OR d.ward_id = ANY(b.target_wards) OR d.uid = ANY(b.target_speakers)
                  OR EXISTS (SELECT 1 FROM device_group_member m
                             WHERE m.device_id = d.id AND m.group_id = ANY(b.target_groups)))
        JOIN broadcast_slot s ON s.broadcast_id = b.id AND s.starts_at <= $3 AND s.ends_at >= $2
        WHERE d.id = ANY($1::bigint[])
        ORDER BY d.id, s.starts_at
        """,
        list(device_ids),
        now,
        until,
        emergency,
    )
    reasons = {}
    for row in rows:
        when = "playing" if row["starts_at"] <= now else f"due at {row['starts_at']:%H:%M:%S} UTC"
        reasons[row["id"]] = f"{row['priority']} broadcast {row['broadcast_id']} {when}"
    return reasons


async def claim_sends(
    conn: Any,
    campaign: CampaignRow,
    items: Sequence[tuple[int, str]],
    now: datetime,
    deadline: datetime,
) -> list[int]:
    """Mark pending devices sent with their command ids; returns those this caller claimed.

    The conditional UPDATE is the claim: a command is published only for a row this
    statement moved from pending, so two drivers (or a restart) never send it twice. It
    claims nothing once the campaign is no longer running or its current wave's failures
    are past the error threshold, however recent the failure that crossed it.
    """
    rows = await conn.fetch(
        """
        UPDATE firmware_campaign_device cd SET state = 'sent', command_id = n.command_id,
            attempts = cd.attempts + 1, sent_at = $3, deadline_at = $4, reason = NULL,
            updated_at = $3
        FROM unnest($2::bigint[], $5::text[]) AS n(device_id, command_id)
        WHERE cd.campaign_id = $1 AND cd.device_id = n.device_id AND cd.state = 'pending'
          AND (SELECT state FROM firmware_campaign WHERE id = $1) = 'running'
          AND (SELECT count(*) FILTER (WHERE w.state = 'failed') * 100
                      <= $7 * count(*) FILTER (WHERE w.state <> 'refused')
               FROM firmware_campaign_device w WHERE w.campaign_id = $1 AND w.wave = $6)
        RETURNING cd.device_id
        """,
        campaign.id,
        [device_id for device_id, _ in items],
        now,
        deadline,
        [command_id for _, command_id in items],
        campaign.current_wave,
        campaign.error_percent,
    )
    return [row["device_id"] for row in rows]


async def unsend(conn: Any, campaign_id: int, device_ids: Sequence[int], reason: str) -> None:
    """The broker did not take these commands: nothing reached the device, back to pending."""
    await conn.execute(
        "UPDATE firmware_campaign_device SET state = 'pending', command_id = NULL, "
        "attempts = attempts - 1, reason = $3, updated_at = now() "
        "WHERE campaign_id = $1 AND device_id = ANY($2::bigint[]) AND state = 'sent'",
        campaign_id,
        list(device_ids),
        reason,
    )


async def set_device_states(
    conn: Any, campaign_id: int, items: Sequence[tuple[int, str, str | None]], now: datetime
) -> None:
    """(device_id, state, reason) for devices decided without a command (refused, updated)."""
    await conn.execute(
        "UPDATE firmware_campaign_device cd SET state = n.state, reason = n.reason, "
        "updated_at = $3 FROM unnest($2::bigint[], $4::text[], $5::text[]) "
        "AS n(device_id, state, reason) WHERE cd.campaign_id = $1 AND cd.device_id = n.device_id",
        campaign_id,
        [i[0] for i in items],
        now,
        [i[1] for i in items],
        [i[2] for i in items],
    )


@dataclass(frozen=True, slots=True)
class InFlight:
    campaign_id: int
    device_id: int
    uid: str
    state: str
    command_id: str
    target_version: str


async def in_flight_by_command(conn: Any, command_ids: Sequence[str]) -> dict[str, InFlight]:
    rows = await conn.fetch(
        "SELECT cd.campaign_id, cd.device_id, cd.device_uid AS uid, cd.state, cd.command_id, "
        "r.version AS target_version FROM firmware_campaign_device cd "
        "JOIN firmware_campaign c ON c.id = cd.campaign_id "
        "JOIN firmware_release r ON r.id = c.release_id "
        "WHERE cd.command_id = ANY($1::text[]) "
        "AND cd.state IN ('sent', 'downloading', 'verifying', 'installing', 'rebooting')",
        list(command_ids),
    )
    return {row["command_id"]: InFlight(**dict(row)) for row in rows}


async def apply_progress(
    conn: Any, items: Sequence[tuple[str, str, str | None, str | None]], now: datetime
) -> list[tuple[int, str]]:
    """(command_id, state, reported_version, reason) onto in-flight rows; returns the
    (campaign id, new state) of each row moved."""
    rows = await conn.fetch(
        "UPDATE firmware_campaign_device cd SET state = n.state, reported_version = "
        "coalesce(n.version, cd.reported_version), reason = n.reason, updated_at = $2 "
        "FROM unnest($1::text[], $3::text[], $4::text[], $5::text[]) "
        "AS n(command_id, state, version, reason) "
        "WHERE cd.command_id = n.command_id "
        "AND cd.state IN ('sent', 'downloading', 'verifying', 'installing', 'rebooting') "
        "RETURNING cd.campaign_id, cd.state",
        [i[0] for i in items],
        now,
        [i[1] for i in items],
        [i[2] for i in items],
        [i[3] for i in items],
    )
    return [(row["campaign_id"], row["state"]) for row in rows]


def stop_reason(wave: int, failed: int, size: int, error_percent: float) -> str:
    return (
        f"wave {wave + 1}: {failed} of {size} devices failed, more than the "
        f"{error_percent:g}% allowed"
    )


async def stop(conn: Any, campaign_id: int, wave: int, reason: str, now: datetime) -> bool:
    """Stop a running campaign and fail its wave (in the caller's transaction); False when
    it was no longer running (stopped, paused or cancelled meanwhile)."""
    stopped = await conn.fetchval(
        "UPDATE firmware_campaign SET state = 'stopped', stop_reason = $3, stopped_at = $4, "
        "finished_at = $4, updated_at = now() WHERE id = $1 AND state = 'running' "
        "AND current_wave = $2 RETURNING id",
        campaign_id,
        wave,
        reason,
        now,
    )
    if stopped is None:
        return False
    await set_wave(conn, campaign_id, wave, "failed", finished_at=now)
    return True


async def stop_past_threshold(
    conn: Any, campaign_ids: Sequence[int], now: datetime
) -> list[tuple[int, str]]:
    """Stop each running campaign whose current wave's failures are past its error
    threshold; returns (campaign id, reason) of those stopped. Run in the transaction that
    wrote the failures, the crossing and the stop commit together: no round in between
    can start another device (and `claim_sends` re-checks the same rule)."""
    if not campaign_ids:
        return []
    rows = await conn.fetch(
        "SELECT c.id, c.current_wave, c.error_percent::float8 AS error_percent, "
        "count(*) FILTER (WHERE cd.state = 'failed') AS failed, "
        "count(*) FILTER (WHERE cd.state <> 'refused') AS size "
        "FROM firmware_campaign c JOIN firmware_campaign_device cd "
        "ON cd.campaign_id = c.id AND cd.wave = c.current_wave "
        "WHERE c.id = ANY($1::bigint[]) AND c.state = 'running' GROUP BY c.id "
        "HAVING count(*) FILTER (WHERE cd.state = 'failed') * 100 "
        "> c.error_percent * count(*) FILTER (WHERE cd.state <> 'refused')",
        sorted(set(campaign_ids)),
    )
    stopped = []
    for row in rows:
        reason = stop_reason(row["current_wave"], row["failed"], row["size"], row["error_percent"])
        if await stop(conn, row["id"], row["current_wave"], reason, now):
            stopped.append((row["id"], reason))
    return stopped


async def cancelled_in_flight(conn: Any) -> list[int]:
    """Cancelled campaigns that still have devices which have not begun installing."""
    rows = await conn.fetch(
        "SELECT DISTINCT cd.campaign_id FROM firmware_campaign_device cd "
        "JOIN firmware_campaign c ON c.id = cd.campaign_id WHERE c.state = 'cancelled' "
        "AND cd.state IN ('sent', 'downloading', 'verifying')"
    )
    return [row["campaign_id"] for row in rows]


async def expire(conn: Any, now: datetime) -> list[int]:
    """In-flight devices past their deadline fail; returns their campaigns."""
    rows = await conn.fetch(
        "UPDATE firmware_campaign_device SET state = 'failed', updated_at = $1, reason = "
        "CASE WHEN state = 'rebooting' THEN 'did not come back after its reboot' "
        "ELSE 'no report by the deadline (state ' || state || ')' END "
        "WHERE state IN ('sent', 'downloading', 'verifying', 'installing', 'rebooting') "
        "AND deadline_at < $1 RETURNING campaign_id",
        now,
    )
    return sorted({row["campaign_id"] for row in rows})


async def pre_install(conn: Any, campaign_id: int) -> list[tuple[int, str, str]]:
    rows = await conn.fetch(
        "SELECT device_id, device_uid, command_id FROM firmware_campaign_device "
        "WHERE campaign_id = $1 AND state IN ('sent', 'downloading', 'verifying')",
        campaign_id,
    )
    return [(row["device_id"], row["device_uid"], row["command_id"]) for row in rows]


async def requeue(
    conn: Any, campaign_id: int, device_ids: Sequence[int], reason: str, *, to: str = "pending"
) -> list[tuple[int, str, str]]:
    """Take devices that have not begun installing off their command (pre-empted: back to
    pending; cancelled campaign: cancelled); returns (device_id, uid, old command id)."""
    rows = await conn.fetch(
        "UPDATE firmware_campaign_device cd SET state = $4, reason = $3, updated_at = now() "
        "FROM (SELECT device_id, command_id FROM firmware_campaign_device "
        "      WHERE campaign_id = $1 AND device_id = ANY($2::bigint[]) "
        "      AND state IN ('sent', 'downloading', 'verifying') FOR UPDATE) AS old "
        "WHERE cd.campaign_id = $1 AND cd.device_id = old.device_id "
        "RETURNING cd.device_id, cd.device_uid, old.command_id",
        campaign_id,
        list(device_ids),
        reason,
        to,
    )
    return [(row["device_id"], row["device_uid"], row["command_id"]) for row in rows]


async def campaign_counts(conn: Any, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM firmware_campaign_device WHERE campaign_id = $1 "
        "GROUP BY state",
        campaign_id,
    )
    return {row["state"]: row["n"] for row in rows}


async def notify(conn: Any, campaign_id: int) -> None:
    await conn.execute("SELECT pg_notify('iochub_firmware', $1)", str(campaign_id))
