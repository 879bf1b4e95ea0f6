"""`iochub grafana sync` against the strict Grafana double: first sync, a no-op re-sync,
a dashboard changed in the repository, one changed in Grafana (a conflict until forced),
a dry run, permission errors, Grafana down, the start-up retry; and the read-only role
it provisions, connected to for real."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from hub.integrations.grafana_sync import (
    DATASOURCE_UID,
    FOLDER_UID,
    READER_ROLE,
    GrafanaUnavailable,
    SyncError,
    load_dashboards,
    sync_at_start,
    sync_grafana,
)
from hub.integrations.settings import GrafanaSettings
from tests.support.asgi import serving
from tests.support.brokers import free_port
from tests.support.grafana_double import GrafanaDouble, grafana_double
from tests.support.pools import migrated_pool

TOKEN = "glsa_sync_test_token"
# The role is the whole server's: every test that sets its password sets this one.
READER_PASSWORD = "reader-password-for-tests"
DASHBOARD_UIDS = {"iochub-sensors", "iochub-device-health", "iochub-broadcasts", "iochub-alerts"}
SECRET_TABLES = (
    "hub_user",
    "login_session",
    "api_token",
    "device_credential",
    "coap_key",
    "webhook_secret",
    "camera",
)


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_pool("postgres") as opened:
        yield opened


@pytest.fixture
async def pool(database: tuple[str, asyncpg.Pool]) -> asyncpg.Pool:
    _, opened = database
    await opened.execute("DELETE FROM grafana_sync")
    return opened


@pytest.fixture
async def grafana() -> AsyncIterator[GrafanaDouble]:
    async with grafana_double(TOKEN) as double:
        yield double


def settings_for(url: str, token: str = TOKEN, **extra: Any) -> GrafanaSettings:
    return GrafanaSettings.model_validate(
        {
            "url": url,
            "token": token,
            "reader_password": READER_PASSWORD,
            # Roomy: the double answers at once, but a loaded CI machine may not schedule it.
            "timeout_s": 15,
            **extra,
        }
    )


def writes(double: GrafanaDouble) -> list[tuple[str, str, int, str]]:
    return [entry for entry in double.log if entry[0] != "GET"]


async def test_first_sync_creates_folder_data_source_and_every_dashboard(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    outcomes = await sync_grafana(pool, settings_for(grafana.url), url)
    assert {o.uid: o.action for o in outcomes} == {
        FOLDER_UID: "created",
        DATASOURCE_UID: "created",
        **dict.fromkeys(DASHBOARD_UIDS, "created"),
    }
    assert grafana.folders[FOLDER_UID]["title"] == "IOC"
    datasource = grafana.datasources[DATASOURCE_UID]
    assert datasource["type"] == "grafana-postgresql-datasource"
    assert datasource["user"] == READER_ROLE
    assert datasource["jsonData"]["database"] == url.rsplit("/", 1)[1]
    assert datasource["jsonData"]["timescaledb"] is False  # this database is plain PostgreSQL
    assert datasource["secureJsonFields"] == {"password": True}
    assert datasource["_secure"] == {"password": READER_PASSWORD}
    models = load_dashboards()
    assert set(grafana.dashboards) == DASHBOARD_UIDS
    for uid, stored in grafana.dashboards.items():
        assert stored["folderUid"] == FOLDER_UID
        assert stored["version"] == 1
        assert stored["dashboard"]["title"] == models[uid]["title"]
        assert stored["dashboard"]["panels"] == models[uid]["panels"]


async def test_a_second_sync_changes_nothing(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    await sync_grafana(pool, settings_for(grafana.url), url)
    written = len(writes(grafana))
    outcomes = await sync_grafana(pool, settings_for(grafana.url), url)
    assert {o.action for o in outcomes} == {"unchanged"}
    assert len(writes(grafana)) == written
    assert {stored["version"] for stored in grafana.dashboards.values()} == {1}


async def test_a_dashboard_changed_in_the_repository_is_updated(
    database: tuple[str, asyncpg.Pool],
    pool: asyncpg.Pool,
    grafana: GrafanaDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = database
    await sync_grafana(pool, settings_for(grafana.url), url)
    models = copy.deepcopy(load_dashboards())
    models["iochub-alerts"]["title"] = "IOC · Cảnh báo (mới)"
    models["iochub-alerts"]["version"] += 1
    monkeypatch.setattr("hub.integrations.grafana_sync.load_dashboards", lambda lang: models)
    outcomes = await sync_grafana(pool, settings_for(grafana.url), url)
    changed = {o.uid: o.action for o in outcomes if o.action != "unchanged"}
    assert changed == {"iochub-alerts": "changed"}
    assert grafana.dashboards["iochub-alerts"]["dashboard"]["title"] == "IOC · Cảnh báo (mới)"
    assert grafana.dashboards["iochub-alerts"]["version"] == 2
    # And the next sync leaves it.
    again = await sync_grafana(pool, settings_for(grafana.url), url)
    assert {o.action for o in again} == {"unchanged"}


async def test_a_dashboard_edited_in_grafana_is_a_conflict_until_forced(
    database: tuple[str, asyncpg.Pool],
    pool: asyncpg.Pool,
    grafana: GrafanaDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = database
    await sync_grafana(pool, settings_for(grafana.url), url)
    grafana.edit_in_ui("iochub-sensors", title="Edited on the wall")
    models = copy.deepcopy(load_dashboards())
    models["iochub-sensors"]["description"] = "changed in the repository too"
    monkeypatch.setattr("hub.integrations.grafana_sync.load_dashboards", lambda lang: models)

    preview = await sync_grafana(pool, settings_for(grafana.url), url, dry_run=True)
    assert {o.uid: o.action for o in preview}["iochub-sensors"] == "conflict"

    outcomes = {o.uid: o for o in await sync_grafana(pool, settings_for(grafana.url), url)}
    conflict = outcomes["iochub-sensors"]
    assert conflict.action == "conflict"
    assert "changed by someone else" in conflict.detail  # Grafana's own 412 answer
    assert (
        "POST",
        "/api/dashboards/db",
        412,
        "The dashboard has been changed by someone else",
    ) in (grafana.log)
    assert grafana.dashboards["iochub-sensors"]["dashboard"]["title"] == "Edited on the wall"

    forced = {
        o.uid: o for o in await sync_grafana(pool, settings_for(grafana.url), url, force=True)
    }
    assert forced["iochub-sensors"].action == "changed"
    stored = grafana.dashboards["iochub-sensors"]
    assert stored["dashboard"]["title"] == models["iochub-sensors"]["title"]
    assert stored["dashboard"]["description"] == "changed in the repository too"
    assert stored["version"] == 3
    again = await sync_grafana(pool, settings_for(grafana.url), url)
    assert {o.action for o in again} == {"unchanged"}


async def test_a_dashboard_not_put_there_by_the_hub_is_not_overwritten(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    grafana.folders[FOLDER_UID] = {"id": 99, "uid": FOLDER_UID, "title": "IOC", "version": 1}
    status, _ = grafana.save_dashboard(
        {"dashboard": {"uid": "iochub-alerts", "title": "Someone's own"}, "folderUid": FOLDER_UID}
    )
    assert status == 200
    outcomes = {o.uid: o for o in await sync_grafana(pool, settings_for(grafana.url), url)}
    assert outcomes["iochub-alerts"].action == "conflict"
    assert "not put there by this hub" in outcomes["iochub-alerts"].detail
    assert outcomes[FOLDER_UID].action == "unchanged"
    assert grafana.dashboards["iochub-alerts"]["dashboard"]["title"] == "Someone's own"


async def test_a_dry_run_writes_nothing(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    outcomes = await sync_grafana(pool, settings_for(grafana.url), url, dry_run=True)
    assert {o.action for o in outcomes} == {"created"}
    assert writes(grafana) == []
    assert not grafana.dashboards and not grafana.folders and not grafana.datasources
    assert await pool.fetchval("SELECT count(*) FROM grafana_sync") == 0


async def test_the_english_build_can_be_provisioned(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    outcomes = {
        o.uid: o for o in await sync_grafana(pool, settings_for(grafana.url), url, lang="en")
    }
    assert outcomes["iochub-alerts"].title == "IOC · Alerts"
    assert grafana.dashboards["iochub-sensors"]["dashboard"]["title"] == "IOC · Sensors by ward"
    # Same uids as the Vietnamese build: switching language is a change, not a new dashboard.
    again = {o.uid: o.action for o in await sync_grafana(pool, settings_for(grafana.url), url)}
    assert {again[uid] for uid in DASHBOARD_UIDS} == {"changed"}


async def test_an_editor_token_cannot_provision_the_data_source(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool
) -> None:
    url, _ = database
    async with grafana_double(TOKEN, role="Editor") as double:
        outcomes = {o.uid: o for o in await sync_grafana(pool, settings_for(double.url), url)}
    assert outcomes[DATASOURCE_UID].action == "refused"
    assert "datasources:write" in outcomes[DATASOURCE_UID].detail
    assert outcomes[FOLDER_UID].action == "created"
    assert {outcomes[uid].action for uid in DASHBOARD_UIDS} == {"created"}


async def test_a_viewer_token_is_refused_everything(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool
) -> None:
    url, _ = database
    async with grafana_double(TOKEN, role="Viewer") as double:
        outcomes = await sync_grafana(pool, settings_for(double.url), url)
    assert {o.action for o in outcomes} == {"refused"}
    assert not double.dashboards


async def test_a_wrong_token_is_a_clear_error(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    with pytest.raises(SyncError, match="refused the token"):
        await sync_grafana(pool, settings_for(grafana.url, token="glsa_wrong"), url)


async def test_grafana_down_is_unavailable(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool
) -> None:
    url, _ = database
    with pytest.raises(GrafanaUnavailable, match="cannot reach Grafana"):
        await sync_grafana(pool, settings_for(f"http://127.0.0.1:{free_port()}"), url)


async def test_the_start_up_sync_retries_until_grafana_answers(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = database
    double = GrafanaDouble(token=TOKEN)
    settings = settings_for(double.url, sync_retry_s=0.05)
    task = asyncio.create_task(sync_at_start(pool, settings, url))
    await asyncio.sleep(0.3)
    assert not task.done()
    assert "Grafana provisioning failed" in caplog.text
    async with serving(double, double.port):
        await asyncio.wait_for(task, 15)
    assert set(double.dashboards) == DASHBOARD_UIDS


async def test_the_start_up_sync_stops_when_a_setting_is_missing(
    database: tuple[str, asyncpg.Pool],
    pool: asyncpg.Pool,
    grafana: GrafanaDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No reader password: retrying cannot help, so it says so once and stops."""
    url, _ = database
    settings = settings_for(grafana.url, sync_retry_s=0.01, reader_password=None)
    await asyncio.wait_for(sync_at_start(pool, settings, url), 5)
    assert "READER_PASSWORD" in caplog.text
    assert grafana.log == []


