"""Decoding sensor payloads: plain JSON, SenML JSON, SenML CBOR and status messages."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.contract import DecodeError, Reading
from drivers.sensors.payloads import (
    PayloadFormat,
    PayloadLimits,
    decode_json,
    decode_senml_cbor,
    decode_senml_json,
    decode_status,
    decode_telemetry,
    format_for_content_type,
    sniff_format,
)

NOW = datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
UID = "hp-aq-0007"


def as_json(document: Any) -> bytes:
    return json.dumps(document).encode()


def plain(readings: Any, **fields: Any) -> bytes:
    return as_json({"ts": "2025-03-01T07:29:30+07:00", **fields, "readings": readings})


def decode_plain(payload: bytes, **options: Any) -> list[Reading]:
    return decode_json(payload, UID, now=NOW, **options)


def decode_senml(pack: Any, **options: Any) -> list[Reading]:
    return decode_senml_json(as_json(pack), UID, now=NOW, **options)


# --- plain JSON


def test_plain_json_readings_share_the_timestamp_and_keep_units() -> None:
    readings = decode_plain(plain({"pm2_5": 35.2, "temperature": {"v": 88.1, "u": "degF"}}))
    at = datetime(2025, 3, 1, 0, 29, 30, tzinfo=UTC)
    assert readings == [
        Reading(UID, "pm2_5", 35.2, at, None),
        Reading(UID, "temperature", 88.1, at, "degF"),
    ]
    assert readings[0].time.tzinfo is UTC


def test_plain_json_accepts_epoch_seconds_and_integers() -> None:
    payload = as_json({"ts": NOW.timestamp() - 60, "readings": {"noise": 63}})
    [reading] = decode_plain(payload)
    assert reading.time == NOW - timedelta(seconds=60)
    assert reading.value == 63.0
    assert type(reading.value) is float


def test_plain_json_accepts_a_zulu_timestamp_with_nanoseconds() -> None:
    [reading] = decode_plain(
        as_json({"ts": "2025-03-01T00:29:59.123456789Z", "readings": {"noise": 50}})
    )
    assert reading.time == datetime(2025, 3, 1, 0, 29, 59, 123456, tzinfo=UTC)


@pytest.mark.parametrize("claimed", [UID, f"urn:dev:mac:{UID}"])
def test_plain_json_uid_may_repeat_the_topic_device(claimed: str) -> None:
    assert len(decode_plain(plain({"pm10": 50}, uid=claimed))) == 1


def test_plain_json_uid_of_another_device_is_refused() -> None:
    with pytest.raises(DecodeError) as raised:
        decode_plain(plain({"pm10": 50}, uid="hp-aq-0008"))
    assert str(raised.value) == "payload claims device 'hp-aq-0008' on device 'hp-aq-0007''s topic"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"ts": "2025-03-01T00:00:00Z", "readings": {', "invalid JSON"),
        (b"", "invalid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "JSON payload must be an object, not an array"),
        (as_json({"readings": {"pm2_5": 1}}), 'missing time: "ts"'),
        (plain({"pm2_5": 1}, seq=4), "unknown field(s) 'seq'"),
        (plain({}), '"readings" is empty'),
        (as_json({"ts": NOW.timestamp()}), '"readings" is missing'),
        (plain([1, 2]), '"readings" must be an object, not an array'),
        (plain({"pm2_5": "35.2"}), "pm2_5 value must be a number, not a string"),
        (plain({"pm2_5": True}), "pm2_5 value must be a number, not a boolean"),
        (plain({"pm2_5": None}), "pm2_5 value must be a number, not null"),
        (plain({"pm2_5": {"u": "ug/m3"}}), 'pm2_5: "v" is missing'),
        (plain({"pm2_5": {"v": 1, "unit": "x"}}), "pm2_5: unknown field(s) 'unit'"),
        (plain({"pm2_5": {"v": 1, "u": 3}}), 'pm2_5: "u" must be a string, not a number'),
        (plain({"PM2.5": 1}), "metric name 'PM2.5' is not lower-case letters"),
        (b'{"ts": 1740789000, "readings": {"pm2_5": NaN}}', "NaN is not a finite number"),
        (b'{"ts": 1740789000, "readings": {"pm2_5": Infinity}}', "Infinity is not a finite"),
        (b'{"ts": 1740789000, "readings": {"pm2_5": 1e400}}', "not a finite number"),
        (b'{"ts": 1740789000, "readings": {"pm2_5": 1}} {}', "extra data"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (as_json({"ts": "2025-03-01 07:29", "readings": {"a": 1}}), "is not RFC 3339"),
        (as_json({"ts": "2025-03-01T00:29:00", "readings": {"a": 1}}), "is not RFC 3339"),
        (as_json({"ts": "2025-02-30T00:29:00Z", "readings": {"a": 1}}), "is not a valid date"),
        (as_json({"ts": [2025], "readings": {"a": 1}}), "time must be a number, not an array"),
    ],
)
def test_malformed_plain_json_is_rejected_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_plain(payload)
    assert reason in str(raised.value)


def test_timestamp_more_than_five_minutes_ahead_is_refused() -> None:
    decode_plain(as_json({"ts": (NOW + timedelta(minutes=4)).isoformat(), "readings": {"a": 1}}))
    with pytest.raises(DecodeError, match=r"0:06:00 in the future \(at most 0:05:00 allowed\)"):
        decode_plain(
            as_json({"ts": (NOW + timedelta(minutes=6)).isoformat(), "readings": {"a": 1}})
        )


def test_epoch_milliseconds_get_a_hint() -> None:
    with pytest.raises(DecodeError, match="epoch time is in seconds, not milliseconds"):
        decode_plain(as_json({"ts": NOW.timestamp() * 1000, "readings": {"a": 1}}))


def test_timestamp_older_than_the_configured_age_is_refused() -> None:
    week_old = as_json({"ts": (NOW - timedelta(days=6)).isoformat(), "readings": {"a": 1}})
    decode_plain(week_old)
    with pytest.raises(DecodeError, match=r"is 6 days, 0:00:00 old \(at most 1 day, 0:00:00"):
        decode_plain(week_old, limits=PayloadLimits(max_age=timedelta(days=1)))
    with pytest.raises(DecodeError, match=r"old \(at most 7 days"):
        decode_plain(as_json({"ts": (NOW - timedelta(days=8)).timestamp(), "readings": {"a": 1}}))


def test_readings_over_the_limit_are_refused() -> None:
    payload = plain({f"m{index}": index for index in range(5)})
    assert len(decode_plain(payload, limits=PayloadLimits(max_records=5))) == 5
    with pytest.raises(DecodeError, match="5 readings exceed the limit of 4"):
        decode_plain(payload, limits=PayloadLimits(max_records=4))


def test_payload_over_the_size_limit_is_refused_before_parsing() -> None:
    payload = plain({"pm2_5": 1}) + b" " * 100
    with pytest.raises(
        DecodeError, match=f"payload of {len(payload)} bytes exceeds the limit of 64"
    ):
        decode_plain(payload, limits=PayloadLimits(max_bytes=64))


# --- SenML JSON


def test_senml_resolves_base_fields_names_and_times() -> None:
    base_time = NOW.timestamp() - 120
    readings = decode_senml(
        [
            {"bn": f"urn:dev:ow:{UID}:", "bt": base_time, "bu": "ug/m3", "n": "pm2_5", "v": 35},
            {"n": "pm10", "v": 51.5, "t": 60},
            {"n": "temperature", "u": "Cel", "v": 30.5, "t": 60},
        ]
    )
    # Names are resolved as RFC 8428 section 4.6 says; what they mean is the hub's question.
    base = f"urn:dev:ow:{UID}:"
    assert readings == [
        Reading(UID, f"{base}pm2_5", 35.0, NOW - timedelta(seconds=120), "ug/m3", senml=True),
        Reading(UID, f"{base}pm10", 51.5, NOW - timedelta(seconds=60), "ug/m3", senml=True),
        Reading(UID, f"{base}temperature", 30.5, NOW - timedelta(seconds=60), "Cel", senml=True),
    ]


def test_senml_base_value_is_added_and_base_fields_carry_forward() -> None:
    readings = decode_senml(
        [
            {"bn": f"{UID}/", "bv": 100.0, "bt": NOW.timestamp(), "n": "water_level", "v": 2.5},
            {"n": "water_level", "v": -1.0, "t": -30},
            {"bv": 0, "n": "rainfall", "v": 0.4},
        ]
    )
    assert [(reading.metric, reading.value) for reading in readings] == [
        (f"{UID}/water_level", 102.5),
        (f"{UID}/water_level", 99.0),
        (f"{UID}/rainfall", 0.4),
    ]
    assert readings[1].time == NOW - timedelta(seconds=30)


def test_senml_times_below_2_to_the_28_are_relative_to_now() -> None:
    # RFC 8428 section 4.5.3: no bt, negative t means "that many seconds ago".
    readings = decode_senml([{"n": "noise", "v": 61, "t": -10}, {"n": "noise", "v": 62}])
    assert [reading.time for reading in readings] == [NOW - timedelta(seconds=10), NOW]


def test_senml_bare_metric_names_belong_to_the_topic_device() -> None:
    [reading] = decode_senml([{"n": "humidity", "u": "%RH", "v": 81}])
    assert (reading.device_uid, reading.metric) == (UID, "humidity")


def test_senml_names_keep_mixed_case_and_device_urns_for_the_hub_to_map() -> None:
    # RFC 8428 section 5.1's style: the driver refuses no name the RFC allows.
    pack = [{"bn": "urn:dev:ow:10e2073a01080063:", "n": "Temp", "u": "Cel", "v": 23.1}]
    [reading] = decode_senml(pack)
    assert (reading.metric, reading.senml) == ("urn:dev:ow:10e2073a01080063:Temp", True)


def test_senml_string_boolean_and_data_values_are_decoded() -> None:
    # RFC 8428 section 5: vd is base64url without padding in JSON, a byte string in CBOR.
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "nfc-reader", "vd": "aGkgCg"},
    ]
    assert [reading.value for reading in decode_senml(pack)] == ["Machine Room", False, b"hi \n"]
    cbor_pack = [{0: "open", 4: True}, {0: "nfc-reader", 8: b"hi \n"}]
    assert [r.value for r in decode_senml_cbor(cbor2.dumps(cbor_pack), UID, now=NOW)] == [
        True,
        b"hi \n",
    ]
    with pytest.raises(DecodeError, match="vb must be a boolean, not a string"):
        decode_senml([{"n": "open", "vb": "no"}])
    with pytest.raises(DecodeError, match="vd is not base64url"):
        decode_senml([{"n": "nfc-reader", "vd": "aGk+Cg=="}])


def test_senml_extension_fields_are_ignored_unless_must_understand() -> None:
    assert len(decode_senml([{"n": "noise", "v": 61, "colour": "red"}])) == 1
    with pytest.raises(DecodeError, match="must-understand field 'calib_' is not supported"):
        decode_senml([{"n": "noise", "v": 61, "calib_": 2}])


def test_senml_base_version_above_10_is_refused() -> None:
    assert len(decode_senml([{"bver": 10, "n": "noise", "v": 61}])) == 1
    with pytest.raises(DecodeError, match="base version 11 is not supported"):
        decode_senml([{"bver": 11, "n": "noise", "v": 61}])


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        ({"n": "noise", "v": 1}, "SenML JSON must be an array of records, not an object"),
        ([], "SenML pack is empty"),
        ([{"n": "noise", "v": 1}, 5], "SenML record 1 must be an object, not a number"),
        ([{"v": 1}], "has no name (neither bn nor n)"),
        ([{"n": "noise"}], "SenML record 0 (noise) has no value"),
        ([{"n": "noise", "s": 10.5}], "sums (s) are not stored, only values"),
        ([{"n": "noise", "v": "61"}], "SenML record 0 v must be a number, not a string"),
        ([{"n": "noise", "v": None}], "SenML record 0 v must be a number, not null"),
        ([{"n": 7, "v": 1}], "SenML record 0 n must be a string, not a number"),
        ([{"bn": ["x"], "n": "noise", "v": 1}], "SenML record 0 bn must be a string"),
        ([{"n": "noise", "u": 5, "v": 1}], "SenML record 0 u must be a string"),
        ([{"n": "noise", "v": 1, "t": "now"}], "SenML record 0 t must be a number"),
        ([{"bt": "yesterday", "n": "noise", "v": 1}], "SenML record 0 bt must be a number"),
        ([{"n": "noise level", "v": 1}], "has characters RFC 8428 forbids"),
        ([{"n": "_noise", "v": 1}], "has characters RFC 8428 forbids"),
        ([{"n": "noise", "v": 1, "t": 3600}], "1:00:00 in the future"),
        ([{"n": "noise", "v": 1, "bt": 1.0e9}], "old (at most 7 days"),
        ([{"n": "noise", "bv": 1.7e308, "v": 1.7e308}], "v + bv overflows"),
    ],
)
def test_malformed_senml_is_rejected_with_the_reason(pack: Any, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_senml(pack)
    assert reason in str(raised.value)


def test_senml_nan_literal_is_refused() -> None:
    with pytest.raises(DecodeError, match="NaN is not a finite number"):
        decode_senml_json(b'[{"n": "noise", "v": NaN}]', UID, now=NOW)


def test_senml_records_over_the_limit_are_refused() -> None:
    pack = [{"n": "noise", "v": index} for index in range(11)]
    with pytest.raises(DecodeError, match="11 SenML records exceed the limit of 10"):
        decode_senml(pack, limits=PayloadLimits(max_records=10))


# --- SenML CBOR


def test_senml_cbor_uses_integer_labels() -> None:
    pack = [
        {-2: f"{UID}:", -3: NOW.timestamp(), -4: "ug/m3", 0: "pm2_5", 2: 12.5},
        {0: "temperature", 1: "Cel", 2: 29, 6: -60},
    ]
    readings = decode_senml_cbor(cbor2.dumps(pack), UID, now=NOW)
    assert readings == [
        Reading(UID, f"{UID}:pm2_5", 12.5, NOW, "ug/m3", senml=True),
        Reading(UID, f"{UID}:temperature", 29.0, NOW - timedelta(seconds=60), "Cel", senml=True),
    ]


def test_senml_cbor_matches_senml_json() -> None:
    json_pack = [{"bn": f"{UID}:", "bt": NOW.timestamp(), "n": "noise", "u": "dB", "v": 55}]
    labels = {"bn": -2, "bt": -3, "n": 0, "u": 1, "v": 2}
    cbor_pack = [{labels[key]: value for key, value in json_pack[0].items()}]
    assert decode_senml_cbor(cbor2.dumps(cbor_pack), UID, now=NOW) == decode_senml(json_pack)


def test_senml_cbor_accepts_decimal_fractions() -> None:
    # RFC 8428 section 6 allows CBOR tag 4 for numbers.
    [reading] = decode_senml_cbor(cbor2.dumps([{0: "noise", 2: Decimal("55.25")}]), UID, now=NOW)
    assert reading.value == 55.25


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x9f", "invalid CBOR"),
        (b"\x81\xa1\x00", "invalid CBOR"),
        (cbor2.dumps([{0: "noise", 2: 1}]) + b"\x00", "1 bytes after the CBOR data item"),
        (cbor2.dumps({0: "noise", 2: 1}), "SenML CBOR must be an array of records, not dict"),
        (cbor2.dumps([[0, "noise"]]), "SenML record 0 must be a map, not list"),
        (cbor2.dumps([{"n": "noise", "v": 1}]), "CBOR uses integer labels, not 'n'"),
        (cbor2.dumps([{0: "noise", 2: b"\x01"}]), "v must be a number, not bytes"),
        (cbor2.dumps([{0: "noise", 2: float("nan")}]), "not a finite number"),
        (cbor2.dumps([{0: "noise", 2: 10**400}]), "is too large"),
        (cbor2.dumps([{0: "noise", 2: 1, 1.5: 2}]), "label of type float"),
        (cbor2.dumps([{0: "noise", 2: 1, True: "x"}]), "label of type bool"),
        (cbor2.dumps([]), "SenML pack is empty"),
    ],
)
def test_malformed_senml_cbor_is_rejected_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_senml_cbor(payload, UID, now=NOW)
    assert reason in str(raised.value)


# --- format detection


def test_format_is_told_by_the_first_byte() -> None:
    assert sniff_format(b'  {"ts": 1}') is PayloadFormat.JSON
    assert sniff_format(b'\xef\xbb\xbf[{"n": "a"}]') is PayloadFormat.SENML_JSON
    assert sniff_format(cbor2.dumps([{0: "a", 2: 1}])) is PayloadFormat.SENML_CBOR
    with pytest.raises(DecodeError, match="neither a JSON object, a SenML JSON array nor"):
        sniff_format(b"pm2_5=35")


def test_decode_telemetry_handles_all_three_formats() -> None:
    senml = [{"n": "noise", "v": 55}]
    for payload in (plain({"noise": 55}), as_json(senml), cbor2.dumps([{0: "noise", 2: 55}])):
        [reading] = decode_telemetry(payload, UID, now=NOW)
        assert (reading.metric, reading.value) == ("noise", 55.0)


def test_declared_content_type_wins_over_sniffing() -> None:
    declared = format_for_content_type("application/senml+json; charset=utf-8")
    assert declared is PayloadFormat.SENML_JSON
    with pytest.raises(DecodeError, match="SenML JSON must be an array"):
        decode_telemetry(plain({"noise": 55}), UID, payload_format=declared, now=NOW)
    with pytest.raises(DecodeError, match="content type 'text/plain' is not one of"):
        format_for_content_type("text/plain")


# --- status


def test_status_words_tell_connectivity() -> None:
    online = decode_status(b"online", UID, now=NOW)
    offline = decode_status(b" OFFLINE\n", UID, now=NOW)
    assert online is not None and online.connected and online.time == NOW
    assert offline is not None and not offline.connected


def test_status_json_carries_battery_rssi_and_firmware() -> None:
    payload = as_json(
        {"state": "online", "battery": 87, "rssi": -71, "firmware": "2.4.1", "ts": NOW.timestamp()}
    )
    report = decode_status(payload, UID, now=NOW + timedelta(seconds=5))
    assert report is not None
    assert report.connected and report.time == NOW
    assert report.detail == {"battery": 87.0, "rssi": -71.0, "firmware": "2.4.1"}
    assert report.readings == [
        Reading(UID, "battery", 87.0, NOW),
        Reading(UID, "rssi", -71.0, NOW),
    ]


def test_empty_status_clears_a_retained_status() -> None:
    assert decode_status(b"", UID, now=NOW) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"alive", "status must be 'online', 'offline' or a JSON object"),
        (b'{"state": "sleeping"}', 'status "state" must be "online" or "offline"'),
        (b'{"state": "online", "uptime": 5}', "unknown status field(s) 'uptime'"),
        (b'{"state": "online", "battery": "full"}', "status battery must be a number"),
        (b'{"state": "online", "firmware": 2}', 'status "firmware" must be a string'),
        (b'{"state": "online"', "invalid JSON"),
    ],
)
def test_malformed_status_is_rejected(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_status(payload, UID, now=NOW)
    assert reason in str(raised.value)


# --- hostile input

DECODERS: list[Callable[..., object]] = [
    decode_telemetry,
    decode_json,
    decode_senml_json,
    decode_senml_cbor,
    decode_status,
]


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=512))
def test_random_bytes_raise_nothing_but_decode_error(payload: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(DecodeError):
            decode(payload, UID, now=NOW)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["bn", "bt", "n", "v", "t", "u", "ts", "readings", "pm2_5", UID]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["bn", "bt", "bu", "bv", "n", "v", "t", "u", "vs", "ts", "readings", "x_"]
            )
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(document=json_values)
def test_random_json_documents_raise_nothing_but_decode_error(document: Any) -> None:
    payload = json.dumps(document).encode()
    for decode in DECODERS:
        with contextlib.suppress(DecodeError):
            decode(payload, UID, now=NOW)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.decimals(allow_nan=True),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.integers(-8, 9) | st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(document=cbor_values)
def test_random_cbor_documents_raise_nothing_but_decode_error(document: Any) -> None:
    with contextlib.suppress(DecodeError):
        decode_senml_cbor(cbor2.dumps(document), UID, now=NOW)


# --- RFC 8428 rules a pack must follow before its names mean anything


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        ({"n": "noise", "v": 61, "vs": "61"}, "v and vs"),
        ({"n": "noise", "vb": True, "v": 1}, "v and vb"),
        ({"n": "noise", "v": 1, "vd": "AQ"}, "v and vd"),
    ],
)
def test_senml_record_with_two_value_fields_is_refused_even_with_a_catalog_name(
    record: dict[str, Any], fields: str
) -> None:
    # RFC 8428 section 4.2: exactly one value field per record.
    with pytest.raises(DecodeError, match=f"carries {fields}; a record has exactly one value"):
        decode_senml([record])
    labels = {"n": 0, "v": 2, "vs": 3, "vb": 4, "vd": 8}
    cbor_record = {labels[key]: value for key, value in record.items()}
    if "vd" in record:
        cbor_record[8] = b"\x01"
    with pytest.raises(DecodeError, match="a record has exactly one value field"):
        decode_senml_cbor(cbor2.dumps([cbor_record]), UID, now=NOW)


def test_senml_records_of_one_pack_share_one_version() -> None:
    # RFC 8428 section 4.4: records before the first bver have the default version 10.
    assert len(decode_senml([{"n": "noise", "v": 1}, {"bver": 10, "n": "noise", "v": 2}])) == 2
    with pytest.raises(DecodeError, match="base version 9 differs from the pack's 10"):
        decode_senml([{"n": "noise", "v": 1}, {"bver": 9, "n": "pm2_5", "v": 2}])
    with pytest.raises(DecodeError, match="base version 10 differs from the pack's 5"):
        decode_senml([{"bver": 5, "n": "noise", "v": 1}, {"bver": 10, "n": "pm2_5", "v": 2}])


def test_senml_json_numbers_need_a_lower_case_exponent() -> None:
    # RFC 8428 section 5: "If the value has an exponent, the 'e' MUST be in lowercase."
    [reading] = decode_senml_json(b'[{"n": "pm2_5", "v": 3.5e1}]', UID, now=NOW)
    assert reading.value == 35.0
    with pytest.raises(DecodeError, match=r"number 3\.5E1 has an upper-case exponent"):
        decode_senml_json(b'[{"n": "pm2_5", "v": 3.5E1}]', UID, now=NOW)
    with pytest.raises(DecodeError, match="upper-case exponent"):
        decode_senml_json(b'[{"bt": 1.7E9, "n": "pm2_5", "v": 1}]', UID, now=NOW)
    # An "E" in a string is no number.
    assert len(decode_senml_json(b'[{"n": "pm2_5", "v": 1, "note": "E"}]', UID, now=NOW)) == 1


def test_senml_record_with_only_base_fields_yields_no_reading() -> None:
    readings = decode_senml(
        [
            {"bn": f"{UID}:", "bt": NOW.timestamp(), "bu": "ug/m3"},
            {"n": "pm2_5", "v": 12},
            {"bu": "Cel"},
            {"n": "temperature", "v": 30},
        ]
    )
    assert readings == [
        Reading(UID, f"{UID}:pm2_5", 12.0, NOW, "ug/m3", senml=True),
        Reading(UID, f"{UID}:temperature", 30.0, NOW, "Cel", senml=True),
    ]
    with pytest.raises(DecodeError, match="carries no measurement, only base fields"):
        decode_senml([{"bn": f"{UID}:", "bt": NOW.timestamp()}])


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1740788970, "readings": {"pm2_5": 42.0, "pm2_5": 43.0}}',
        b'{"ts": 1740788970, "ts": 1740788971, "readings": {"pm2_5": 42.0}}',
        b'{"ts": 1740788970, "readings": {"temperature": {"v": 30, "v": 31}}}',
        b'[{"n": "pm2_5", "v": 42.0, "v": 43.0}]',
        b'{"state": "online", "battery": 80, "battery": 81}',
    ],
)
def test_duplicate_json_keys_are_refused(payload: bytes) -> None:
    decode = decode_status if b"state" in payload else decode_telemetry
    with pytest.raises(DecodeError, match="invalid JSON: duplicate key"):
        decode(payload, UID, now=NOW)


def test_a_utf8_byte_order_mark_before_a_document_is_skipped() -> None:
    # RFC 8259 section 8.1: a parser may ignore a byte-order mark; docs/protocol/sensors.md.
    bom = b"\xef\xbb\xbf"
    [reading] = decode_telemetry(bom + plain({"pm2_5": 35.2}), UID, now=NOW)
    assert reading.value == 35.2
    [reading] = decode_telemetry(bom + as_json([{"n": "noise", "v": 55}]), UID, now=NOW)
    assert reading.value == 55.0
