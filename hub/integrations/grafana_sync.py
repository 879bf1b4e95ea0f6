"""Keep Grafana in step with the hub: the IOC folder, the PostgreSQL data source (as the
read-only role) and every dashboard, through grafana-client.

Idempotent: what already matches is left alone. A dashboard is written with the version
Grafana gave it at the hub's last sync and without ``overwrite``, so if someone saved it
in Grafana since, Grafana answers 412 "version-mismatch" and the sync reports a conflict
instead of losing their edit; ``force`` overwrites. What the hub last wrote to each
Grafana (its version there and a digest) is kept in the ``grafana_sync`` table.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import asyncpg
import niquests
from grafana_client.api import AsyncGrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException
from pydantic import SecretStr

from hub.errors import HubError
from hub.integrations import store
from hub.integrations.grafana import close_client, grafana_client
from hub.integrations.settings import GrafanaSettings

log = logging.getLogger("hub.integrations.grafana_sync")

JSON = dict[str, Any]
Action = Literal["created", "changed", "unchanged", "conflict", "refused"]
# The same as deploy/grafana's file provisioning (dashboards/kit.py builds against them).
FOLDER_UID = "iochub"
FOLDER_TITLE = "IOC"
DATASOURCE_UID = "iochub-postgres"
DATASOURCE_NAME = "iochub"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
READER_ROLE = "iochub_grafana"
MESSAGE = "iochub grafana sync"


class SyncError(HubError):
    status = 502
    slug = "grafana-sync-failed"
    title = "Grafana could not be provisioned"


class SyncNotConfigured(SyncError):
    """A setting sync needs is missing: only a restart with it set can help."""

    slug = "grafana-sync-not-configured"
    title = "Grafana provisioning is not configured"


class GrafanaUnavailable(SyncError):
    slug = "grafana-unavailable"
    title = "Grafana did not answer"
    retryable = True


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Literal["folder", "datasource", "dashboard"]
    uid: str
    title: str
    action: Action
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DataSource:
    """Grafana's data source for the hub's database, logging in as the read-only role."""

    host: str
    database: str
    sslmode: str
    password: SecretStr
    timescaledb: bool

    def body(self) -> JSON:
        return {
            "uid": DATASOURCE_UID,
            "name": DATASOURCE_NAME,
            "type": DATASOURCE_TYPE,
            "access": "proxy",
            "url": self.host,
            "user": READER_ROLE,
            "basicAuth": False,
            "isDefault": False,
            "jsonData": {
                "database": self.database,
                "sslmode": self.sslmode,
                "postgresVersion": 1500,
                # Only $__timeGroup depends on it; the dashboards do not use it.
                "timescaledb": self.timescaledb,
                "timeInterval": "1m",
                "maxOpenConns": 10,
                "maxIdleConnsAuto": True,
                "connMaxLifetime": 14400,
            },
            "secureJsonData": {"password": self.password.get_secret_value()},
        }

    def digest(self) -> str:
        return digest(self.body())

    def matches(self, found: JSON) -> bool:
        """Whether Grafana's copy has these settings (the password cannot be read back)."""
        wanted = self.body()
        fields = ("name", "type", "access", "url", "user")
        return all(found.get(name) == wanted[name] for name in fields) and all(
            (found.get("jsonData") or {}).get(key) == value
            for key, value in wanted["jsonData"].items()
        )


