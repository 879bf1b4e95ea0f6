"""The settings every part of the hub shares: environment variables prefixed IOCHUB_, nested
groups joined by '__'. Each slice adds its own group (hub.<slice>.settings); the composition
root (hub.server.settings.Settings) puts them together, and a slice finds its group with
`settings.group(TheSliceSettings)`.

Every setting has a default that works on a developer machine, so `iochub demo`
runs with none set. Example: IOCHUB_DATABASE__URL=postgresql://hub@db/iochub
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.storage.crypto import SecretBox, local_key

G = TypeVar("G", bound=BaseModel)


def _iana_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone") from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_iana_zone)]
"""A setting naming an IANA time zone (Asia/Ho_Chi_Minh), refused at start when unknown."""


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


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IOCHUB_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
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

    def secret_box(self) -> SecretBox:
        current = (
            self.secret_key.get_secret_value() if self.secret_key else local_key(self.data_dir)
        )
        return SecretBox(current, [k.get_secret_value() for k in self.previous_secret_keys])

    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="How long each background service may take to stop."
    )

    def group(self, kind: type[G]) -> G:
        """The one settings group of this type (a slice's own settings)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, kind):
                return value
        raise LookupError(f"the hub's settings have no {kind.__name__} group")


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
