"""deploy/compose: valid against the Compose Specification, and complete as a deployment.

The schema is the Compose Specification's JSON Schema as vendored by check-jsonschema (PyPI,
``check_jsonschema/builtin_schemas/vendor/compose-spec.json``, from github.com/compose-spec);
no Compose binary is installable here without a container registry.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import jsonschema
import pytest
import yaml

from tests.deploy.support import DEPLOY, ROOT
from tests.support.hub import migrated_database

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendored.joinpath("compose-spec.json").read_text())
    return schema


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors


def test_the_schema_rejects_what_compose_would(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    broken = json.loads(json.dumps(compose))
    broken["services"]["hub"]["restart_policy"] = "always"  # not a Compose key
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert list(validator.iter_errors(broken))


def test_services_of_one_server(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"timescaledb", "mosquitto", "grafana", "migrate", "hub"}
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert "pgdata:/var/lib/postgresql/data" in services["timescaledb"]["volumes"]
    assert services["hub"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["hub"]["depends_on"]["mosquitto"] == {"condition": "service_healthy"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"


def test_hub_containers_are_locked_down(compose: dict[str, Any]) -> None:
    for name in ("hub", "migrate"):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    assert "hub-data:/var/lib/iochub" in compose["services"]["hub"]["volumes"]


def test_long_running_services_restart_and_report_health(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("restart") == "no":
            continue  # one-shot jobs
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_secrets_come_from_files_never_the_environment(compose: dict[str, Any]) -> None:
    script = (COMPOSE_DIR / "make-secrets.sh").read_text()
    for name, secret in compose["secrets"].items():
        assert secret["file"] == f"./secrets/{name}"
        assert name in script, f"make-secrets.sh does not create {name}"
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|DATABASE__URL", key) and not key.endswith("FILE"):
                pytest.fail(f"{name}: {key}={value} puts a secret in the environment")
        for secret in service.get("secrets", []):
            target = secret["target"] if isinstance(secret, dict) else secret
            source = secret["source"] if isinstance(secret, dict) else secret
            assert source in compose["secrets"], f"{name}: unknown secret {source}"
            if target.startswith("iochub_"):
                assert name in ("hub", "migrate")
    hub_targets = {s["target"] for s in compose["services"]["hub"]["secrets"]}
    assert {"iochub_database__url", "iochub_secret_key", "iochub_mqtt__password"} <= hub_targets


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume.startswith("${"):
                continue  # a directory the operator provides (certificates)
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: unnamed volume {source}"
    build = compose["services"]["migrate"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"


def test_every_variable_is_in_the_example_environment() -> None:
    example = (COMPOSE_DIR / ".env.example").read_text()
    defined = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used <= defined, f"not in .env.example: {sorted(used - defined)}"
    assert not re.search(r"(PASSWORD|SECRET_KEY|TOKEN)=\S", example), "secrets stay in files"


def test_broker_config_is_the_production_one_in_container_paths() -> None:
    """deploy/compose/mosquitto.conf may differ from deploy/mosquitto/mosquitto.conf only in
    paths, the log destination and where the hub's listener binds."""
    production = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    container = (COMPOSE_DIR / "mosquitto.conf").read_text().splitlines()

    def settings(lines: list[str]) -> list[str]:
        return [line for line in lines if line.strip() and not line.startswith("#")]

    differences = {
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so": (
            "plugin /usr/lib/mosquitto_dynamic_security.so"
        ),
        "log_dest syslog": "log_dest stdout",
        "listener 1883 127.0.0.1": "listener 1883",
    }

    def containerised(line: str) -> str:
        line = differences.get(line, line)
        return line.replace("/var/lib/mosquitto/", "/mosquitto/data/").replace(
            "/etc/mosquitto/certs/", "/mosquitto/certs/"
        )

    assert settings(container) == [containerised(line) for line in settings(production)]
    assert "persistence true" in container and "allow_anonymous false" in container


def test_make_secrets_writes_every_secret(tmp_path: Path) -> None:
    if shutil.which("sh") is None or shutil.which("base64") is None:
        pytest.skip("needs sh and base64")
    shutil.copy(COMPOSE_DIR / "make-secrets.sh", tmp_path)
    for run in range(2):  # the second run keeps what the first wrote
        result = subprocess.run(
            ["sh", str(tmp_path / "make-secrets.sh")], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        if run == 0:
            first = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    written = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    assert set(written) == set(compose["secrets"])
    assert written == first
    assert all(len(v) >= 32 for k, v in written.items() if k != "hub_database_url")
    assert written["hub_database_url"] == (
        f"postgresql://iochub:{written['db_password']}@timescaledb:5432/iochub"
    )
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700


async def test_grafana_role_script_lets_the_reader_log_in(tmp_path: Path) -> None:
    """grafana-role.sh against a migrated database, twice, on a role unique to this run
    (roles are shared by the whole server, and other tests use iochub_grafana)."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    role = f"iochub_grafana_{secrets.token_hex(3)}"
    script = tmp_path / "grafana-role.sh"
    script.write_text((COMPOSE_DIR / "grafana-role.sh").read_text().replace("iochub_grafana", role))
    (tmp_path / "reader_password").write_text("reader-secret")
    async with migrated_database("postgres") as url:
        dsn = urlsplit(url)
        (tmp_path / "db_password").write_text((dsn.password or "") + "\n")
        env = {
            **os.environ,
            "PGHOST": dsn.hostname or "127.0.0.1",
            "PGPORT": str(dsn.port or 5432),
            "PGUSER": dsn.username or "postgres",
            "PGDATABASE": dsn.path.lstrip("/"),
            "DB_PASSWORD_FILE": str(tmp_path / "db_password"),
            "READER_PASSWORD_FILE": str(tmp_path / "reader_password"),
        }
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'CREATE ROLE "{role}" NOLOGIN')  # as migration 0016 does
            for _ in range(2):  # idempotent: a restarted stack runs it again
                result = subprocess.run(
                    ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60
                )
                assert result.returncode == 0, result.stderr
            row = await conn.fetchrow(
                "SELECT a.rolcanlogin, a.rolpassword IS NOT NULL AS has_password, r.rolconfig"
                " FROM pg_authid a JOIN pg_roles r USING (rolname) WHERE rolname = $1",
                role,
            )
        finally:
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            await conn.close()
    assert row["rolcanlogin"] and row["has_password"]
    assert "default_transaction_read_only=on" in row["rolconfig"]
