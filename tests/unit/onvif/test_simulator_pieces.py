"""Pieces of the camera simulator that other tests rely on being right."""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest

from drivers.onvif.simulator import SMALL_JPEG, CameraSimulator, CameraSpec, parse_duration


def test_durations() -> None:
    assert parse_duration("PT60S") == timedelta(seconds=60)
    assert parse_duration("PT0.5S") == timedelta(milliseconds=500)
    assert parse_duration("P1DT2H3M") == timedelta(days=1, hours=2, minutes=3)
    for bad in ("P", "PT", "60", "P1Y", "PT-5S"):
        with pytest.raises(ValueError, match="unsupported duration"):
            parse_duration(bad)


def test_small_jpeg_is_a_well_formed_baseline_jpeg() -> None:
    assert SMALL_JPEG[:2] == b"\xff\xd8" and SMALL_JPEG[-2:] == b"\xff\xd9"
    segments: dict[int, bytes] = {}
    position = 2
    while SMALL_JPEG[position] == 0xFF and SMALL_JPEG[position + 1] != 0xDA:
        (length,) = struct.unpack(">H", SMALL_JPEG[position + 2 : position + 4])
        segments.setdefault(
            SMALL_JPEG[position + 1], SMALL_JPEG[position + 4 : position + 2 + length]
        )
        position += 2 + length
    assert set(segments) == {0xE0, 0xDB, 0xC0, 0xC4}  # JFIF, quantisation, frame, Huffman
    precision, height, width, components = struct.unpack(">BHHB", segments[0xC0][:6])
    assert (precision, height, width, components) == (8, 8, 8, 1)
    assert SMALL_JPEG[position + 1] == 0xDA  # then the scan, one entropy-coded byte, EOI
    assert len(SMALL_JPEG) - position == 2 + 8 + 1 + 2


def test_simulator_refuses_to_bind_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        CameraSimulator([CameraSpec("x")], host="0.0.0.0")


def test_camera_names_are_unique_and_identities_stable() -> None:
    with pytest.raises(ValueError, match="two simulated cameras"):
        CameraSimulator([CameraSpec("a"), CameraSpec("a")])
    assert (
        CameraSpec("a").endpoint_ref == CameraSpec("a").endpoint_ref != CameraSpec("b").endpoint_ref
    )
    assert "password" not in repr(CameraSpec("a"))
