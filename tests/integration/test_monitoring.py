"""Monitoring end to end: a real Prometheus scrapes a live swarm; the dashboard's queries return data.

Plus the parts of `coordinator.metrics` that need no processes: event counters, label caps,
the in-loop HTTP exporter, and `autoswarm status --watch`'s view of a live coordinator.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from autoswarm.v1 import worker_pb2
from autoswarm.watch import RateWindow, watch_status
from autoswarm.coordinator.metrics import (
    MAX_HARDWARE_CLASSES,
    CoordinatorMetrics,
    metrics_host,
    start_exporter,
)
from swarm import CoordinatorProcess, free_port, needs, stop_process, wait_for, write_study

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "autoswarm.json"
PROMETHEUS = shutil.which("prometheus")
FAST_COORDINATOR = ("--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5")
# What Grafana would put in for the dashboard's variables. Prometheus scrapes every second
# here, so a 10 s rate window holds about ten samples: rate() always has two to work with.
RATE_INTERVAL = "10s"


# -- a real Prometheus --------------------------------------------------------------------

@dataclass
class PrometheusProcess:
    """The Debian `prometheus` binary on loopback, with its own config and tmp storage."""

    directory: Path
    targets: list[str]
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(textwrap.dedent(f"""\
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: autoswarm
                static_configs:
                  - targets: {json.dumps(self.targets)}
            """))
        self.port = free_port()
        with open(self.directory / "prometheus.log", "ab") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False
        wait_for(ready, 30, 0.2, "prometheus to be ready")

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")[-3000:]

    def query(self, expr: str) -> list[dict]:
        """An instant query through the HTTP API; fails the test on a query error."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"query {expr!r} failed: {exc.read().decode(errors='replace')}") from None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        stop_process(self.proc, 10)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator:
    started: list[PrometheusProcess] = []

    def start(targets: list[str]) -> PrometheusProcess:
        prom = PrometheusProcess(tmp_path / "prometheus", targets)
        started.append(prom)
        return prom.start()

    yield start
    for prom in started:
        prom.stop()


# -- reading the dashboard ----------------------------------------------------------------

