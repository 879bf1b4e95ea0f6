"""Prometheus counters of the ingest path (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("iochub_readings_received_total", "Readings decoded from devices.", ["source"])
STORED = Counter("iochub_readings_stored_total", "Readings committed to the time-series store.")
QUARANTINED = Counter(
    "iochub_payloads_quarantined_total",
    "Payloads or readings kept aside with a reason.",
    ["reason"],
)
CONFLICTS = Counter(
    "iochub_readings_conflicting_total",
    "Readings refused because another value is stored for their device, metric and time.",
)
QUEUE_DEPTH = Gauge("iochub_ingest_queue_depth", "Readings waiting to be written.")
BATCH_SECONDS = Histogram(
    "iochub_ingest_batch_seconds",
    "Time to write one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WRITE_FAILURES = Counter(
    "iochub_ingest_write_failures_total", "Batch writes retried after an error."
)
JOB_LAST_SUCCESS = Gauge(
    "iochub_maintenance_job_last_success_timestamp_seconds",
    "When each maintenance job (compression, retention, rollup refresh) last succeeded.",
    ["job"],
)
JOB_FAILURES = Gauge(
    "iochub_maintenance_job_consecutive_failures",
    "Failures in a row of each maintenance job.",
    ["job"],
)
JOB_RUN_BY_HUB = Gauge(
    "iochub_maintenance_job_run_by_hub",
    "1 while the hub runs a TimescaleDB job itself because the database's runner fails it.",
    ["job"],
)
ROLLUP_AGE = Gauge(
    "iochub_rollup_age_seconds",
    "Age of the end of each rollup's newest refreshed bucket (0: computed at query time).",
    ["rollup"],
)
