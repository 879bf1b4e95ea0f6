"""Examples from RFC 8428 that several tests resolve."""

from __future__ import annotations

from typing import Any

# RFC 8428 section 5.1, "Multiple Measurements" (the first example; bver 5 on its first
# record), of a device with the 15-digit serial.
SERIES_SERIAL = "10e2073a0108006"
MULTIPLE_MEASUREMENTS_SERIES: list[dict[str, Any]] = [
    {
        "bn": f"urn:dev:ow:{SERIES_SERIAL}:",
        "bt": 1.276020076001e09,
        "bu": "A",
        "bver": 5,
        "n": "voltage",
        "u": "V",
        "v": 120.1,
    },
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]
