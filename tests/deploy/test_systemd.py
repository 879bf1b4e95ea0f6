"""deploy/systemd: units that systemd accepts, hardened, secrets as credentials, journald logs."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, tool

UNITS = DEPLOY / "systemd"
INSTALLED_CLI = "/opt/iochub/venv/bin/iochub"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
    "User": "iochub",
}


def unit(name: str) -> dict[str, list[str]]:
    """Every key of the [Service] section with all its values (keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def here(name: str, directory: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's iochub, so verify can find it."""
    cli = Path(sys.executable).parent / "iochub"
    copy = directory / name
    copy.write_text((UNITS / name).read_text().replace(INSTALLED_CLI, str(cli)))
    return copy


@pytest.fixture
def analyze() -> str:
    found = tool("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    return found


def test_systemd_accepts_the_units(analyze: str, tmp_path: Path) -> None:
    units = [here(n, tmp_path) for n in ("iochub.service", "iochub-migrate.service")]
    result = subprocess.run(
        [analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    # verify reports unknown keys and bad values on stderr but still exits 0.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_verify_would_catch_a_mistake(analyze: str, tmp_path: Path) -> None:
    broken = here("iochub.service", tmp_path)
    broken.write_text(broken.read_text().replace("ProtectSystem=", "ProtectSystm="))
    result = subprocess.run(
        [analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key" in result.stderr


def test_exposure_is_low(analyze: str, tmp_path: Path) -> None:
    """systemd's own exposure score (0 best, 10 worst); ≤ 2 is its "OK" band."""
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(here("iochub.service", tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr:
        pytest.skip(f"this systemd cannot score units offline: {result.stderr.strip()}")
    found = re.search(r"Overall exposure level for iochub.service: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize("name", ["iochub.service", "iochub-migrate.service"])
def test_hardened_with_credentials_and_journald(name: str) -> None:
    service = unit(name)
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{name}: {key}"
    assert service["EnvironmentFile"] == ["/etc/iochub/iochub.env"]
    assert "IOCHUB_LOG_FORMAT=json" in service["Environment"][0]
    assert service["StandardOutput"] == ["journal"]
    credentials = [c.split(":", 1)[0] for c in service["LoadCredential"]]
    assert "iochub_database__url" in credentials
    assert not any(re.search(r"PASSWORD|SECRET|URL=", e) for e in service["Environment"])


def test_hub_waits_for_its_migrations() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(UNITS / "iochub.service")
    assert "iochub-migrate.service" in parser["Unit"]["After"]
    assert "iochub-migrate.service" in parser["Unit"]["Wants"]
    assert unit("iochub-migrate.service")["Type"] == ["oneshot"]
    assert unit("iochub.service")["ExecStart"] == [f"{INSTALLED_CLI} serve"]


def test_environment_example_holds_no_secret() -> None:
    example = (UNITS / "iochub.env.example").read_text()
    names = re.findall(r"^(IOCHUB_[A-Z_]+)=", example, flags=re.MULTILINE)
    assert names and not [
        n for n in names if re.search(r"PASSWORD|SECRET_KEY|TOKEN|DATABASE__URL", n)
    ]
