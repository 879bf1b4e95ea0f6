"""The catalog in the database: importing firmware_meta/ and OSV advisories into it.

Import is all or nothing: a catalog with any problem is refused whole, and so is a
manifest that changed for a version already imported (a vendor re-cutting "2.4.1" is
exactly what must not slip by) unless the import is forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from firmware_meta import DEFAULT_ROOT, CatalogReport, Problem, check_catalog
from firmware_meta.advisories import attach, read_advisories
from firmware_meta.catalog import Release
from hub.errors import FieldProblem, ValidationFailed
from hub.firmware import store


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class CatalogRefused(ValidationFailed):
    """The catalog (or an advisory file) has problems; nothing was imported."""

    def __init__(self, detail: str, problems: list[Problem]) -> None:
        super().__init__(detail, [FieldProblem(p.where, p.message) for p in problems])
        self.problems = problems


def _label(release: Release) -> str:
    m = release.manifest
    return f"{m.vendor} {m.model} {m.version}"


def _values(release: Release) -> dict[str, Any]:
    m = release.manifest
    return {
        "vendor": m.vendor,
        "model": m.model,
        "kind": m.kind.value,
        "version": m.version,
        "released_on": m.released,
        "min_version": m.min_version,
        "end_of_support": m.end_of_support,
        "notes": m.notes.strip(),
        "artifact_file": m.artifact.file,
        "artifact_url": None if m.artifact.url is None else str(m.artifact.url),
        "artifact_size": m.artifact.size,
        "artifact_sha256": m.artifact.sha256,
        "manifest": m.model_dump(mode="json"),
        "manifest_sha256": release.digest,
        "signature_key": m.signature.key,
        "signature": m.signature.ed25519,
        "source": release.source,
    }


async def import_catalog(
    pool: asyncpg.Pool, root: Path = DEFAULT_ROOT, *, force: bool = False
) -> ImportResult:
    async with pool.acquire() as conn, conn.transaction():
        return await import_catalog_into(conn, root, force=force)


async def import_catalog_into(
    conn: Any, root: Path = DEFAULT_ROOT, *, force: bool = False
) -> ImportResult:
    """As `import_catalog`, on the caller's connection and in its transaction."""
    report: CatalogReport = check_catalog(root)
    if not report.ok:
        raise CatalogRefused(
            f"the catalog has {len(report.problems)} problems; nothing imported", report.problems
        )
    result = ImportResult()
    known = await store.release_digests(conn)
    changed = []
    for release in report.releases:
        m = release.manifest
        existing = known.get((m.vendor, m.model, m.version))
        if existing is not None and existing[1] != release.digest:
            changed.append(release)
    if changed and not force:
        raise CatalogRefused(
            f"{len(changed)} manifests changed for versions already imported; nothing "
            "imported (a release is not re-cut under the same version: use --force if "
            "the vendor really did)",
            [Problem(r.source, f"{_label(r)} differs from the imported manifest") for r in changed],
        )
    for release in report.releases:
        m = release.manifest
        existing = known.get((m.vendor, m.model, m.version))
        if existing is not None and existing[1] == release.digest:
            result.unchanged.append(_label(release))
            continue
        release_id = await store.upsert_release(conn, _values(release))
        await store.replace_manifest_vulnerabilities(
            conn, release_id, [(v.id, v.cvss, v.summary) for v in m.vulnerabilities]
        )
        (result.updated if existing else result.added).append(_label(release))
    return result


@dataclass
class AdvisoryResult:
    attached: list[str] = field(default_factory=list)
    unchanged: int = 0
    unmatched: list[str] = field(default_factory=list)


async def import_advisories(pool: asyncpg.Pool, path: Path) -> AdvisoryResult:
    """Attach the CVEs of an OSV file to the imported releases its ranges cover."""
    advisories, problems = read_advisories(path)
    if problems:
        raise CatalogRefused(
            f"{len(problems)} advisories cannot be read; nothing imported", problems
        )
    result = AdvisoryResult()
    async with pool.acquire() as conn, conn.transaction():
        known = await store.release_digests(conn)
        matches = attach(advisories, list(known))
        matched_sources = {a.source for _, a in matches}
        result.unmatched = [a.source for a in advisories if a.source not in matched_sources]
        for key, advisory in matches:
            v = advisory.vulnerability
            added = await store.add_advisory(
                conn, known[key][0], v.id, v.cvss, v.summary, advisory.source
            )
            if added:
                result.attached.append(f"{v.id} -> {' '.join(key)}")
            else:
                result.unchanged += 1
    return result
