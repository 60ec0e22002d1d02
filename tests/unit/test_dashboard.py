"""The Grafana dashboard, its provisioning and the compose stack fit together and fit the metrics.

Whether each query returns data from a live swarm is tested in
tests/integration/test_monitoring.py; here: the files are well-formed for provisioning and
refer to one another and to metrics that the coordinator really exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autoswarm.cli import app
from autoswarm.coordinator.census import WorkerTally
from autoswarm.coordinator.engine import StudySummary, WorkerSummary
from autoswarm.coordinator.metrics import DEFAULT_METRICS_PORT, CoordinatorMetrics
from autoswarm.coordinator.store import ChampionRecord, WorkerRecord
from swarm import needs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "autoswarm.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def datasource_refs(node: object) -> list[dict]:
    """Every {"type": ..., "uid": ...} datasource reference anywhere in the dashboard."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"])
        for value in node.values():
            found.extend(datasource_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(datasource_refs(value))
    return found


def provisioned_datasources() -> list[dict]:
    files = sorted(DATASOURCES.glob("*.y*ml"))
    assert files, f"no datasource provisioning file in {DATASOURCES}"
    return [ds for f in files for ds in yaml.safe_load(f.read_text())["datasources"]]


def test_panels_have_unique_ids_and_fit_the_grid(dashboard):
    panels = all_panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for p in panels:
        grid = p["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] != "row":
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), f"{p['title']}: targets need distinct refIds"
            assert all(t["expr"].strip() for t in p["targets"]), p["title"]


def test_dashboard_has_what_provisioning_needs(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    assert "__inputs" not in dashboard and "${DS_" not in DASHBOARD.read_text(), \
        "an export 'for sharing externally' cannot be provisioned: it waits for a datasource to be picked"


def test_every_datasource_the_dashboard_uses_is_provisioned(dashboard):
    provisioned = {ds["uid"]: ds for ds in provisioned_datasources()}
    refs = [ref for ref in datasource_refs(dashboard) if ref.get("type") != "grafana"]
    assert refs
    for ref in refs:
        assert ref["uid"] in provisioned, f"datasource uid {ref['uid']!r} is not in {DATASOURCES}"
        assert provisioned[ref["uid"]]["type"] == ref["type"]


def test_dashboard_covers_what_operators_asked_for(dashboard):
    exprs = " ".join(t["expr"] for p in all_panels(dashboard["panels"]) for t in p.get("targets", []))
    for needed in ("autoswarm_champion_metric", "autoswarm_results_total", "autoswarm_workers",
                   "autoswarm_claims_total", "autoswarm_evaluation_duration_seconds_bucket",
                   "autoswarm_rpc_duration_seconds_bucket", "autoswarm_tasks_expired_total",
                   "autoswarm_credit_granted", "autoswarm_discoveries"):
        assert needed in exprs, f"no panel shows {needed}"


def _fake_engine():
    champion = ChampionRecord("s", 1, "v1", 0.5, "r1", 1.0)
    worker = WorkerRecord("w-1", "alpha", {}, "cpu:x", 2, ("params",), "idle", 0.0, 0.0)

    class Engine:
        def study_summaries(self):
            return [StudySummary("s", "loss", "minimize", champion, 0.9, 10, 1, 1, 0, "")]

        def worker_tally(self):
            return WorkerTally.of([WorkerSummary(worker, "working", 1.0, 1, 5)])
    return Engine()


def exposed_metric_names() -> set[str]:
    """Every sample name a coordinator exposes once each kind of event has happened."""
    metrics = CoordinatorMetrics()
    metrics.watch(_fake_engine())
    metrics.lease_granted("s", "explore")
    metrics.result_recorded("s", "explore", "ok", "keep", "cpu:x",
                            {"evaluate_seconds": 1.0, "mutate_seconds": 0.1, "setup_seconds": 2.0}, cache_hit=False)
    metrics.observe_commit(0.001)
    metrics.rpc_seconds.labels("autoswarm.v1.WorkerService", "Lease", "OK").observe(0.01)
    metrics.watch_credit(_fake_standings())
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def _fake_standings():
    """A standings book whose latest rebuild has one volunteer in one team."""
    from autoswarm.coordinator.standings import Snapshot, Volunteer, team_credit

    class Book:
        teams = team_credit(Snapshot(0.0, {}, {
            "alice": Volunteer("alice", "red", False, 10.0, 1.0, 1, 50.0, 5, 6, "", (), ())}, {}))
    return Book()


def test_every_metric_the_dashboard_queries_is_one_the_coordinator_exposes(dashboard):
    exposed = exposed_metric_names()
    exprs = [t["expr"] for p in all_panels(dashboard["panels"]) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    for expr in exprs:
        no_labels = re.sub(r"\{[^}]*\}|\[[^]]*\]", " ", expr)  # matchers and range windows
        names = re.findall(r"\b(?:autoswarm|process)_[a-z0-9_]+", no_labels)
        assert names, f"{expr!r} queries no autoswarm metric"
        for name in names:
            assert name in exposed, f"{expr!r} queries {name!r}, which the coordinator does not expose"


def test_metric_names_follow_prometheus_conventions():
    metrics = CoordinatorMetrics()
    metrics.watch(_fake_engine())
    for family in metrics.registry.collect():
        if not family.name.startswith("autoswarm_"):
            continue
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: durations are in seconds"
        assert not re.search(r"millis|_ms\b|minutes", family.name)
        for sample in family.samples:
            assert not {"worker", "worker_id", "worker_name"} & set(sample.labels), \
                f"{sample.name} has a per-worker label; volunteers are many"


def test_evaluation_buckets_reach_hours():
    metrics = CoordinatorMetrics(process_metrics=False)
    metrics.result_recorded("s", "explore", "ok", "discard", "cpu:x", {"evaluate_seconds": 1.0}, cache_hit=True)
    bounds = [float(s.labels["le"]) for f in metrics.registry.collect() for s in f.samples
              if s.name == "autoswarm_evaluation_duration_seconds_bucket"]
    assert max(b for b in bounds if b != float("inf")) >= 4 * 3600


def test_compose_provisions_grafana_from_these_files():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"coordinator", "prometheus", "grafana"} <= set(services)
    workers = [name for name, s in services.items() if "worker" in s.get("command", [])]
    assert len(workers) == 2, "the stack runs two workers"
    for name in workers:
        assert services[name]["build"]["dockerfile"] == "deploy/worker/Dockerfile"
        assert services[name]["build"]["target"] == "cpu"
    for name, service in services.items():
        build = service.get("build")
        if build and build["dockerfile"] != "deploy/worker/Dockerfile":
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name

    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["grafana"]["volumes"] if m.startswith("./")}
    provider = yaml.safe_load(next(PROVIDERS.glob("*.y*ml")).read_text())["providers"][0]
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert (COMPOSE.parent / mounts[provider["options"]["path"]] / DASHBOARD.name).is_file(), \
        "Grafana's dashboard provider reads the folder compose mounts the dashboard into"
    prom_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["prometheus"]["volumes"] if m.startswith("./")}
    assert (COMPOSE.parent / prom_mounts["/etc/prometheus/prometheus.yml"]).resolve() == PROMETHEUS_CONFIG

    # Grafana reaches Prometheus, and Prometheus the coordinator's metrics port, by service name.
    datasource, = [ds for ds in provisioned_datasources() if ds["type"] == "prometheus"]
    assert datasource["url"] == "http://prometheus:9090"
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = [t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    command = services["coordinator"]["command"]
    port = command[command.index("--metrics-port") + 1]
    assert targets == [f"coordinator:{port}"]
    assert "0.0.0.0:" in command[command.index("--listen") + 1], "metrics follow --listen's host"


def test_cli_default_metrics_port_is_the_documented_one():
    result = CliRunner().invoke(app, ["coordinator", "--help"], env={"COLUMNS": "200"})
    assert "--metrics-port" in result.output
    assert str(DEFAULT_METRICS_PORT) in result.output
    assert f":{DEFAULT_METRICS_PORT}" in (ROOT / "README.md").read_text()


@needs(shutil.which("promtool") is not None, "needs promtool (Debian package prometheus; CI installs it)")
def test_the_stack_prometheus_config_is_valid():
    checked = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
