"""The rollout's arithmetic and the firmware wire format, without a broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from drivers.contract import DecodeError
from drivers.firmware.protocol import (
    CancelCommand,
    StateReport,
    UpdateCommand,
    UpdateFailure,
    UpdateState,
    decode_command,
    decode_report,
    encode_command,
    encode_report,
)
from hub.firmware.campaigns import refusal, wave_sizes
from hub.firmware.rollout import in_window, ward_capacity
from hub.firmware.store import DeviceFirmware, ReleaseRow


def test_waves_grow_from_a_canary_and_cover_everyone() -> None:
    assert wave_sizes(272, [2, 10, 50, 100]) == [6, 22, 108, 136]
    assert wave_sizes(10_000, [2, 10, 50, 100]) == [200, 800, 4000, 5000]
    assert wave_sizes(3, [2, 10, 50, 100]) == [1, 1, 1]
    assert wave_sizes(10, [30]) == [3, 7]  # the last wave always reaches 100 %
    assert sum(wave_sizes(997, [1, 5, 25])) == 997


@pytest.mark.parametrize(
    ("total", "percent", "cap"),
    [(34, 25, 8), (1250, 25, 312), (4, 50, 2), (10, 100, 9), (1, 25, 1), (3, 10, 1)],
)
def test_a_ward_is_never_silenced_entirely(total: int, percent: float, cap: int) -> None:
    assert ward_capacity(total, percent) == cap


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(0, 30), True),
        (time(3, 59), True),
        (time(4, 0), False),
        (time(22, 0), True),
        (time(12), False),
    ],
)
def test_a_window_may_wrap_midnight(moment: time, inside: bool) -> None:
    assert in_window(moment, time(22, 0), time(4, 0)) is inside
    assert in_window(time(2), time(1), time(4)) and not in_window(time(5), time(1), time(4))


def release(version: str = "2.10.0", min_version: str | None = "2.4.0") -> ReleaseRow:
    return ReleaseRow(
        1, "VNPT Technology", "IP Speaker S30", "speaker", version, date(2025, 11, 3),
        min_version, None, "", "x.bin", None, 1, "0" * 64, {}, "", "k", "s",
    )  # fmt: skip


def device(version: str, model: str = "IP Speaker S30") -> DeviceFirmware:
    return DeviceFirmware(
        1, "spk-1", "speaker", 1, "ward-a", "VNPT Technology", model, version, "online"
    )


@pytest.mark.parametrize(
    ("version", "model", "reason"),
    [
        ("2.4.1", "IP Speaker S30", None),
        ("V2.4.0", "IP Speaker S30", None),
        ("2.3.1", "IP Speaker S30", "below minimum: runs 2.3.1, 2.10.0 installs only from 2.4.0"),
        ("2.10.0", "IP Speaker S30", "already runs 2.10.0"),
        ("2.11.0-rc1", "IP Speaker S30", "runs 2.11.0-rc1, newer than 2.10.0"),
        ("", "IP Speaker S30", "unknown running version ''"),
        ("2.4.1", "ip speaker s30", None),
        ("2.4.1", "IP Speaker S20", "wrong model"),
    ],
)
def test_the_hub_refuses_what_a_device_must_not_get(
    version: str, model: str, reason: str | None
) -> None:
    found = refusal(device(version, model), release())
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


def test_commands_and_reports_round_trip_and_bad_ones_are_named() -> None:
    now = datetime(2026, 1, 10, 18, 0, tzinfo=UTC)
    update = UpdateCommand(
        "fw-1-2-ab", now, now + timedelta(minutes=30), "IP Speaker S30", "2.10.0", "2.4.0",
        "http://hub/api/v1/firmware/artifacts/1?sig=x", 16384, "a" * 64,
    )  # fmt: skip
    assert decode_command(encode_command(update)) == update
    cancel = CancelCommand("fwc-1", now, now + timedelta(minutes=1), "fw-1-2-ab")
    assert decode_command(encode_command(cancel)) == cancel
    report = StateReport(
        "fw-1-2-ab", UpdateState.FAILED, now, None, UpdateFailure.BELOW_MINIMUM, "runs 2.2.7"
    )
    assert decode_report(encode_report(report)) == report
    with pytest.raises(DecodeError, match="an updated report needs version"):
        decode_report(b'{"command_id":"a","state":"updated","at":"2026-01-10T18:00:00Z"}')
    with pytest.raises(DecodeError, match="not a firmware update state"):
        decode_report(b'{"command_id":"a","state":"exploded","at":"2026-01-10T18:00:00Z"}')
    with pytest.raises(DecodeError, match="sha256"):
        decode_command(encode_command(update).replace(b"a" * 64, b"Z" * 64))
