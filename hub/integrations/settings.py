"""Settings of alert delivery: IOC webhooks and Grafana annotations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl, SecretStr

Delay = Annotated[float, Field(ge=0)]


class GrafanaSettings(BaseModel):
    url: HttpUrl | None = Field(
        None, description="Grafana's base URL; unset turns alert annotations off."
    )
    token: SecretStr | None = Field(
        None, description="Grafana service-account token (Editor) used to write annotations."
    )
    org_id: int | None = Field(None, ge=1, description="Grafana organisation to annotate in.")
    dashboard_uid: str | None = Field(
        None, description="Pin annotations to this dashboard (unset: organisation-wide)."
    )
    panel_id: int | None = Field(
        None, ge=1, description="Pin annotations to this panel of the dashboard."
    )
    timeout_s: float = Field(10.0, gt=0, description="Longest one Grafana request may take.")
    sync_on_start: bool = Field(
        True,
        description="With url and token set, provision Grafana's folder, data source and "
        "dashboards at hub start (failures are logged and retried, never fatal).",
    )
    sync_retry_s: float = Field(
        60.0, gt=0, description="Wait before retrying a failed provisioning at start."
    )
    lang: Literal["vi", "en"] = Field(
        "vi", description="Language of the provisioned dashboards' titles."
    )
    datasource_host: str | None = Field(
        None,
        description="host:port at which Grafana reaches PostgreSQL (unset: the hub's own "
        "database host and port).",
    )
    datasource_database: str | None = Field(
        None, description="Database Grafana reads (unset: the hub's own)."
    )
    datasource_sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        "disable", description="libpq sslmode of Grafana's connection; verify-full in production."
    )
    reader_password: SecretStr | None = Field(
        None,
        description="Password of the read-only iochub_grafana role, set on the role and in "
        "Grafana's data source by `iochub grafana sync`.",
    )


class DeliverySettings(BaseModel):
    enabled: bool = Field(
        True, description="Run the outbox workers in this hub process (the API works either way)."
    )
    hub_id: str = Field(
        "hub-1",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="This hub's name in events: CloudEvents source is /iochub/<hub_id>.",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="Longest a receiver may take to answer one webhook."
    )
    concurrency: int = Field(
        16, ge=1, le=256, description="Deliveries in flight at once from this process."
    )
    retry_delays_s: Annotated[list[Delay], Field(min_length=1)] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0],
        description="Wait before each retry; the last value repeats until give_up_after_s.",
    )
    retry_jitter: Literal["full", "none"] = Field(
        "full", description="full: wait a random time up to each delay (spreads retry bursts)."
    )
    give_up_after_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="A delivery still failing this long after its event is dead-lettered.",
    )
    rotation_overlap_hours: float = Field(
        24.0, ge=0, le=720, description="How long a rotated-out webhook secret still signs."
    )
    poll_interval_s: float = Field(
        5.0, gt=0, description="Safety poll when no database notification wakes the workers."
    )
    shutdown_grace_s: float = Field(
        3.0,
        ge=0,
        description="When the hub stops, deliveries in flight may finish this long; the rest "
        "are handed back and retried (keep it below shutdown_timeout_s).",
    )
    retention_days: int = Field(
        30, ge=1, description="Finished events and their delivery logs are kept this long."
    )
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)

    @property
    def source(self) -> str:
        return f"/iochub/{self.hub_id}"
