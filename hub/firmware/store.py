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
from datetime import date, time
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
