"""deploy/kubernetes: every manifest valid against the Kubernetes API schemas
(kubernetes-validate, strict: unknown fields refused), and the cluster wired as documented.

All resources here are core Kubernetes kinds (no CRDs: EMQX and Patroni run as plain
StatefulSets), so each one is validated in full; kustomization.yaml, which is no API
resource, is checked for the files it names.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.support import DEPLOY, load_all

K8S = DEPLOY / "kubernetes"
# The oldest Kubernetes still supported upstream when this was written, and the newest
# schema the validator ships.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in load_all(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name)


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes(path: Path, version: str) -> None:
    for doc in load_all(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    hub = copy.deepcopy(find("StatefulSet", "iochub"))
    container(hub, "hub")["readinessProbes"] = container(hub, "hub").pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hub, VERSIONS[0], strict=True)


def test_kustomization_names_every_manifest_and_secret_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    generated = {
        s["name"]: [Path(f).name for f in s["files"]] for s in kustomization["secretGenerator"]
    }
    referenced: dict[str, set[str]] = {}
    for doc in resources():
        text = yaml.safe_dump(doc)
        for secret in generated:
            if f"secretName: {secret}" in text or f"name: {secret}\n" in text:
                referenced.setdefault(secret, set())
    assert set(referenced) == set(generated)
    keys = {k for files in generated.values() for k in files}
    hub = find("StatefulSet", "iochub")
    assert container(hub, "hub")["envFrom"][0]["configMapRef"]["name"] == "iochub-settings"
    for doc in resources():
        for ref in _secret_key_refs(doc):
            assert ref in keys, f"{doc['metadata']['name']} reads secret key {ref}, never generated"


def _secret_key_refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            found.append(node["secretKeyRef"]["key"])
        for item in node.get("items", []) if "secretName" in node else []:
            found.append(item["key"])
        for value in node.values():
            found += _secret_key_refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _secret_key_refs(value)
    return found


def test_hub_processes_behind_a_service_with_probes_and_a_budget() -> None:
    hub = find("StatefulSet", "iochub")
    assert hub["spec"]["replicas"] >= 3
    assert hub["spec"]["podManagementPolicy"] == "Parallel"
    spec = container(hub, "hub")
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["resources"]["requests"]["cpu"] and spec["resources"]["limits"]["memory"]
    client_id = next(e for e in spec["env"] if e["name"] == "IOCHUB_MQTT__CLIENT_ID")
    assert client_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    service = find("Service", "iochub")
    labels = hub["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ingress = find("Ingress", "iochub")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "iochub", "port": {"name": "http"}}
    public = find("ConfigMap", "iochub-settings")["data"]["IOCHUB_HTTP__PUBLIC_URL"]
    assert public == f"https://{ingress['spec']['rules'][0]['host']}"
    budget = find("PodDisruptionBudget", "iochub")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pod = hub["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["readOnlyRootFilesystem"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    claim = find("PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "audio is shared by every process"


def test_migrate_job_runs_the_cli() -> None:
    job = find("Job", "iochub-migrate")
    spec = job["spec"]["template"]["spec"]["containers"][0]
    assert spec["args"] == ["migrate"]
    assert spec["image"] == container(find("StatefulSet", "iochub"), "hub")["image"]


def test_broker_cluster_shares_subscriptions_and_reads_identities_from_the_database() -> None:
    emqx = find("StatefulSet", "emqx")
    assert emqx["spec"]["replicas"] >= 3
    conf = find("ConfigMap", "emqx-config")["data"]["emqx.conf.template"]
    assert "shared_subscription = true" in conf
    assert "no_match = deny" in conf
    assert "FROM broker_authn WHERE username = ${username}" in conf
    assert "FROM broker_acl WHERE username = ${username}" in conf
    assert "salt_position = prefix" in conf
    settings = find("ConfigMap", "iochub-settings")["data"]
    assert settings["IOCHUB_MQTT__SHARED_GROUP"] and settings["IOCHUB_MQTT__HOST"] == "emqx"
    assert settings["IOCHUB_MQTT__IDENTITIES"] == "database"
    migration = (
        Path(__file__).parents[2] / "hub/storage/migrations/0017_broker_identity_views.sql"
    ).read_text()
    assert "CREATE VIEW broker_authn" in migration and "CREATE VIEW broker_acl" in migration
    assert find("PodDisruptionBudget", "emqx")["spec"]["maxUnavailable"] == 1


def test_timescaledb_runs_a_primary_and_a_streaming_replica() -> None:
    database = find("StatefulSet", "timescaledb")
    assert database["spec"]["replicas"] == 2
    spec = container(database, "timescaledb")
    assert spec["image"].startswith("timescale/timescaledb-ha:")
    assert spec["command"][0] == "patroni"
    patroni = yaml.safe_load(find("ConfigMap", "timescaledb-patroni")["data"]["patroni.yaml"])
    parameters = patroni["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert parameters["shared_preload_libraries"] == "timescaledb"
    assert parameters["hot_standby"] == "on" and parameters["max_wal_senders"] >= 2
    assert patroni["kubernetes"]["use_endpoints"] is True
    primary = find("Service", "timescaledb")
    assert "selector" not in primary["spec"], "Patroni points the primary Service at the leader"
    replica = find("Service", "timescaledb-replica")
    assert replica["spec"]["selector"]["role"] == "replica"
    assert "timescaledb:5432" in find("ConfigMap", "emqx-config")["data"]["emqx.conf.template"]


@pytest.mark.parametrize(
    ("password", "accepted"), [("abc123DEF", True), ("bad&pw", False), ("", False)]
)
def test_emqx_init_fills_in_the_database_password(
    tmp_path: Path, password: str, accepted: bool
) -> None:
    """The init container's script, run with sh on the real template: the password goes in
    both authenticator and authorizer, or the pod stops with a clear message."""
    emqx = find("StatefulSet", "emqx")
    script = emqx["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    for folder in ("secrets", "template", "config"):
        (tmp_path / folder).mkdir()
        script = script.replace(f"/{folder}/", f"{tmp_path}/{folder}/")
    (tmp_path / "secrets" / "broker_db_password").write_text(password + "\n")
    template = find("ConfigMap", "emqx-config")["data"]["emqx.conf.template"]
    (tmp_path / "template" / "emqx.conf.template").write_text(template)
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    rendered = tmp_path / "config" / "emqx.conf"
    if accepted:
        assert result.returncode == 0, result.stderr
        text = rendered.read_text()
        assert text.count(f'password = "{password}"') == 2 and "@BROKER_DB_PASSWORD@" not in text
    else:
        assert result.returncode != 0 and "letters and digits" in result.stderr
