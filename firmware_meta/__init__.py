"""The firmware catalog: one signed TOML manifest per vendor, model and version.

``check_catalog()`` loads and checks it (schema, signatures, artifacts, upgrade paths);
``parse_version()`` orders vendor version strings; ``read_advisories()`` reads OSV
vulnerability records. README.md beside this file describes the layout and the rules.
"""

from firmware_meta.catalog import (
    DEFAULT_ROOT,
    CatalogReport,
    Problem,
    Release,
    artifact_path,
    check_catalog,
    sha256_file,
)
from firmware_meta.schema import DeviceKind, Manifest, Severity, Vulnerability, json_schema
from firmware_meta.signing import SignatureRefused, canonical_bytes, slug, verify
from firmware_meta.versions import InvalidFirmwareVersion, Version, parse_version

__all__ = [
    "DEFAULT_ROOT",
    "CatalogReport",
    "DeviceKind",
    "InvalidFirmwareVersion",
    "Manifest",
    "Problem",
    "Release",
    "Severity",
    "SignatureRefused",
    "Version",
    "Vulnerability",
    "artifact_path",
    "canonical_bytes",
    "check_catalog",
    "json_schema",
    "parse_version",
    "sha256_file",
    "slug",
    "verify",
]
