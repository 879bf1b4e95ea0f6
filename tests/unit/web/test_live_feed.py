"""The console's live feed hands news only to streams that may see it, and ends a stream
that does not keep up instead of holding news for it without bound."""

from __future__ import annotations

import pytest

from hub.auth import Principal, Role
from hub.errors import TooManyRequests, Unavailable
from hub.web.live import LiveFeed, public


def person(user_id: int, wards: frozenset[int] | None) -> Principal:
    role = Role.WARD_STAFF if wards is not None else Role.TECHNICIAN
    return Principal(user_id, f"user-{user_id}", role, wards, "session", "csrf")


def news(ward_id: int | None, n: int = 0) -> dict[str, object]:
    return {"topic": "device", "uid": f"d{n}", "ward_id": ward_id, "status": "offline"}


async def test_news_goes_to_those_who_see_its_ward() -> None:
    feed = LiveFeed("postgresql://unused")
    with (
        feed.subscription(person(1, None)) as everyone,
        feed.subscription(person(2, frozenset({7}))) as ward_7,
    ):
        feed.deliver(news(8))
        feed.deliver(news(None))
        feed.deliver(news(7))
        feed.deliver({"topic": "resync"})
        assert everyone.queue.qsize() == 4
        # A device without a ward is for those serving every ward only.
        got = [ward_7.queue.get_nowait() for _ in range(ward_7.queue.qsize())]
        assert [(n or {}).get("topic") for n in got] == ["device", "resync"]
        assert got[0] is not None and got[0]["ward_id"] == 7
    assert not feed.subscribers


async def test_a_stream_that_falls_behind_is_ended() -> None:
    feed = LiveFeed("postgresql://unused", queue_size=3)
    with feed.subscription(person(1, None)) as slow:
        for n in range(4):
            feed.deliver(news(1, n))
        assert slow.overflowed and slow.queue.get_nowait() is None and slow.queue.empty()


async def test_streams_are_bounded_per_person_and_per_process() -> None:
    feed = LiveFeed("postgresql://unused", max_streams=2, max_streams_per_user=1)
    with feed.subscription(person(1, None)):
        with pytest.raises(TooManyRequests):
            feed.check_room(person(1, None))
        feed.check_room(person(2, None))
        with feed.subscription(person(2, None)), pytest.raises(Unavailable):
            feed.check_room(person(3, None))


def test_a_browser_learns_no_ward_ids() -> None:
    assert '"ward_id"' not in public(news(7))
