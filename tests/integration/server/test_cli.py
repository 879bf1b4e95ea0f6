"""The `iochub` command as a person runs it: real processes, real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from hub.devices.broker import verify_device_secret
from tests.conftest import Clients
from tests.support.hub import RunningHub

IOCHUB = [sys.executable, "-m", "hub.server"]


def iochub(
    database_url: str, *args: str, input: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **{f"IOCHUB_{name.upper()}": value for name, value in settings.items()},
        "IOCHUB_DATABASE__URL": database_url,
        "COLUMNS": "200",
        "IOCHUB_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [*IOCHUB, *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=60,
        check=False,
    )


def test_config_masks_secrets() -> None:
    env = {
        **os.environ,
        "IOCHUB_DATABASE__URL": "postgresql://hub:hunter2pass@db/iochub",
        "IOCHUB_MQTT__PASSWORD": "mqtt-secret-42",
        "IOCHUB_SECRET_KEY": "k3y-s3cret",
        "COLUMNS": "250",
    }
    result = subprocess.run(
        [*IOCHUB, "config"], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert "IOCHUB_DATABASE__URL" in result.stdout and "hub:***@db/iochub" in result.stdout
    for secret in ("hunter2pass", "mqtt-secret-42", "k3y-s3cret"):
        assert secret not in result.stdout


async def test_users_and_tokens_from_the_command_line(
    hub: RunningHub, database_url: str, db: asyncpg.Connection
) -> None:
    await db.execute("DELETE FROM hub_user WHERE username = 'cli-tech'")
    made = iochub(
        database_url,
        "users",
        "create",
        "cli-tech",
        "--role",
        "technician",
        "--password",
        "a long enough password",
    )
    assert made.returncode == 0, made.stderr
    again = iochub(
        database_url,
        "users",
        "create",
        "cli-tech",
        "--role",
        "technician",
        "--password",
        "a long enough password",
    )
    assert again.returncode == 1 and "exists already" in again.stderr
    bad_role = iochub(
        database_url, "users", "create", "x", "--role", "king", "--password", "p" * 12
    )
    assert bad_role.returncode == 2 and "role must be one of" in bad_role.stderr
    token = iochub(
        database_url,
        "users",
        "token",
        "issue",
        "cli-tech",
        "--name",
        "ci",
        "--expires-in-days",
        "30",
    )
    assert token.returncode == 0, token.stderr
    secret = token.stdout.strip().splitlines()[-1]
    assert secret.startswith("ioc_t_")
    forever = iochub(database_url, "users", "token", "issue", "cli-tech", "--name", "grafana")
    assert forever.returncode == 0, forever.stderr
    tokens = iochub(database_url, "users", "token", "list", "cli-tech")
    assert tokens.returncode == 0, tokens.stderr
    assert "expires" in tokens.stdout and "last used" in tokens.stdout
    [ci] = [line for line in tokens.stdout.splitlines() if " ci " in line]
    expiry = await db.fetchval("SELECT expires_at FROM api_token WHERE name = 'ci'")
    assert expiry.isoformat(timespec="minutes") in ci and secret not in tokens.stdout
    revoked = iochub(database_url, "users", "token", "revoke-all", "cli-tech")
    assert revoked.returncode == 0 and "revoked 2 tokens" in revoked.stdout
    listed = iochub(database_url, "users", "list")
    assert "cli-tech" in listed.stdout and "technician" in listed.stdout


async def test_a_refused_username_is_a_clear_error_without_row_contents(
    hub: RunningHub, database_url: str, db: asyncpg.Connection
) -> None:
    made = iochub(
        database_url, "users", "create", "WsB", "--role", "viewer", "--password", "p" * 12
    )
    assert made.returncode == 1, made.stderr
    assert "username:" in made.stderr and "lower-case" in made.stderr
    for leak in ("Traceback", "argon2", "Failing row", "IntegrityError"):
        assert leak not in made.stderr + made.stdout
    assert not await db.fetchval("SELECT count(*) FROM hub_user WHERE username ILIKE 'wsb'")
    # A refusal the command does not check itself (a token name the table's CHECK refuses)
    # names the constraint, never the row (which would hold the token's hash).
    await db.execute("DELETE FROM hub_user WHERE username = 'cli-row'")
    await db.execute(
        "INSERT INTO hub_user (username, password_hash, role) VALUES ('cli-row', 'x', 'viewer')"
    )
    unnamed = iochub(database_url, "users", "token", "issue", "cli-row", "--name", "")
    assert unnamed.returncode == 1, unnamed.stderr
    assert "constraint api_token_name_check" in unnamed.stderr
    for leak in ("Traceback", "Failing row", "ioc_t_", "\\x"):
        assert leak not in unnamed.stderr + unnamed.stdout
    await db.execute("DELETE FROM hub_user WHERE username = 'cli-row'")


async def test_device_import_list_and_export(
    hub: RunningHub, database_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    await db.execute("TRUNCATE device, audit_log RESTART IDENTITY CASCADE")
    source = tmp_path / "devices.csv"
    source.write_text(
        "uid,kind,ward,latitude,longitude\n"
        + "".join(f"cli-{n},sensor,ward-a,20.8{n},106.7\n" for n in range(5))
    )
    imported = iochub(database_url, "devices", "import", str(source))
    assert imported.returncode == 0, imported.stderr
    assert "imported 5 devices" in imported.stdout
    broken = tmp_path / "broken.csv"
    broken.write_text("uid,kind,ward\nok-1,sensor,ward-a\nbad-1,sensor,nowhere\n")
    failed = iochub(database_url, "devices", "import", str(broken))
    assert failed.returncode == 1 and "row 2 ward" in failed.stderr
    assert await db.fetchval("SELECT count(*) FROM device") == 5

    listed = iochub(database_url, "devices", "list", "--ward", "ward-a", "--output", "table")
    assert listed.returncode == 0 and "cli-4" in listed.stdout and "5 shown" in listed.stdout
    # piped: CSV with full values, as scripts read it
    piped = iochub(database_url, "devices", "list", "--kind", "sensors")
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0].startswith("uid,kind,ward,status")
    assert sorted(line.split(",")[0] for line in lines[1:]) == [f"cli-{n}" for n in range(5)]
    as_json = iochub(database_url, "devices", "list", "--output", "json", "--kind", "sensor")
    assert [d["uid"] for d in json.loads(as_json.stdout)] == [f"cli-{n}" for n in range(5)]
    unknown = iochub(database_url, "devices", "list", "--kind", "lamps")
    assert unknown.returncode == 2 and "unknown kind 'lamps'" in unknown.stderr
    target = tmp_path / "out.geojson"
    exported = iochub(database_url, "devices", "export", str(target))
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads(target.read_text())["features"]) == 5
    for form in ("csv", "json"):
        back = tmp_path / f"devices.{form}"
        assert iochub(database_url, "devices", "export", str(back)).returncode == 0
        if form == "json":
            assert [d["uid"] for d in json.loads(back.read_text())][:1] == ["cli-0"]
        await db.execute("TRUNCATE device RESTART IDENTITY CASCADE")
        again = iochub(database_url, "devices", "import", str(back))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "imported 5 devices" in again.stdout and "ignored" in again.stdout
        assert await db.fetchval("SELECT count(*) FROM device WHERE ward_id IS NOT NULL") == 5
    refused = iochub(database_url, "devices", "import", str(target))
    assert refused.returncode == 2 and "GeoJSON is an export" in refused.stderr


def test_users_create_asks_for_a_password_only_on_a_terminal(database_url: str) -> None:
    result = iochub(database_url, "users", "create", "no-tty", "--role", "viewer", input="")
    assert result.returncode == 2
    assert "no terminal to ask for the password on" in result.stderr
    assert "Aborted" not in result.stderr + result.stdout


async def test_migrate_reports_and_serve_refuses_an_unreachable_database() -> None:
    result = iochub("postgresql://postgres@127.0.0.1:1/none", "migrate")
    assert result.returncode == 1 and "error:" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["devices", "--help"], ["users", "--help"]])
def test_help(args: list[str]) -> None:
    assert (
        subprocess.run([*IOCHUB, *args], capture_output=True, check=False, timeout=60).returncode
        == 0
    )


async def test_device_credentials_from_the_command_line(
    clients: Clients, database_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    await clients.admin.post(
        "/api/v1/devices", json={"uid": "cred-1", "kind": "sensor", "ward": "ward-a"}
    )
    target = tmp_path / "secrets.json"
    # no broker admin and no database identities: nothing would tell the broker, so refused
    untold = iochub(database_url, "devices", "credentials", "issue", "cred-1")
    assert untold.returncode == 1 and "IOCHUB_MQTT__ADMIN_USERNAME" in untold.stderr
    assert not await db.fetchval("SELECT count(*) FROM device_credential")
    # a broker that reads identities from this database (EMQX's views): live at once
    issued = iochub(
        database_url,
        "devices",
        "credentials",
        "issue",
        "cred-1",
        "--output",
        str(target),
        mqtt__identities="database",
    )
    assert issued.returncode == 0, issued.stderr
    secret = json.loads(target.read_text())["cred-1"]
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    stored = await db.fetchval("SELECT secret_hash FROM device_credential")
    assert secret not in stored and verify_device_secret(secret, stored)
    missing = iochub(
        database_url, "devices", "credentials", "issue", "nope", mqtt__identities="database"
    )
    assert missing.returncode == 1 and "no device" in missing.stderr
    revoked = iochub(database_url, "devices", "credentials", "revoke", "cred-1")
    assert revoked.returncode == 0, revoked.stderr
    assert await db.fetchval("SELECT revoked_at IS NOT NULL FROM device_credential")


async def test_device_profiles_are_imported_checked_and_listed(
    clients: Clients, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    good = tmp_path / "th-2.json"
    good.write_text(
        json.dumps(
            {
                "model": "Acme TH-2",
                "identities": ["urn:dev:mac:{serial}:"],
                "names": {"tempF": {"metric": "temperature", "unit": "degF"}},
            }
        )
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "X", "names": {"t": {"metric": "temp"}}}))
    refused = iochub(database_url, "devices", "profiles", "import", str(bad))
    assert refused.returncode == 1
    assert "names.t: 'temp' is not a catalog metric" in refused.stderr
    assert await db.fetchval("SELECT count(*) FROM device_profile") == 0
    imported = iochub(database_url, "devices", "profiles", "import", str(good))
    assert imported.returncode == 0, imported.stderr
    assert "imported the profile of 'Acme TH-2'" in imported.stdout
    again = iochub(database_url, "devices", "profiles", "import", str(good))
    assert "replaced the profile of 'Acme TH-2'" in again.stdout
    listed = iochub(database_url, "devices", "profiles", "list")
    assert listed.returncode == 0, listed.stderr
    for model in ("Acme TH-2", "AQM-65", "RFC 8428 sensor", "WL-Radar 20", "NSM-1"):
        assert model in listed.stdout
