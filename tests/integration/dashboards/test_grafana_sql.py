"""The expander produces what Grafana produces: the cases below are those of Grafana's
own tests (postgres macros_test.go, formatRegistry and SqlDatasource tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.dashboards.grafana_sql import (
    MacroError,
    Request,
    Variable,
    expand,
    format_interval,
    go_float,
    rfc3339nano,
)

FROM = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
TO = FROM + timedelta(minutes=5)
WARDS = Variable(("may-chai", "van-my"))
REQUEST = Request(
    FROM,
    TO,
    timedelta(minutes=1),
    {
        "ward": WARDS,
        "metric": Variable(("pm2_5",), multi=False, include_all=False),
        "note": Variable(("it's",), multi=False, include_all=False),
        "quoted": Variable(("o'clock", 'say "hi"')),
    },
)
TIMESCALE = Request(FROM, TO, timedelta(minutes=1), timescaledb=True)


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        (
            "WHERE $__timeFilter(time_column)",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
        ),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        (
            "SELECT $__timeGroup(time_column,'5m')",
            "SELECT floor(extract(epoch from time_column)/300)*300",
        ),
        (
            "SELECT $__timeGroupAlias(time_column,'5m')",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"',
        ),
        (
            "$__timeGroup(time_column , '5m')",
            "floor(extract(epoch from time_column)/300)*300",
        ),
        (  # Grafana < 5.3 compatibility: a comma right after the macro adds the alias.
            "SELECT $__timeGroup(time_column,'5m'), value",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value',
        ),
        (
            "SELECT $__timeGroup(time_column,'5m') as time, value",
            "SELECT floor(extract(epoch from time_column)/300)*300 as time, value",
        ),
        (
            "SELECT $__timeGroupAlias(t, $__interval)",
            'SELECT floor(extract(epoch from t)/60)*60 AS "time"',
        ),
        (
            "SELECT $__timeGroup(t, 12d)",
            "SELECT floor(extract(epoch from t)/1.0368e+06)*1.0368e+06",
        ),
        ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
        ("select $__unixEpochFrom(), $__unixEpochTo()", "select 1523556000, 1523556300"),
        ("date_bin('$__interval', t, o), $__interval_ms", "date_bin('1m', t, o), 60000"),
    ],
)
def test_macros_expand_as_grafana_does(sql: str, expanded: str) -> None:
    assert expand(sql, REQUEST) == expanded


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("GROUP BY $__timeGroup(time_column,'5m')", "GROUP BY time_bucket('300.000s',time_column)"),
        (
            "GROUP BY $__timeGroup(time_column , '12d')",
            "GROUP BY time_bucket('1036800.000s',time_column)",
        ),
        (
            "GROUP BY $__timeGroup(time_column , '20ms')",
            "GROUP BY time_bucket('0.020s',time_column)",
        ),
        (
            "SELECT $__timeGroupAlias(time_column,'5m')",
            "SELECT time_bucket('300.000s',time_column) AS \"time\"",
        ),
    ],
)
def test_time_group_uses_time_bucket_when_the_datasource_says_timescaledb(
    sql: str, expanded: str
) -> None:
    assert expand(sql, TIMESCALE) == expanded


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("w.code IN ($ward)", "w.code IN ('may-chai','van-my')"),
        ("w.code IN (${ward})", "w.code IN ('may-chai','van-my')"),
        ("w.code IN (${ward:sqlstring})", "w.code IN ('may-chai','van-my')"),
        ("'${ward:csv}'", "'may-chai,van-my'"),
        ("metric = '$metric'", "metric = 'pm2_5'"),
        ("'$note'", "'it''s'"),
        ("($quoted)", "('o''clock','say \"hi\"')"),
        ("(${quoted:sqlstring})", "('o''clock','say \\\"hi\\\"')"),
    ],
)
def test_variables_are_formatted_as_grafana_formats_them(sql: str, expanded: str) -> None:
    assert expand(sql, REQUEST) == expanded


def test_all_of_no_options_leaves_an_empty_list() -> None:
    request = Request(FROM, TO, timedelta(minutes=1), {"ward": Variable(())})
    assert expand("ARRAY[$ward]::text[]", request) == "ARRAY[]::text[]"


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("WHERE $__timeFiltr(t)", "unknown macro"),
        ("WHERE $__timefilter(t)", "unknown macro"),
        ("WHERE w.code IN ($wards)", "unknown template variable"),
        ("WHERE w.code IN (${wards:sqlstring})", "unknown template variable"),
        ("WHERE w.code IN (${ward:json})", "format 'json'"),
        ("WHERE w.code IN ([[ward]])", "deprecated"),
        ("SELECT $__timeGroup(t)", "needs time column and interval"),
        ("SELECT $__timeGroup(t, 5 minutes)", "error parsing interval"),
        ("SELECT $__timeGroup(t, 1M)", "error parsing interval"),
        ("WHERE $__timeFilter()", "missing time column"),
        ("SELECT $__range_s", "unknown template variable"),
        # Grafana's, but not among those the dashboards may use.
        ("SELECT $__time(time_column)", "unknown macro"),
        ("SELECT $__unixEpochGroup(t, '5m')", "unknown macro"),
    ],
)
def test_what_grafana_would_not_expand_is_refused(sql: str, problem: str) -> None:
    with pytest.raises(MacroError, match=problem):
        expand(sql, REQUEST)


def test_single_value_variable_holding_several_values_is_refused() -> None:
    request = Request(FROM, TO, timedelta(minutes=1), {"m": Variable(("a", "b"), False, False)})
    with pytest.raises(MacroError, match="holds 2 values"):
        expand("'$m'", request)


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (timedelta(milliseconds=20), "20ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=90), "1m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=7), "7d"),
        (timedelta(days=400), "1y"),
    ],
)
def test_interval_text_is_grafanas(interval: timedelta, text: str) -> None:
    assert format_interval(interval) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(300.0, "300"), (0.02, "0.02"), (86400.0, "86400"), (1e6, "1e+06"), (1036800.0, "1.0368e+06")],
)
def test_numbers_print_as_go_prints_them(value: float, text: str) -> None:
    assert go_float(value) == text


def test_times_print_as_rfc3339_nano() -> None:
    assert rfc3339nano(datetime(1960, 2, 1, 7, 0, 0, 500_000, tzinfo=UTC)) == (
        "1960-02-01T07:00:00.5Z"
    )
    assert rfc3339nano(FROM) == "2018-04-12T18:00:00Z"
