"""Grafana dashboards of the IOC, built as code and checked in as JSON."""
