"""docs/operations.md names only files that exist, and only settings the hub has."""

from __future__ import annotations

import re

from hub.server.settings import Settings, describe
from tests.deploy.support import ROOT

GUIDE = ROOT / "docs" / "operations.md"
# Paths the guide names on the operator's machine or inside containers, not in the repo.
ELSEWHERE = ("/", "deploy/kubernetes/secrets/", "IOCHUB_DATA_DIR/")
# Named as work to come, in the section the scale-out figures will fill.
TO_COME = {"bench/scale.py"}


def test_every_repository_path_in_the_guide_exists() -> None:
    text = GUIDE.read_text()
    named = set(re.findall(r"`([A-Za-z0-9_./-]+)`", text))
    named |= set(re.findall(r"\]\(([A-Za-z0-9_./-]+\.md)\)", text))
    paths = {n for n in named if "/" in n or n.endswith((".md", ".py", ".yaml", ".yml", ".sql"))}
    missing = []
    for path in sorted(paths):
        if path.startswith(ELSEWHERE) or path.startswith("$") or path in TO_COME:
            continue
        base = ROOT / "docs" if path.endswith(".md") and "/" not in path else ROOT
        if not (base / path).exists():
            missing.append(path)
    assert not missing, f"docs/operations.md names files that do not exist: {missing}"


def test_every_setting_in_the_guide_is_a_setting() -> None:
    known = {env for env, _, _ in describe(Settings(_env_file=None))}  # type: ignore[call-arg]
    known |= {"IOCHUB_SECRETS_DIR"}  # where secret files are read from (not a setting)
    named = set(re.findall(r"\bIOCHUB_[A-Z0-9_]+[A-Z0-9]", GUIDE.read_text()))
    assert named - known == set()


def test_every_setting_the_deployments_set_is_a_setting() -> None:
    """The hub ignores unknown IOCHUB_ variables, so a misspelt one would pass unnoticed."""
    known = {env for env, _, _ in describe(Settings(_env_file=None))}  # type: ignore[call-arg]
    known |= {"IOCHUB_SECRETS_DIR"}
    files = [ROOT / "Dockerfile", *sorted((ROOT / "deploy").rglob("*"))]
    unknown = {}
    for path in files:
        if path.is_file() and path.suffix not in (".json", ".sql"):
            for name in re.findall(r"\b(IOCHUB_[A-Z0-9_]+[A-Z0-9])\b", path.read_text()):
                # Secret files are named like settings, in lower case, elsewhere.
                if name not in known and not name.startswith("IOCHUB_GRAFANA_DB_"):
                    unknown.setdefault(name, str(path.relative_to(ROOT)))
    lower = set()
    for path in files:
        if path.is_file():
            lower |= set(
                re.findall(
                    r"\b(iochub_[a-z0-9_]+__[a-z0-9_]+|iochub_secret_key)\b", path.read_text()
                )
            )
    unknown |= {n: "secret file" for n in lower if n.upper() not in known}
    assert not unknown, unknown
