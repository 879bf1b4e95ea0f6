"""The SQL Grafana's PostgreSQL datasource sends for a panel's rawSql.

Two passes, as in Grafana: the frontend replaces template variables and $__interval
(SqlDatasource.interpolateVariable, or the variable's explicit format), then the backend
applies sqleng.Interpolate and the postgres macro engine (pkg/tsdb/grafana-postgresql-
datasource/macros.go). Anything unknown is refused, so a typo in a dashboard fails its
test instead of reaching the database as literal text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal


class MacroError(ValueError):
    """A macro, variable or format Grafana would not expand (or this module does not know)."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A template variable's current value: its selected option values.

    A multi-value or include-All variable set to All holds every option's value, as
    Grafana expands All when the variable has no custom all value.
    """

    values: tuple[str, ...]
    multi: bool = True
    include_all: bool = True


@dataclass(frozen=True, slots=True)
class Request:
    time_from: datetime
    time_to: datetime
    interval: timedelta
    variables: Mapping[str, Variable] = field(default_factory=dict)
    timescaledb: bool = False
    """The datasource's jsonData.timescaledb: $__timeGroup becomes time_bucket()."""


# Grafana's TemplateSrv variable regex: $name, [[name:format]], ${name.path:format}.
_TEMPLATE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_LEFTOVER = re.compile(r"\$(?:\w|\{)|\[\[")
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_INTERVAL_STEPS = (
    (timedelta(days=365), "y"),
    (timedelta(days=1), "d"),
    (timedelta(hours=1), "h"),
    (timedelta(minutes=1), "m"),
    (timedelta(seconds=1), "s"),
    (timedelta(milliseconds=1), "ms"),
)


def expand(sql: str, request: Request) -> str:
    expanded = _macros(_global_macros(_template_variables(sql, request), request), request)
    leftover = _LEFTOVER.search(expanded)
    if leftover:
        raise MacroError(f"unexpanded {expanded[leftover.start() : leftover.start() + 30]!r}")
    return expanded


def format_interval(interval: timedelta) -> str:
    """gtime.FormatInterval: the largest whole unit, e.g. 600 s -> "10m"."""
    for unit, suffix in _INTERVAL_STEPS:
        if interval >= unit:
            return f"{interval // unit}{suffix}"
    return "1ms"


def parse_interval(text: str) -> timedelta:
    """gtime.ParseInterval for the fixed-length units (months and years are refused)."""
    match = _INTERVAL.match(text.strip().strip("'"))
    if not match:
        raise MacroError(f"error parsing interval {text}")
    interval = int(match[1]) * _UNITS[match[2]]
    if interval <= timedelta(0):
        raise MacroError(f"interval must be positive, got {text}")
    return interval


def rfc3339nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: trailing zeros of the fraction dropped."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def go_float(value: float) -> str:
    """Go's %v of a float64: shortest digits, exponent form from 1e+06 and below 1e-04."""
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    decimal_exponent = len(digits) - 1 + exponent
    text_digits = "".join(map(str, digits))
    prefix = "-" if sign else ""
    if decimal_exponent < -4 or decimal_exponent >= 6:
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return (
            f"{prefix}{mantissa}e{'-' if decimal_exponent < 0 else '+'}{abs(decimal_exponent):02d}"
        )
    return prefix + format(Decimal(repr(value)).normalize(), "f")


def _template_variables(sql: str, request: Request) -> str:
    def replace(match: re.Match[str]) -> str:
        plain, legacy, _legacy_format, braced, field_path, fmt = match.groups()
        if legacy:
            raise MacroError(f"deprecated [[{legacy}]] variable syntax")
        if field_path:
            raise MacroError(f"field path in ${{{braced}.{field_path}}}")
        name = plain or braced
        if name == "__interval_ms" and not fmt:
            return str(request.interval // timedelta(milliseconds=1))
        if name == "__interval" and not fmt:
            return format_interval(request.interval)
        variable = request.variables.get(name)
        if variable is not None:
            return _format(name, variable, fmt)
        if plain and sql[match.end() : match.end() + 1] == "(":
            return match[0]  # a macro: the backend expands it
        raise MacroError(f"unknown template variable {match[0]}")

    return _TEMPLATE.sub(replace, sql)


def _format(name: str, variable: Variable, fmt: str | None) -> str:
    values = variable.values
    if fmt is None:
        if variable.multi or variable.include_all:
            return ",".join("'" + value.replace("'", "''") + "'" for value in values)
        if len(values) != 1:
            raise MacroError(f"single-value variable ${name} holds {len(values)} values")
        return values[0].replace("'", "''")
    if fmt == "sqlstring":
        return ",".join(
            "'" + value.replace("'", "''").replace('"', '\\"') + "'" for value in values
        )
    if fmt == "csv":
        return ",".join(values)
    raise MacroError(f"format {fmt!r} of ${{{name}}} is not one the dashboards may use")


def _global_macros(sql: str, request: Request) -> str:
    """sqleng.Interpolate."""
    sql = sql.replace("$__interval_ms", str(request.interval // timedelta(milliseconds=1)))
    sql = sql.replace("$__interval", format_interval(request.interval))
    sql = sql.replace("$__unixEpochFrom()", str(int(request.time_from.timestamp())))
    return sql.replace("$__unixEpochTo()", str(int(request.time_to.timestamp())))


def _macros(sql: str, request: Request) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1]
        # Grafana before 5.3 aliased $__timeGroup itself; a comma right after it still does.
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        return _macro(name, _arguments(match[2]), request)

    return _MACRO.sub(replace, sql)


def _arguments(params: str) -> list[str]:
    params = params.strip().replace("\n", "")
    if not params:
        return [""]
    row = next(csv.reader([params], skipinitialspace=True))
    return [argument.strip() for argument in row]


def _macro(name: str, args: Sequence[str], request: Request) -> str:
    column = args[0]
    takes_column = ("__timeFilter", "__timeGroup", "__timeGroupAlias", "__unixEpochFilter")
    if name in takes_column and not column:
        raise MacroError(f"missing time column argument for macro {name}")
    if name == "__timeFilter":
        return (
            f"{column} BETWEEN '{rfc3339nano(request.time_from)}' "
            f"AND '{rfc3339nano(request.time_to)}'"
        )
    if name == "__timeFrom":
        return f"'{rfc3339nano(request.time_from)}'"
    if name == "__timeTo":
        return f"'{rfc3339nano(request.time_to)}'"
    if name == "__unixEpochFilter":
        start, end = int(request.time_from.timestamp()), int(request.time_to.timestamp())
        return f"{column} >= {start} AND {column} <= {end}"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        seconds = parse_interval(args[1]).total_seconds()
        if request.timescaledb:
            grouped = f"time_bucket('{seconds:.3f}s',{column})"
        else:
            step = go_float(seconds)
            grouped = f"floor(extract(epoch from {column})/{step})*{step}"
        return grouped + (' AS "time"' if name == "__timeGroupAlias" else "")
    raise MacroError(f"unknown macro ${name}()")
