"""Settings of alert delivery: IOC webhooks and Grafana."""

from __future__ import annotations

from pydantic import BaseModel


class DeliverySettings(BaseModel):
    pass
