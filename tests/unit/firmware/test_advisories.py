"""OSV records: CVE from id or aliases, CVSS computed from the vector, ranges as versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_meta import DEFAULT_ROOT, Severity
from firmware_meta.advisories import attach, read_advisories

DEMO = DEFAULT_ROOT / "osv" / "demo-advisories.json"


def test_the_demo_advisories_parse_with_scores_from_their_vectors() -> None:
    advisories, problems = read_advisories(DEMO)
    assert problems == []
    by_cve = {a.vulnerability.id: a for a in advisories}
    assert by_cve["CVE-2025-900788"].vulnerability.cvss == 8.8
    assert by_cve["CVE-2025-900788"].vulnerability.severity is Severity.HIGH
    assert by_cve["CVE-2025-900788"].source == "IOCHUB-DEMO-2025-0007"
    assert by_cve["CVE-2025-900811"].vulnerability.cvss == 7.5


def test_ranges_and_lists_cover_the_right_versions() -> None:
    advisories, _ = read_advisories(DEMO)
    s30 = "VNPT Technology", "IP Speaker S30"
    releases = [(*s30, v) for v in ("2.2.7", "2.3.1", "2.4.0", "2.4.1", "2.9.3", "2.10.0")]
    releases += [
        ("Envitech", m, v) for m in ("AQM-65", "NSM-1") for v in ("1.8.0", "1.9.2", "1.10.0")
    ]
    hits = sorted((r[1], r[2], a.vulnerability.id) for r, a in attach(advisories, releases))
    assert hits == [
        ("AQM-65", "1.9.2", "CVE-2025-900811"),
        ("IP Speaker S30", "2.3.1", "CVE-2025-900788"),
        ("IP Speaker S30", "2.4.0", "CVE-2025-900788"),
        ("IP Speaker S30", "2.4.1", "CVE-2025-900788"),
        ("NSM-1", "1.8.0", "CVE-2025-900811"),
        ("NSM-1", "1.9.2", "CVE-2025-900811"),
    ]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"id": "GHSA-1", "severity": [], "affected": []}, "no CVE id"),
        (
            {"id": "CVE-2025-1111", "affected": [{"package": {"purl": "pkg:generic/a/b"}}]},
            "no CVSS",
        ),
        (
            {"id": "CVE-2025-1111", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X"}]},
            "is not a CVSS vector",
        ),
        (
            {
                "id": "CVE-2025-1111",
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}
                ],
                "affected": [{"package": {"name": "no-vendor"}}],
            },
            "purl pkg:generic",
        ),
    ],
)
def test_bad_records_are_named_with_their_reason(
    tmp_path: Path, record: dict[str, object], reason: str
) -> None:
    path = tmp_path / "osv.json"
    path.write_text(json.dumps([record]))
    advisories, problems = read_advisories(path)
    assert advisories == []
    assert len(problems) == 1 and reason in problems[0].message, problems