def digest(document: Any) -> str:
    return hashlib.sha256(
        json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def content(model: JSON) -> JSON:
    """A dashboard model without what Grafana assigns (its id and version)."""
    return {key: value for key, value in model.items() if key not in ("id", "version")}


def load_dashboards(lang: str = "vi") -> dict[str, JSON]:
    """Every dashboard model by uid: the checked-in JSON (what file provisioning serves),
    or, for another language, built on the spot by dashboards.build."""
    if lang == "vi":
        return {
            model["uid"]: model
            for entry in sorted(
                resources.files("dashboards").iterdir(), key=lambda entry: entry.name
            )
            if entry.name.endswith(".json")
            for model in [json.loads(entry.read_text("utf-8"))]
        }
    builder = importlib.import_module("dashboards.build")
    return cast(dict[str, JSON], builder.dashboards(lang))


class SyncRecords:
    """What the hub last wrote to one Grafana (table grafana_sync, migration 0016)."""

    def __init__(self, pool: asyncpg.Pool, grafana: str) -> None:
        self.pool = pool
        self.grafana = grafana

    async def get(self, kind: str, uid: str) -> tuple[int, str] | None:
        return await store.sync_record(self.pool, self.grafana, kind, uid)

    async def put(self, kind: str, uid: str, version: int, digest: str) -> None:
        await store.put_sync_record(self.pool, self.grafana, kind, uid, version, digest)


async def set_reader_password(pool: asyncpg.Pool, password: SecretStr) -> None:
    """Give the read-only role (migration 0016) its password from the settings."""
    try:
        await store.set_login_password(pool, READER_ROLE, password.get_secret_value())
    except asyncpg.InsufficientPrivilegeError as exc:
        raise SyncError(
            f"the hub's database user may not set {READER_ROLE}'s password: {exc.args[0]} "
            "(it needs CREATEROLE)"
        ) from None


def grafana_api(settings: GrafanaSettings) -> AsyncGrafanaApi:
    if settings.url is None:
        raise SyncNotConfigured("no Grafana URL (IOCHUB_DELIVERY__GRAFANA__URL)")
    if settings.token is None:
        raise SyncNotConfigured("no Grafana token (IOCHUB_DELIVERY__GRAFANA__TOKEN)")
    return grafana_client(settings)


class GrafanaSync:
    def __init__(
        self,
        api: AsyncGrafanaApi,
        records: SyncRecords,
        datasource: DataSource,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        # grafana-client is untyped: its element methods answer decoded JSON.
        self.api: Any = api
        self.records = records
        self.datasource = datasource
        self.timeout_s = timeout_s

    async def _call(self, what: str, request: Any) -> Any:
        """One Grafana request; no answer becomes GrafanaUnavailable, 401 a SyncError."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await request
        except TimeoutError:
            raise GrafanaUnavailable(f"{what}: no answer within {self.timeout_s:g} s") from None
        except niquests.exceptions.RequestException as exc:
            raise GrafanaUnavailable(f"{what}: cannot reach Grafana ({exc})") from None
        except GrafanaException as exc:
            if exc.status_code == 401:
                raise SyncError(f"{what}: Grafana refused the token (401)") from None
            if exc.status_code is None or exc.status_code >= 500:
                raise GrafanaUnavailable(f"{what}: {exc.message}") from None
            raise

    async def run(
        self, dashboards: Mapping[str, JSON], *, dry_run: bool = False, force: bool = False
    ) -> list[Outcome]:
        outcomes = [await self.folder(dry_run), await self.data_source(dry_run)]
        for uid, model in dashboards.items():
            outcomes.append(await self.dashboard(uid, model, dry_run=dry_run, force=force))
        return outcomes

    async def folder(self, dry_run: bool) -> Outcome:
        try:
            found = await self._call("folder", self.api.folder.get_folder(FOLDER_UID))
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                return Outcome("folder", FOLDER_UID, FOLDER_TITLE, "refused", exc.message)
            found = None
        try:
            if found is None:
                if not dry_run:
                    await self._call(
                        "folder",
                        self.api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID),
                    )
                return Outcome("folder", FOLDER_UID, FOLDER_TITLE, "created")
            if found.get("title") == FOLDER_TITLE:
                return Outcome("folder", FOLDER_UID, FOLDER_TITLE, "unchanged")
            if not dry_run:
                await self._call(
                    "folder",
                    self.api.folder.update_folder(
                        FOLDER_UID, title=FOLDER_TITLE, version=found.get("version")
                    ),
                )
            return Outcome("folder", FOLDER_UID, FOLDER_TITLE, "changed", "renamed back")
        except GrafanaClientError as exc:
            return Outcome("folder", FOLDER_UID, FOLDER_TITLE, "refused", exc.message)

    async def data_source(self, dry_run: bool) -> Outcome:
        spec = self.datasource
        api = self.api.datasource
        try:
            found = await self._call("data source", api.get_datasource_by_uid(DATASOURCE_UID))
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                return Outcome(
                    "datasource", DATASOURCE_UID, DATASOURCE_NAME, "refused", exc.message
                )
            found = None
        record = await self.records.get("datasource", DATASOURCE_UID)
        try:
            if found is None:
                if dry_run:
                    return Outcome("datasource", DATASOURCE_UID, DATASOURCE_NAME, "created")
                answer = await self._call("data source", api.create_datasource(spec.body()))
                version = int(answer.get("datasource", {}).get("version", 1))
                await self.records.put("datasource", DATASOURCE_UID, version, spec.digest())
                return Outcome("datasource", DATASOURCE_UID, DATASOURCE_NAME, "created")
            same = spec.matches(found) and record is not None and record[1] == spec.digest()
            if same:
                return Outcome("datasource", DATASOURCE_UID, DATASOURCE_NAME, "unchanged")
            if found.get("readOnly"):
                return Outcome(
                    "datasource",
                    DATASOURCE_UID,
                    DATASOURCE_NAME,
                    "refused",
                    "provisioned from a file in Grafana: change it there",
                )
            if dry_run:
                return Outcome("datasource", DATASOURCE_UID, DATASOURCE_NAME, "changed")
            body = {**spec.body(), "version": found.get("version")}
            answer = await self._call(
                "data source", api.update_datasource_by_uid(DATASOURCE_UID, body)
            )
            version = int(answer.get("datasource", {}).get("version", 0))
            await self.records.put("datasource", DATASOURCE_UID, version, spec.digest())
            return Outcome("datasource", DATASOURCE_UID, DATASOURCE_NAME, "changed")
        except GrafanaClientError as exc:
            return Outcome("datasource", DATASOURCE_UID, DATASOURCE_NAME, "refused", exc.message)

    async def dashboard(self, uid: str, model: JSON, *, dry_run: bool, force: bool) -> Outcome:
        title = str(model.get("title", uid))
        ours = content(model)
        our_digest = digest(ours)
        try:
            hits = await self._call(
                f"dashboard {uid}",
                self.api.search.search_dashboards(dashboard_uids=[uid], type_="dash-db"),
            )
            current = None
            if any(hit.get("uid") == uid for hit in hits):
                current = await self._call(
                    f"dashboard {uid}", self.api.dashboard.get_dashboard(uid)
                )
            record = await self.records.get("dashboard", uid)
            if current is None:
                if dry_run:
                    return Outcome("dashboard", uid, title, "created")
                await self._save(uid, ours, our_digest, version=None, force=force)
                return Outcome("dashboard", uid, title, "created")
            meta = current.get("meta", {})
            their_version = int(meta.get("version") or current["dashboard"].get("version") or 0)
            in_folder = meta.get("folderUid") == FOLDER_UID
            theirs = content(current["dashboard"])
            if in_folder and (
                theirs == ours or (record is not None and record == (their_version, our_digest))
            ):
                if record != (their_version, our_digest) and not dry_run:
                    await self.records.put("dashboard", uid, their_version, our_digest)
                return Outcome("dashboard", uid, title, "unchanged")
            edited = record is None or record[0] != their_version
            if dry_run:
                if edited and not force:
                    return Outcome(
                        "dashboard", uid, title, "conflict", self._edited(record, their_version)
                    )
                return Outcome("dashboard", uid, title, "changed", "overwritten" if edited else "")
            # The version of our last write: Grafana refuses it (412) if someone saved since.
            sent = record[0] if record is not None else 0
            try:
                await self._save(uid, ours, our_digest, version=sent, force=force)
            except GrafanaClientError as exc:
                if exc.status_code == 412 and not force:
                    return Outcome(
                        "dashboard",
                        uid,
                        title,
                        "conflict",
                        f"Grafana: {self._message(exc)}; {self._edited(record, their_version)}",
                    )
                raise
            return Outcome("dashboard", uid, title, "changed", "overwritten" if edited else "")
        except GrafanaClientError as exc:
            return Outcome("dashboard", uid, title, "refused", self._message(exc))

    async def _save(
        self, uid: str, ours: JSON, our_digest: str, *, version: int | None, force: bool
    ) -> None:
        body = {
            "dashboard": {**ours, "id": None, "uid": uid, "version": version},
            "folderUid": FOLDER_UID,
            "overwrite": force,
            "message": MESSAGE,
        }
        answer = await self._call(f"dashboard {uid}", self.api.dashboard.update_dashboard(body))
        await self.records.put("dashboard", uid, int(answer["version"]), our_digest)

    @staticmethod
    def _edited(record: tuple[int, str] | None, their_version: int) -> str:
        if record is None:
            return (
                f"it exists in Grafana (version {their_version}) but was not put there by this "
                "hub's sync; --force overwrites it"
            )
        return (
            f"changed in Grafana since the last sync (version {their_version}, synced as "
            f"{record[0]}); --force overwrites it"
        )

    @staticmethod
    def _message(exc: GrafanaException) -> str:
        response = exc.response
        if isinstance(response, dict) and "message" in response:
            return str(response["message"])
        return str(exc.message)


async def database_backend(pool: asyncpg.Pool) -> str:
    return await store.timeseries_backend(pool)


def data_source_from(settings: GrafanaSettings, database_url: str, timescaledb: bool) -> DataSource:
    if settings.reader_password is None:
        raise SyncNotConfigured(
            "no password for the read-only role (IOCHUB_DELIVERY__GRAFANA__READER_PASSWORD)"
        )
    url = urlsplit(database_url)
    host = settings.datasource_host or f"{url.hostname or '127.0.0.1'}:{url.port or 5432}"
    database = settings.datasource_database or url.path.lstrip("/") or "iochub"
    return DataSource(
        host, database, settings.datasource_sslmode, settings.reader_password, timescaledb
    )


async def sync_grafana(
    pool: asyncpg.Pool,
    settings: GrafanaSettings,
    database_url: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    lang: str | None = None,
) -> list[Outcome]:
    """Provision Grafana from the settings: the role's password, folder, data source,
    dashboards. Raises SyncError (GrafanaUnavailable when Grafana does not answer)."""
    datasource = data_source_from(
        settings, database_url, await database_backend(pool) == "timescaledb"
    )
    dashboards = load_dashboards(lang or settings.lang)
    api = grafana_api(settings)
    try:
        if not dry_run:
            assert settings.reader_password is not None  # data_source_from checked it
            await set_reader_password(pool, settings.reader_password)
        records = SyncRecords(pool, str(settings.url))
        sync = GrafanaSync(api, records, datasource, timeout_s=settings.timeout_s)
        return await sync.run(dashboards, dry_run=dry_run, force=force)
    finally:
        await close_client(api)


async def sync_at_start(pool: asyncpg.Pool, settings: GrafanaSettings, database_url: str) -> None:
    """The hub's start-up sync: retried until it succeeds, logged, never fatal."""
    while True:
        try:
            outcomes = await sync_grafana(pool, settings, database_url)
        except SyncNotConfigured as exc:
            log.error("Grafana provisioning at start is off: %s", exc.detail)
            return
        except SyncError as exc:
            log.warning(
                "Grafana provisioning failed (%s); retrying in %.0f s",
                exc.detail,
                settings.sync_retry_s,
            )
        else:
            for outcome in outcomes:
                level = (
                    logging.WARNING if outcome.action in ("conflict", "refused") else logging.INFO
                )
                log.log(
                    level,
                    "grafana %s %s: %s%s",
                    outcome.kind,
                    outcome.uid,
                    outcome.action,
                    f" ({outcome.detail})" if outcome.detail else "",
                )
            return
        await asyncio.sleep(settings.sync_retry_s)
