"""The hub's settings as a whole: the shared groups (hub.runtime.settings) and every slice's.

Environment variables prefixed IOCHUB_, nested groups joined by '__'. Every setting has a
default that works on a developer machine, so `iochub demo` runs with none set.
Example: IOCHUB_DATABASE__URL=postgresql://hub@db/iochub
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from hub.alerts import AlertSettings
from hub.auth import AuthSettings
from hub.broadcasts import BroadcastSettings
from hub.cameras import CameraSettings
from hub.firmware.settings import FirmwareSettings
from hub.health import HealthSettings
from hub.integrations import DeliverySettings
from hub.runtime.settings import (
    CoreSettings,
    DatabaseSettings,
    HttpSettings,
    MqttSettings,
    describe,
    mask_url,
)
from hub.server.log_format import LogFormat
from hub.server.metrics import MetricsSettings
from hub.server.secret_files import SecretFilesSource, secrets_dir
from hub.telemetry import TelemetrySettings
from hub.web import ConsoleSettings

__all__ = [
    "AuthSettings",
    "CoapSettings",
    "DatabaseSettings",
    "HttpSettings",
    "MqttSettings",
    "Settings",
    "TelemetrySettings",
    "describe",
    "mask_url",
]


class CoapSettings(BaseModel):
    enabled: bool = Field(True, description="Serve the CoAP ingest endpoint.")
    host: str = Field("127.0.0.1", description="Address the CoAP server binds to (:: for all).")
    port: int = Field(5683, ge=1, le=65535, description="CoAP UDP port.")
    require_oscore: bool = Field(
        True, description="Answer 4.01 to CoAP requests not protected with the device's OSCORE key."
    )


class Settings(CoreSettings):
    auth: AuthSettings = Field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    coap: CoapSettings = Field(default_factory=CoapSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    broadcasts: BroadcastSettings = Field(default_factory=BroadcastSettings)
    cameras: CameraSettings = Field(default_factory=CameraSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    firmware: FirmwareSettings = Field(default_factory=FirmwareSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
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
