"""Prometheus metrics of the coordinator, and the HTTP endpoint Prometheus scrapes.

Three sources feed one `CollectorRegistry` per coordinator (never prometheus-client's global
REGISTRY, so two coordinators in one process — tests, benchmarks — never share counters):

- **events** from the engine (`EngineEvents`): tasks leased / completed / expired / released,
  results, worker-side timings (mutator, setup, evaluation, bundle cache) and the acceptance
  funnel. Counters count since this process started; `rate()` and `increase()` handle restarts.
- **the engine's own state, read at scrape time** by a custom collector: champions, study
  counters, leases in flight and workers by state and hardware class. Computed on every scrape,
  so a gauge can never go stale (a worker that vanishes stops being counted as `working`) and
  figures that the store keeps (improvements, evaluations) survive a coordinator restart.
- **the transport**: a gRPC server interceptor times every RPC by method and status code, and
  the store reports how long each commit took.

No label names a worker: volunteers are many and come and go. Labels that a worker can
influence (hardware class, the state it reports) are capped in cardinality (`LabelCap`).
Naming follows Prometheus conventions: prefix `autoswarm_`, base units (seconds), `_total`
for counters.

The exporter runs inside the coordinator's asyncio loop rather than in prometheus-client's
thread: the engine and the store are owned by that loop and are not thread-safe, and the
scrape-time collector reads them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from autoswarm import __version__, words
from autoswarm.coordinator.census import WorkerTally
from autoswarm.coordinator.engine import StudySummary
from autoswarm.slot_time import ACTIVITIES
from autoswarm.v1 import worker_pb2

log = logging.getLogger("autoswarm.coordinator.metrics")

PREFIX = "autoswarm"
DEFAULT_METRICS_PORT = 9464  # the port OpenTelemetry's Prometheus exporters use by convention

KINDS: tuple[str, ...] = tuple(words.KIND_WORDS.values())
CLAIM_OUTCOMES: tuple[str, ...] = ("claimed", "verified", "refuted", "accepted")

# Evaluations run under a study's time budget: seconds for a toy study, minutes for
# autoresearch's 5-minute runs, hours for long trainings. Buckets must cover all of them.
EVALUATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)
# Mutators: microseconds for `params`, minutes for an agent CLI.
MUTATE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# Setup: a data download or a tokenizer build, once per worker per bundle.
SETUP_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# RPCs: sub-millisecond for Heartbeat, up to the 60 s long-poll of Lease.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# SQLite commits in WAL mode: tens of microseconds without fsync, milliseconds with.
COMMIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

MAX_HARDWARE_CLASSES = 64
MAX_WORKER_STATES = 16


class EngineView(Protocol):
    """What the scrape-time collector reads from the engine."""

    def study_summaries(self) -> list[StudySummary]: ...

    def worker_tally(self) -> WorkerTally: ...


@dataclass
class LabelCap:
    """Lets at most `limit` distinct values of a label through; later newcomers become `other`.

    Hardware class strings and reported states come from workers, which are untrusted: without
    a cap, a volunteer could create unbounded time series in Prometheus.
    """

    limit: int
    other: str = "other"
    seen: set[str] = field(default_factory=set)

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return self.other
        self.seen.add(value)
        return value


# Per-study figures read from the engine at scrape time: (name, family, help, value).
_STUDY_FAMILIES: tuple[tuple[str, type, str, Callable[[StudySummary], float | None]], ...] = (
    ("champion_metric", GaugeMetricFamily, "The champion's metric, per study (absent until measured).",
     lambda s: s.champion.metric),
    ("study_initial_metric", GaugeMetricFamily, "The metric of the study's initial version.",
     lambda s: s.initial_metric),
    ("champion_timestamp_seconds", GaugeMetricFamily, "When the current champion was accepted (Unix time).",
     lambda s: s.champion.created if s.champion.metric is not None else None),
    ("improvements", CounterMetricFamily, "Champion replacements since the study began (kept in the store).",
     lambda s: s.improvements),
    ("evaluations", CounterMetricFamily, "Results recorded since the study began (kept in the store).",
     lambda s: s.evaluations),
    ("study_max_evaluations", GaugeMetricFamily, "The study's evaluation budget (0: unbounded).",
     lambda s: s.max_evaluations),
    ("study_llm_tokens", CounterMetricFamily, "LLM tokens the study's agents used (from each answer's usage).",
     lambda s: s.llm_tokens),
    ("study_cost_usd", CounterMetricFamily, "What the study's agents cost, in US dollars (at the configured prices).",
     lambda s: s.cost_usd),
    ("study_cost_per_evaluation_usd", GaugeMetricFamily, "The study's agent cost per evaluation, in US dollars.",
     lambda s: s.cost_per_evaluation),
    ("study_cost_per_improvement_usd", GaugeMetricFamily,
     "The study's agent cost per accepted improvement, in US dollars (absent before the first).",
     lambda s: s.cost_per_improvement),
    ("study_done", GaugeMetricFamily, "1 when the study has used its budget or stopped on an error.",
     lambda s: 1 if s.done else 0),
    ("leases_in_flight", GaugeMetricFamily, "Tasks leased and not yet reported: the lease queue depth.",
     lambda s: s.in_flight),
    ("claims_pending", GaugeMetricFamily, "Claimed improvements waiting for verification.",
     lambda s: s.pending_claims),
)


class _EngineCollector:
    """Gauges and store-backed counters computed from the engine on every scrape."""

    def __init__(self, metrics: CoordinatorMetrics) -> None:
        self._metrics = metrics
        self.engine: EngineView | None = None

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        if engine is None:
            return
        info = GaugeMetricFamily(f"{PREFIX}_study_info", "A study, with its metric name and direction (always 1).",
                                 labels=["study", "metric", "direction"])
        families = [(family(f"{PREFIX}_{name}", help_text, labels=["study"]), value)
                    for name, family, help_text, value in _STUDY_FAMILIES]
        for s in engine.study_summaries():
            self._metrics.study_seen(s.name)
            info.add_metric([s.name, s.metric, s.direction], 1)
            for metric_family, value in families:
                number = value(s)
                if number is not None:  # a champion not measured yet has no metric: no sample
                    metric_family.add_metric([s.name], number)
        yield info
        yield from (metric_family for metric_family, _ in families)

        # Summed per raw value by the census (census.py: not on the loop at 100,000 workers), capped here.
        tally = engine.worker_tally()
        workers: dict[tuple[str, str], int] = {}
        slots: dict[str, int] = {}
        running: dict[str, int] = {}
        quarantined: dict[str, int] = {}
        slot_seconds: dict[tuple[str, str], float] = {}
        for (raw_state, raw_hw), n in tally.workers.items():
            key = (self._metrics.worker_state(raw_state), self._metrics.hardware_class(raw_hw))
            workers[key] = workers.get(key, 0) + n
        for raw_hw, n in tally.quarantined.items():
            hw = self._metrics.hardware_class(raw_hw)
            quarantined[hw] = quarantined.get(hw, 0) + n
        for raw_hw, n in tally.slots.items():
            hw = self._metrics.hardware_class(raw_hw)
            slots[hw] = slots.get(hw, 0) + n
            running[hw] = running.get(hw, 0) + tally.running.get(raw_hw, 0)
        for (raw_hw, activity), seconds in tally.slot_seconds.items():
            key = (self._metrics.hardware_class(raw_hw), activity)
            slot_seconds[key] = slot_seconds.get(key, 0.0) + seconds
        by_state = GaugeMetricFamily(f"{PREFIX}_workers", "Known workers by the state they report and hardware class.",
                                     labels=["state", "hardware_class"])
        for (state, hw), n in sorted(workers.items()):
            by_state.add_metric([state, hw], n)
        slot_family = GaugeMetricFamily(f"{PREFIX}_worker_slots", "Task slots of workers that are not offline.",
                                        labels=["hardware_class"])
        running_family = GaugeMetricFamily(f"{PREFIX}_worker_tasks_running", "Tasks running on workers, by hardware class.",
                                           labels=["hardware_class"])
        for hw in sorted(slots):
            slot_family.add_metric([hw], slots[hw])
            running_family.add_metric([hw], running[hw])
        quarantine_family = GaugeMetricFamily(
            f"{PREFIX}_workers_quarantined", "Workers whose claims failed verification too often; their claims are ignored.",
            labels=["hardware_class"])
        for hw in sorted(quarantined):
            quarantine_family.add_metric([hw], quarantined[hw])
        share_family = GaugeMetricFamily(
            f"{PREFIX}_slot_time_share", "Share of the slots' time spent evaluating, mutating (the device waits "
            "for its agent) or waiting for work, over workers that are not offline.",
            labels=["hardware_class", "activity"])
        for hw in sorted({hw for hw, _ in slot_seconds}):
            total = sum(slot_seconds[(hw, activity)] for activity in ACTIVITIES)
            for activity in ACTIVITIES:
                share_family.add_metric([hw, activity], slot_seconds[(hw, activity)] / total if total > 0 else 0.0)
        yield from (by_state, slot_family, running_family, quarantine_family, share_family)


class CoordinatorMetrics:
    """The coordinator's metrics. Implements `coordinator.events.EngineEvents`."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        self.hardware_class = LabelCap(MAX_HARDWARE_CLASSES)
        self.worker_state = LabelCap(MAX_WORKER_STATES)
        self._studies: set[str] = set()
        # Registered first, so the zero-valued series it creates for a new study (see
        # `study_seen`) are in the same scrape: the registry collects in registration order.
        self._engine_collector = _EngineCollector(self)
        self.registry.register(self._engine_collector)
        r, p = self.registry, PREFIX

        Info(f"{p}_build", "The coordinator's build.", registry=r).info({
            "version": __version__, "python_version": platform.python_version(), "grpc_version": grpc.__version__,
        })
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

        self.tasks_leased = Counter(f"{p}_tasks_leased_total", "Tasks handed to workers.", ["study", "kind"], registry=r)
        self.tasks_completed = Counter(f"{p}_tasks_completed_total", "Leased tasks whose result was recorded.",
                                       ["study", "kind"], registry=r)
        self.tasks_expired = Counter(f"{p}_tasks_expired_total", "Leases that passed their deadline; the task is reissued.",
                                     ["study", "kind"], registry=r)
        self.tasks_released = Counter(f"{p}_tasks_released_total", "Leases a stopping worker handed back.",
                                      ["study", "kind"], registry=r)
        self.results = Counter(f"{p}_results_total", "Recorded results by worker status and coordinator decision.",
                               ["study", "kind", "status", "decision"], registry=r)
        self.claims = Counter(f"{p}_claims_total",
                              "Acceptance funnel: improvements claimed, verified, refuted and accepted.",
                              ["study", "outcome"], registry=r)
        self.evaluation_seconds = Histogram(f"{p}_evaluation_duration_seconds",
                                            "Wall time of evaluations as workers report it.",
                                            ["study", "hardware_class"], buckets=EVALUATION_BUCKETS, registry=r)
        self.mutate_seconds = Histogram(f"{p}_mutate_duration_seconds", "Time mutators took to edit the target.",
                                        ["study"], buckets=MUTATE_BUCKETS, registry=r)
        self.setup_seconds = Histogram(f"{p}_setup_duration_seconds",
                                       "Time study setup took (once per worker per bundle).",
                                       ["study"], buckets=SETUP_BUCKETS, registry=r)
        self.bundle_cache = Counter(f"{p}_bundle_cache_lookups_total",
                                    "Workers' bundle cache lookups for reported tasks, by hit or miss.",
                                    ["study", "outcome"], registry=r)
        self.rpc_seconds = Histogram(f"{p}_rpc_duration_seconds", "Server-side latency of gRPC calls.",
                                     ["grpc_service", "grpc_method", "grpc_code"], buckets=RPC_BUCKETS, registry=r)
        self.commit_seconds = Histogram(f"{p}_store_commit_duration_seconds", "Latency of store transactions.",
                                        buckets=COMMIT_BUCKETS, registry=r)

    # -- wiring ---------------------------------------------------------------------------

    def watch(self, engine: EngineView) -> None:
        """Reads gauges from `engine` on every scrape."""
        self._engine_collector.engine = engine
        for s in engine.study_summaries():
            self.study_seen(s.name)

    def watch_credit(self, standings: Any) -> None:
        """Adds the credit gauges (`standings.CreditCollector` over a `StandingsBook`) to this registry."""
        from autoswarm.coordinator.standings import CreditCollector  # standings imports the engine, as we do

        self.registry.register(CreditCollector(standings))

    def study_seen(self, study: str) -> None:
        """Creates a study's counters at zero, so that queries over them return 0, not nothing.

        A dashboard panel on lease expiries or on the acceptance funnel should read 0 for a
        healthy study, not "no data"; and `increase()` needs the zero to see the first event.
        """
        if study in self._studies:
            return
        self._studies.add(study)
        for kind in KINDS:
            for counter in (self.tasks_leased, self.tasks_completed, self.tasks_expired, self.tasks_released):
                counter.labels(study, kind)
        for outcome in CLAIM_OUTCOMES:
            self.claims.labels(study, outcome)
        for outcome in ("hit", "miss"):
            self.bundle_cache.labels(study, outcome)

    def observe_commit(self, seconds: float) -> None:
        """`Store(on_commit=...)`: one committed transaction took `seconds`."""
        self.commit_seconds.observe(seconds)

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """Times the server's RPCs. Every worker-facing method's OK series exists from the start,
        at zero, so that a rate has a first sample to rise from: busy workers lease through
        Report, and a Lease series first seen already holding its few calls would give the
        dashboard's long-poll panel no data."""
        service = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]
        for method in service.methods:
            self.rpc_seconds.labels(service.full_name, method.name, grpc.StatusCode.OK.name)
        return RpcMetricsInterceptor(self.rpc_seconds)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (OpenMetrics or Prometheus text)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # -- EngineEvents ---------------------------------------------------------------------

    def lease_granted(self, study: str, kind: str) -> None:
        self.study_seen(study)
        self.tasks_leased.labels(study, kind).inc()

    def leases_closed(self, study: str, kind: str, reason: str) -> None:
        self.study_seen(study)
        (self.tasks_expired if reason == "expired" else self.tasks_released).labels(study, kind).inc()

    def result_recorded(self, study: str, kind: str, status: str, decision: str, hardware_class: str,
                        timings: Mapping[str, float], cache_hit: bool) -> None:
        self.study_seen(study)
        self.tasks_completed.labels(study, kind).inc()
        self.results.labels(study, kind, status, decision).inc()
        # Zero means "did not happen" (no setup this time, no mutation for a baseline); negative
        # values come only from a broken or lying worker. Neither belongs in a histogram.
        evaluate = timings.get("evaluate_seconds", 0.0)
        if evaluate > 0:
            self.evaluation_seconds.labels(study, self.hardware_class(hardware_class)).observe(evaluate)
        mutate = timings.get("mutate_seconds", 0.0)
        if mutate > 0:
            self.mutate_seconds.labels(study).observe(mutate)
        setup = timings.get("setup_seconds", 0.0)
        if setup > 0:
            self.setup_seconds.labels(study).observe(setup)
        self.bundle_cache.labels(study, "hit" if cache_hit else "miss").inc()

    def champion_changed(self, study: str, metric: float, improvement: bool) -> None:
        # The champion gauges and the improvement count are read from the engine at scrape
        # time, so they are right after a restart too; nothing to count here.
        self.study_seen(study)

    def claim(self, study: str, outcome: str) -> None:
        self.study_seen(study)
        self.claims.labels(study, outcome).inc()


