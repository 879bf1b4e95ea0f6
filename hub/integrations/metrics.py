"""Prometheus metrics of alert delivery (served at /metrics); destination is webhook or grafana."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTED = Counter("iochub_delivery_attempts_total", "Delivery attempts started.", ["destination"])
SUCCEEDED = Counter(
    "iochub_deliveries_succeeded_total", "Deliveries the destination accepted.", ["destination"]
)
FAILED = Counter(
    "iochub_delivery_failures_total",
    "Attempts that failed (error status, timeout, connection error); retried.",
    ["destination"],
)
DEAD = Counter(
    "iochub_deliveries_dead_total", "Deliveries given up on (dead-lettered).", ["destination"]
)
ATTEMPT_SECONDS = Histogram(
    "iochub_delivery_attempt_seconds",
    "Time one attempt took, until the destination answered or failed.",
    ["destination"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
END_TO_END_SECONDS = Histogram(
    "iochub_delivery_seconds",
    "From the event's commit to its acceptance by the destination.",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 86400),
)
OUTBOX_LAG = Gauge(
    "iochub_outbox_lag_seconds", "Age of the oldest event not yet fanned out to destinations."
)
PENDING = Gauge(
    "iochub_deliveries_pending", "Deliveries waiting to be sent or retried.", ["destination"]
)
