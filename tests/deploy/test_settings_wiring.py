"""Each deployment hands the hub settings it really reads: the environment and secret
files of Compose, systemd and Kubernetes, loaded by the hub's own Settings class."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from hub.server.settings import Settings
from tests.deploy.support import DEPLOY, load_all


def dotenv(path: Path) -> dict[str, str]:
    pairs = re.findall(r"^(IOCHUB_[A-Z0-9_]+)=(.*)$", path.read_text(), flags=re.MULTILINE)
    return dict(pairs)


def load(env: dict[str, str], secrets: dict[str, str], tmp_path: Path) -> Settings:
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name, value in secrets.items():
        (folder / name).write_text(value + "\n")
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("IOCHUB_")]:
            patch.delenv(name)
        for name, value in {**env, "IOCHUB_SECRETS_DIR": str(folder)}.items():
            patch.setenv(name, value)
        return Settings(_env_file=None)  # type: ignore[call-arg]


def test_compose_hub(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    hub = compose["services"]["hub"]
    env = {**dotenv(DEPLOY / "compose" / ".env.example"), **hub["environment"]}
    secrets = {s["target"]: f"value-of-{s['source']}" for s in hub["secrets"]}
    secrets["iochub_database__url"] = "postgresql://iochub:pw@timescaledb:5432/iochub"
    settings = load(env, secrets, tmp_path)
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.username == "iochub-hub"
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "value-of-mqtt_hub_password"
    assert settings.mqtt.admin_password is not None  # the hub manages device identities
    assert settings.metrics.scrape_token is not None
    assert settings.database.url.get_secret_value().endswith("@timescaledb:5432/iochub")
    assert settings.log_format == "json"


def test_systemd_hub(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "iochub.service").read_text()
    credentials = re.findall(r"^LoadCredential=([a-z0-9_]+):", unit, flags=re.MULTILINE)
    env = dotenv(DEPLOY / "systemd" / "iochub.env.example")
    env |= dict(
        re.findall(r"(IOCHUB_[A-Z_]+)=(\S+)", re.search(r"^Environment=(.*)$", unit, re.M)[1])
    )  # type: ignore[index]
    secrets = {name: f"value-of-{name}" for name in credentials}
    secrets["iochub_database__url"] = "postgresql://iochub:pw@127.0.0.1:5432/iochub"
    settings = load(env, secrets, tmp_path)
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "value-of-iochub_secret_key"
    assert settings.mqtt.admin_password is not None and settings.mqtt.password is not None
    assert settings.database.timescaledb == "require"
    assert [str(n) for n in settings.metrics.allow_from] == ["127.0.0.1/32"]
    assert settings.data_dir == Path("/var/lib/iochub")


def test_kubernetes_hub(tmp_path: Path) -> None:
    docs = load_all(DEPLOY / "kubernetes" / "hub.yaml")
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    files = next(s for s in kustomization["secretGenerator"] if s["name"] == "iochub-secrets")
    secrets = {Path(f).name: f"value-of-{Path(f).name}" for f in files["files"]}
    secrets["iochub_database__url"] = "postgresql://iochub:pw@timescaledb:5432/iochub"
    env = {k: v for k, v in config.items() if k != "IOCHUB_SECRETS_DIR"}
    env["IOCHUB_MQTT__CLIENT_ID"] = "iochub-0"  # from the pod name
    settings = load(env, secrets, tmp_path)
    assert config["IOCHUB_SECRETS_DIR"] == "/run/secrets/iochub"
    assert settings.mqtt.identities == "database" and settings.mqtt.host == "emqx"
    assert settings.mqtt.password is not None and settings.secret_key is not None
    assert settings.broadcasts.speaker_subscription_group == "iochub-speakers"
    assert settings.http.host == "0.0.0.0" and settings.log_format == "json"
