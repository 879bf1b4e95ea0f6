"""Control characters in log records are escaped, so input can never forge or hide log lines.

A request path, a device's payload or a database message may carry NUL, CR, LF, ESC (terminal
escapes) and the like; they are written as ``\\xNN`` instead, in the hub's own records and in
uvicorn's access log alike (its formatter reads the record's arguments, so those are escaped
too, not only the final message).
"""

from __future__ import annotations

import logging
from typing import Any

# C0 controls but TAB, DEL and the C1 controls (OWASP: neutralise CRLF and terminal escapes).
_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if code != 0x09
}


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


def _escaped(value: Any) -> Any:
    return escape_controls(value) if isinstance(value, str) else value


class EscapingLogRecord(logging.LogRecord):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.args, tuple):
            self.args = tuple(_escaped(a) for a in self.args)
        elif isinstance(self.args, dict):
            self.args = {k: _escaped(v) for k, v in self.args.items()}

    def getMessage(self) -> str:
        return escape_controls(super().getMessage())


def install() -> None:
    """Every log record of this process escapes control characters (idempotent)."""
    factory = logging.getLogRecordFactory()
    # A subclass (log_format's, which also stamps the request context) escapes as well.
    if not (isinstance(factory, type) and issubclass(factory, EscapingLogRecord)):
        logging.setLogRecordFactory(EscapingLogRecord)
