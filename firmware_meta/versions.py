"""Firmware versions compare as versions, never as strings.

Parsing and ordering are PEP 440's, through `packaging` (the library pip itself uses),
after turning the vendor spellings found on the demo fleet into PEP 440:

- a leading ``V`` or ``v`` is dropped: ``V5.7.3`` is 5.7.3;
- ``-rc1``, ``-beta2``, ``a1`` are pre-releases and sort before the release:
  2.4.0-rc1 < 2.4.0-rc2 < 2.4.0-rc10 < 2.4.0;
- a trailing ``build 1234`` (``build1234``, ``-build.1234``, ``_build_1234``) is a build
  of that release and becomes the local segment ``+1234``: ``V5.7.3 build 240115`` is
  5.7.3+240115, newer than 5.7.3 and than ``build 99``, older than 5.7.4;
- leading zeros are numbers: 2.10.02 equals 2.10.2, and 2.10.0 > 2.9.3 because each
  part is compared as an integer.

Anything else that PEP 440 cannot read is refused with the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.version import InvalidVersion, Version

__all__ = ["InvalidFirmwareVersion", "Version", "parse_version", "same_release"]

_BUILD = re.compile(r"^(?P<core>.*?\S)(?:\s+|[-_.])?build[\s._:#-]*(?P<build>\d+)$", re.IGNORECASE)
_V_PREFIX = re.compile(r"^[vV](?=\d)")


class InvalidFirmwareVersion(ValueError):
    """A version string that cannot be ordered."""


@lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """The orderable version of a vendor's version string; InvalidFirmwareVersion says why not."""
    raw = text.strip()
    if not raw:
        raise InvalidFirmwareVersion("an empty version")
    core, build = raw, None
    match = _BUILD.match(raw)
    if match is not None:
        core, build = match["core"], int(match["build"])
    core = _V_PREFIX.sub("", core.strip())
    try:
        version = Version(core)
    except InvalidVersion:
        raise InvalidFirmwareVersion(
            f"{text!r} is not a version (expected e.g. 2.4.1, 2.4.0-rc1, V5.7.3 build 240115)"
        ) from None
    if build is not None:
        if version.local is not None:
            raise InvalidFirmwareVersion(f"{text!r} gives a build twice")
        version = Version(f"{version.public}+{build}")
    return version


def same_release(a: str, b: str) -> bool:
    """Whether two spellings name the same version (``V2.10.02`` and ``2.10.2``)."""
    return parse_version(a) == parse_version(b)