# -- gRPC ---------------------------------------------------------------------------------

def _code_name(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> str:
    code = context.code()
    if code is None:
        return default.name
    if isinstance(code, grpc.StatusCode):
        return code.name
    # Some grpcio versions hand back the raw integer; map it to the enum's name.
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate.name
    return str(code)


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times every RPC the server implements, labelled by service, method and status code.

    Called for every RPC, so what can be done once is: each method's wrapped handler is kept
    (rebuilt only when the server hands over another handler for it, such as the auth
    interceptor's refusal), and so is each histogram child (`labels()` takes a lock and checks
    its arguments on every call). ~45 us a call before, on this machine's CPU."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}   # method: (real, wrapped)
        self._children: dict[tuple[str, str], Any] = {}         # (method path, code name): histogram child

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            # An unknown method: gRPC answers UNIMPLEMENTED. The name is the client's choice,
            # so it must not become a label value (nor a key kept here).
            return handler
        path = handler_call_details.method
        kept = self._handlers.get(path)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self._wrap(path, handler)
        self._handlers[path] = (handler, wrapped)      # one per method the server implements
        return wrapped

    def _observe(self, path: str, code: str, seconds: float) -> None:
        child = self._children.get((path, code))
        if child is None:
            service, _, method = path.lstrip("/").rpartition("/")
            child = self._children[(path, code)] = self._histogram.labels(service, method, code)
        child.observe(seconds)

    def _wrap(self, path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        observe = self._observe
        perf_counter = time.perf_counter

        def wrap_unary_response(behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
            async def call(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                started = perf_counter()
                code = grpc.StatusCode.UNKNOWN.name
                try:
                    response = await behavior(request_or_iterator, context)
                    code = _code_name(context, grpc.StatusCode.OK)
                    return response
                except (asyncio.CancelledError, GeneratorExit):  # the client went away
                    code = grpc.StatusCode.CANCELLED.name
                    raise
                except BaseException:  # context.abort() raises; the code it set is on the context
                    code = _code_name(context, grpc.StatusCode.UNKNOWN)
                    raise
                finally:
                    observe(path, code, perf_counter() - started)
            return call

        def wrap_stream_response(behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
            async def call(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started = perf_counter()
                code = grpc.StatusCode.UNKNOWN.name
                try:
                    result = behavior(request_or_iterator, context)
                    if inspect.isawaitable(result):  # a handler that writes with context.write()
                        await result
                    else:
                        async for item in result:
                            yield item
                    code = _code_name(context, grpc.StatusCode.OK)
                except (asyncio.CancelledError, GeneratorExit):  # the client went away
                    code = grpc.StatusCode.CANCELLED.name
                    raise
                except BaseException:
                    code = _code_name(context, grpc.StatusCode.UNKNOWN)
                    raise
                finally:
                    observe(path, code, perf_counter() - started)
            return call

        common = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(wrap_unary_response(handler.unary_unary), **common)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(wrap_unary_response(handler.stream_unary), **common)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrap_stream_response(handler.unary_stream), **common)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(wrap_stream_response(handler.stream_stream), **common)
        return handler


# -- HTTP exporter ------------------------------------------------------------------------

MAX_REQUEST_HEAD_BYTES = 16 << 10
REQUEST_HEAD_TIMEOUT = 10.0


@dataclass
class MetricsExporter:
    """The `/metrics` HTTP endpoint, served by the coordinator's event loop."""

    server: asyncio.AbstractServer
    host: str
    port: int

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def _http_response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
                   head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


async def start_exporter(metrics: CoordinatorMetrics, host: str, port: int) -> MetricsExporter:
    """Serves `GET /metrics` on host:port (port 0: any free port). Raises OSError if it cannot bind."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_HEAD_TIMEOUT)
            method, path, headers = _parse_head(head)
            if method not in ("GET", "HEAD"):
                response = _http_response("405 Method Not Allowed", b"only GET\n")
            elif path in ("/metrics", "/"):
                body, content_type = metrics.exposition(headers.get("accept", ""))
                response = _http_response("200 OK", body, content_type, head_only=method == "HEAD")
            else:
                response = _http_response("404 Not Found", b"metrics are at /metrics\n")
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a client that went away or sent garbage: nothing to answer
        except Exception:  # a failed scrape must not take the coordinator down
            log.exception("metrics request failed")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    try:
        server = await asyncio.start_server(handle, host or None, port, limit=MAX_REQUEST_HEAD_BYTES,
                                            reuse_address=True)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host or '*'}:{port}: {exc.strerror or exc}; "
                      "choose another --metrics-port, or 0 to turn metrics off") from exc
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    return MetricsExporter(server, host, bound)


def metrics_host(listen: str) -> str:
    """The host part of a gRPC listen address ("0.0.0.0:50051" -> "0.0.0.0", "[::]:1" -> "::").

    Metrics are served on the same interface as gRPC by default: a coordinator that listens on
    loopback only keeps its metrics on loopback too.
    """
    host = listen.rpartition(":")[0] if ":" in listen else listen
    return host.strip("[]")