def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows' nested panels included."""
    out = []

    def visit(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((panel.get("title", "?"), target["expr"]))
            visit(panel.get("panels", []))
    visit(dashboard["panels"])
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces $var and ${var} as Grafana would; an unknown variable fails the test."""
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"the dashboard uses ${name}, which this test does not know how to fill in"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def _finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


# -- the end-to-end test ------------------------------------------------------------------

@pytest.mark.integration
@needs(PROMETHEUS is not None, "needs the prometheus binary: apt-get install prometheus (scripts/test installs it)")
def test_prometheus_scrapes_a_live_swarm_and_every_dashboard_query_returns_data(
        tmp_path, start_worker, prometheus_factory):
    # A setup command, so the setup-time figures have something to report.
    study = write_study(tmp_path / "study", sleep=0.2, extra_toml='setup = "python -c pass"')
    coordinator = CoordinatorProcess(db=tmp_path / "swarm.db", log=tmp_path / "coordinator.log",
                                     args=FAST_COORDINATOR, metrics_port=free_port())
    prometheus = prometheus_factory([f"127.0.0.1:{coordinator.metrics_port}"])
    try:
        coordinator.start()
        ready = json.loads(coordinator.db.with_suffix(".ready").read_text())
        assert ready["metrics_port"] == coordinator.metrics_port
        with coordinator.control() as control:
            control.add_study(study)  # unbounded: the swarm keeps working while we query
        for name in ("alpha", "beta"):
            start_worker(coordinator.address, name)
        prometheus.wait_ready()

        # A refused call, so RPC metrics carry a code other than OK.
        channel, stub = coordinator.worker_stub()
        with channel, pytest.raises(grpc.RpcError) as refused:
            stub.Report(worker_pb2.ReportRequest(worker_id="w-nobody", lease_id="l-nothing"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND

        # Enough history for range functions: an improvement, a few evaluations, several scrapes.
        wait_for(lambda: (prometheus.value('autoswarm_improvements_total{study="tiny"}') or 0) >= 1
                 and (prometheus.value('autoswarm_evaluations_total{study="tiny"}') or 0) >= 6
                 and (prometheus.value("count_over_time(autoswarm_build_info[1m])") or 0) >= 8,
                 45, 0.5, f"prometheus to see the swarm improve\n{prometheus.log()}")
        # A worker joins the running swarm: its first task comes from Lease (busy workers get
        # theirs with their reports), so the long-poll panel has calls in its window.
        start_worker(coordinator.address, "gamma")
        wait_for(lambda: prometheus.value('sum(autoswarm_workers{state!="offline"})') == 3
                 and (prometheus.value('sum(increase(autoswarm_rpc_duration_seconds_count'
                                       '{grpc_method="Lease"}[5m]))') or 0) > 0,
                 45, 0.5, f"prometheus to see gamma join and a Lease call\n{prometheus.log()}")

        dashboard = json.loads(DASHBOARD.read_text())
        values = {"study": "tiny", "__rate_interval": RATE_INTERVAL}
        failures = []
        for title, expr in dashboard_exprs(dashboard):
            query = substitute(expr, values)
            # The swarm keeps going, so a series that is momentarily missing (a histogram
            # between two evaluations) shows up within a few scrapes.
            deadline = time.monotonic() + 10
            while not _finite(result := prometheus.query(query)) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not _finite(result):
                failures.append(f"{title}: {query} -> {result}")
        assert not failures, "dashboard queries without data:\n" + "\n".join(failures)

        for variable in dashboard["templating"]["list"]:
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
            assert "tiny" in {series["metric"].get(label) for series in prometheus.query(metric)}

        # The numbers mean what they say. Prometheus first: what it scraped is then in the history.
        champion = prometheus.value('autoswarm_champion_metric{study="tiny"}')
        recorded = prometheus.value('sum(autoswarm_results_total{study="tiny"})')
        with coordinator.control() as control:
            history = control.history("tiny")
            status = control.status()
        measured = {row.metric for row in history.rows if row.has_metric}
        assert champion in measured, "the champion gauge is a metric that a worker measured"
        assert champion > prometheus.value('autoswarm_study_initial_metric{study="tiny"}'), "maximize"
        assert 0 < recorded <= len(history.rows)
        assert prometheus.value('sum(autoswarm_tasks_leased_total{study="tiny"})') >= recorded
        assert prometheus.value('autoswarm_rpc_duration_seconds_count{grpc_method="Report",grpc_code="NOT_FOUND"}') == 1
        assert prometheus.value('sum(autoswarm_workers{state!="offline"})') == 3   # alpha, beta, gamma
        assert prometheus.value('sum(autoswarm_bundle_cache_lookups_total{outcome="miss"})') >= 2, \
            "each worker fetched the bundle once"
        assert prometheus.value('autoswarm_setup_duration_seconds_count{study="tiny"}') >= 2, \
            "each worker ran setup once"
        assert prometheus.query('{__name__=~"autoswarm_.+", worker=~".+"}') == [], "no per-worker label"

        # `autoswarm status --watch` shows the same swarm to a person.
        out = io.StringIO()
        view = watch_status(coordinator.address, interval=0.3, console=Console(file=out, width=200), polls=3)
        text = out.getvalue()
        assert "tiny" in text and "evals/min" in text and "workers:" in text
        assert view.rates["tiny"].per_minute() is not None
        assert view.response.studies[0].evaluations >= status.studies[0].evaluations

        # `autoswarm plot` draws it.
        png = tmp_path / "progress.png"
        plotted = subprocess.run([sys.executable, "-m", "autoswarm", "plot", "--study", "tiny", "-o", str(png),
                                  "--coordinator", coordinator.address], capture_output=True, text=True, timeout=60)
        assert plotted.returncode == 0, plotted.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png.read_bytes()[16:24]) == (1200, 600)
    finally:
        coordinator.kill()


# -- in-process parts ---------------------------------------------------------------------

def _samples(metrics: CoordinatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in metrics.registry.collect() for s in family.samples}


def test_events_count_into_a_registry_of_their_own():
    one, other = CoordinatorMetrics(process_metrics=False), CoordinatorMetrics(process_metrics=False)
    one.lease_granted("s", "explore")
    one.result_recorded("s", "explore", "ok", "keep", "cpu:x", {"evaluate_seconds": 3.0, "mutate_seconds": 0.0,
                                                               "setup_seconds": 0.0}, cache_hit=True)
    one.leases_closed("s", "baseline", "expired")
    one.claim("s", "claimed")
    samples = _samples(one)
    assert samples[("autoswarm_tasks_leased_total", (("kind", "explore"), ("study", "s")))] == 1
    assert samples[("autoswarm_tasks_expired_total", (("kind", "baseline"), ("study", "s")))] == 1
    assert samples[("autoswarm_results_total", (("decision", "keep"), ("kind", "explore"), ("status", "ok"),
                                                ("study", "s")))] == 1
    assert samples[("autoswarm_evaluation_duration_seconds_count", (("hardware_class", "cpu:x"), ("study", "s")))] == 1
    assert samples[("autoswarm_claims_total", (("outcome", "claimed"), ("study", "s")))] == 1
    # Counters a study has not used yet are there, at zero, for dashboards to read.
    assert samples[("autoswarm_claims_total", (("outcome", "refuted"), ("study", "s")))] == 0
    assert samples[("autoswarm_tasks_released_total", (("kind", "verify"), ("study", "s")))] == 0
    # Zero timings mean "did not happen": no mutation, no setup observed.
    assert ("autoswarm_mutate_duration_seconds_count", (("study", "s"),)) not in samples
    # Each coordinator has its own registry: nothing leaks between instances.
    assert not any(name.startswith("autoswarm_tasks_leased") for name, _ in _samples(other))


def test_workers_cannot_create_unbounded_hardware_class_series():
    metrics = CoordinatorMetrics(process_metrics=False)
    for i in range(MAX_HARDWARE_CLASSES + 50):
        metrics.result_recorded("s", "explore", "ok", "discard", f"cpu:made-up-{i}", {"evaluate_seconds": 1.0},
                                cache_hit=True)
    classes = {dict(labels).get("hardware_class") for name, labels in _samples(metrics)
               if name == "autoswarm_evaluation_duration_seconds_count"}
    assert len(classes) == MAX_HARDWARE_CLASSES + 1 and "other" in classes


def test_metrics_listen_where_grpc_listens():
    assert metrics_host("0.0.0.0:50051") == "0.0.0.0"
    assert metrics_host("127.0.0.1:0") == "127.0.0.1"
    assert metrics_host("[::]:50051") == "::"


def test_exporter_serves_metrics_in_the_event_loop_and_refuses_other_paths():
    async def scenario() -> tuple[int, str, int, str]:
        metrics = CoordinatorMetrics(process_metrics=False)
        metrics.lease_granted("s", "explore")
        exporter = await start_exporter(metrics, "127.0.0.1", 0)
        try:
            async def get(path: str, accept: str = "") -> tuple[int, str]:
                reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n".encode())
                await writer.drain()
                raw = await reader.read()
                writer.close()
                head, _, body = raw.decode().partition("\r\n\r\n")
                return int(head.split()[1]), body
            code, body = await get("/metrics")
            missing, _ = await get("/elsewhere")
            _, openmetrics = await get("/metrics", "application/openmetrics-text; version=1.0.0")
            return code, body, missing, openmetrics
        finally:
            await exporter.close()

    code, body, missing, openmetrics = asyncio.run(scenario())
    assert code == 200 and 'autoswarm_tasks_leased_total{kind="explore",study="s"} 1.0' in body
    assert missing == 404
    assert openmetrics.rstrip().endswith("# EOF")


def test_exporter_port_in_use_is_a_clear_error():
    async def scenario() -> str:
        blocker = await start_exporter(CoordinatorMetrics(process_metrics=False), "127.0.0.1", 0)
        try:
            with pytest.raises(OSError) as exc:
                await start_exporter(CoordinatorMetrics(process_metrics=False), "127.0.0.1", blocker.port)
            return str(exc.value)
        finally:
            await blocker.close()

    assert "--metrics-port" in asyncio.run(scenario())


def test_evaluations_per_minute_over_a_sliding_window():
    window = RateWindow(window=60)
    assert window.per_minute() is None
    for second in range(0, 121, 10):
        window.add(float(second), second // 2)  # one evaluation every two seconds
    assert window.per_minute() == pytest.approx(30.0)
    window.add(130.0, 0)  # the total went back: another database; start over
    assert window.per_minute() is None
