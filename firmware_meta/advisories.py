"""Vulnerability advisories in the OSV format (https://ossf.github.io/osv-schema/).

Why OSV rather than CSAF 2.0: an OSV record is one small JSON object per vulnerability
with its CVE aliases, its CVSS vector and the affected versions as explicit lists or
introduced/fixed ranges, which is exactly what a catalog needs; CSAF 2.0 is a whole
advisory document (product tree, branches, relationships, remediations) written for
vendors' PSIRTs, and most device vendors here publish neither. OSV's ecosystem-less
``purl`` (``pkg:generic/<vendor>/<model>``) names a firmware model without inventing an
ecosystem, and OSV is what osv.dev, GitHub and many scanners exchange.

A file may hold one record, a list of records, or ``{"vulns": [...]}`` (an osv.dev
query answer). CVSS scores are computed from the vectors with the `cvss` library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from firmware_meta.catalog import Problem
from firmware_meta.schema import CVE_PATTERN, Vulnerability
from firmware_meta.signing import slug
from firmware_meta.versions import InvalidFirmwareVersion, Version, parse_version

_CVE = re.compile(CVE_PATTERN)


@dataclass(frozen=True, slots=True)
class Affected:
    vendor_slug: str
    model_slug: str
    versions: frozenset[Version]
    ranges: tuple[tuple[Version | None, Version | None, bool], ...]
    """(introduced, limit, limit_inclusive): fixed is exclusive, last_affected inclusive."""

    def covers(self, vendor: str, model: str, version: Version) -> bool:
        if (slug(vendor), slug(model)) != (self.vendor_slug, self.model_slug):
            return False
        if version in self.versions:
            return True
        for introduced, limit, inclusive in self.ranges:
            if introduced is not None and version < introduced:
                continue
            if limit is None or version < limit or (inclusive and version == limit):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Advisory:
    source: str
    """The OSV record's id."""
    vulnerability: Vulnerability
    affected: tuple[Affected, ...]

    def covers(self, vendor: str, model: str, version: str) -> bool:
        parsed = parse_version(version)
        return any(a.covers(vendor, model, parsed) for a in self.affected)


def _score(record: dict[str, Any]) -> float | None:
    for entry in record.get("severity") or []:
        kind, vector = entry.get("type"), entry.get("score", "")
        try:
            if kind == "CVSS_V3":
                return float(CVSS3(vector).base_score)
            if kind == "CVSS_V4":
                return float(CVSS4(vector).base_score)
        except CVSSError as exc:
            raise ValueError(f"severity {vector!r} is not a CVSS vector ({exc})") from None
    return None


def _package(entry: dict[str, Any]) -> tuple[str, str]:
    package = entry.get("package") or {}
    purl = package.get("purl") or ""
    if purl.startswith("pkg:generic/"):
        parts = purl.removeprefix("pkg:generic/").split("@")[0].split("/")
        if len(parts) == 2:
            return slug(parts[0]), slug(parts[1])
    name = package.get("name") or ""
    if "/" in name:
        vendor, _, model = name.partition("/")
        return slug(vendor), slug(model)
    raise ValueError(
        "affected package needs purl pkg:generic/<vendor>/<model> or name Vendor/Model"
    )


def _ranges(entry: dict[str, Any]) -> list[tuple[Version | None, Version | None, bool]]:
    result: list[tuple[Version | None, Version | None, bool]] = []
    for span in entry.get("ranges") or []:
        if span.get("type") not in ("ECOSYSTEM", "SEMVER"):
            raise ValueError(f"range type {span.get('type')!r} is not ECOSYSTEM or SEMVER")
        introduced: Version | None = None
        for event in span.get("events") or []:
            if "introduced" in event:
                value = event["introduced"]
                introduced = None if value == "0" else parse_version(value)
            elif "fixed" in event:
                result.append((introduced, parse_version(event["fixed"]), False))
                introduced = None
            elif "last_affected" in event:
                result.append((introduced, parse_version(event["last_affected"]), True))
        # An introduced event with nothing after it: affected from there on.
        events = span.get("events") or []
        if events and "introduced" in events[-1]:
            result.append((introduced, None, False))
    return result


def parse_record(record: dict[str, Any]) -> Advisory:
    if not isinstance(record, dict) or "id" not in record:
        raise ValueError("an OSV record needs an id")
    source = str(record["id"])
    cves = [source] if _CVE.match(source) else []
    cves += [a for a in record.get("aliases") or [] if isinstance(a, str) and _CVE.match(a)]
    if not cves:
        raise ValueError(f"{source}: no CVE id in id or aliases")
    score = _score(record)
    if score is None:
        raise ValueError(f"{source}: no CVSS_V3 or CVSS_V4 severity")
    summary = (record.get("summary") or (record.get("details") or "").split("\n")[0]).strip()
    vulnerability = Vulnerability(id=cves[0], cvss=score, summary=(summary or cves[0])[:200])
    affected = []
    for entry in record.get("affected") or []:
        vendor, model = _package(entry)
        versions = frozenset(parse_version(v) for v in entry.get("versions") or [])
        affected.append(Affected(vendor, model, versions, tuple(_ranges(entry))))
    if not affected:
        raise ValueError(f"{source}: no affected packages")
    return Advisory(source, vulnerability, tuple(affected))


def read_advisories(path: Path) -> tuple[list[Advisory], list[Problem]]:
    where = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [], [Problem(where, f"not readable JSON ({exc})")]
    records: Iterable[Any]
    if isinstance(document, dict) and "vulns" in document:
        records = document["vulns"]
    elif isinstance(document, list):
        records = document
    else:
        records = [document]
    advisories, problems = [], []
    for index, record in enumerate(records):
        try:
            advisories.append(parse_record(record))
        except (ValueError, InvalidFirmwareVersion) as exc:
            problems.append(Problem(f"{where}[{index}]", str(exc)))
    return advisories, problems


def attach(
    advisories: Sequence[Advisory], releases: Sequence[tuple[str, str, str]]
) -> list[tuple[tuple[str, str, str], Advisory]]:
    """Every ((vendor, model, version), advisory) where the advisory covers that release."""
    return [(r, a) for a in advisories for r in releases if a.covers(*r)]
