"""Runs the coordinator: the grpc.aio server, the health service, and the lease reaper."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from autoswarm.v1 import control_pb2_grpc, worker_pb2_grpc
from autoswarm.coordinator.admission import AdmissionConfig, JoinAdmission
from autoswarm.coordinator.auth import AuthInterceptor, Authenticator
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.group_commit import GroupCommit
from autoswarm.coordinator.heap import HeapKeeper
from autoswarm.coordinator.ratelimit import RateLimiter
from autoswarm.coordinator.census import WorkerCensus
from autoswarm.coordinator.metrics import CoordinatorMetrics, MetricsExporter, metrics_host, start_exporter
from autoswarm.coordinator.service import ChangeSignal, ControlService, WorkerService
from autoswarm.coordinator.standings import StandingsBook
from autoswarm.coordinator.wakeups import drain_grpc_wakeups
from autoswarm.coordinator.web import WebServer, make_app, start_web
from autoswarm.coordinator.store import Store, WalCheckpointer

log = logging.getLogger("autoswarm.coordinator")

SERVICE_NAMES = ("autoswarm.v1.WorkerService", "autoswarm.v1.ControlService")
PRESENCE_ROWS_PER_TICK = 500        # worker liveness rows written per maintenance tick, at most
CHECKPOINT_BACKSTOP_PAGES = 50_000   # 200 MB of WAL: far past where the checkpoint thread restarts it
CHECKPOINT_RESTART_FRAMES = 16_000   # 64 MB of WAL: where the checkpoint thread starts it over


@dataclass(frozen=True)
class ServerConfig:
    db: Path
    listen: str = "127.0.0.1:50051"
    engine: EngineConfig = field(default_factory=EngineConfig)
    fsync: bool = False
    max_message_bytes: int = 80 << 20
    ready_file: Path | None = None       # written with {"port": N} once serving
    reap_interval: float = 0.5
    metrics_port: int = 0                # Prometheus /metrics port; 0: no metrics
    metrics_host: str | None = None      # None: the host of `listen`
    auth: bool = True                    # False: no tokens at all (loopback only)
    admin_token_file: Path | None = None  # where the admin token is written (0600) on first start
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None    # set: clients must present a certificate signed by it (mTLS)
    worker_rate: float = 20.0            # Lease and Report calls per second per worker (each); 0: unlimited
    worker_burst: float = 60.0
    join_rate: float = 100.0             # Registers (and reconnects) admitted per second; 0: unlimited
    join_burst: float = 500.0            # joins admitted at once before the rate applies
    web_port: int = 0                    # the read-only web page and JSON API; 0: no web page
    web_host: str | None = None          # None: the host of `listen`
    web_require_token: bool = False      # the web page needs a reader (or admin) token
    web_refresh: float = 5.0             # seconds a credit snapshot is served before it is rebuilt


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def listen_host(listen: str) -> str:
    return listen.rsplit(":", 1)[0]


def _announce_admin_token(token: str, path: Path | None) -> None:
    """Shows the new admin token once; only its hash is stored."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    where = f" (also written to {path})" if path else ""
    print(f"admin token{where}: {token}\nIt is shown once; only its hash is stored. "
          "Use it as --token (or AUTOSWARM_TOKEN) for study add, status, history and token commands.",
          file=sys.stderr, flush=True)


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise OSError("TLS needs both --tls-cert and --tls-key")
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
                                       root_certificates=client_ca, require_client_auth=client_ca is not None)


def _write_ready_file(path: Path, port: int, metrics_port: int | None = None, web_port: int | None = None) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    ready = {"port": port, "pid": os.getpid()}
    if metrics_port is not None:
        ready["metrics_port"] = metrics_port
    if web_port is not None:
        ready["web_port"] = web_port
    tmp.write_text(json.dumps(ready))
    tmp.replace(path)  # atomic: a reader never sees half a file


async def _maintain(engine: Engine, commits: GroupCommit, interval: float, heap: HeapKeeper | None = None) -> None:
    """Expires overdue leases, writes worker liveness and keeps the collector off the
    long-lived state (`heap`), forever."""
    ticks = 0
    presence_left = 0
    while True:
        await asyncio.sleep(interval)
        try:
            for lease in engine.expire_overdue():
                log.info("lease %s (%s, %s) expired; its work goes back to the queue", lease.id, lease.study, lease.kind)
            ticks += 1
            if ticks % 4 == 0 or presence_left:
                # Bounded per tick: a big swarm's liveness is written over several ticks.
                presence_left = engine.flush_presence(max_rows=PRESENCE_ROWS_PER_TICK)
            commits.flush()
            if heap is not None and (action := heap.tick()):
                # Not gc.get_freeze_count(): it walks every frozen object (1-2 million at
                # 100,000 workers, 100-400 ms of the loop), even for a log line nobody reads.
                log.debug("heap: %s (%d freezes so far)", action, heap.freezes)
        except Exception:  # a failed tick must not stop the reaper; the next one retries
            log.exception("maintenance tick failed")


