"""Speaker wire format v1: encoders, strict decoders and every way a payload can be wrong."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.contract import AckStage, Command, DecodeError
from drivers.speaker.protocol import (
    DEFAULT_COMMAND_TTL,
    LAST_WILL_PAYLOAD,
    MAX_ACK_BYTES,
    MAX_COMMAND_BYTES,
    CommandEncoder,
    CommandRejected,
    FailureReason,
    InvalidCommand,
    PingCommand,
    PlayCommand,
    Priority,
    SetVolumeCommand,
    SpeakerStatus,
    StopCommand,
    build_command,
    decode_ack,
    decode_command,
    decode_event,
    decode_status,
    encode_ack,
    encode_command,
    encode_event,
    encode_status,
    format_time,
    parse_time,
)

NOW = datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def play_params(**overrides: Any) -> dict[str, Any]:
    return {
        "audio_url": "https://hub.example/audio/42.mp3?sig=abc",
        "sha256": SHA,
        "duration_s": 12.5,
        "volume": 70,
        "priority": "normal",
        "broadcast_id": "bc-7",
        **overrides,
    }


def ack_bytes(**fields: Any) -> bytes:
    document: dict[str, Any] = {
        "command_id": "c-1",
        "stage": "started",
        "at": "2025-03-01T00:30:00.000Z",
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


def online_status(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "online": True,
        "volume": 60,
        "playing": None,
        "amplifier_fault": False,
        "speaker_fault": False,
        "temperature_c": 38.5,
        "rssi_dbm": -67,
        "firmware_version": "2.4.1",
        "uptime_s": 3600,
    }
    document.update(fields)
    return document


# ------------------------------------------------------------------ time


def test_times_are_rfc3339_utc_with_milliseconds() -> None:
    hanoi = timezone(timedelta(hours=7))
    assert format_time(datetime(2025, 3, 1, 7, 30, tzinfo=hanoi)) == "2025-03-01T00:30:00.000Z"
    assert parse_time("2025-03-01T07:30:00+07:00", "at") == NOW.replace(hour=0, minute=30)
    assert parse_time("2025-03-01t00:30:00.123456789z", "at").microsecond == 123456
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2025, 3, 1))


@pytest.mark.parametrize(
    "text",
    ["2025-03-01T00:30:00", "2025-03-01", "20250301T003000Z", "2025-02-30T00:00:00Z", "soon"],
)
def test_timestamps_without_offset_or_impossible_are_refused(text: str) -> None:
    with pytest.raises(DecodeError, match="start_at"):
        parse_time(text, "start_at")


# ------------------------------------------------------------------ commands


def test_play_command_round_trips() -> None:
    start = NOW + timedelta(minutes=2)
    command = build_command(Command("c-1", "spk-1", "play", play_params(start_at=start)), NOW)
    assert isinstance(command, PlayCommand)
    assert command.expires_at == start + DEFAULT_COMMAND_TTL
    decoded = decode_command(encode_command(command))
    assert decoded == command
    assert decoded.priority is Priority.NORMAL


def test_play_without_start_is_played_now_and_expires_after_the_default_ttl() -> None:
    command = build_command(Command("c-1", "spk-1", "play", play_params()), NOW)
    assert isinstance(command, PlayCommand)
    assert command.start_at is None
    assert command.expires_at == NOW + DEFAULT_COMMAND_TTL
    assert "start_at" not in json.loads(encode_command(command))


def test_explicit_expiry_and_rfc3339_strings_are_accepted() -> None:
    params = play_params(start_at="2025-03-01T07:31:00+07:00", expires_at="2025-03-01T00:40:00Z")
    command = build_command(Command("c-1", "spk-1", "play", params), NOW)
    assert command.expires_at == NOW + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("stop", {"target": "c-9"}, StopCommand("s-1", NOW, NOW + DEFAULT_COMMAND_TTL, "c-9")),
        ("stop", {}, StopCommand("s-1", NOW, NOW + DEFAULT_COMMAND_TTL, "all")),
        ("set_volume", {"volume": 0}, SetVolumeCommand("s-1", NOW, NOW + DEFAULT_COMMAND_TTL, 0)),
        ("ping", {}, PingCommand("s-1", NOW, NOW + DEFAULT_COMMAND_TTL)),
    ],
)
def test_other_commands_round_trip(action: str, params: dict[str, Any], expected: object) -> None:
    command = build_command(Command("s-1", "spk-1", action, params), NOW)
    assert command == expected
    assert decode_command(encode_command(command)) == expected


@pytest.mark.parametrize(
    ("action", "params", "reason"),
    [
        ("dance", {}, "action 'dance' is not one of"),
        ("play", play_params(volume=101), r"volume 101 is outside 0\.\.100"),
        ("play", play_params(volume=True), "volume must be an integer"),
        ("play", play_params(duration_s=0), "duration_s must be positive"),
        ("play", play_params(duration_s=float("nan")), "NaN is not a number"),
        ("play", play_params(sha256=SHA.upper()), "64 lowercase hexadecimal"),
        ("play", play_params(audio_url="ftp://x/y.mp3"), "http or https URL"),
        ("play", play_params(priority="urgent"), "priority 'urgent' is not a priority"),
        ("play", play_params(broadcast_id="bc 7"), "broadcast_id 'bc 7' has characters"),
        ("play", play_params(start_at=datetime(2025, 3, 1)), "start_at must be timezone-aware"),
        ("play", play_params(start_at=17), "start_at must be a datetime"),
        ("play", play_params(expires_at=NOW - timedelta(seconds=1)), "expires_at must be later"),
        ("play", {**play_params(), "colour": "red"}, "does not take colour"),
        ("play", {k: v for k, v in play_params().items() if k != "sha256"}, "play needs sha256"),
        ("set_volume", {}, "set_volume needs volume"),
        ("play", play_params(audio_url=object()), "not JSON serializable"),
    ],
)
def test_commands_the_protocol_cannot_carry_are_invalid(
    action: str, params: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidCommand, match=reason):
        encode_command(build_command(Command("c-1", "spk-1", action, params), NOW))


def test_start_after_expiry_is_invalid() -> None:
    params = play_params(start_at=NOW + timedelta(hours=1), expires_at=NOW + timedelta(minutes=1))
    with pytest.raises(InvalidCommand, match="start_at must be earlier than expires_at"):
        encode_command(build_command(Command("c-1", "spk-1", "play", params), NOW))


def test_encoder_validates_each_shape_once_but_every_command_id() -> None:
    encoder = CommandEncoder()
    template = build_command(Command("c-1", "spk-1", "play", play_params()), NOW)
    payloads = [
        encoder.encode(build_command(Command(f"c-{i}", "spk-1", "play", play_params()), NOW))
        for i in range(3)
    ]
    assert [decode_command(p).command_id for p in payloads] == ["c-0", "c-1", "c-2"]
    assert payloads[1] == encode_command(template)
    with pytest.raises(InvalidCommand, match="command_id 'bad id'"):
        encoder.encode(build_command(Command("bad id", "spk-1", "play", play_params()), NOW))


def raw_command(**fields: Any) -> bytes:
    document: dict[str, Any] = {
        "command_id": "c-1",
        "action": "ping",
        "issued_at": "2025-03-01T00:30:00Z",
        "expires_at": "2025-03-01T00:35:00Z",
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("payload", "reason", "command_id", "failure"),
    [
        (raw_command(action="firmware_update"), "not supported", "c-1", "unsupported"),
        (raw_command(volume=3), "unknown field volume", "c-1", "rejected"),
        (raw_command(action="set_volume"), "missing volume", "c-1", "rejected"),
        (raw_command(action=...), "missing action", "c-1", "rejected"),
        (raw_command(action=7), "action must be a string", "c-1", "rejected"),
        (raw_command(command_id=...), "missing command_id", None, "rejected"),
        (raw_command(command_id=12), "command_id must be a string", None, "rejected"),
        (raw_command(command_id="a/b"), "has characters outside", None, "rejected"),
        (raw_command(command_id="x" * 200), "longer than 128", None, "rejected"),
        (
            raw_command(expires_at="2025-03-01T00:29:00Z"),
            "expires_at must be later",
            "c-1",
            "rejected",
        ),
        (raw_command(issued_at="yesterday"), "not an RFC 3339", "c-1", "rejected"),
        (b"\x00" * (MAX_COMMAND_BYTES + 1), "more than the 8192 allowed", None, "rejected"),
        (b"", "command is empty", None, "rejected"),
        (b"not json", "not JSON", None, "rejected"),
    ],
)
def test_speakers_refuse_bad_commands_with_the_reason_and_the_id_when_usable(
    payload: bytes, reason: str, command_id: str | None, failure: str
) -> None:
    with pytest.raises(CommandRejected, match=reason) as raised:
        decode_command(payload)
    assert raised.value.command_id == command_id
    assert raised.value.failure == failure
    assert isinstance(raised.value, DecodeError)


def test_vendor_extension_fields_are_ignored() -> None:
    assert decode_command(raw_command(x_vendor_trace="abc")).command_id == "c-1"


# ------------------------------------------------------------------ acks


def test_ack_round_trips_for_every_stage() -> None:
    for stage in AckStage:
        reason = FailureReason.BUSY if stage is AckStage.FAILED else None
        ack = decode_ack(encode_ack("c-1", stage, NOW, reason), "spk-1")
        assert (ack.command_id, ack.device_uid, ack.stage, ack.time) == ("c-1", "spk-1", stage, NOW)
        assert ack.reason == (None if reason is None else "busy")


def test_encode_ack_insists_on_a_reason_exactly_for_failures() -> None:
    with pytest.raises(ValueError, match="only with, the failed stage"):
        encode_ack("c-1", AckStage.FAILED, NOW)
    with pytest.raises(ValueError, match="only with, the failed stage"):
        encode_ack("c-1", AckStage.STARTED, NOW, FailureReason.BUSY)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (ack_bytes(stage="playing"), "stage 'playing' is not one of received, downloading"),
        (ack_bytes(stage=3), "stage must be a string, not a number"),
        (ack_bytes(command_id=...), "missing command_id"),
        (ack_bytes(command_id=None), "command_id must be a string, not null"),
        (ack_bytes(command_id=""), "command_id must not be empty"),
        (ack_bytes(at=...), "missing at"),
        (ack_bytes(at=1740789000), "at must be an RFC 3339 string, not a number"),
        (ack_bytes(at="2025-03-01T00:30:00"), "not an RFC 3339 timestamp"),
        (ack_bytes(stage="failed"), "a failed ack needs a reason"),
        (ack_bytes(stage="failed", reason="tired"), "reason 'tired' is not one of"),
        (ack_bytes(reason="busy"), "a started ack takes no reason"),
        (ack_bytes(progress=50), "unknown field progress"),
        (
            b'{"command_id":"a","command_id":"b","stage":"started","at":"2025-03-01T00:30:00Z"}',
            "duplicate key 'command_id'",
        ),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"started"', "must be a JSON object, not a string"),
        (b"{", "not JSON"),
        (b"\xc3\x28", "not UTF-8"),
        (b"[" * 1000, "nests too deeply"),
        (b" " * (MAX_ACK_BYTES + 1), "more than the 1024 allowed"),
        (b"", "ack is empty"),
    ],
)
def test_malformed_acks_are_refused_with_a_precise_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_ack(payload, "spk-1")


@given(st.binary(max_size=300))
def test_no_bytes_make_the_ack_decoder_raise_anything_but_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_ack(payload, "spk-1")


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._:@", min_size=1, max_size=64).filter(
        lambda text: text[0].isalnum()
    ),
    st.sampled_from(list(AckStage)),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_any_valid_ack_survives_the_round_trip(
    command_id: str, stage: AckStage, at: datetime
) -> None:
    reason = FailureReason.EXPIRED if stage is AckStage.FAILED else None
    ack = decode_ack(encode_ack(command_id, stage, at, reason), "spk-1")
    assert ack.command_id == command_id
    assert ack.stage is stage
    assert abs(ack.time - at) < timedelta(milliseconds=1)


# ------------------------------------------------------------------ status and events


def test_online_status_round_trips() -> None:
    status = SpeakerStatus(
        online=True,
        volume=55,
        playing="c-3",
        amplifier_fault=True,
        speaker_fault=False,
        temperature_c=41.2,
        rssi_dbm=-71.0,
        firmware_version="2.4.1",
        uptime_s=12.0,
        at=NOW,
    )
    assert decode_status(encode_status(status)) == status


def test_the_last_will_is_an_offline_status() -> None:
    assert decode_status(LAST_WILL_PAYLOAD) == SpeakerStatus(online=False)
    assert encode_status(SpeakerStatus(online=False)) == LAST_WILL_PAYLOAD
    graceful = json.dumps({"online": False, "at": "2025-03-01T00:30:00Z"}).encode()
    assert decode_status(graceful).at == NOW


def test_wired_speakers_may_report_no_rssi_or_temperature() -> None:
    status = decode_status(json.dumps(online_status(rssi_dbm=None, temperature_c=None)).encode())
    assert status.rssi_dbm is None
    assert status.temperature_c is None


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"volume": 50}, "missing online"),
        ({"online": "yes"}, "online must be a boolean, not a string"),
        ({"online": 1}, "online must be a boolean, not a number"),
        ({"online": False, "mood": "sad"}, "unknown field mood"),
        (online_status(volume=...), "missing volume"),
        (online_status(volume=-1), r"volume -1 is outside 0\.\.100"),
        (online_status(volume=5.5), "volume must be an integer"),
        (online_status(playing=5), "playing must be a string"),
        (online_status(amplifier_fault="no"), "amplifier_fault must be a boolean"),
        (online_status(temperature_c=400), "temperature_c 400 is outside"),
        (online_status(rssi_dbm=10), "rssi_dbm 10 is outside"),
        (online_status(uptime_s=-3), "uptime_s -3 is outside"),
        (online_status(firmware_version=""), "firmware_version must not be empty"),
    ],
)
def test_malformed_status_is_refused(document: dict[str, Any], reason: str) -> None:
    payload = json.dumps({k: v for k, v in document.items() if v is not ...}).encode()
    with pytest.raises(DecodeError, match=reason):
        decode_status(payload)


def test_event_round_trips() -> None:
    event = decode_event(encode_event("door_open", NOW, data={"cabinet": 2}), "spk-1")
    assert (event.device_uid, event.kind, event.active, event.time) == (
        "spk-1",
        "door_open",
        True,
        NOW,
    )
    assert event.data == {"cabinet": 2}
    cleared = decode_event(encode_event("door_open", NOW, active=False), "spk-1")
    assert not cleared.active
    assert cleared.data == {}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"at": "2025-03-01T00:30:00Z"}, "missing kind"),
        ({"kind": "Door Open", "at": "2025-03-01T00:30:00Z"}, "lowercase letters"),
        (
            {"kind": "door_open", "at": "2025-03-01T00:30:00Z", "data": [1]},
            "data must be an object",
        ),
        (
            {"kind": "door_open", "at": "2025-03-01T00:30:00Z", "active": "on"},
            "active must be a boolean",
        ),
    ],
)
def test_malformed_events_are_refused(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_event(json.dumps(document).encode(), "spk-1")


def test_encode_event_refuses_a_bad_kind() -> None:
    with pytest.raises(ValueError, match="event kind"):
        encode_event("Boot!", NOW)
