"""The shared MQTT topic layout and status dialects."""

from __future__ import annotations

import pytest

from drivers.contract import DecodeError, Topics, status_dialect


def test_topics_round_trip() -> None:
    topic = Topics.for_device("aq-may-chai-01", Topics.TELEMETRY)
    assert topic == "iochub/v1/dev/aq-may-chai-01/telemetry"
    assert Topics.parse(topic) == ("aq-may-chai-01", "telemetry")
    assert Topics.all_devices(Topics.STATUS) == "iochub/v1/dev/+/status"


@pytest.mark.parametrize(
    "topic",
    ["other/v1/dev/a/telemetry", "iochub/v1/dev/a", "iochub/v1/dev//x", "iochub/v1/dev/a/b/c"],
)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(DecodeError):
        Topics.parse(topic)


@pytest.mark.parametrize(
    ("payload", "dialect"),
    [
        (b"online", "sensor"),
        (b" OFFLINE ", "sensor"),
        (b'{"state": "online", "battery": 80}', "sensor"),
        (b'{"online": false}', "speaker"),
        (b'{"online": true, "volume": 70, "playing": null}', "speaker"),
        (b"garbage", "unknown"),
        (b"", "unknown"),
    ],
)
def test_status_dialects(payload: bytes, dialect: str) -> None:
    assert status_dialect(payload) == dialect
