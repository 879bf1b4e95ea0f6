"""Log output: plain lines for a terminal, or JSON (one event per line) for log shippers.

With ``IOCHUB_LOG_FORMAT=json`` every event is one JSON object on one line, ready for
journald, Loki or Elasticsearch: ``time`` (RFC 3339, UTC), ``level``, ``logger``,
``message``, ``request_id`` while an HTTP request is being handled, ``device_uid`` when the
event is about one device (``log.info(..., extra={"device_uid": uid})`` or inside
``about_device(uid)``), and ``exception`` with the traceback.

The context is stamped on each record when it is created: Litestar formats records on a
queue-listener thread, where the request's context variables are no longer visible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from hub.server.log_escaping import EscapingLogRecord

LogFormat = Literal["plain", "json"]
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

request_id: ContextVar[str | None] = ContextVar("iochub_request_id", default=None)
device_uid: ContextVar[str | None] = ContextVar("iochub_device_uid", default=None)

# A record attribute no `extra=` can collide with (makeRecord refuses to overwrite).
_CONTEXT_ATTRIBUTE = "iochub_context"


@contextmanager
def about_device(uid: str) -> Iterator[None]:
    """Every event logged inside is about this device."""
    token = device_uid.set(uid)
    try:
        yield
    finally:
        device_uid.reset(token)


class ContextLogRecord(EscapingLogRecord):
    """A record that carries the request id and device uid of where it was logged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        setattr(self, _CONTEXT_ATTRIBUTE, (request_id.get(), device_uid.get()))


def _stamp_context(log_format: LogFormat = "plain") -> None:
    # Control characters stay escaped (log_escaping), in JSON as in plain lines.
    logging.setLogRecordFactory(ContextLogRecord)
    if log_format == "json":
        # A library's warning would otherwise be a bare line on stderr between the events.
        logging.captureWarnings(True)


class JsonFormatter(logging.Formatter):
    """One JSON object per event, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        context_request, context_device = getattr(record, _CONTEXT_ATTRIBUTE, (None, None))
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or context_request
        if rid:
            event["request_id"] = rid
        uid = getattr(record, "device_uid", None) or context_device
        if uid:
            event["device_uid"] = uid
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def formatter_config(log_format: LogFormat) -> dict[str, Any]:
    """A logging.config dictConfig formatter entry for this format."""
    if log_format == "json":
        return {"()": f"{__name__}.JsonFormatter"}
    return {"format": PLAIN_FORMAT}


def configure(log_format: LogFormat, level: str) -> None:
    """Set up the root logger (CLI commands; `serve` hands over to Litestar's config)."""
    _stamp_context(log_format)
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any] | None:
    """uvicorn's own loggers (server, access) in the hub's format; None keeps uvicorn's."""
    if log_format != "json":
        return None
    _stamp_context(log_format)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter_config("json")},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


def litestar_formatters(log_format: LogFormat) -> dict[str, dict[str, Any]]:
    """Formatters for Litestar's LoggingConfig: its handlers all use "standard"."""
    _stamp_context(log_format)
    return {"standard": formatter_config(log_format)}
