"""A real event about one device, from the running hub, as a JSON log line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from drivers.contract import Reading, UnknownDevice
from hub.server.log_format import JsonFormatter
from tests.conftest import Clients
from tests.support.hub import RunningHub


async def test_an_unknown_device_is_logged_with_its_uid(
    hub: RunningHub, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    state = hub.server.config.app.state  # type: ignore[union-attr]
    reading = Reading("stranger-7", "pm2_5", 12.0, datetime.now(UTC))
    with caplog.at_level(logging.INFO, logger="hub.telemetry"), pytest.raises(UnknownDevice):
        await state.sink.readings([reading], "mqtt")
    records = [r for r in caplog.records if "pending approval" in r.getMessage()]
    assert records, [r.getMessage() for r in caplog.records]
    event = json.loads(JsonFormatter().format(records[0]))
    assert event["device_uid"] == "stranger-7"
    assert event["logger"].startswith("hub.telemetry") and event["level"] == "INFO"
