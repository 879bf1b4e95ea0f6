"""Vietnamese air-quality index (VN_AQI), Decision 1459/QĐ-TCMT of 12 November 2019.

Section and table numbers below refer to the technical guideline issued with that
decision ("Hướng dẫn kỹ thuật tính toán và công bố chỉ số chất lượng không khí Việt
Nam"). All concentrations are µg/m³, CO included, as in its Table 2.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import Final, Literal

Averaging = Literal["hour", "day"]

PM2_5: Final = "pm2_5"
PM10: Final = "pm10"
O3: Final = "o3"
NO2: Final = "no2"
SO2: Final = "so2"
CO: Final = "co"
# The day's highest 8-hour O3 mean: an input of the daily index only (§2.2.2).
O3_8H: Final = "o3_8h"

# Also the tie-break order for the dominant pollutant, which the decision leaves open;
# particulates first because an index without them is not published (§2.1b).
POLLUTANTS: Final[tuple[str, ...]] = (PM2_5, PM10, O3, NO2, SO2, CO)
PARTICULATES: Final = frozenset({PM2_5, PM10})

# Table 2 ("Bảng 2: Các giá trị BPi"), column I_i.
INDEX_LEVELS: Final[tuple[int, ...]] = (0, 50, 100, 150, 200, 300, 400, 500)

# Table 2, columns BP_i in µg/m³. The last entry is the table's "≥" row: every
# concentration at or above it has the index of that row (500).
BREAKPOINTS: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        O3: (0, 160, 200, 300, 400, 800, 1000, 1200),  # column "O3 (1h)"
        # Column "O3 (8h)" stops at 400 (index 300): rows 7 and 8 are "-".
        O3_8H: (0, 100, 120, 170, 210, 400),
        CO: (0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000),
        SO2: (0, 125, 350, 550, 800, 1600, 2100, 2630),
        NO2: (0, 100, 200, 700, 1200, 2350, 3100, 3850),
        PM10: (0, 50, 150, 250, 350, 420, 500, 600),
        PM2_5: (0, 25, 50, 80, 150, 250, 350, 500),
    }
)

# §2.2.1a: the NowCast weighs the 12 latest hourly means.
NOWCAST_HOURS: Final = 12
_NOWCAST_RECENT_HOURS: Final = 3
_NOWCAST_RECENT_REQUIRED: Final = 2
_NOWCAST_MIN_WEIGHT: Final = 0.5

_O3_WINDOW_HOURS: Final = 8


class AqiCategory(StrEnum):
    """The bands of Table 1, each with its labels and the decision's RGB colour."""

    GOOD = "good"
    MODERATE = "moderate"
    UNHEALTHY_FOR_SENSITIVE_GROUPS = "unhealthy_for_sensitive_groups"
    UNHEALTHY = "unhealthy"
    VERY_UNHEALTHY = "very_unhealthy"
    HAZARDOUS = "hazardous"

    @property
    def lowest(self) -> int:
        return _BANDS[self].lowest

    @property
    def highest(self) -> int:
        return _BANDS[self].highest

    @property
    def label_vi(self) -> str:
        """The decision's own wording ("Chất lượng không khí", Table 1)."""
        return _BANDS[self].label_vi

    @property
    def label_en(self) -> str:
        return _BANDS[self].label_en

    @property
    def colour_name_vi(self) -> str:
        return _BANDS[self].colour_name_vi

    @property
    def rgb(self) -> tuple[int, int, int]:
        return _BANDS[self].rgb

    @property
    def colour(self) -> str:
        """Hex form of the decision's RGB code, e.g. "#00E400"."""
        red, green, blue = self.rgb
        return f"#{red:02X}{green:02X}{blue:02X}"


@dataclass(frozen=True, slots=True)
class _Band:
    lowest: int
    highest: int
    label_vi: str
    label_en: str
    colour_name_vi: str
    rgb: tuple[int, int, int]


# Table 1 ("Bảng 1: Khoảng giá trị AQI và đánh giá chất lượng không khí").
_BANDS: Final[Mapping[AqiCategory, _Band]] = MappingProxyType(
    {
        AqiCategory.GOOD: _Band(0, 50, "Tốt", "Good", "Xanh", (0, 228, 0)),
        AqiCategory.MODERATE: _Band(51, 100, "Trung bình", "Moderate", "Vàng", (255, 255, 0)),
        AqiCategory.UNHEALTHY_FOR_SENSITIVE_GROUPS: _Band(
            101, 150, "Kém", "Unhealthy for sensitive groups", "Da cam", (255, 126, 0)
        ),
        AqiCategory.UNHEALTHY: _Band(151, 200, "Xấu", "Unhealthy", "Đỏ", (255, 0, 0)),
        AqiCategory.VERY_UNHEALTHY: _Band(
            201, 300, "Rất xấu", "Very unhealthy", "Tím", (143, 63, 151)
        ),
        AqiCategory.HAZARDOUS: _Band(301, 500, "Nguy hại", "Hazardous", "Nâu", (126, 0, 35)),
    }
)


