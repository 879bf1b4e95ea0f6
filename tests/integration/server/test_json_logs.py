"""A real event about one device, from the running hub, as a JSON log line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import httpx
import pytest

from drivers.contract import Reading, UnknownDevice
from hub.server.log_format import JsonFormatter
from tests.conftest import Clients
from tests.support.brokers import PrivateBroker, free_port, private_mosquitto
from tests.support.hub import RunningHub


async def test_an_unknown_device_is_logged_with_its_uid(
    hub: RunningHub, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    state = hub.runtime
    reading = Reading("stranger-7", "pm2_5", 12.0, datetime.now(UTC))
    with caplog.at_level(logging.INFO, logger="hub.telemetry"), pytest.raises(UnknownDevice):
        await state.sink.readings([reading], "mqtt")
    records = [r for r in caplog.records if "pending approval" in r.getMessage()]
    assert records, [r.getMessage() for r in caplog.records]
    event = json.loads(JsonFormatter().format(records[0]))
    assert event["device_uid"] == "stranger-7"
    assert event["logger"].startswith("hub.telemetry") and event["level"] == "INFO"


def test_serve_writes_only_json_lines(database_url: str) -> None:
    """`iochub serve` as an operator runs it, with IOCHUB_LOG_FORMAT=json: every line on
    stderr is one JSON event (uvicorn's own lines too), and a request's access line carries
    the request id the caller sent."""
    # Its own broker: a stopped process's persistent session in the suite's shared
    # subscription would keep being handed its share of the other tests' telemetry.
    with private_mosquitto() as broker:
        _serve_with_json_logs(database_url, broker)


def _serve_with_json_logs(database_url: str, broker: PrivateBroker) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IOCHUB_")},
        "IOCHUB_DATABASE__URL": database_url,
        "IOCHUB_MQTT__PORT": str(broker.port),
        "IOCHUB_MQTT__CLIENT_ID": f"iochub-json-{port}",
        "IOCHUB_HTTP__PORT": str(port),
        "IOCHUB_COAP__ENABLED": "false",
        "IOCHUB_DELIVERY__ENABLED": "false",
        "IOCHUB_SECRET_KEY": "test-secret-key-not-for-production",
        "IOCHUB_DATA_DIR": tempfile.mkdtemp(prefix="iochub-json-logs-"),
        "IOCHUB_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.server", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/healthz",
                    headers={"x-request-id": "probe-42"},
                    timeout=2,
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the hub did not start within 60 s"
                time.sleep(0.2)
        assert answer.headers["x-request-id"] == "probe-42"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert {"uvicorn.error", "hub.storage.database"} <= {e["logger"] for e in events}
    access = [e for e in events if e["logger"] == "uvicorn.access"]
    assert any(e.get("request_id") == "probe-42" and "/healthz" in e["message"] for e in access)
