"""Settings from secret files (Compose secrets, systemd credentials, Kubernetes Secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.server.secret_files import read_secret_files, secrets_dir
from hub.server.settings import Settings


def test_secret_files_fill_nested_settings_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "IOCHUB_MQTT__PASSWORD").write_text("broker-secret\n")
    (tmp_path / "iochub_secret_key").write_text("sealing-key")
    (tmp_path / "iochub_database__url").write_text("postgresql://hub:from-file@db/iochub")
    (tmp_path / "unrelated").write_text("ignored")
    monkeypatch.setenv("IOCHUB_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("IOCHUB_DATABASE__URL", "postgresql://hub:from-env@db/iochub")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "broker-secret"
    assert (
        settings.secret_key is not None and settings.secret_key.get_secret_value() == "sealing-key"
    )
    assert settings.database.url.get_secret_value() == "postgresql://hub:from-env@db/iochub"


def test_where_secret_files_are_looked_for(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    assert secrets_dir({"CREDENTIALS_DIRECTORY": str(credentials)}) == credentials
    assert secrets_dir({"IOCHUB_SECRETS_DIR": str(tmp_path)}) == tmp_path
    assert secrets_dir({"IOCHUB_SECRETS_DIR": str(tmp_path / "missing")}) in (
        None,
        Path("/run/secrets"),
    )


def test_oversized_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "iochub_secret_key").write_bytes(b"x" * 70_000)
    with pytest.raises(ValueError, match="larger than"):
        read_secret_files(tmp_path, "IOCHUB_")
