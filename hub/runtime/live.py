"""Live news for the console: a device's status moved, an alert opened or changed.

Each is sent with PostgreSQL NOTIFY inside the transaction that made the change, so it
goes out only if the change commits, and every hub process (each holding one LISTEN
connection) hears it, whichever replica wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

LIVE_CHANNEL: Final = "iochub_live"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; news is a few ids and words.
MAX_PAYLOAD: Final = 7900


def live_payload(news: Mapping[str, Any]) -> str:
    text = json.dumps(news, default=str, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD:
        # Only free text makes it long: the ids and the status are what listeners act on.
        text = json.dumps(
            {k: v for k, v in news.items() if k not in ("reason", "message")},
            default=str,
            separators=(",", ":"),
        )
    return text


async def notify_live(conn: Any, news: Sequence[Mapping[str, Any]]) -> None:
    """Queue the news on the connection's transaction (sent at commit, dropped on rollback)."""
    if news:
        await conn.execute(
            "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
            LIVE_CHANNEL,
            [live_payload(n) for n in news],
        )
