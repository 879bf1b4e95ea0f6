"""Series read the table that fits the range: raw rows, the 1-minute or the 1-hour
rollup (dashboards.queries), decided in the SQL and checked at the boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.queries import PER_MINUTE_UP_TO, RAW_UP_TO, choose_source, rollup_choice
from tests.integration.dashboards import expected
from tests.integration.dashboards.conftest import PanelDatabase
from tests.integration.dashboards.fleet import TIME_TO, Fleet
from tests.integration.dashboards.grafana_sql import Request, expand
from tests.integration.dashboards.panels import find_target, resolve_variables

SECOND = timedelta(seconds=1)
BOUNDARIES = [
    # (range, interval, source)
    (RAW_UP_TO, timedelta(minutes=1), "raw"),
    (RAW_UP_TO + SECOND, timedelta(minutes=1), "1m"),
    (PER_MINUTE_UP_TO, timedelta(minutes=10), "1m"),
    (PER_MINUTE_UP_TO + SECOND, timedelta(minutes=10), "1h"),
    (timedelta(hours=1), timedelta(hours=1), "1h"),  # a whole-hour interval: hourly anyway
    (timedelta(hours=2), timedelta(seconds=5), "raw"),
    (timedelta(days=2), timedelta(minutes=90), "1m"),  # 90 min is no whole number of hours
]


@pytest.mark.parametrize(("span", "interval", "source"), BOUNDARIES)
async def test_the_sql_chooses_the_source_at_the_boundaries(
    database: PanelDatabase, span: timedelta, interval: timedelta, source: str
) -> None:
    assert choose_source(span, interval) == source
    request = Request(TIME_TO - span, TIME_TO, interval)
    assert await database.conn.fetchval(f"SELECT {expand(rollup_choice(), request)}") == source


async def test_sources_not_chosen_are_not_read(database: PanelDatabase) -> None:
    """PostgreSQL folds the choice when planning: a branch not taken has nothing under
    it, so one scan of raw readings is left (plain PostgreSQL), for the source chosen."""
    if database.backend == "timescaledb":
        pytest.skip("on TimescaleDB the scans are the chunks'; the choice is checked above")
    target = find_target("PM2.5 (ward average)")
    variables = await resolve_variables(target.dashboard, database.cached_query, {})
    for span, bucket in ((timedelta(hours=1), "00:30:00"), (timedelta(days=30), "01:00:00")):
        request = Request(TIME_TO - span, TIME_TO, timedelta(minutes=30), variables)
        rows = await database.conn.fetch("EXPLAIN " + expand(target.sql, request))
        plan = "\n".join(row[0] for row in rows)
        assert plan.count(" on reading r") == 1, plan
        assert f"date_bin('{bucket}'" in plan, plan


@pytest.mark.parametrize(
    ("span", "interval"),
    [
        (timedelta(hours=8), timedelta(minutes=10)),  # the 1-minute rollup
        (timedelta(days=8), timedelta(hours=1)),  # the 1-hour rollup
        (timedelta(days=8), timedelta(minutes=30)),  # hourly buckets, though Grafana asks 30 min
    ],
)
async def test_rollup_series_agree_with_the_raw_readings(
    database: PanelDatabase, fleet_data: Fleet, span: timedelta, interval: timedelta
) -> None:
    for key in ("PM2.5 (ward average)", "Rainfall (ward average of gauge totals)"):
        target = find_target(key)
        variables = await resolve_variables(target.dashboard, database.cached_query, {})
        request = Request(TIME_TO - span, TIME_TO, interval, variables)
        rows = await database.query(expand(target.sql, request))
        scenario = expected.Scenario(fleet_data, frozenset(variables["ward"].values), request)
        want = expected.PANELS[key](scenario)
        assert want.rows
        assert expected.normalise(rows, False) == expected.normalise(want.rows, False)


@pytest.mark.parametrize(
    "end",
    [
        TIME_TO,  # whole hours and the hour under way
        TIME_TO - timedelta(minutes=4, seconds=30),  # mid-minute
        TIME_TO - timedelta(minutes=40),  # on the hour: nothing of it from raw but its start
        datetime(2025, 3, 9, 17, 0, tzinfo=UTC),  # local midnight itself
        datetime(2025, 3, 9, 17, 7, 30, tzinfo=UTC),  # within the day's first hour
    ],
    ids=["end", "mid-minute", "on-the-hour", "midnight", "first-hour"],
)
async def test_todays_extremes_from_rollups_agree_with_every_reading(
    database: PanelDatabase, fleet_data: Fleet, end: datetime
) -> None:
    """Today's table adds hourly rollup rows and raw rows: the same minima, maxima, means and
    counts as every reading since local midnight, wherever the range ends."""
    target = find_target("Today's minimum and maximum")
    variables = await resolve_variables(target.dashboard, database.cached_query, {})
    request = Request(end - timedelta(hours=6), end, timedelta(minutes=1), variables)
    rows = await database.query(expand(target.sql, request))
    scenario = expected.Scenario(fleet_data, frozenset(variables["ward"].values), request)
    want = expected.PANELS[target.key](scenario)
    assert want.rows
    assert expected.normalise(rows, False) == expected.normalise(want.rows, False)