def category_for(value: int) -> AqiCategory:
    """The Table 1 band of an index value (0..500)."""
    for category, band in _BANDS.items():
        if band.lowest <= value <= band.highest:
            return category
    raise ValueError(f"AQI value {value} is outside the VN_AQI scale 0..500")


@dataclass(frozen=True, slots=True)
class AqiResult:
    """One hourly or daily VN_AQI: the highest sub-index and the pollutant behind it."""

    value: int
    dominant: str
    sub_indices: Mapping[str, int] = field(hash=False)
    category: AqiCategory = field(init=False)
    colour: str = field(init=False)
    # Every pollutant whose sub-index is the index, in POLLUTANTS order: the decision
    # names the pollutant behind the AQI, and a tie has more than one.
    dominant_pollutants: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.sub_indices.get(self.dominant) != self.value:
            raise ValueError(
                f"dominant pollutant {self.dominant!r} does not carry the index {self.value}"
            )
        if self.value != max(self.sub_indices.values()):
            raise ValueError(f"index {self.value} is not the highest sub-index")
        category = category_for(self.value)
        object.__setattr__(self, "sub_indices", MappingProxyType(dict(self.sub_indices)))
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "colour", category.colour)
        tied = tuple(p for p in POLLUTANTS if self.sub_indices.get(p) == self.value)
        object.__setattr__(self, "dominant_pollutants", tied or (self.dominant,))


def sub_index(pollutant: str, concentration: float, averaging: Averaging) -> int:
    """AQI_x of one pollutant by Formula 1/2 of §2.2, rounded half up to an integer.

    `averaging` names the index the value feeds. For the hourly index the value is the
    NowCast (pm2_5, pm10) or the 1-hour mean (o3, no2, so2, co); for the daily index it
    is the 24-hour mean (pm2_5, pm10), the day's highest 1-hour mean (o3, no2, so2, co)
    or the day's highest 8-hour mean (o3_8h). Table 2 gives one breakpoint column per
    pollutant for both indices; only the 8-hour O3 column is daily-only.

    At or above the table's top ("≥") row the index is 500, as that row states.
    """
    breakpoints = _breakpoints(pollutant, averaging)
    exact = _exact_concentration(pollutant, concentration)
    if pollutant == O3_8H and exact > breakpoints[-1]:
        raise ValueError(
            f"an 8-hour O3 mean above {breakpoints[-1]} µg/m³ has no VN_AQI; the decision "
            "rates such a day by its highest 1-hour O3 mean instead"
        )
    return _round_half_up(_interpolate(exact, breakpoints))


def nowcast(hourly: Sequence[float | None]) -> float | None:
    """The §2.2.1a NowCast of up to 12 hourly means, most recent first (None = missing).

    Returns None when fewer than 2 of the 3 latest hours have data: the decision then
    counts the NowCast as "no data".

    The decision writes the w = 1/2 case as Σ (1/2)^i·c_i, a shorthand for the weighted
    mean used for w > 1/2 (the weights sum to 2 within 0.025 %). The weighted mean is
    used for both cases: it is the only form that stays a mean when missing hours take
    weight 0, as the decision also requires.
    """
    if len(hourly) > NOWCAST_HOURS:
        raise ValueError(f"NowCast takes at most {NOWCAST_HOURS} hourly means, got {len(hourly)}")
    for concentration in hourly:
        if concentration is not None:
            _check_concentration("NowCast input", concentration)
    recent = hourly[:_NOWCAST_RECENT_HOURS]
    if sum(concentration is not None for concentration in recent) < _NOWCAST_RECENT_REQUIRED:
        return None
    present = [(age, c) for age, c in enumerate(hourly) if c is not None]
    highest = max(c for _, c in present)
    if highest == 0:
        return 0.0
    lowest = min(c for _, c in present)
    weight = max(lowest / highest, _NOWCAST_MIN_WEIGHT)
    weighted_sum = math.fsum(weight**age * c for age, c in present)
    weight_total = math.fsum(weight**age for age, _ in present)
    return weighted_sum / weight_total


