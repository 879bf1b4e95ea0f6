"""Speaker groups on the wire: the retained groups message, the status field, group topics."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from drivers.contract import DecodeError, Topics
from drivers.speaker.protocol import (
    MAX_GROUPS,
    InvalidCommand,
    SpeakerStatus,
    decode_groups,
    decode_status,
    encode_groups,
    encode_status,
)

ONLINE = SpeakerStatus(
    online=True,
    volume=60,
    playing=None,
    amplifier_fault=False,
    speaker_fault=False,
    temperature_c=38.0,
    rssi_dbm=-60.0,
    firmware_version="2.4.1",
    uptime_s=10.0,
)


def test_groups_round_trip_sorted_and_once() -> None:
    payload = encode_groups(["ward-may-to", "district", "ward-may-to"])
    assert json.loads(payload) == {"groups": ["district", "ward-may-to"]}
    assert decode_groups(payload) == ("district", "ward-may-to")


def test_a_cleared_retained_groups_message_means_no_group() -> None:
    assert decode_groups(b"") == ()
    assert decode_groups(encode_groups([])) == ()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"groups":"ward-a"}', "groups must be an array, not a string"),
        (b'{"groups":["ward/a"]}', "groups[0] 'ward/a' has characters outside"),
        (b'{"groups":["ward-a","ward-a"]}', "groups[1] 'ward-a' is listed twice"),
        (b'{"groups":[1]}', "groups[0] must be a string, not a number"),
        (b'{"groups":[],"extra":1}', "groups: unknown field extra"),
        (b"{}", "groups: missing groups"),
        (b"[]", "must be a JSON object"),
    ],
)
def test_malformed_groups_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode_groups(payload)


def test_too_many_groups_cannot_be_sent() -> None:
    with pytest.raises(InvalidCommand, match=f"more than the {MAX_GROUPS} allowed"):
        encode_groups([f"g{n}" for n in range(MAX_GROUPS + 1)])
    with pytest.raises(InvalidCommand, match="has characters outside"):
        encode_groups(["ward a"])


def test_status_says_which_groups_a_speaker_follows() -> None:
    following = replace(ONLINE, groups=("ward-a",))
    assert decode_status(encode_status(following)).groups == ("ward-a",)
    assert decode_status(encode_status(ONLINE)).groups is None  # firmware without groups
    assert json.loads(encode_status(ONLINE)).keys().isdisjoint({"groups"})


def test_group_topics_are_told_from_device_topics() -> None:
    assert Topics.for_group("ward-a") == "iochub/v1/grp/ward-a/cmd"
    assert Topics.parse_group("iochub/v1/grp/ward-a/cmd") == "ward-a"
    assert Topics.parse_group("iochub/v1/dev/spk-1/cmd") is None
    assert Topics.parse_group("iochub/v1/grp/a/b/cmd") is None
    assert Topics.parse_group("iochub/v1/grp//cmd") is None
