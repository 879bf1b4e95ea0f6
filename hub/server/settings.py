"""Settings: environment variables prefixed IOCHUB_, nested groups joined by '__'.

Every setting has a default that works on a developer machine, so `iochub demo`
runs with none set. Example: IOCHUB_DATABASE__URL=postgresql://hub@db/iochub
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hub.broadcasts.settings import BroadcastSettings
from hub.cameras.settings import CameraSettings
from hub.firmware.settings import FirmwareSettings
from hub.health.settings import HealthSettings
from hub.integrations.settings import DeliverySettings
from hub.server.log_format import LogFormat
from hub.server.metrics import MetricsSettings
from hub.server.secret_files import SecretFilesSource, secrets_dir
from hub.storage.crypto import SecretBox, local_key


class DatabaseSettings(BaseModel):
    url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/iochub"),
        description="PostgreSQL URL of the hub's one database (registry and telemetry).",
    )
    pool_min_size: int = Field(2, ge=1, description="Connections kept open in each pool.")
    pool_max_size: int = Field(10, ge=1, description="Upper bound of connections in each pool.")
    timescaledb: Literal["auto", "require", "off"] = Field(
        "auto",
        description="Use TimescaleDB when available (auto), refuse to start without it "
        "(require), or always use plain PostgreSQL (off).",
    )
    auto_migrate: bool = Field(
        False, description="Apply pending migrations at start instead of refusing to run."
    )
    statement_timeout_ms: int = Field(
        30_000, ge=100, description="Server-side limit for any one statement."
    )


class MqttSettings(BaseModel):
    host: str = Field("127.0.0.1", description="MQTT broker host.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port.")
    username: str | None = Field(None, description="The hub's own broker username.")
    password: SecretStr | None = Field(None, description="The hub's own broker password.")
    client_id: str = Field(
        "iochub-1", description="Stable client id; keeps the persistent session across restarts."
    )
    tls: bool = Field(False, description="Connect to the broker over TLS.")
    admin_username: str | None = Field(
        None, description="Broker admin (dynamic-security) user; set to manage device identities."
    )
    admin_password: SecretStr | None = Field(None, description="Broker admin password.")
    shared_group: str = Field(
        "iochub", description="Shared-subscription group: hub processes in it split the load."
    )
    identities: Literal["dynsec", "database"] = Field(
        "dynsec",
        description="Where the broker keeps device identities: Mosquitto's dynamic-security "
        "plugin (managed with the admin user) or this database's broker views (EMQX).",
    )


class TelemetrySettings(BaseModel):
    mqtt_ingest: bool = Field(True, description="Take sensor readings from the MQTT broker.")
    batch_rows: int = Field(5000, ge=1, description="Readings written per COPY at most.")
    batch_age_ms: int = Field(50, ge=1, description="Longest a reading waits for its batch.")
    max_queued_rows: int = Field(
        200_000, ge=1000, description="Readings held in memory at most; beyond, ingest waits."
    )
    writers: int = Field(2, ge=1, le=16, description="Concurrent COPY connections.")
    mqtt_batch_messages: int = Field(
        1000, ge=1, description="MQTT messages decoded and handed to the writer together."
    )
    mqtt_batches_in_flight: int = Field(
        16, ge=1, description="MQTT batches awaiting their commit at once (unacknowledged)."
    )
    max_age_days: int = Field(
        7,
        ge=1,
        le=366,
        description="Readings older than this are refused, unless the device's backfill_days "
        "allows more.",
    )
    raw_retention_days: int = Field(30, ge=1, description="How long raw readings are kept.")
    rollup_1m_retention_days: int = Field(
        90, ge=1, description="How long 1-minute rollups are kept."
    )
    rollup_1h_retention_days: int = Field(
        730, ge=1, description="How long 1-hour rollups are kept."
    )
    compress_after_days: int = Field(
        7, ge=1, description="Raw chunks older than this are compressed (TimescaleDB)."
    )
    jobs_check_interval_s: float = Field(
        60.0, gt=0, description="How often the maintenance jobs' runs and errors are checked."
    )
    jobs_takeover_after_failures: int = Field(
        2, ge=1, description="Failures in a row after which the hub runs a TimescaleDB job itself."
    )
    plain_retention_interval_s: float = Field(
        3600.0, gt=0, description="How often the hub expires raw readings (plain PostgreSQL)."
    )
    plain_rollup_interval_s: float = Field(
        300.0, gt=0, description="How often the hub refreshes the hourly rollup (plain PostgreSQL)."
    )


class CoapSettings(BaseModel):
    enabled: bool = Field(True, description="Serve the CoAP ingest endpoint.")
    host: str = Field("127.0.0.1", description="Address the CoAP server binds to (:: for all).")
    port: int = Field(5683, ge=1, le=65535, description="CoAP UDP port.")
    require_oscore: bool = Field(
        True, description="Answer 4.01 to CoAP requests not protected with the device's OSCORE key."
    )


class HttpSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port the HTTP server listens on.")
    public_url: str | None = Field(
        None, description="URL devices and people reach the hub at (default: from host/port)."
    )
    max_request_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body accepted."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty closes CORS."
    )

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class AuthSettings(BaseModel):
    session_ttl_minutes: int = Field(12 * 60, ge=5, description="Browser session lifetime.")
    cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only (browsers exempt localhost)."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins in a row before an account is locked."
    )
    lockout_minutes: int = Field(15, ge=1, description="How long a locked account stays locked.")
    login_attempts_per_minute: int = Field(
        20, ge=1, description="Login attempts one client address may make per minute."
    )
    login_delay_ms: int = Field(
        250, ge=0, description="Added delay on every failed login, to slow guessing."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IOCHUB_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    coap: CoapSettings = Field(default_factory=CoapSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    broadcasts: BroadcastSettings = Field(default_factory=BroadcastSettings)
    cameras: CameraSettings = Field(default_factory=CameraSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    firmware: FirmwareSettings = Field(default_factory=FirmwareSettings)
    data_dir: Path = Field(
        Path(".iochub-data"), description="Folder for local state: embedded services, keys."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key for signing and encrypting hub secrets; generated into data_dir "
        "when unset (set it in production).",
    )
    previous_secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Earlier secret keys, still accepted to open what they sealed (rotation).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the hub's loggers."
    )
    log_format: LogFormat = Field(
        "plain",
        description="plain: lines for a terminal; json: one JSON event per line (journald, Loki).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files (Compose, systemd credentials, Kubernetes) below the environment.
        files = SecretFilesSource(settings_cls, secrets_dir())
        return init_settings, env_settings, dotenv_settings, files, file_secret_settings

    def secret_box(self) -> SecretBox:
        current = (
            self.secret_key.get_secret_value() if self.secret_key else local_key(self.data_dir)
        )
        return SecretBox(current, [k.get_secret_value() for k in self.previous_secret_keys])

    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="How long each background service may take to stop."
    )


def describe(settings: BaseModel, prefix: str = "IOCHUB_") -> list[tuple[str, str, str]]:
    """(env name, effective value, description) for every setting, secrets masked."""
    rows: list[tuple[str, str, str]] = []
    for name, field in type(settings).model_fields.items():
        value: Any = getattr(settings, name)
        env = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            rows.extend(describe(value, prefix=f"{env}__"))
            continue
        secret = isinstance(value, SecretStr) or (
            isinstance(value, list) and any(isinstance(v, SecretStr) for v in value)
        )
        shown = "**********" if secret else str(value)
        if isinstance(value, SecretStr) and name == "url":
            shown = mask_url(value.get_secret_value())
        rows.append((env, shown, field.description or ""))
    return rows


def mask_url(url: str) -> str:
    """A database or broker URL with its password replaced, fit for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
