"""The manifest of one firmware release: what a TOML file in catalog/ must say.

The JSON Schema published beside the catalog (firmware_meta/manifest.schema.json) is
generated from these models (`iochub firmware schema`), so the two cannot drift.
"""

from __future__ import annotations

import enum
from datetime import date
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from firmware_meta.versions import InvalidFirmwareVersion, parse_version

FORMAT = 1
SHA256_PATTERN = r"^[0-9a-f]{64}$"
CVE_PATTERN = r"^CVE-\d{4}-\d{4,}$"
KEY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class DeviceKind(enum.StrEnum):
    SPEAKER = "speaker"
    SENSOR = "sensor"
    CAMERA = "camera"


class Severity(enum.StrEnum):
    """CVSS v3.1 qualitative severity (FIRST CVSS v3.1 specification, section 5)."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @classmethod
    def of(cls, score: float) -> Severity:
        if score == 0:
            return cls.NONE
        if score < 4.0:
            return cls.LOW
        if score < 7.0:
            return cls.MEDIUM
        if score < 9.0:
            return cls.HIGH
        return cls.CRITICAL

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Vulnerability(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=CVE_PATTERN, description="The CVE id, e.g. CVE-2025-1234.")]
    cvss: Annotated[float, Field(ge=0, le=10, description="CVSS v3.1 base score.")]
    summary: ShortText

    @property
    def severity(self) -> Severity:
        return Severity.of(self.cvss)


class Artifact(BaseModel):
    """The firmware image: a file in the catalog's artifacts/ folder or a vendor URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Annotated[
        str | None, Field(description="Path under firmware_meta/artifacts/, e.g. vendor/x.bin.")
    ] = None
    url: HttpUrl | None = None
    size: Annotated[int, Field(gt=0, description="Size in bytes.")]
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN, description="Lowercase hex SHA-256.")]

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError("must be a relative path inside artifacts/, without '..'")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Artifact:
        if (self.file is None) == (self.url is None):
            raise ValueError("give exactly one of file or url")
        return self


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[
        str, Field(pattern=KEY_ID_PATTERN, description="Key id: keys/<key>.pub beside catalog/.")
    ]
    ed25519: Annotated[
        str, Field(min_length=86, max_length=88, description="Base64 Ed25519 signature.")
    ]


def _version(value: str) -> str:
    try:
        parse_version(value)
    except InvalidFirmwareVersion as exc:
        raise ValueError(str(exc)) from None
    return value


class Manifest(BaseModel):
    """One vendor/model/version. ``signature`` covers every other field (signing.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    vendor: ShortText
    model: ShortText
    kind: DeviceKind
    version: Annotated[str, Field(min_length=1, max_length=64)]
    released: date
    artifact: Artifact
    min_version: Annotated[
        str | None,
        Field(max_length=64, description="Oldest version this release installs from."),
    ] = None
    notes: Annotated[str, Field(max_length=4000)] = ""
    end_of_support: date | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    signature: Signature

    _check_version = field_validator("version")(_version)

    @field_validator("min_version")
    @classmethod
    def _check_min_version(cls, value: str | None) -> str | None:
        return None if value is None else _version(value)

    @field_validator("vulnerabilities")
    @classmethod
    def _unique_cves(cls, value: list[Vulnerability]) -> list[Vulnerability]:
        ids = [v.id for v in value]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"listed twice: {', '.join(twice)}")
        return value

    @model_validator(mode="after")
    def _path_makes_sense(self) -> Manifest:
        if self.min_version is not None and parse_version(self.min_version) >= parse_version(
            self.version
        ):
            raise ValueError(
                f"min_version {self.min_version} is not older than version {self.version}"
            )
        if self.end_of_support is not None and self.end_of_support < self.released:
            raise ValueError("end_of_support is before released")
        return self


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://iochub.example/firmware/manifest-1.schema.json"
    return schema