async def serve(config: ServerConfig) -> None:
    """Serves until SIGTERM or SIGINT, then stops gracefully."""
    metrics = CoordinatorMetrics() if config.metrics_port else None
    # Checkpoints run on their own thread; the commit-time one is only a backstop should that
    # thread fall far behind.
    store = Store(config.db, fsync=config.fsync, group_commit=True, autocheckpoint_pages=CHECKPOINT_BACKSTOP_PAGES,
                  **({"on_commit": metrics.observe_commit} if metrics else {}))
    commits = GroupCommit(store)
    changes = ChangeSignal()
    engine = Engine(store, config.engine, on_change=changes.notify, events=metrics)
    if not config.auth and listen_host(config.listen) not in LOOPBACK_HOSTS:
        raise OSError(f"--auth none is for loopback only; {config.listen} is reachable from other machines")
    auth = Authenticator(store, enabled=config.auth)
    if config.auth and (admin := auth.ensure_admin()) is not None:
        _announce_admin_token(admin, config.admin_token_file)
    commits.flush()
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    # Metrics outermost, so refused calls are timed and counted with their status code too.
    interceptors = ([metrics.interceptor()] if metrics else []) + [AuthInterceptor(auth)]
    server = grpc.aio.server(options=options, interceptors=interceptors)
    # Every completion grpc.aio has queued reaches the loop at its next turn, not one a turn
    # (wakeups.py: past ~4,000 completions a second calls queued inside gRPC for seconds).
    drain_grpc_wakeups(asyncio.get_running_loop())
    limiter = RateLimiter(config.worker_rate, config.worker_burst, time.monotonic)
    # Joins past what the coordinator can take come back later, spread out (admission.py): a
    # restart, when the whole swarm reconnects at once, must not tip it into a retry storm.
    admission = JoinAdmission(AdmissionConfig(rate=config.join_rate, burst=config.join_burst), time.monotonic())
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerService(engine, changes, commits, auth, limiter, admission, time.monotonic), server)
    # Credit standings: read on a thread from their own read-only connection (see standings.py).
    # Scrapes and credit rebuilds read every worker: a big swarm is counted in slices (census.py).
    census = WorkerCensus(engine.summaries)
    book = StandingsBook(config.db, lambda: (census.study_summaries(), census.worker_rows(), {
        name: (spec.acceptance.compare, spec.acceptance.quorum, spec.timeout)
        for name, spec in ((s.name, engine.study(s.name)) for s in engine.study_summaries())}),
        refresh=config.web_refresh)
    control_pb2_grpc.add_ControlServiceServicer_to_server(ControlService(engine, commits, auth, book, census), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    credentials = _server_credentials(config)
    port = (server.add_secure_port(config.listen, credentials) if credentials is not None
            else server.add_insecure_port(config.listen))
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}: address in use or invalid")
    exporter: MetricsExporter | None = None
    if metrics is not None:
        metrics.watch(census)
        host = config.metrics_host if config.metrics_host is not None else metrics_host(config.listen)
        exporter = await start_exporter(metrics, host, config.metrics_port)  # before serving: fail early
        log.info("metrics on http://%s:%d/metrics", host, exporter.port)
        metrics.watch_credit(book)
    webserver: WebServer | None = None
    if config.web_port:
        web_host = config.web_host if config.web_host is not None else metrics_host(config.listen)
        webserver = await start_web(make_app(book, auth, config.web_require_token), web_host, config.web_port)
        log.info("web page on http://%s:%d/", web_host, webserver.port)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("coordinator serving on %s (port %d), db %s", config.listen, port, config.db)
    if config.ready_file is not None:
        _write_ready_file(config.ready_file, port, exporter.port if exporter else None,
                          webserver.port if webserver else None)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # What was loaded (workers, studies, leases) is frozen out of the collector's passes; what
    # the swarm adds later is frozen as it grows (heap.py).
    heap = HeapKeeper(clock=time.monotonic)
    heap.start()
    maintenance = asyncio.create_task(_maintain(engine, commits, config.reap_interval, heap))
    fresh_credit = asyncio.create_task(book.keep_fresh()) if metrics is not None else None
    counting = asyncio.create_task(census.keep_counting()) if metrics is not None or webserver is not None else None
    # At 100,000 workers the WAL grows by ~3,600 frames a second; every 16,000 frames (64 MB) the
    # store's writer catches the checkpoint up between two commits and the WAL starts over. (A
    # RESTART from the checkpoint thread held commits, and so this loop, off for up to 450 ms.)
    checkpointer = WalCheckpointer(config.db, restart_frames=CHECKPOINT_RESTART_FRAMES, store=store).start()
    try:
        await stop.wait()
    finally:
        log.info("coordinator stopping")
        for name in ("", *SERVICE_NAMES):
            await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        maintenance.cancel()
        if fresh_credit is not None:
            fresh_credit.cancel()
        if counting is not None:
            counting.cancel()
        if webserver is not None:
            await webserver.close()
        await server.stop(grace=2.0)
        if exporter is not None:
            await exporter.close()
        engine.flush_presence()
        book.close()
        checkpointer.stop()  # first: the store's close is then the last connection and empties the WAL
        store.close()