async def test_the_read_only_role_reads_the_dashboards_tables_and_no_secret(
    database: tuple[str, asyncpg.Pool], pool: asyncpg.Pool, grafana: GrafanaDouble
) -> None:
    url, _ = database
    await sync_grafana(pool, settings_for(grafana.url), url)
    reader_url = url.replace("://", f"://{READER_ROLE}:{READER_PASSWORD}@", 1)
    if "@" in url.split("://", 1)[1]:
        reader_url = "postgresql://" + f"{READER_ROLE}:{READER_PASSWORD}@" + url.split("@", 1)[1]
    conn = await asyncpg.connect(reader_url)
    try:
        for table in ("ward", "device", "reading", "alert", "broadcast_delivery"):
            await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        await conn.fetch("SELECT * FROM reading_per_hour(now() - interval '1 day', now())")
        for table in SECRET_TABLES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM reading")
    finally:
        await conn.close()


def test_the_cli_prints_what_it_would_do(
    database: tuple[str, asyncpg.Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.server.cli import app

    url, _ = database

    async def serve_and_run() -> Any:
        async with grafana_double(TOKEN) as double:
            env = {
                "IOCHUB_DATABASE__URL": url,
                "IOCHUB_DELIVERY__GRAFANA__URL": double.url,
                "IOCHUB_DELIVERY__GRAFANA__TOKEN": TOKEN,
                "IOCHUB_DELIVERY__GRAFANA__READER_PASSWORD": READER_PASSWORD,
            }
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["grafana", "sync", "--dry-run"]
            )
            return result, double

    result, double = asyncio.run(serve_and_run())
    assert result.exit_code == 0, result.output
    for uid in DASHBOARD_UIDS:
        assert uid in result.output
    assert "created" in result.output
    assert writes(double) == []
