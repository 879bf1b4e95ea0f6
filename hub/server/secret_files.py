"""Settings from secret files: one file per setting, named like its environment variable.

Container and service managers hand secrets to a process as files, never as image layers or
command lines: Docker/Compose secrets under /run/secrets, systemd's LoadCredential= under
$CREDENTIALS_DIRECTORY, Kubernetes Secrets mounted as a volume. A file named
``IOCHUB_MQTT__PASSWORD`` (any case) holds that setting's value; nested groups work as in the
environment. The environment wins over a file, so an operator can still override one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings, EnvSettingsSource

SECRETS_DIR_VARIABLE = "IOCHUB_SECRETS_DIR"
_DEFAULT_DIRS = ("/run/secrets",)
_MAX_BYTES = 64 * 1024


def secrets_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where secret files are read from: IOCHUB_SECRETS_DIR, systemd's credentials, /run/secrets."""
    for candidate in (
        environ.get(SECRETS_DIR_VARIABLE),
        environ.get("CREDENTIALS_DIRECTORY"),
        *_DEFAULT_DIRS,
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def read_secret_files(directory: Path, prefix: str) -> dict[str, str]:
    """{lower-case setting name: value} for every regular file named ``<prefix>...``."""
    values: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        name = path.name.lower()
        # Compose and Kubernetes mount secrets through symlinks; follow them, skip the rest.
        if not name.startswith(prefix.lower()) or not path.is_file():
            continue
        if path.stat().st_size > _MAX_BYTES:
            raise ValueError(f"secret file {path} is larger than {_MAX_BYTES} bytes")
        # One trailing newline is what `echo` and editors add; it is never part of a secret.
        values[name] = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    return values


class SecretFilesSource(EnvSettingsSource):
    """The environment source, fed from secret files instead of the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path | None) -> None:
        self.directory = directory
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.directory is None:
            return {}
        return read_secret_files(self.directory, self.env_prefix or "")

    def __repr__(self) -> str:
        return f"SecretFilesSource(directory={self.directory!r})"
