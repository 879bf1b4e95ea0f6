"""Telemetry: the ingest path (resolve, normalise, quarantine, bounded queue, COPY), the
metric catalog, VN_AQI, time-series queries and retention. Other slices use what is
named here (`timeseries`: latest values and bucketed series); `wiring`
(hub.telemetry.wiring) is the composition root's hook."""

from hub.telemetry import queries as timeseries
from hub.telemetry.catalog import METRICS, Metric
from hub.telemetry.settings import TelemetrySettings
from hub.telemetry.store import WRITER, Latest, ReadingWriter, Row

__all__ = [
    "METRICS",
    "WRITER",
    "Latest",
    "Metric",
    "ReadingWriter",
    "Row",
    "TelemetrySettings",
    "timeseries",
]
