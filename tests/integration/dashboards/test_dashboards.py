"""The dashboard JSON models and Grafana's provisioning files: well-formed, stable, built
from dashboards/build.py, and pointing at the one provisioned datasource."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not installed

from dashboards import build, kit
from tests.integration.dashboards.panels import (
    DASHBOARD_DIR,
    PROVISIONING_DIR,
    data_panels,
    english_titles,
    load_dashboards,
)

DASHBOARDS = load_dashboards()
UIDS = {"iochub-sensors", "iochub-device-health", "iochub-broadcasts", "iochub-alerts"}
# Panels that deliberately ignore the ward selection (their descriptions say so).
ALL_WARDS = {
    "Pending approval",
    "Active devices without a ward",
    "Quarantined payloads by reason",
    "Quarantined payloads by source",
}


def provisioned_datasource() -> dict[str, Any]:
    config = yaml.safe_load((PROVISIONING_DIR / "datasources" / "iochub.yaml").read_text("utf-8"))
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    return dict(datasource)


def test_checked_in_json_is_what_build_produces() -> None:
    stale = build.stale_files(DASHBOARD_DIR)
    assert not stale, f"run `python -m dashboards.build`: {[path.name for path in stale]}"


def test_dashboards_have_stable_unique_uids_and_titles() -> None:
    assert {d["uid"] for d in DASHBOARDS.values()} == UIDS
    assert {f"{d['uid']}.json" for d in DASHBOARDS.values()} == set(DASHBOARDS)
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_model_is_grafana_10_or_later(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["version"] >= 1
    assert dashboard["id"] is None  # provisioning assigns it
    assert dashboard["timezone"] == "Asia/Ho_Chi_Minh"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARDS[name]["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = set(
            itertools.product(
                range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
            )
        )
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_queries_the_provisioned_datasource(name: str) -> None:
    datasource = provisioned_datasource()
    reference = {"type": datasource["type"], "uid": datasource["uid"]}
    for panel in data_panels(DASHBOARDS[name]):
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == reference, panel["title"]
            assert target["rawQuery"] is True and target["editorMode"] == "code"
            assert target["format"] in ("table", "time_series")
            assert target["rawSql"].strip()
    for variable in DASHBOARDS[name]["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == reference, variable["name"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_ward_variable_selects_many_wards_or_all(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    ward = variables["ward"]
    assert ward["type"] == "query" and ward["multi"] and ward["includeAll"]
    assert re.search(r"\bFROM ward\b", ward["query"])
    # A custom all value would be inserted raw, unquoted: All must expand to the options.
    assert not ward.get("allValue")
    for panel in data_panels(DASHBOARDS[name]):
        uses_ward = any("$ward" in target["rawSql"] for target in panel["targets"])
        assert uses_ward or english_titles()[(DASHBOARDS[name]["uid"], panel["id"])] in ALL_WARDS, (
            f"{panel['title']} ignores the ward selection"
        )


def test_series_read_the_rollups_through_the_functions_both_backends_have() -> None:
    """reading_1m/reading_1h exist on TimescaleDB only: panels read reading_per_minute and
    reading_per_hour (migration 0016), and every sensor series goes through the choice."""
    for dashboard in DASHBOARDS.values():
        for panel in data_panels(dashboard):
            for target in panel["targets"]:
                assert not re.search(r"\breading_1[mh]\b", target["rawSql"]), panel["title"]
    sensors = DASHBOARDS["iochub-sensors.json"]
    series = [p for p in data_panels(sensors) if p["type"] == "timeseries"]
    assert len(series) == 8
    for panel in series:
        assert "reading_per_hour(" in panel["targets"][0]["rawSql"], panel["title"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_alert_annotations_on_every_dashboard(name: str) -> None:
    """The hub's alert annotations (hub.integrations.grafana tags) show on every
    time-series panel: a dashboard-wide annotation query, no panel filter."""
    (annotation,) = DASHBOARDS[name]["annotations"]["list"]
    assert annotation["enable"] is True
    assert annotation["datasource"] == {"type": "grafana", "uid": "-- Grafana --"}
    assert set(annotation["target"]["tags"]) == {"alert:firing", "alert:resolved"}
    assert annotation["target"]["matchAny"] is True
    assert "filter" not in annotation


def test_vietnamese_by_default_english_on_request() -> None:
    english = build.dashboards("en")
    for name, dashboard in DASHBOARDS.items():
        other = english[dashboard["uid"]]
        assert other["version"] == dashboard["version"]
        assert [p["id"] for p in other["panels"]] == [p["id"] for p in dashboard["panels"]]
        differ = [
            (mine["title"], theirs["title"])
            for mine, theirs in zip(dashboard["panels"], other["panels"], strict=True)
            if mine["title"] != theirs["title"]
        ]
        # Titles are translated (short names like "VN_AQI detail" may only change a word).
        assert len(differ) >= len(dashboard["panels"]) - 2, name
        assert dashboard["title"] != other["title"]


def test_version_follows_content(tmp_path: Path) -> None:
    first = build.dashboards("vi", tmp_path)
    assert {model["version"] for model in first.values()} == {1}
    build.write("vi", tmp_path)
    assert build.dashboards("vi", tmp_path) == first  # unchanged: same version
    changed = dict(first["iochub-alerts"], title="changed in the repository", version=1)
    (tmp_path / "iochub-alerts.json").write_text(build.render(changed), "utf-8")
    assert build.dashboards("vi", tmp_path)["iochub-alerts"]["version"] == 2
    assert build.dashboards("vi", tmp_path)["iochub-sensors"]["version"] == 1


def test_datasource_provisioning_reads_credentials_from_the_environment() -> None:
    datasource = provisioned_datasource()
    assert datasource["uid"] == kit.DATASOURCE_UID
    assert datasource["type"] == "grafana-postgresql-datasource"
    assert datasource["access"] == "proxy"
    env = re.compile(r"^\$\{IOCHUB_GRAFANA_DB_[A-Z]+\}$")
    assert env.match(datasource["url"])
    assert env.match(datasource["user"])
    assert env.match(datasource["jsonData"]["database"])
    assert env.match(datasource["secureJsonData"]["password"])
    assert "password" not in datasource  # only ever in secureJsonData
    assert datasource["jsonData"]["timescaledb"] is True
    assert datasource["jsonData"]["postgresVersion"] >= 1400  # date_bin


def test_dashboard_provider_serves_the_dashboards_folder() -> None:
    config = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "iochub.yaml").read_text("utf-8"))
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"].startswith("/")
    assert provider["folderUid"] not in UIDS
    # The same folder `iochub grafana sync` provisions.
    assert (provider["folderUid"], provider["folder"]) == (kit.FOLDER_UID, kit.FOLDER_TITLE)


def test_file_provisioning_matches_what_sync_provisions() -> None:
    """deploy/grafana and `iochub grafana sync` give Grafana the same folder, data source
    and dashboards (the same JSON: sync sends the checked-in files)."""
    from pydantic import SecretStr

    from hub.integrations import grafana_sync

    datasource = provisioned_datasource()
    synced = grafana_sync.DataSource("h:5432", "iochub", "disable", SecretStr("x"), True).body()
    for name in ("uid", "name", "type", "access"):
        assert datasource[name] == synced[name], name
    assert set(datasource["jsonData"]) == set(synced["jsonData"])
    for name in ("postgresVersion", "timeInterval", "maxOpenConns", "connMaxLifetime"):
        assert datasource["jsonData"][name] == synced["jsonData"][name], name
    assert set(datasource["secureJsonData"]) == set(synced["secureJsonData"])
    config = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "iochub.yaml").read_text("utf-8"))
    (provider,) = config["providers"]
    assert (provider["folderUid"], provider["folder"]) == (
        grafana_sync.FOLDER_UID,
        grafana_sync.FOLDER_TITLE,
    )
    assert grafana_sync.load_dashboards() == {d["uid"]: d for d in DASHBOARDS.values()}
    assert kit.DATASOURCE_UID == grafana_sync.DATASOURCE_UID
