"""The hub's kernel, below every slice: shared settings, the typed runtime, background
service supervision, the sink every driver talks to, and the one error mapping.

It imports no slice (the layering contracts in pyproject.toml check it); slices import
it, and the composition root (hub.server) puts everything together.
"""

from hub.runtime.context import HubRuntime, RuntimeKey, Wiring, runtime_of, slice_object
from hub.runtime.live import LIVE_CHANNEL, notify_live
from hub.runtime.problems import EXCEPTION_HANDLERS, problem
from hub.runtime.services import BackgroundService, ServiceGroup
from hub.runtime.settings import (
    CoreSettings,
    DatabaseSettings,
    HttpSettings,
    MqttSettings,
    TimeZoneName,
    describe,
    mask_url,
)
from hub.runtime.sink import HubSink

__all__ = [
    "EXCEPTION_HANDLERS",
    "LIVE_CHANNEL",
    "BackgroundService",
    "CoreSettings",
    "DatabaseSettings",
    "HttpSettings",
    "HubRuntime",
    "HubSink",
    "MqttSettings",
    "RuntimeKey",
    "ServiceGroup",
    "TimeZoneName",
    "Wiring",
    "describe",
    "mask_url",
    "notify_live",
    "problem",
    "runtime_of",
    "slice_object",
]
