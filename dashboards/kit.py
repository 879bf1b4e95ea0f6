"""The few pieces the iochub dashboards share, on grafana-foundation-sdk's typed builders.

The SDK has no builder for the PostgreSQL datasource's query, so :class:`Sql` is one: a
raw SQL target in code mode, the shape Grafana's SQL query editor saves. Everything else
(dashboards, rows, variables, annotations, panels, field config) is the SDK's own.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, Self

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import timeseries as timeseries_panel
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")
DATASOURCE_UID = "iochub-postgres"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE = model.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
GRAFANA = model.DataSourceRef(type_val="grafana", uid="-- Grafana --")
LOCAL_ZONE = "Asia/Ho_Chi_Minh"
FOLDER_UID = "iochub"
FOLDER_TITLE = "IOC"
# The hub annotates every alert firing and resolution with these tags (hub.integrations.grafana).
ALERT_TAGS = ["alert:firing", "alert:resolved"]

_lang: contextvars.ContextVar[Lang] = contextvars.ContextVar("lang", default="vi")


@contextlib.contextmanager
def language(lang: Lang) -> Iterator[None]:
    token = _lang.set(lang)
    try:
        yield
    finally:
        _lang.reset(token)


def current_language() -> Lang:
    return _lang.get()


def t(vi: str, en: str) -> str:
    """The text in the language being built: Vietnamese on the wall, English on request."""
    return vi if _lang.get() == "vi" else en


class SqlQuery(cogvariants.Dataquery):
    """A target of Grafana's PostgreSQL datasource: raw SQL, code mode."""

    def __init__(self, sql: str, fmt: Literal["table", "time_series"], ref_id: str) -> None:
        self.sql = sql.strip()
        self.fmt = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": DATASOURCE.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(
        self, sql: str, fmt: Literal["table", "time_series"] = "table", ref_id: str = "A"
    ) -> None:
        self._query = SqlQuery(sql, fmt, ref_id)

    def build(self) -> SqlQuery:
        return self._query


def thresholds(steps: Sequence[tuple[float | None, str]]) -> sdk.ThresholdsConfig:
    return (
        sdk.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=colour) for value, colour in steps])
    )


def value_colours(
    colours: Mapping[str, str], texts: Mapping[str, str] | None = None
) -> model.ValueMap:
    return model.ValueMap(
        options={
            value: model.ValueMappingResult(
                color=colour, index=index, text=(texts or {}).get(value, value)
            )
            for index, (value, colour) in enumerate(colours.items())
        }
    )


def prop(name: str, value: object) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val=name, value=value)


def fixed_colour(colour: str) -> model.DynamicConfigValue:
    return prop("color", {"fixedColor": colour, "mode": "fixed"})


class Columns:
    """Display names of a table's SQL columns: the SQL says them in English, the wall in
    the build's language (a field override, so the SQL is the same in every build)."""

    def __init__(self, **names: tuple[str, str]) -> None:
        self.names = names


def timeseries(
    title: str,
    description: str,
    sql: str,
    unit: str,
    *,
    width: int,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries_panel.Panel:
    return (
        timeseries_panel.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(Sql(sql, "time_series"))
        .unit(unit)
        .span(width)
        .height(height)
        .color_scheme(sdk.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(80 if bars else 10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            common_builders.StackingConfig().mode(
                common.StackingMode.NORMAL if stacked else common.StackingMode.NONE
            )
        )
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["sum"] if bars else ["mean", "max", "lastNotNull"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def table(
    title: str,
    description: str,
    sql: str,
    *,
    width: int,
    height: int = 8,
    columns: Columns | None = None,
) -> table_panel.Panel:
    panel = (
        table_panel.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(Sql(sql))
        .span(width)
        .height(height)
        .cell_height(common.TableCellHeight.SM)
        .show_header(True)
        .thresholds(thresholds([(None, "text")]))
    )
    for column, (vi, en) in (columns.names if columns else {}).items():
        shown = t(vi, en)
        if shown != column:
            panel = panel.override_by_name(column, [prop("displayName", shown)])
    return panel


def stat(
    title: str,
    description: str,
    sql: str,
    *,
    width: int,
    height: int = 5,
    unit: str = "none",
    steps: Sequence[tuple[float | None, str]] = ((None, "text"),),
    per_row: bool = False,
    fields: str = "",
) -> stat_panel.Panel:
    return (
        stat_panel.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(Sql(sql))
        .span(width)
        .height(height)
        .unit(unit)
        .decimals(0)
        .thresholds(thresholds(steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(
            common_builders.ReduceDataOptions()
            .values(per_row)
            .calcs(["lastNotNull"])
            .fields(fields)
        )
    )


def query_variable(name: str, label: str, sql: str) -> sdk.QueryVariable:
    return (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(sql)
        .multi(True)
        .include_all(True)
        .allow_custom_value(False)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.DISABLED)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def custom_variable(
    name: str, label: str, values: Sequence[str], texts: Mapping[str, str] | None = None
) -> sdk.CustomVariable:
    shown = texts or {}
    return (
        sdk.CustomVariable(name)
        .label(label)
        .values(",".join(f"{shown.get(v, v)} : {v}" if v in shown else v for v in values))
        .multi(True)
        .include_all(True)
        .allow_custom_value(False)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


class Board:
    """A dashboard of the IOC folder: Vietnamese time, the alert annotations on every
    time-series panel, links to the other IOC dashboards."""

    def __init__(self, uid: str, title: str, description: str, *, time_from: str = "now-6h"):
        self.builder = (
            sdk.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["iochub"])
            .editable()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .timezone(LOCAL_ZONE)
            .week_start("monday")
            .refresh("1m")
            .time(time_from, "now")
            .live_now(False)
            .annotation(
                sdk.AnnotationQuery()
                .name(t("Cảnh báo iochub", "iochub alerts"))
                .datasource(GRAFANA)
                .enable(True)
                .hide(False)
                .icon_color("red")
                .type("tags")
                .target(
                    sdk.AnnotationTarget().type("tags").tags(ALERT_TAGS).match_any(True).limit(200)
                )
            )
            .link(
                sdk.DashboardLink(t("Bảng điều khiển IOC", "IOC dashboards"))
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags(["iochub"])
                .as_dropdown(False)
                .include_vars(True)
                .keep_time(True)
                .icon("external link")
            )
        )

    def variable(self, variable: cogbuilder.Builder[model.VariableModel]) -> Self:
        self.builder = self.builder.with_variable(variable)
        return self

    def row(self, title: str) -> Self:
        self.builder = self.builder.with_row(sdk.Row(title))
        return self

    def add(self, *panels: cogbuilder.Builder[model.Panel]) -> Self:
        for panel in panels:
            self.builder = self.builder.with_panel(panel)
        return self


def coloured_cells(
    colours: Mapping[str, str], texts: Mapping[str, str] | None = None
) -> list[model.DynamicConfigValue]:
    """A table column whose cells take the colour of their value."""
    return [
        prop("mappings", [value_colours(colours, texts)]),
        prop("custom.cellOptions", {"type": "color-background"}),
    ]


def local_time() -> list[model.DynamicConfigValue]:
    return [prop("unit", "dateTimeAsLocal")]
