"""Load and check the whole catalog: every manifest, key, artifact and upgrade path.

A catalog folder holds ``catalog/**/*.toml`` (one manifest per release),
``artifacts/`` (images the hub serves to devices) and ``keys/`` (vendor public keys).
`check_catalog` never stops at the first problem: it returns every release that passed
and one line per problem, so `iochub firmware validate` can list them all.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from firmware_meta.schema import Manifest
from firmware_meta.signing import SignatureRefused, manifest_digest, verify
from firmware_meta.versions import Version, parse_version

DEFAULT_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Release:
    """A manifest that passed every check."""

    manifest: Manifest
    source: str
    """Its path relative to the catalog folder."""
    digest: str
    """SHA-256 of its canonical bytes."""

    @property
    def version(self) -> Version:
        return parse_version(self.manifest.version)

    @property
    def min_version(self) -> Version | None:
        text = self.manifest.min_version
        return None if text is None else parse_version(text)

    @property
    def key(self) -> tuple[str, str]:
        return self.manifest.vendor, self.manifest.model


@dataclass
class CatalogReport:
    root: Path
    releases: list[Release] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_model(self) -> dict[tuple[str, str], list[Release]]:
        models: dict[tuple[str, str], list[Release]] = defaultdict(list)
        for release in self.releases:
            models[release.key].append(release)
        for releases in models.values():
            releases.sort(key=lambda r: r.version)
        return dict(models)


def artifact_path(root: Path, manifest: Manifest) -> Path | None:
    file = manifest.artifact.file
    return None if file is None else root / "artifacts" / file


def sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_manifest(path: Path, where: str) -> tuple[Manifest | None, list[Problem]]:
    """Parse and schema-check one manifest file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, [Problem(where, f"not valid TOML ({exc})")]
    try:
        return Manifest.model_validate(document), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"]) or "manifest"
            problems.append(Problem(where, f"{location}: {error['msg']}"))
        return None, problems


def check_artifact(root: Path, manifest: Manifest, where: str) -> list[Problem]:
    path = artifact_path(root, manifest)
    if path is None:
        return []  # a vendor URL: checked by the device that downloads it
    if not path.is_file():
        return [Problem(where, f"artifact {manifest.artifact.file} is missing")]
    size, sha256 = sha256_file(path)
    problems = []
    if size != manifest.artifact.size:
        problems.append(
            Problem(where, f"artifact is {size} bytes, the manifest says {manifest.artifact.size}")
        )
    if sha256 != manifest.artifact.sha256:
        problems.append(
            Problem(
                where, f"artifact SHA-256 is {sha256}, the manifest says {manifest.artifact.sha256}"
            )
        )
    return problems


def _check_paths(releases: Iterable[Release]) -> list[Problem]:
    """Per model: one kind, no version twice, every min_version a version one can reach."""
    problems: list[Problem] = []
    by_model: dict[tuple[str, str], list[Release]] = defaultdict(list)
    for release in releases:
        by_model[release.key].append(release)
    for (vendor, model), group in sorted(by_model.items()):
        kinds = {r.manifest.kind for r in group}
        if len(kinds) > 1:
            problems.append(
                Problem(
                    group[0].source, f"{vendor} {model} is listed as {', '.join(sorted(kinds))}"
                )
            )
        seen: dict[Version, Release] = {}
        for release in sorted(group, key=lambda r: r.source):
            other = seen.get(release.version)
            if other is not None:
                problems.append(
                    Problem(
                        release.source,
                        f"duplicate version {release.manifest.version} of {vendor} {model} "
                        f"(also in {other.source})",
                    )
                )
            else:
                seen[release.version] = release
        versions = set(seen)
        for release in group:
            floor = release.min_version
            if floor is not None and floor not in versions:
                problems.append(
                    Problem(
                        release.source,
                        f"broken upgrade path: min_version {release.manifest.min_version} is "
                        f"not a catalog version of {vendor} {model}, so no device can get there",
                    )
                )
    return problems


def check_catalog(root: Path = DEFAULT_ROOT, *, artifacts: bool = True) -> CatalogReport:
    """Every manifest under root/catalog, checked; problems say file and reason."""
    report = CatalogReport(root)
    catalog = root / "catalog"
    keys = root / "keys"
    if not catalog.is_dir():
        report.problems.append(Problem(str(catalog), "no catalog folder"))
        return report
    candidates: list[Release] = []
    for path in sorted(catalog.rglob("*.toml")):
        where = str(path.relative_to(root))
        manifest, problems = read_manifest(path, where)
        if manifest is None:
            report.problems.extend(problems)
            continue
        try:
            verify(manifest, keys)
        except SignatureRefused as exc:
            report.problems.append(Problem(where, f"signature refused: {exc}"))
            continue
        if artifacts:
            artifact_problems = check_artifact(root, manifest, where)
            if artifact_problems:
                report.problems.extend(artifact_problems)
                continue
        candidates.append(Release(manifest, where, manifest_digest(manifest)))
    path_problems = _check_paths(candidates)
    report.problems.extend(path_problems)
    broken = {p.where for p in path_problems}
    report.releases = [r for r in candidates if r.source not in broken]
    return report
