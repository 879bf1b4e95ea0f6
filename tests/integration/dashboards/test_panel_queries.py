"""Every panel query of every dashboard, expanded as Grafana would and executed on a
fresh, migrated database of each backend, for one ward, several and All; and what each
panel returns, against what the fleet implies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import asyncpg
import pytest

from tests.integration.dashboards import expected
from tests.integration.dashboards.conftest import PanelDatabase
from tests.integration.dashboards.fleet import TIME_FROM, TIME_TO, WARDS, Fleet
from tests.integration.dashboards.grafana_sql import Request, expand
from tests.integration.dashboards.panels import (
    PanelTarget,
    find_target,
    load_dashboards,
    panel_targets,
    resolve_variables,
)

TARGETS = panel_targets()
WARD_SELECTIONS: dict[str, tuple[str, ...] | None] = {
    "one-ward": ("may-chai",),
    "several-wards": ("may-chai", "van-my", "lac-vien"),
    "all-wards": None,
}
BUCKETED = [target for target in TARGETS if "$__interval" in target.sql]

INTERVALS = {"30s": timedelta(seconds=30), "1d": timedelta(days=1)}


def chosen_wards(selection: str) -> dict[str, tuple[str, ...]]:
    wards = WARD_SELECTIONS[selection]
    return {} if wards is None else {"ward": wards}


async def run(
    database: PanelDatabase,
    target: PanelTarget,
    chosen: Mapping[str, Sequence[str]],
    interval: timedelta,
) -> tuple[Request, list[asyncpg.Record]]:
    variables = await resolve_variables(target.dashboard, database.cached_query, chosen)
    request = target.request(variables, interval, timescaledb=database.backend == "timescaledb")
    rows = await database.query(expand(target.sql, request))
    if target.target["format"] == "time_series":
        times = [row["time"] for row in rows]
        assert times == sorted(times), "Grafana needs time series sorted by time"
    return request, rows


@pytest.mark.parametrize("interval", INTERVALS.values(), ids=INTERVALS.keys())
@pytest.mark.parametrize("target", BUCKETED, ids=[t.id for t in BUCKETED])
async def test_time_buckets_follow_the_interval(
    database: PanelDatabase, target: PanelTarget, interval: timedelta
) -> None:
    """Grafana picks $__interval from the range and the panel width: any size must work
    (a rollup's buckets are whole rollup buckets: 30 s on a 1-hour rollup becomes 1 h)."""
    _, rows = await run(database, target, {}, interval)
    assert rows
    width = expected.bucket_width(target.sql, interval, TIME_TO - TIME_FROM)
    assert all(row["time"] == expected.date_bin(width, row["time"]) for row in rows)


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
async def test_every_panel_query_runs_on_a_fresh_install(
    empty_database: PanelDatabase, target: PanelTarget
) -> None:
    """No ward, device or reading yet: All selects nothing, and no panel errors."""
    nothing = {"ward": ("",), "station": ("",), "metric": ("",)}  # Grafana's "None"
    for chosen in ({}, nothing):  # All of nothing, and nothing chosen
        _, rows = await run(empty_database, target, chosen, timedelta(minutes=1))
        assert all(value in (None, 0) for row in rows for value in row.values())


async def test_variable_queries_offer_the_wards_by_name(database: PanelDatabase) -> None:
    for dashboard in load_dashboards().values():
        variables = await resolve_variables(dashboard, database.cached_query, {})
        assert sorted(variables["ward"].values) == sorted(WARDS)
        ward = next(v for v in dashboard["templating"]["list"] if v["name"] == "ward")
        rows = await database.query(ward["query"])
        assert {row["__value"]: row["__text"] for row in rows} == WARDS


def test_every_panel_has_its_expected_result() -> None:
    assert {target.key for target in TARGETS} == set(expected.PANELS)


@pytest.mark.parametrize("selection", WARD_SELECTIONS)
@pytest.mark.parametrize("title", expected.PANELS)
async def test_panel_shows_what_the_data_implies(
    database: PanelDatabase, fleet_data: Fleet, title: str, selection: str
) -> None:
    target = find_target(title)
    request, rows = await run(database, target, chosen_wards(selection), timedelta(minutes=10))
    scenario = expected.Scenario(fleet_data, frozenset(request.variables["ward"].values), request)
    want = expected.PANELS[title](scenario)
    if selection == "all-wards":
        assert want.rows, "the fleet leaves this panel empty: it would prove nothing"
    assert expected.normalise(rows, want.ordered) == expected.normalise(want.rows, want.ordered)
