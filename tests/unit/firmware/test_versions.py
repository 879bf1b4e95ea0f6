"""Firmware versions order as versions: a table of the pairs string order gets wrong."""

from __future__ import annotations

import pytest

from firmware_meta.versions import InvalidFirmwareVersion, parse_version, same_release

OLDER_NEWER = [
    ("2.9.3", "2.10.0"),
    ("1.9.2", "1.10.0"),
    ("2.4.0-rc1", "2.4.0"),
    ("2.4.0-rc1", "2.4.0-rc2"),
    ("2.4.0-rc9", "2.4.0-rc10"),
    ("2.4.0-beta2", "2.4.0-rc1"),
    ("2.4.0", "2.4.1-rc1"),
    ("V5.7.3", "V5.7.3 build 240115"),
    ("V5.7.3 build 99", "V5.7.3 build 100"),
    ("V5.7.3 build 240115", "V5.7.15 build 241008"),
    ("V5.7.3 build 999999", "V5.7.4"),
    ("5.7.3-build.12", "5.7.3_build_13"),
    ("V2.840.0000000.18", "V2.840.0000000.22"),
    ("2.9.50", "2.10.02"),
    ("2.10.02", "2.21.00"),
]


@pytest.mark.parametrize(("older", "newer"), OLDER_NEWER)
def test_versions_order_as_versions(older: str, newer: str) -> None:
    assert parse_version(older) < parse_version(newer)
    assert parse_version(newer) > parse_version(older)


@pytest.mark.parametrize(
    ("a", "b"),
    [("2.10.02", "2.10.2"), ("V2.4.1", "2.4.1"), ("2.4", "2.4.0"), ("2.4.0-RC1", "2.4.0rc1")],
)
def test_spellings_of_one_version_are_equal(a: str, b: str) -> None:
    assert same_release(a, b)


def test_a_build_is_a_local_segment_and_a_candidate_a_prerelease() -> None:
    assert str(parse_version("V5.7.3 build 240115")) == "5.7.3+240115"
    assert parse_version("2.11.0-rc1").is_prerelease
    assert not parse_version("V5.7.3 build 240115").is_prerelease


@pytest.mark.parametrize("text", ["", "latest", "2.4.x", "V5.7.3+1 build 2", "build 12"])
def test_what_cannot_be_ordered_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(InvalidFirmwareVersion):
        parse_version(text)
