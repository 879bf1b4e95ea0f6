"""Prometheus metrics of broadcasts (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACKS = Counter(
    "iochub_broadcast_acks_total",
    "Speaker acknowledgements by outcome: recorded, duplicate, out_of_order, unknown "
    "(a command id the hub does not know), foreign (not a broadcast command), dropped.",
    ["outcome"],
)
OCCURRENCES = Counter(
    "iochub_broadcast_occurrences_total",
    "Occurrences by how they ended: sent, missed, skipped.",
    ["outcome"],
)
COMMANDS = Counter(
    "iochub_broadcast_commands_total",
    "Play commands published, first sends and retries apart.",
    ["kind"],
)
SEND_FAILURES = Counter(
    "iochub_broadcast_send_failures_total", "Play commands the broker did not take."
)
DRIFT_SECONDS = Histogram(
    "iochub_broadcast_drift_seconds",
    "How late a fan-out began against its plan.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
FAN_OUT_SECONDS = Histogram(
    "iochub_broadcast_fan_out_seconds",
    "From the first publish of an occurrence to the broker's last acceptance.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LEADER = Gauge(
    "iochub_broadcast_scheduler_leader", "1 while this hub process is the scheduler leader."
)
