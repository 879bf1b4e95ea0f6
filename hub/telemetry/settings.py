"""Settings of the telemetry slice (IOCHUB_TELEMETRY__*)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
