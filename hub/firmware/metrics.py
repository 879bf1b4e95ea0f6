"""Prometheus metrics of firmware compliance and rollouts (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DEVICES = Gauge(
    "iochub_firmware_devices",
    "Active devices per firmware compliance state (current, outdated, vulnerable, "
    "end_of_support, unknown_model, unknown_version), ward and kind.",
    ["ward", "kind", "state"],
)
VULNERABLE = Gauge(
    "iochub_firmware_vulnerable_devices",
    "Active devices whose firmware has known CVEs, by worst CVSS severity.",
    ["severity"],
)
ROLLOUT_DEVICES = Gauge(
    "iochub_firmware_rollout_devices",
    "Devices of open campaigns per rollout state.",
    ["campaign", "state"],
)
COMMANDS = Counter(
    "iochub_firmware_commands_total", "Firmware commands published, by action.", ["action"]
)
REPORTS = Counter(
    "iochub_firmware_reports_total",
    "Firmware state reports from devices, by outcome: applied, stale, unknown, rejected.",
    ["outcome"],
)
LEADER = Gauge("iochub_firmware_rollout_leader", "1 while this hub process drives rollouts.")
