"""deploy/prometheus: the scrape config and alerting rules, checked by promtool where it is
installed (scripts/system-deps takes it from Debian's prometheus package), and always
against the metrics the hub really exposes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import hub.server.app  # noqa: F401  (registers every iochub_* metric)
from tests.deploy.support import DEPLOY, tool

PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "iochub.rules.yml"


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


@pytest.fixture
def promtool() -> str:
    found = tool("promtool")
    if found is None:
        pytest.skip("promtool is not installed (scripts/system-deps installs it)")
    return found


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", RULES.name], PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_as_their_unit_tests_say(promtool: str) -> None:
    result = run([promtool, "test", "rules", "iochub.rules.test.yml"], PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_scrape_config(promtool: str, tmp_path: Path) -> None:
    token = tmp_path / "iochub_scrape_token"
    token.write_text("scrape-token")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/secrets/iochub_scrape_token", str(token))
    config = config.replace("  - iochub.rules.yml", f"  - {RULES}")
    (tmp_path / "prometheus.yml").write_text(config)
    result = run([promtool, "check", "config", "prometheus.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_severity_and_summary() -> None:
    found = rules()
    assert len(found) >= 10
    for rule in found:
        assert re.fullmatch(r"Iochub[A-Za-z]+", rule["alert"]), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["expr"].strip(), rule["alert"]


def test_rules_read_only_metrics_the_hub_exposes() -> None:
    # Family names: counters without _total, histograms without _bucket/_count/_sum.
    exposed = {family.name for family in REGISTRY.collect() if family.name.startswith("iochub_")}
    for rule in rules():
        for name in re.findall(r"\biochub_[a-z_]+", rule["expr"]):
            family = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert family in exposed, f"{rule['alert']} reads {name}: the hub has no {family}"


def test_kubernetes_scrape_job_keeps_the_hub_service_port() -> None:
    job = yaml.safe_load((PROMETHEUS / "kubernetes-scrape.yml").read_text())["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["credentials_file"].endswith("iochub_scrape_token")
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"] == "iochub;http"
    service = next(
        doc
        for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / "hub.yaml").read_text())
        if doc and doc["kind"] == "Service" and doc["metadata"]["name"] == "iochub"
    )
    assert "http" in {port["name"] for port in service["spec"]["ports"]}