def highest_8h_mean(hourly: Sequence[float | None]) -> float | None:
    """The highest mean of 8 consecutive hourly means (§2.2.2a), None if no full window.

    For a day's value pass the day's 24 hourly means together with the 7 before them:
    the day has 24 eight-hour means, the first ending at 01:00. The decision sets no
    completeness rule, so a window with a missing hour is not averaged.
    """
    for concentration in hourly:
        if concentration is not None:
            _check_concentration("8-hour mean input", concentration)
    means: list[float] = []
    for start in range(len(hourly) - _O3_WINDOW_HOURS + 1):
        window = [c for c in hourly[start : start + _O3_WINDOW_HOURS] if c is not None]
        if len(window) == _O3_WINDOW_HOURS:
            means.append(math.fsum(window) / _O3_WINDOW_HOURS)
    return max(means, default=None)


def hourly_aqi(latest_hours: Mapping[str, Sequence[float | None]]) -> AqiResult | None:
    """AQI^h (§2.2.1) from each pollutant's latest hourly means, most recent first.

    pm2_5 and pm10 are rated by the NowCast of their last 12 hours; o3, no2, so2 and co
    by their latest hour alone. A pollutant without a usable value is left out. Returns
    None when neither particulate can be rated: the decision requires PM10 or PM2.5.
    """
    sub_indices: dict[str, int] = {}
    for pollutant in _ordered(latest_hours, allowed=POLLUTANTS):
        concentration = _hourly_concentration(pollutant, latest_hours[pollutant])
        if concentration is not None:
            sub_indices[pollutant] = sub_index(pollutant, concentration, "hour")
    return _combine(sub_indices)


def daily_aqi(daily_values: Mapping[str, float]) -> AqiResult | None:
    """AQI^d (§2.2.2) of one day.

    Keys: pm2_5, pm10 → 24-hour mean; o3, no2, so2, co → the day's highest 1-hour mean;
    o3_8h → the day's highest 8-hour O3 mean (see highest_8h_mean). O3's sub-index is the
    higher of its 1-hour and 8-hour ratings, except that an 8-hour mean above 400 µg/m³
    is not rated and the 1-hour rating stands alone. Returns None when neither
    particulate is given.
    """
    sub_indices: dict[str, int] = {}
    for pollutant in _ordered(daily_values, allowed=(*POLLUTANTS, O3_8H)):
        if pollutant == O3_8H:
            continue
        sub_indices[pollutant] = sub_index(pollutant, daily_values[pollutant], "day")
    eight_hour = daily_values.get(O3_8H)
    if eight_hour is not None:
        top = BREAKPOINTS[O3_8H][-1]
        if _exact_concentration(O3_8H, eight_hour) <= top:
            eight_hour_index = sub_index(O3_8H, eight_hour, "day")
            sub_indices[O3] = max(sub_indices.get(O3, eight_hour_index), eight_hour_index)
    return _combine({p: sub_indices[p] for p in POLLUTANTS if p in sub_indices})


def worst(results: Iterable[AqiResult | None]) -> AqiResult | None:
    """The highest index among the results (a ward's AQI is its worst station's)."""
    worst_so_far: AqiResult | None = None
    for result in results:
        if result is not None and (worst_so_far is None or result.value > worst_so_far.value):
            worst_so_far = result
    return worst_so_far


def _breakpoints(pollutant: str, averaging: Averaging) -> tuple[int, ...]:
    if averaging not in ("hour", "day"):
        raise ValueError(f"averaging must be 'hour' or 'day', not {averaging!r}")
    if pollutant == O3_8H and averaging == "hour":
        raise ValueError("the 8-hour O3 mean feeds the daily VN_AQI only, not the hourly one")
    try:
        return BREAKPOINTS[pollutant]
    except KeyError:
        known = ", ".join((*POLLUTANTS, O3_8H))
        raise ValueError(f"unknown pollutant {pollutant!r}; VN_AQI rates {known}") from None


def _check_concentration(what: str, concentration: float) -> None:
    if not math.isfinite(concentration):
        raise ValueError(f"{what}: concentration {concentration} is not a finite number")
    if concentration < 0:
        raise ValueError(f"{what}: concentration {concentration} µg/m³ is negative")


def _exact_concentration(pollutant: str, concentration: float) -> Fraction:
    # Read at its shortest decimal form, so that 55.7 interpolates to exactly 109.5 and
    # rounds up as in the decision's worked example (§2.3c), free of binary float error.
    _check_concentration(pollutant, concentration)
    return Fraction(repr(float(concentration)))


def _interpolate(concentration: Fraction, breakpoints: tuple[int, ...]) -> Fraction:
    top_level = len(breakpoints) - 1
    if concentration >= breakpoints[top_level]:
        return Fraction(INDEX_LEVELS[top_level])
    level = bisect_right(breakpoints, concentration) - 1
    low, high = breakpoints[level], breakpoints[level + 1]
    index_low, index_high = INDEX_LEVELS[level], INDEX_LEVELS[level + 1]
    return index_low + Fraction(index_high - index_low, high - low) * (concentration - low)


