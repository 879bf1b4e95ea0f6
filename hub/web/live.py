"""Live updates for the console: server-sent events (WHATWG HTML §9.2) fed by PostgreSQL
LISTEN/NOTIFY, so a change written by any hub replica reaches every open console.

One LISTEN connection per process fans the news out to the open streams; each stream
carries only what its person may see (ward staff: their wards). Streams are bounded in
number, in what they may hold unread and in how long they last: a browser reconnects on
its own (EventSource) and then re-reads its page, so nothing is missed, and a stopping
server is never held open by a stream for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Final

import asyncpg
from litestar import Controller, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from hub.auth import CurrentUser, Permission, Principal
from hub.errors import TooManyRequests, Unavailable
from hub.runtime import LIVE_CHANNEL, RuntimeKey, runtime_of

log = logging.getLogger("hub.web.live")
# What a browser may learn of a change: enough to know which part of its page to re-read.
PUBLIC_FIELDS: Final = {
    "device": ("uid", "kind", "from", "status", "at"),
    "alert": ("id", "change", "device", "state", "severity"),
}
RECONNECT_MS: Final = 3000


@dataclass(eq=False)
class Subscriber:
    user_id: int
    ward_ids: frozenset[int] | None
    queue: asyncio.Queue[dict[str, Any] | None]
    overflowed: bool = False

    def end(self) -> None:
        """Drop what is unread and end the stream at its next read."""
        self.overflowed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def sees(self, ward_id: Any) -> bool:
        if self.ward_ids is None:
            return True
        return isinstance(ward_id, int) and ward_id in self.ward_ids


@dataclass
class LiveFeed:
    """The process's one LISTEN connection and the streams it feeds."""

    dsn: str
    max_streams: int = 200
    max_streams_per_user: int = 6
    queue_size: int = 200
    stream_lifetime_s: float = 120.0
    keepalive_s: float = 15.0
    subscribers: set[Subscriber] = field(default_factory=set)
    listening: asyncio.Event = field(default_factory=asyncio.Event)

    def check_room(self, principal: Principal) -> None:
        if len(self.subscribers) >= self.max_streams:
            raise Unavailable("this hub serves as many live streams as it may; retry shortly")
        mine = sum(1 for s in self.subscribers if s.user_id == principal.user_id)
        if mine >= self.max_streams_per_user:
            raise TooManyRequests(
                f"at most {self.max_streams_per_user} live streams per person; close a tab"
            )

    @contextlib.contextmanager
    def subscription(self, principal: Principal) -> Iterator[Subscriber]:
        subscriber = Subscriber(
            principal.user_id, principal.ward_ids, asyncio.Queue(self.queue_size)
        )
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    def deliver(self, news: dict[str, Any]) -> None:
        """Hand news to every stream that may see it; a stream that does not keep up is
        ended (its browser reconnects and re-reads its page)."""
        topic = news.get("topic")
        for subscriber in list(self.subscribers):
            if subscriber.overflowed:
                continue
            if topic != "resync" and not subscriber.sees(news.get("ward_id")):
                continue
            try:
                subscriber.queue.put_nowait(news)
            except asyncio.QueueFull:
                subscriber.end()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            news = json.loads(str(payload))
        except ValueError:
            log.warning("unreadable live news on %s", LIVE_CHANNEL)
            return
        if isinstance(news, dict) and news.get("topic") in PUBLIC_FIELDS:
            self.deliver(news)

    async def run(self) -> None:
        """Hold the LISTEN connection, reconnecting with back-off when it drops."""
        delay = 1.0
        first = True
        while True:
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "iochub-console-live"}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot listen for live news (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            delay = 1.0
            try:
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(LIVE_CHANNEL, self._on_notify)
                self.listening.set()
                if not first:
                    # What committed while nobody listened: every page re-reads itself.
                    self.deliver({"topic": "resync"})
                first = False
                await lost.wait()
                log.warning("the live news connection dropped; reconnecting")
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def stop(self) -> None:
        for subscriber in list(self.subscribers):
            subscriber.end()


LIVE: RuntimeKey[LiveFeed] = RuntimeKey("the console's live updates")


def public(news: dict[str, Any]) -> str:
    topic = news["topic"]
    return json.dumps({k: news.get(k) for k in PUBLIC_FIELDS.get(topic, ())})


async def stream(feed: LiveFeed, principal: Principal) -> AsyncIterator[ServerSentEventMessage]:
    with feed.subscription(principal) as subscriber:
        # The first message says the stream is open: a reconnected page re-reads itself.
        yield ServerSentEventMessage(event="hello", data="{}", retry=RECONNECT_MS)
        ends = monotonic() + feed.stream_lifetime_s
        while (left := ends - monotonic()) > 0:
            try:
                async with asyncio.timeout(min(left, feed.keepalive_s)):
                    news = await subscriber.queue.get()
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if news is None:
                return
            if news["topic"] == "resync":
                yield ServerSentEventMessage(event="resync", data="{}")
            else:
                yield ServerSentEventMessage(event=news["topic"], data=public(news))


class LiveController(Controller):
    include_in_schema = False

    @get("/events")
    async def events(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> ServerSentEvent:
        """Device status moves and alert changes in your wards, as they happen."""
        principal.require(Permission.DEVICES_READ)
        feed = runtime_of(request).get(LIVE)
        feed.check_room(principal)
        return ServerSentEvent(
            stream(feed, principal),
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )
