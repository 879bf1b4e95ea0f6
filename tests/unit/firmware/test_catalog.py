"""The shipped catalog passes; each kind of broken copy is refused with one clear line."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from firmware_meta import DEFAULT_ROOT, check_catalog, json_schema, parse_version
from firmware_meta.signing import SignatureRefused, load_private_key, sign_file, verify
from hub.firmware.cli import make_app

S30 = Path("catalog/vnpt-technology/ip-speaker-s30")
DEMO_KEY = DEFAULT_ROOT / "demo-signing-keys" / "vnpt-technology.pem"


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    root = tmp_path / "fw"
    for part in ("catalog", "artifacts", "keys"):
        shutil.copytree(DEFAULT_ROOT / part, root / part)
    return root


def edit(path: Path, old: str, new: str, *, resign: bool = True) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    if resign:
        sign_file(path, load_private_key(DEMO_KEY), "vnpt-technology")


def problems(root: Path) -> list[str]:
    return [str(p) for p in check_catalog(root).problems]


def test_the_shipped_catalog_is_valid_and_covers_the_demo_fleet() -> None:
    report = check_catalog()
    assert report.problems == []
    models = report.by_model()
    from hub.devices.fleet import demo_fleet

    fleet = {(d.vendor, d.model) for d in demo_fleet().devices}
    assert fleet <= set(models), fleet - set(models)
    for device in demo_fleet().devices:
        versions = {r.version for r in models[(device.vendor, device.model)]}
        assert parse_version(device.firmware_version) in versions, device
    releases = report.releases
    assert {r.manifest.kind.value for r in releases} == {"speaker", "sensor", "camera"}
    assert any(r.manifest.vulnerabilities for r in releases)
    assert any(r.manifest.end_of_support for r in releases)
    assert all(len(models[key]) >= 2 for key in models)


def test_the_published_json_schema_is_the_models() -> None:
    published = json.loads((DEFAULT_ROOT / "manifest.schema.json").read_text())
    assert published == json.loads(json.dumps(json_schema()))
    assert "signature" in published["required"] and "artifact" in published["required"]


BREAKAGES: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "schema: unknown field",
        lambda root: edit(
            root / S30 / "2.4.1.toml",
            'kind = "speaker"',
            'kind = "speaker"\ncolour = "red"',
            resign=False,
        ),
        r"2\.4\.1\.toml: colour: Extra inputs are not permitted",
    ),
    (
        "schema: bad CVE id",
        lambda root: edit(root / S30 / "2.3.1.toml", "CVE-2024-900214", "CVE-24-1", resign=False),
        r"2\.3\.1\.toml: vulnerabilities\.0\.id: String should match pattern",
    ),
    (
        "schema: version that cannot be ordered",
        lambda root: edit(
            root / S30 / "2.4.1.toml", 'version = "2.4.1"', 'version = "newest"', resign=False
        ),
        r"2\.4\.1\.toml: version: Value error, 'newest' is not a version",
    ),
    (
        "not TOML",
        lambda root: (root / S30 / "2.4.1.toml").write_text("vendor = \n"),
        r"2\.4\.1\.toml: not valid TOML",
    ),
    (
        "duplicate version under another spelling",
        lambda root: (
            shutil.copy(root / S30 / "2.4.1.toml", root / S30 / "2.4.1-copy.toml"),
            edit(root / S30 / "2.4.1-copy.toml", 'version = "2.4.1"', 'version = "V2.4.1"'),
        ),
        r"2\.4\.1(-copy)?\.toml: duplicate version .*2\.4\.1 of VNPT Technology IP Speaker S30",
    ),
    (
        "broken upgrade path",
        lambda root: edit(
            root / S30 / "2.10.0.toml", 'min_version = "2.4.0"', 'min_version = "2.5.0"'
        ),
        r"2\.10\.0\.toml: broken upgrade path: min_version 2\.5\.0 is not a catalog version",
    ),
    (
        "min_version not older",
        lambda root: edit(
            root / S30 / "2.4.1.toml",
            'min_version = "2.3.1"',
            'min_version = "2.9.3"',
            resign=False,
        ),
        r"min_version 2\.9\.3 is not older than version 2\.4\.1",
    ),
    (
        "manifest changed after signing",
        lambda root: edit(
            root / S30 / "2.4.1.toml", "Stops logging", "Starts logging", resign=False
        ),
        r"2\.4\.1\.toml: signature refused: the signature does not verify",
    ),
    (
        "artifact hash changed in manifest, not re-signed",
        lambda root: edit(root / S30 / "2.4.1.toml", 'sha256 = "', 'sha256 = "0', resign=False),
        r"signature refused|String should",
    ),
    (
        "artifact tampered",
        lambda root: (
            (root / "artifacts/vnpt-technology/ip-speaker-s30/ip-speaker-s30-2.4.1.bin")
            .open("r+b")
            .write(b"X")
        ),
        r"2\.4\.1\.toml: artifact SHA-256 is [0-9a-f]{64}, the manifest says",
    ),
    (
        "artifact missing",
        lambda root: (
            root / "artifacts/vnpt-technology/ip-speaker-s30/ip-speaker-s30-2.9.3.bin"
        ).unlink(),
        r"2\.9\.3\.toml: artifact .* is missing",
    ),
    (
        "signed with another vendor's key",
        lambda root: sign_file(
            root / S30 / "2.4.1.toml",
            load_private_key(DEFAULT_ROOT / "demo-signing-keys" / "hanwha.pem"),
            "hanwha",
        ),
        r"signed with key 'hanwha', but VNPT Technology's key is 'vnpt-technology'",
    ),
    (
        "vendor key missing",
        lambda root: (root / "keys" / "envitech.pub").unlink(),
        r"aqm-65/1\.8\.0\.toml: signature refused: no public key 'envitech'",
    ),
]


@pytest.mark.parametrize(("what", "breaks", "expected"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_each_broken_copy_is_refused_with_its_reason(
    catalog: Path, what: str, breaks: Callable[[Path], None], expected: str
) -> None:
    breaks(catalog)
    found = problems(catalog)
    assert any(re.search(expected, line) for line in found), (what, found)


def test_a_signature_from_an_unknown_key_pair_is_refused(catalog: Path) -> None:
    impostor = Ed25519PrivateKey.generate()
    sign_file(catalog / S30 / "2.4.1.toml", impostor, "vnpt-technology")
    found = problems(catalog)
    assert found == [
        "catalog/vnpt-technology/ip-speaker-s30/2.4.1.toml: signature refused: the signature "
        "does not verify with key 'vnpt-technology': the manifest changed after it was "
        "signed, or another key signed it"
    ]


def test_verify_refuses_a_garbled_signature() -> None:
    release = next(r for r in check_catalog().releases if r.manifest.version == "2.4.1")
    raw = bytearray(base64.b64decode(release.manifest.signature.ed25519))
    raw[0] ^= 1
    garbled = release.manifest.model_copy(
        update={
            "signature": release.manifest.signature.model_copy(
                update={"ed25519": base64.b64encode(bytes(raw)).decode()}
            )
        }
    )
    with pytest.raises(SignatureRefused, match="does not verify"):
        verify(garbled, DEFAULT_ROOT / "keys")


def test_validate_command_lists_every_problem_and_exits_non_zero(catalog: Path) -> None:
    runner = CliRunner()
    app = make_app(lambda: "postgresql://unused/none")
    ok = runner.invoke(app, ["validate", "--catalog", str(DEFAULT_ROOT)])
    assert ok.exit_code == 0, ok.output
    assert "catalog ok: 24 releases of 7 models" in ok.output
    edit(catalog / S30 / "2.4.1.toml", "Stops logging", "Starts logging", resign=False)
    (catalog / "keys" / "envitech.pub").unlink()
    broken = runner.invoke(app, ["validate", "--catalog", str(catalog)])
    assert broken.exit_code == 1
    lines = [line for line in broken.output.splitlines() if line.startswith("catalog/")]
    assert len(lines) == 1 + 9, broken.output
    assert "10 problems" in broken.output