def _round_half_up(value: Fraction) -> int:
    # "Làm tròn thành số nguyên": the conventional rounding, not Python's round-half-even.
    return math.floor(value + Fraction(1, 2))


def _ordered(values: Mapping[str, object], *, allowed: tuple[str, ...]) -> list[str]:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown pollutant(s) {unknown}; expected some of {list(allowed)}")
    return [pollutant for pollutant in allowed if pollutant in values]


def _hourly_concentration(pollutant: str, hours: Sequence[float | None]) -> float | None:
    if pollutant in PARTICULATES:
        return nowcast(hours)
    return hours[0] if hours else None


def _combine(sub_indices: Mapping[str, int]) -> AqiResult | None:
    if PARTICULATES.isdisjoint(sub_indices):
        return None
    value = max(sub_indices.values())
    dominant = next(p for p in POLLUTANTS if sub_indices.get(p) == value)
    return AqiResult(value=value, dominant=dominant, sub_indices=sub_indices)


# The decision sets no completeness rule for the 24-hour mean; the hub asks for three
# quarters of the day's hours, the usual rule of air-quality reporting.
DAY_HOURS_REQUIRED: Final = 18


@dataclass(frozen=True, slots=True)
class Rated:
    """An AQI, or None with the reasons it cannot be given (and notes on what is left out)."""

    result: AqiResult | None
    missing: tuple[str, ...]


def rate_hour(latest_hours: Mapping[str, Sequence[float | None]]) -> Rated:
    """``hourly_aqi`` with the reasons a pollutant could not be rated.

    ``latest_hours``: per pollutant, up to 12 hourly means, most recent first.
    """
    missing: list[str] = []
    usable: dict[str, Sequence[float | None]] = {}
    for pollutant in POLLUTANTS:
        hours = latest_hours.get(pollutant, ())
        present = [c for c in hours if c is not None]
        if pollutant in PARTICULATES:
            recent = sum(c is not None for c in hours[:_NOWCAST_RECENT_HOURS])
            if recent >= _NOWCAST_RECENT_REQUIRED:
                usable[pollutant] = hours
            elif present:
                missing.append(
                    f"{pollutant}: {recent} of the {_NOWCAST_RECENT_HOURS} latest hours have "
                    f"data, the NowCast needs {_NOWCAST_RECENT_REQUIRED} (§2.2.1a)"
                )
            else:
                missing.append(f"{pollutant}: no data in the last {NOWCAST_HOURS} hours")
        elif hours and hours[0] is not None:
            usable[pollutant] = hours
        elif present:
            missing.append(f"{pollutant}: no data in the latest hour")
    result = hourly_aqi(usable)
    if result is None:
        missing.append("no AQI without PM2.5 or PM10 (§2.1b)")
    else:
        missing = [
            m for m in missing if not m.endswith(f"no data in the last {NOWCAST_HOURS} hours")
        ]
    return Rated(result, tuple(missing))


def rate_day(day_hours: Mapping[str, Sequence[float | None]]) -> Rated:
    """The daily AQI (§2.2.2) of one day from its hourly means, with reasons.

    ``day_hours``: per pollutant, 31 hourly means in time order: the 7 hours before the
    day (for the 8-hour O3 means that end in it) and the day's 24. pm2_5 and pm10 are
    rated by their 24-hour mean when at least DAY_HOURS_REQUIRED hours have data; o3,
    no2, so2 and co by the day's highest hourly mean; o3 also by its highest 8-hour mean.
    """
    missing: list[str] = []
    values: dict[str, float] = {}
    for pollutant in POLLUTANTS:
        hours = list(day_hours.get(pollutant, ()))
        day = [c for c in hours[-24:] if c is not None]
        if pollutant in PARTICULATES:
            if len(day) >= DAY_HOURS_REQUIRED:
                values[pollutant] = math.fsum(day) / len(day)
            elif day:
                missing.append(
                    f"{pollutant}: {len(day)} of 24 hourly means, the 24-hour mean needs "
                    f"{DAY_HOURS_REQUIRED}"
                )
            else:
                missing.append(f"{pollutant}: no data that day")
            continue
        if day:
            values[pollutant] = max(day)
        if pollutant == O3:
            eight = highest_8h_mean(hours[-(24 + _O3_WINDOW_HOURS - 1) :])
            if eight is not None:
                values[O3_8H] = eight
    result = daily_aqi(values)
    if result is None:
        missing.append("no AQI without PM2.5 or PM10 (§2.1b)")
    else:
        missing = [m for m in missing if not m.endswith("no data that day")]
    return Rated(result, tuple(missing))
