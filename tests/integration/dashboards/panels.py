"""The provisioned dashboards as the tests see them: every panel target, its time range,
its template variables resolved against a database, and the SQL Grafana would send."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from dashboards import build
from tests.integration.dashboards.fleet import TIME_FROM, TIME_TO
from tests.integration.dashboards.grafana_sql import Request, Variable, expand, parse_interval

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD_DIR = ROOT / "dashboards"
PROVISIONING_DIR = ROOT / "deploy" / "grafana"

JSON = dict[str, Any]
Query = Callable[[str], Awaitable[list[asyncpg.Record]]]


@functools.cache
def load_dashboards() -> dict[str, JSON]:
    """Each dashboard JSON file, by file name."""
    return {
        path.name: json.loads(path.read_text("utf-8"))
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


@functools.cache
def english_titles() -> dict[tuple[str, int], str]:
    """(dashboard uid, panel id) -> the panel's English title: the key the tests use, as
    the checked-in (Vietnamese) build and the English one differ only in their words."""
    return {
        (uid, panel["id"]): panel["title"]
        for uid, dashboard in build.dashboards("en").items()
        for panel in dashboard["panels"]
    }


def data_panels(dashboard: JSON) -> Iterator[JSON]:
    """Every panel that queries (rows are layout only), nested ones included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass(frozen=True, slots=True)
class PanelTarget:
    dashboard: JSON
    panel: JSON
    target: JSON

    @property
    def id(self) -> str:
        return f"{self.dashboard['uid']}/{self.panel['title']}/{self.target['refId']}"

    @property
    def key(self) -> str:
        """The panel's English title."""
        return english_titles()[(self.dashboard["uid"], self.panel["id"])]

    @property
    def sql(self) -> str:
        return str(self.target["rawSql"])

    def request(
        self,
        variables: dict[str, Variable],
        interval: timedelta,
        *,
        timescaledb: bool,
        time_from: datetime = TIME_FROM,
        time_to: datetime = TIME_TO,
    ) -> Request:
        """A request over the fleet's time range (or another), as this panel would make it."""
        if "timeFrom" in self.panel:
            # A relative-time override ("30d") replaces the dashboard range's start.
            time_from = time_to - parse_interval(self.panel["timeFrom"])
        return Request(time_from, time_to, interval, variables, timescaledb)


def panel_targets() -> list[PanelTarget]:
    return [
        PanelTarget(dashboard, panel, target)
        for dashboard in load_dashboards().values()
        for panel in data_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def find_target(key: str) -> PanelTarget:
    found = [target for target in panel_targets() if target.key == key]
    assert len(found) == 1, f"{len(found)} targets for panel {key!r}"
    return found[0]


async def variable_options(
    variable: JSON, query: Query, earlier: Mapping[str, Variable] | None = None
) -> tuple[str, ...]:
    """The option values Grafana would offer for a query or custom variable, given the
    variables before it (a chained variable's query uses them)."""
    if variable["type"] == "custom":
        # "text : value" pairs, or plain values.
        return tuple(option.split(" : ")[-1].strip() for option in variable["query"].split(","))
    assert variable["type"] == "query", variable
    request = Request(TIME_FROM, TIME_TO, timedelta(minutes=1), dict(earlier or {}))
    sql = expand(variable["query"], request)
    rows = await query(sql)
    if rows and "__value" in rows[0]:
        return tuple(str(row["__value"]) for row in rows)
    return tuple(str(row[0]) for row in rows)


async def resolve_variables(
    dashboard: JSON, query: Query, chosen: Mapping[str, Sequence[str]]
) -> dict[str, Variable]:
    """Each variable set to the chosen values, or to All (every option) if not chosen."""
    resolved: dict[str, Variable] = {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        values = chosen.get(name)
        if values is None:
            values = await variable_options(variable, query, resolved)
        resolved[name] = Variable(
            tuple(values), multi=variable.get("multi", False), include_all=variable["includeAll"]
        )
    return resolved
