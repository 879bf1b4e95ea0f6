"""Log format: one JSON event per line with request id and device uid; plain stays plain."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from hub.server import log_format
from hub.server.log_format import ContextLogRecord, JsonFormatter, about_device
from hub.server.request_context import RequestContext


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    log_format.litestar_formatters("json")  # installs the context stamping, as the hub does
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("iochub-test-json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.handlers.clear()
    logging.captureWarnings(False)


def events(out: io.StringIO) -> list[dict[str, object]]:
    lines = out.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def test_one_event_per_line_with_its_fields(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = json_log
    logger.info("reading from %s\nsecond line", "aq-1", extra={"device_uid": "aq-1"})
    with about_device("spk-7"):
        logger.warning("speaker late")
    try:
        raise ValueError("bad payload")
    except ValueError:
        logger.exception("decode failed")
    first, second, third = events(out)
    # Control characters stay escaped (hub.server.log_escaping), so a line is one event.
    assert first["message"] == "reading from aq-1\\x0asecond line"
    assert first["device_uid"] == "aq-1" and first["level"] == "INFO"
    assert first["logger"] == "iochub-test-json"
    assert str(first["time"]).endswith("+00:00")
    assert "request_id" not in first
    assert second["device_uid"] == "spk-7" and second["level"] == "WARNING"
    assert "ValueError: bad payload" in str(third["exception"])
    assert isinstance(
        logging.getLogRecordFactory()("x", 20, "f", 1, "m", (), None), ContextLogRecord
    )
    assert len(out.getvalue().splitlines()) == 3


async def test_request_id_reaches_events_and_the_response(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_log

    @get("/work")
    async def work() -> str:
        logger.info("working")
        return "done"

    app = Litestar([work], middleware=[RequestContext])
    async with AsyncTestClient(app) as client:
        given = await client.get("/work", headers={"x-request-id": "proxy-42.a:b"})
        made = await client.get("/work")
        refused = await client.get("/work", headers={"x-request-id": 'evil "id"\\n'})
    assert given.headers["x-request-id"] == "proxy-42.a:b"
    assert len(made.headers["x-request-id"]) == 32
    assert refused.headers["x-request-id"] not in ('evil "id"\\n', made.headers["x-request-id"])
    ids = [event["request_id"] for event in events(out)]
    assert ids == [
        "proxy-42.a:b",
        made.headers["x-request-id"],
        refused.headers["x-request-id"],
    ]


def test_warnings_become_events_in_json(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = json_log
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = logger.handlers
    warnings_logger.propagate = False
    try:
        with warnings.catch_warnings():  # pytest records warnings itself otherwise
            warnings.simplefilter("always")
            logging.captureWarnings(False)  # the fixture's call ran outside this block
            log_format.litestar_formatters("json")  # what the hub does in JSON mode
            warnings.warn("a library complains", UserWarning, stacklevel=1)
    finally:
        warnings_logger.handlers.clear()
        warnings_logger.propagate = True
        logging.captureWarnings(False)
    (event,) = events(out)
    assert event["logger"] == "py.warnings" and "a library complains" in str(event["message"])


def test_plain_format_stays_for_a_terminal() -> None:
    config = log_format.formatter_config("plain")
    formatter = logging.Formatter(config["format"])
    record = logging.LogRecord("hub.x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    line = formatter.format(record)
    assert line.endswith("INFO    hub.x: hello there")
    assert log_format.uvicorn_log_config("plain") is None
    assert log_format.formatter_config("json") == {"()": "hub.server.log_format.JsonFormatter"}
