"""Per-device firmware compliance: the version a device reports, held against the catalog.

A device is, in order of precedence:
- ``unknown_model``: its vendor and model are not in the catalog;
- ``unknown_version``: the model is known, the version it reports is not (or unreadable);
- ``vulnerable``: its version has known CVEs (the worst severity and each CVE listed);
- ``end_of_support``: its version's end-of-support date has passed;
- ``outdated``: a newer release exists (how many versions and days behind);
- ``current``: it runs the newest release.
Pre-releases never count as "newer" unless the device already runs one.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from firmware_meta import InvalidFirmwareVersion, Severity, Version, parse_version, slug
from hub.firmware.store import DeviceFirmware, ReleaseRow, VulnerabilityRow


class ComplianceState(enum.StrEnum):
    CURRENT = "current"
    OUTDATED = "outdated"
    VULNERABLE = "vulnerable"
    END_OF_SUPPORT = "end_of_support"
    UNKNOWN_MODEL = "unknown_model"
    UNKNOWN_VERSION = "unknown_version"


@dataclass(frozen=True, slots=True)
class Cve:
    id: str
    cvss: float
    severity: Severity
    summary: str
    source: str


@dataclass(frozen=True, slots=True)
class CatalogRelease:
    row: ReleaseRow
    version: Version
    cves: tuple[Cve, ...]

    @property
    def worst(self) -> Severity | None:
        if not self.cves:
            return None
        return max((c.severity for c in self.cves), key=lambda s: s.rank)


@dataclass(frozen=True, slots=True)
class Compliance:
    device: DeviceFirmware
    state: ComplianceState
    release: CatalogRelease | None = None
    latest: CatalogRelease | None = None
    versions_behind: int = 0
    days_behind: int = 0
    end_of_support: date | None = None
    reason: str = ""

    @property
    def cves(self) -> tuple[Cve, ...]:
        return () if self.release is None else self.release.cves

    @property
    def worst_severity(self) -> Severity | None:
        return None if self.release is None else self.release.worst


@dataclass
class FirmwareCatalog:
    """The imported releases, per model, oldest first."""

    models: dict[tuple[str, str], list[CatalogRelease]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, releases: Iterable[ReleaseRow], vulnerabilities: Iterable[VulnerabilityRow]
    ) -> FirmwareCatalog:
        cves: dict[int, list[Cve]] = defaultdict(list)
        for v in vulnerabilities:
            cves[v.release_id].append(Cve(v.cve, v.cvss, Severity.of(v.cvss), v.summary, v.source))
        models: dict[tuple[str, str], list[CatalogRelease]] = defaultdict(list)
        for row in releases:
            entry = CatalogRelease(row, parse_version(row.version), tuple(cves[row.id]))
            models[(slug(row.vendor), slug(row.model))].append(entry)
        for entries in models.values():
            entries.sort(key=lambda r: r.version)
        return cls(dict(models))

    def releases_of(self, vendor: str, model: str) -> list[CatalogRelease]:
        return self.models.get((slug(vendor), slug(model)), [])

    def find(self, vendor: str, model: str, version: str) -> CatalogRelease | None:
        try:
            wanted = parse_version(version)
        except InvalidFirmwareVersion:
            return None
        for entry in self.releases_of(vendor, model):
            if entry.version == wanted:
                return entry
        return None

    def by_id(self, release_id: int) -> CatalogRelease | None:
        for entries in self.models.values():
            for entry in entries:
                if entry.row.id == release_id:
                    return entry
        return None


def assess(device: DeviceFirmware, catalog: FirmwareCatalog, today: date) -> Compliance:
    releases = catalog.releases_of(device.vendor, device.model)
    if not releases:
        return Compliance(
            device,
            ComplianceState.UNKNOWN_MODEL,
            reason=f"{device.vendor} {device.model} is not in the firmware catalog",
        )
    release = catalog.find(device.vendor, device.model, device.firmware_version)
    if release is None:
        what = device.firmware_version or "no version"
        return Compliance(
            device,
            ComplianceState.UNKNOWN_VERSION,
            reason=f"{what} is not a catalog version of {device.model}",
        )
    candidates = [
        r for r in releases if not r.version.is_prerelease or release.version.is_prerelease
    ]
    latest = max(candidates, key=lambda r: r.version)
    newer = [r for r in candidates if r.version > release.version]
    days = max(0, (latest.row.released_on - release.row.released_on).days) if newer else 0
    eos = release.row.end_of_support
    common = {
        "release": release,
        "latest": latest,
        "versions_behind": len(newer),
        "days_behind": days,
        "end_of_support": eos,
    }
    if release.cves:
        worst = release.worst
        ids = ", ".join(c.id for c in release.cves)
        return Compliance(
            device,
            ComplianceState.VULNERABLE,
            reason=f"{ids} ({worst.value if worst else ''})",
            **common,  # type: ignore[arg-type]
        )
    if eos is not None and eos <= today:
        return Compliance(
            device,
            ComplianceState.END_OF_SUPPORT,
            reason=f"support ended {eos.isoformat()}",
            **common,  # type: ignore[arg-type]
        )
    if newer:
        return Compliance(
            device,
            ComplianceState.OUTDATED,
            reason=f"{len(newer)} versions and {days} days behind {latest.row.version}",
            **common,  # type: ignore[arg-type]
        )
    return Compliance(device, ComplianceState.CURRENT, **common)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SummaryRow:
    ward: str | None
    kind: str
    vendor: str
    model: str
    counts: dict[str, int]
    total: int


def summarise(items: Sequence[Compliance]) -> list[SummaryRow]:
    groups: dict[tuple[str | None, str, str, str], dict[str, int]] = {}
    for item in items:
        d = item.device
        counts = groups.setdefault(
            (d.ward, d.kind, d.vendor, d.model), {s.value: 0 for s in ComplianceState}
        )
        counts[item.state.value] += 1
    return [
        SummaryRow(ward, kind, vendor, model, counts, sum(counts.values()))
        for (ward, kind, vendor, model), counts in sorted(
            groups.items(), key=lambda kv: tuple(x or "" for x in kv[0])
        )
    ]
