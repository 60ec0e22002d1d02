"""The `autoswarm` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from autoswarm.bundle import BundleError
from autoswarm.control import ControlClient, ControlError
from autoswarm.report import SHORT_HASH, lineage_tsv, results_tsv
from autoswarm.study import StudyError
from autoswarm.v1 import control_pb2
from autoswarm.worker.mutators import config as mutator_flags

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="autoresearch on a swarm: a coordinator, volunteer workers, global acceptance.")
study_app = typer.Typer(no_args_is_help=True, help="Manage the studies a coordinator runs.")
app.add_typer(study_app, name="study")
console = Console()
err = Console(stderr=True)

CoordinatorOpt = Annotated[str, typer.Option("--coordinator", "-c", help="HOST:PORT of the coordinator.")]


@app.callback()
def _global_options(
    token: Annotated[Optional[str], typer.Option(envvar="AUTOSWARM_TOKEN", show_envvar=True,
                                                 help="Admin token for control commands.")] = None,
    ca: Annotated[Optional[Path], typer.Option(envvar="AUTOSWARM_CA", show_envvar=True,
                                               help="CA certificate of a coordinator that serves TLS.")] = None,
) -> None:
    # The control client reads these two from the environment; a flag wins over an inherited value.
    if token:
        os.environ["AUTOSWARM_TOKEN"] = token
    if ca:
        os.environ["AUTOSWARM_CA"] = str(ca)


def _control(address: str) -> ControlClient:
    """A control client using --token / AUTOSWARM_TOKEN and --ca / AUTOSWARM_CA."""
    return ControlClient(address)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def _metric(has: bool, value: float) -> str:
    return f"{value:.6f}" if has else "—"


# -- run ----------------------------------------------------------------------------------

@app.command()
def run(
    study_dir: Annotated[Path, typer.Argument(help="Study directory (holds study.toml).")],
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes to start.")] = 2,
    max_evals: Annotated[int, typer.Option("--max-evals", min=1, help="Stop after this many evaluations.")] = 40,
    duration: Annotated[float, typer.Option(min=1, help="Stop after this many seconds.")] = 600.0,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default: ./runs/<study>-<time>).")] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Run the workers as actors on a local Ray instance (needs the ray extra).")] = False,
) -> None:
    """Search a study with a local coordinator and local workers; write results.tsv and the best target."""
    from autoswarm.local_run import RunOptions, run_study

    table_state: dict[str, object] = {"last": -1}

    def render(status: control_pb2.StudyStatus, response: control_pb2.StatusResponse, elapsed: float) -> Table:
        table = Table(title=f"autoswarm · {status.name}", show_header=False, box=None)
        table.add_row("evaluations", f"{status.evaluations}/{status.max_evaluations}  ({elapsed:.0f}s of {duration:.0f}s)")
        table.add_row(f"best {status.metric}", f"{_metric(status.has_champion_metric, status.champion_metric)} "
                      f"(start {_metric(status.has_initial_metric, status.initial_metric)}, {status.direction})")
        table.add_row("improvements", str(status.improvements))
        states = [w.state for w in response.workers]
        table.add_row("workers", ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "starting")
        return table

    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=4) as live:
                summary = run_study(RunOptions(study_dir, workers, max_evals, duration, out, ray=ray),
                                    lambda s, r, e: live.update(render(s, r, e)))
        else:
            def progress(status: control_pb2.StudyStatus, response: control_pb2.StatusResponse, elapsed: float) -> None:
                if status.evaluations != table_state["last"]:
                    table_state["last"] = status.evaluations
                    console.print(f"[{elapsed:5.0f}s] evaluations {status.evaluations}/{status.max_evaluations}  "
                                  f"best {status.metric} {_metric(status.has_champion_metric, status.champion_metric)}  "
                                  f"improvements {status.improvements}", highlight=False)
            summary = run_study(RunOptions(study_dir, workers, max_evals, duration, out, ray=ray), progress)
    except (StudyError, BundleError) as exc:
        _fail(str(exc))
    except RuntimeError as exc:
        _fail(str(exc))
    console.print()
    if summary.error:
        err.print(f"[bold red]study stopped:[/] {summary.error}")
    start = f"{summary.initial_metric:.6f}" if summary.initial_metric is not None else "—"
    best = f"{summary.best_metric:.6f}" if summary.best_metric is not None else "—"
    console.print(f"[bold]{summary.study.name}[/]: {summary.evaluations} evaluations, "
                  f"{summary.improvements} improvements, {summary.study.metric} {start} → {best}", highlight=False)
    console.print(f"results: {summary.results_path}\nbest {summary.study.target}: {summary.best_path}\n"
                  f"database: {summary.out / 'swarm.db'}", highlight=False)
    if summary.error:
        raise typer.Exit(1)


# -- coordinator --------------------------------------------------------------------------

@app.command()
def coordinator(
    db: Annotated[Path, typer.Option(help="SQLite database file (created if missing).")] = Path("swarm.db"),
    listen: Annotated[str, typer.Option(help="Address to serve gRPC on, e.g. 0.0.0.0:50051.")] = "127.0.0.1:50051",
    lease_factor: Annotated[float, typer.Option(min=1.0, help="Lease lifetime = study timeout × this + grace.")] = 2.0,
    lease_grace: Annotated[float, typer.Option(min=0.0, help="Seconds added to every lease lifetime.")] = 30.0,
    heartbeat_interval: Annotated[float, typer.Option(min=0.2, help="Seconds between worker heartbeats.")] = 5.0,
    fsync: Annotated[bool, typer.Option(help="fsync every commit (survive power loss, not only crashes).")] = False,
    ready_file: Annotated[Optional[Path], typer.Option(help="Write {\"port\": N} here once serving.")] = None,
    max_message_bytes: Annotated[int, typer.Option(min=1024, help="Largest gRPC message accepted.")] = 80 << 20,
    max_target_bytes: Annotated[int, typer.Option(min=1024, help="Largest target file (candidate) accepted.")] = 1 << 20,
    metrics_port: Annotated[int, typer.Option(min=0, max=65535, help=(
        "Serve Prometheus metrics at http://HOST:PORT/metrics, HOST being --listen's host; 0 turns them off."))] = 9464,
    auth: Annotated[str, typer.Option(help=(
        "tokens: an admin token for control, join tokens for workers; none: no tokens (loopback only)."))] = "tokens",
    admin_token_file: Annotated[Optional[Path], typer.Option(
        help="Also write the admin token here (mode 0600) when it is created on first start.")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(help="TLS certificate (PEM) to serve with.")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="TLS private key (PEM).")] = None,
    tls_client_ca: Annotated[Optional[Path], typer.Option(
        help="Require client certificates signed by this CA (mutual TLS).")] = None,
    worker_rate: Annotated[float, typer.Option(min=0, help="Lease and Report calls per second per worker; 0: no limit.")] = 20.0,
    max_slots: Annotated[int, typer.Option(min=1, help="Most tasks one worker may hold at once.")] = 64,
    max_log_tail: Annotated[int, typer.Option(min=0, help="Characters of a result's log tail kept.")] = 8000,
    verbose: bool = False,
) -> None:
    """Run a coordinator: holds the champions, leases tasks, decides acceptance."""
    from autoswarm.coordinator.engine import EngineConfig, Limits
    from autoswarm.coordinator.server import ServerConfig, serve

    _setup_logging(verbose)
    if auth not in ("tokens", "none"):
        _fail(f"--auth must be 'tokens' or 'none', not {auth!r}")
    config = ServerConfig(db=db, listen=listen, fsync=fsync, ready_file=ready_file,
                          max_message_bytes=max_message_bytes, metrics_port=metrics_port,
                          auth=auth == "tokens", admin_token_file=admin_token_file,
                          tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
                          worker_rate=worker_rate, worker_burst=max(3 * worker_rate, 1.0),
                          engine=EngineConfig(lease_factor=lease_factor, lease_grace=lease_grace,
                                              heartbeat_interval=heartbeat_interval,
                                              limits=Limits(max_target_bytes=max_target_bytes, max_slots=max_slots,
                                                            max_log_tail_chars=max_log_tail)))
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        _fail(str(exc))


# -- study add ----------------------------------------------------------------------------

@study_app.command("add")
def study_add(
    study_dir: Annotated[Path, typer.Argument(help="Study directory (holds study.toml).")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    max_evals: Annotated[int, typer.Option("--max-evals", min=0, help="Evaluation budget (0: unbounded).")] = 0,
) -> None:
    """Upload a study to a coordinator; its workers start on it at once."""
    try:
        with _control(coordinator) as control:
            response = control.add_study(study_dir, max_evals)
    except (StudyError, BundleError, ControlError) as exc:
        _fail(str(exc))
    verb = "already present" if response.already_present else "added"
    console.print(f"study [bold]{response.study}[/] {verb}: bundle {response.bundle_hash[:SHORT_HASH]}, "
                  f"champion {response.champion_hash[:SHORT_HASH]}", highlight=False)


# -- worker -------------------------------------------------------------------------------

_DONATION = "Donation controls"
_SANDBOX = "Sandbox"


@app.command()
def worker(
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    slots: Annotated[Optional[int], typer.Option(min=1, help="Tasks at once (default: one per GPU, else 1).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name shown in status (default: hostname).")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(help="Identity, outbox and caches.")] = None,
    keep_scratch: Annotated[bool, typer.Option(help="Keep scratch copies for debugging.")] = False,
    token: Annotated[str, typer.Option("--token", envvar="AUTOSWARM_JOIN_TOKEN", show_envvar=True,
                                       help="Join token from the coordinator's operator.")] = "",
    coordinator_ca: Annotated[Optional[Path], typer.Option(
        "--coordinator-ca", envvar="AUTOSWARM_CA", help="CA certificate of a coordinator serving TLS.")] = None,
    mutator: mutator_flags.MutatorsOpt = None,
    llm_base_url: mutator_flags.LlmBaseUrlOpt = None,
    llm_model: mutator_flags.LlmModelOpt = None,
    llm_api_key_env: mutator_flags.LlmApiKeyEnvOpt = None,
    llm_temperature: mutator_flags.LlmTemperatureOpt = None,
    llm_max_tokens: mutator_flags.LlmMaxTokensOpt = None,
    llm_timeout: mutator_flags.LlmTimeoutOpt = None,
    llm_retries: mutator_flags.LlmRetriesOpt = None,
    agent_command: mutator_flags.AgentCommandOpt = None,
    agent_timeout: mutator_flags.AgentTimeoutOpt = None,
    gpus: Annotated[str, typer.Option(
        rich_help_panel=_DONATION, help="GPUs to donate, as nvidia-smi numbers them: 0,2 or all or none.")] = "all",
    max_cpus: Annotated[Optional[int], typer.Option(
        min=1, rich_help_panel=_DONATION, help="CPUs evaluations may use (default: all).")] = None,
    memory_limit: Annotated[Optional[str], typer.Option(
        rich_help_panel=_DONATION,
        help="Memory for all evaluations together, e.g. 8G (default: 3/4 of the RAM; GPU slots: no cap).")] = None,
    hours: Annotated[Optional[str], typer.Option(
        rich_help_panel=_DONATION,
        help="Start tasks only in these local hours, e.g. 22-07 or 9:30-17,20-23 (running ones finish).")] = None,
    idle_only: Annotated[bool, typer.Option(
        rich_help_panel=_DONATION,
        help="Start tasks only while other programs leave the CPUs and this worker's GPUs idle.")] = False,
    busy_threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, rich_help_panel=_DONATION,
        help="--idle-only: the machine is busy above this share of CPU used by others.")] = 0.25,
    sandbox: Annotated[str, typer.Option(
        rich_help_panel=_SANDBOX,
        help="auto: bubblewrap when it works here, else limits only; bwrap: require it; none.")] = "auto",
    sandbox_ro: Annotated[Optional[list[Path]], typer.Option(
        "--sandbox-ro", rich_help_panel=_SANDBOX,
        help="Extra path evaluations may read (repeatable), e.g. a toolchain under $HOME.")] = None,
    max_processes: Annotated[int, typer.Option(
        min=1, rich_help_panel=_SANDBOX, help="Processes and threads per evaluation.")] = 1024,
    max_file_size: Annotated[str, typer.Option(
        rich_help_panel=_SANDBOX, help="Largest file an evaluation may write, e.g. 8G.")] = "8G",
    load_file: Annotated[Optional[Path], typer.Option(hidden=True, help=(
        "--idle-only: read the share of CPU used by others (0..1) from this file instead of measuring."))] = None,
    check_interval: Annotated[float, typer.Option(min=0.1, hidden=True, help="Seconds between load checks.")] = 5.0,
    verbose: bool = False,
) -> None:
    """Donate this machine: pull tasks from a coordinator, run them, report. Ctrl-C finishes, twice stops."""
    from autoswarm.worker.donation import DonationError, DonationPolicy, FileLoad, parse_gpus, parse_hours, parse_size
    from autoswarm.worker.loop import Worker, WorkerOptions, default_state_dir, describe_machine
    from autoswarm.worker.sandbox import SandboxError

    _setup_logging(verbose)
    try:
        mutators = mutator_flags.worker_mutators(mutator_flags.WorkerMutatorFlags(
            mutators=tuple(mutator or ()), llm_base_url=llm_base_url, llm_model=llm_model,
            llm_api_key_env=llm_api_key_env, llm_temperature=llm_temperature, llm_max_tokens=llm_max_tokens,
            llm_timeout=llm_timeout, llm_retries=llm_retries, agent_command=agent_command,
            agent_timeout=agent_timeout))
    except ValueError as exc:
        _fail(str(exc))
    try:
        donation = {
            "gpus": parse_gpus(gpus), "max_cpus": max_cpus,
            "memory_limit": parse_size(memory_limit) if memory_limit else None,
            "max_processes": max_processes, "max_file_size": parse_size(max_file_size, "--max-file-size"),
            "sandbox": sandbox, "sandbox_read_only": tuple(sandbox_ro or ()), "check_interval": check_interval,
            "donation": DonationPolicy(hours=parse_hours(hours) if hours else None, idle_only=idle_only,
                                       busy_cpu_fraction=busy_threshold),
        }
        options = WorkerOptions(coordinator=coordinator, state_dir=state_dir or default_state_dir(), slots=slots,
                                keep_scratch=keep_scratch, mutators=mutators.kinds, mutator_options=mutators.options,
                                token=token, ca=coordinator_ca,
                                **donation, **({"name": name} if name else {}))
        swarm_worker = Worker(options, load=FileLoad(load_file) if load_file else None)
    except (DonationError, SandboxError) as exc:
        _fail(str(exc))
    logging.getLogger("autoswarm.worker").info("machine: %s", describe_machine(swarm_worker.hardware))
    for line in swarm_worker.describe_donation():
        logging.getLogger("autoswarm.worker").info("%s", line)
    logging.getLogger("autoswarm.worker").info("mutators: %s", mutators.describe())
    signals = {"count": 0}

    def on_signal(signum: int, frame: object) -> None:
        signals["count"] += 1
        swarm_worker.request_stop(immediate=signals["count"] > 1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    swarm_worker.run()


# -- cluster ------------------------------------------------------------------------------

@app.command()
def cluster(
    coordinator: Annotated[str, typer.Option(
        "--coordinator", "-c", help="HOST:PORT of the coordinator, as the Ray nodes reach it.")],
    workers: Annotated[int, typer.Option(min=0, help=(
        "Worker actors the pool should have: missing ones are started, extra ones drained; 0 removes all."))],
    gpus_per_worker: Annotated[float, typer.Option(min=0.0, help="GPUs per actor (Ray's num_gpus).")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(min=0.0, help="CPUs per actor (Ray's num_cpus).")] = 1.0,
    ray_address: Annotated[str, typer.Option(envvar="RAY_ADDRESS", show_envvar=True, help=(
        "Ray cluster to join: auto (the one this machine belongs to) or HEAD_IP:6379."))] = "auto",
    namespace: Annotated[str, typer.Option(help="Ray namespace of the pool's named actors.")] = "autoswarm",
    name: Annotated[str, typer.Option(help="Actors are NAME-0, NAME-1...; pools with other names are left alone.")]
    = "autoswarm-worker",
    token: Annotated[str, typer.Option("--token", envvar="AUTOSWARM_JOIN_TOKEN", show_envvar=True, help=(
        "Join token the actors register with (default: each node's AUTOSWARM_JOIN_TOKEN)."))] = "",
    coordinator_ca: Annotated[Optional[Path], typer.Option(
        "--coordinator-ca", envvar="AUTOSWARM_CA", help="CA certificate of a coordinator serving TLS.")] = None,
    slots: Annotated[Optional[int], typer.Option(min=1, help="Tasks at once per actor (default: one per GPU, else 1).")]
    = None,
    mutator: mutator_flags.MutatorsOpt = None,
    state_dir: Annotated[Optional[str], typer.Option(help=(
        "Directory on each node for the actors' identities, outboxes and caches "
        "(default: ~/.cache/autoswarm/ray-workers)."))] = None,
    drain_timeout: Annotated[float, typer.Option(min=0.0, help=(
        "Seconds a removed actor may take to finish its running task; after that the task goes back to the "
        "coordinator, which hands it out again."))] = 300.0,
    verbose: bool = False,
) -> None:
    """Start, resize or stop worker actors on a Ray cluster; they outlive this command and Ray restarts them."""
    from autoswarm.worker.ray_pool import ActorSpec, RayPool, RayUnavailable, connect

    _setup_logging(verbose)
    try:
        kinds = mutator_flags.worker_mutators(mutator_flags.WorkerMutatorFlags(mutators=tuple(mutator or ()))).kinds
        spec = ActorSpec(coordinator=coordinator, gpus=gpus_per_worker, cpus=cpus_per_worker, mutators=kinds,
                         slots=slots, state_root=state_dir or "", token=token,
                         ca_pem=coordinator_ca.read_text() if coordinator_ca else "")
        spec.check()
        ray = connect(ray_address, namespace)
    except (ValueError, OSError, RayUnavailable) as exc:
        _fail(str(exc))
    try:
        pool = RayPool(spec, name)
        leaving = [m for m in pool.members() if m.index >= workers or m.digest != spec.digest()]
        if leaving:
            err.print(f"draining {len(leaving)} actor(s): running tasks may take up to {drain_timeout:.0f}s",
                      highlight=False)
        result = pool.scale(workers, drain_timeout)
        statuses = pool.statuses(timeout=15)
    except (ValueError, RayUnavailable) as exc:
        _fail(str(exc))
    finally:
        ray.shutdown()
    console.print(f"pool {name} in namespace {namespace}: {len(result.created)} started, "
                  f"{len(result.removed)} removed, {len(result.kept)} kept", highlight=False)
    if not statuses:
        return
    table = Table(title="worker actors")
    for col in ("actor", "node", "pid", "worker", "state", "tasks", "GPUs"):
        table.add_column(col)
    for entry in statuses:
        st = entry.status
        if st is None:
            table.add_row(entry.member.worker_name, "", "", "", entry.problem, "", "")
        else:
            table.add_row(st.name, st.node, str(st.pid), st.worker_id or "registering", st.state, str(st.completed),
                          ",".join(map(str, st.gpu_ids)) or "-")
    console.print(table)


# -- status, history, best ----------------------------------------------------------------

def status_tables(response: control_pb2.StatusResponse) -> list[Table]:
    """Studies, workers, and which mutators the connected workers can run, as rich tables."""
    studies = Table(title="studies")
    for col in ("study", "metric", "best", "start", "evaluations", "improvements", "claims", "in flight",
                "acceptance", "champion"):
        studies.add_column(col)
    for s in response.studies:
        budget = f"/{s.max_evaluations}" if s.max_evaluations else ""
        studies.add_row(s.name, f"{s.metric} ({s.direction[:3]})", _metric(s.has_champion_metric, s.champion_metric),
                        _metric(s.has_initial_metric, s.initial_metric), f"{s.evaluations}{budget}",
                        str(s.improvements), str(s.pending_claims), str(s.in_flight), f"{s.compare}, quorum {s.quorum}",
                        s.champion_hash[:SHORT_HASH] + (f"  [red]{s.error}[/]" if s.error else ""))
    workers = Table(title="workers")
    for col in ("worker", "name", "owner", "state", "hardware class", "running", "results", "claims ok/refuted",
                "last seen"):
        workers.add_column(col)
    now = time.time()
    for w in response.workers:
        workers.add_row(w.worker_id, w.name, w.owner or "-", w.state, w.hardware_class, f"{w.running}/{w.slots}",
                        str(w.results), f"{w.claims_confirmed}/{w.claims_refuted}",
                        f"{now - w.last_seen_unix:.0f}s ago")
    kinds = Table(title="mutators (workers not offline)")
    kinds.add_column("mutator")
    kinds.add_column("workers")
    for kind, count in sorted(mutator_counts(response).items()):
        kinds.add_row(kind, str(count))
    return [studies, workers, kinds]


def mutator_counts(response: control_pb2.StatusResponse) -> dict[str, int]:
    """How many connected workers can run each mutator kind."""
    counts: dict[str, int] = {}
    for w in response.workers:
        if w.state != "offline":
            for kind in w.mutators:
                counts[kind] = counts.get(kind, 0) + 1
    return counts


@app.command()
def status(
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep a live view open (Ctrl-C to leave).")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between updates with --watch.")] = 2.0,
) -> None:
    """Studies, champions and workers of a coordinator."""
    try:
        if watch:
            from autoswarm.watch import watch_status

            watch_status(coordinator, interval, console)
            return
        with _control(coordinator) as control:
            response = control.status()
    except ControlError as exc:
        _fail(str(exc))
    for table in status_tables(response):
        console.print(table)


def _offline_history(db: Path, study: str) -> control_pb2.HistoryResponse:
    from autoswarm.coordinator.service import history_row
    from autoswarm.coordinator.store import Store

    store = Store(db, readonly=True)
    try:
        record = store.study(study)
        if record is None:
            _fail(f"{db} has no study named {study!r} (it has: {', '.join(s.name for s in store.studies()) or 'none'})")
        response = control_pb2.HistoryResponse(study=study, metric=record.spec["metric"],
                                               direction=record.spec["direction"])
        response.rows.extend(history_row(r) for r in store.results(study))
        return response
    finally:
        store.close()


@app.command()
def history(
    study: Annotated[str, typer.Option("--study", "-s", help="Study name.")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: Annotated[Optional[Path], typer.Option(help="Read a coordinator's database file instead.")] = None,
    lineage: Annotated[bool, typer.Option("--lineage", help="The champion chain: who claimed and verified each.")] = False,
) -> None:
    """Every evaluated result as results.tsv (tab-separated, with a header), or the champion chain."""
    if lineage:
        chain = _lineage(study, coordinator, db)
        sys.stdout.write(lineage_tsv(chain.metric, chain.rows))
        return
    response = _history(study, coordinator, db)
    sys.stdout.write(results_tsv(response.metric, response.rows))


def _lineage(study: str, coordinator: str, db: Path | None) -> control_pb2.LineageResponse:
    try:
        if db is None:
            with _control(coordinator) as control:
                return control.lineage(study)
        from autoswarm.coordinator.lineage import lineage
        from autoswarm.coordinator.service import lineage_row
        from autoswarm.coordinator.store import Store

        store = Store(db, readonly=True)
        try:
            record = store.study(study)
            if record is None:
                _fail(f"{db} has no study named {study!r}")
            response = control_pb2.LineageResponse(study=study, metric=record.spec["metric"],
                                                   direction=record.spec["direction"])
            response.rows.extend(lineage_row(e) for e in lineage(store, study))
            return response
        finally:
            store.close()
    except (ControlError, FileNotFoundError) as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _history(study: str, coordinator: str, db: Path | None) -> control_pb2.HistoryResponse:
    """A study's results from a database file when given, else from the coordinator."""
    try:
        if db is not None:
            return _offline_history(db, study)
        with _control(coordinator) as control:
            return control.history(study)
    except (ControlError, FileNotFoundError) as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@app.command()
def best(
    study: Annotated[str, typer.Option("--study", "-s", help="Study name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the champion target file.")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: Annotated[Optional[Path], typer.Option(help="Read a coordinator's database file instead.")] = None,
) -> None:
    """Write the current champion of a study to a file."""
    try:
        if db is not None:
            from autoswarm.coordinator.store import Store

            store = Store(db, readonly=True)
            champion = store.champion(study)
            version = store.version(study, champion.version) if champion else None
            store.close()
            if version is None or champion is None:
                _fail(f"{db} has no study named {study!r}")
            content, metric, vhash = version.content, champion.metric, version.hash
        else:
            with _control(coordinator) as control:
                message = control.version(study)
            content, metric, vhash = message.content, (message.metric if message.has_metric else None), message.hash
    except (ControlError, FileNotFoundError) as exc:
        _fail(str(exc))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(content)
    score = f"{metric:.6f}" if metric is not None else "not yet measured"
    err.print(f"champion {vhash[:SHORT_HASH]} ({score}) written to {output}", highlight=False)


@app.command()
def plot(
    study: Annotated[str, typer.Option("--study", "-s", help="Study name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("progress.png"),
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: Annotated[Optional[Path], typer.Option(help="Read a coordinator's database file instead.")] = None,
    width: Annotated[int, typer.Option(min=200, max=10000, help="Width in pixels.")] = 1200,
    height: Annotated[int, typer.Option(min=150, max=10000, help="Height in pixels.")] = 600,
) -> None:
    """Draw a study's progress: every result a dot, the running best a step line (like progress.png)."""
    from autoswarm.plot import PlotError, plot_progress

    response = _history(study, coordinator, db)
    try:
        drawn = plot_progress(response, output, width_px=width, height_px=height)
    except PlotError as exc:
        _fail(str(exc))
    err.print(f"{drawn.total} results, {len(drawn.kept)} kept: {output}", highlight=False)


token_app = typer.Typer(no_args_is_help=True, help="Join tokens: how volunteers' workers register.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", "-n", help="Who the token is for: the workers' owner.")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
) -> None:
    """Create a join token; give it to one person (it is shown once)."""
    try:
        with _control(coordinator) as control:
            response = control.create_token(name)
    except ControlError as exc:
        _fail(str(exc))
    err.print(f"join token for {response.name} (shown once): ", end="", highlight=False)
    print(response.token)
    err.print(f"they join with: autoswarm worker --coordinator {coordinator} --token <token>", highlight=False)


@token_app.command("list")
def token_list(coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """List join tokens with the number of workers registered with each."""
    try:
        with _control(coordinator) as control:
            response = control.list_tokens()
    except ControlError as exc:
        _fail(str(exc))
    table = Table(title="join tokens")
    for col in ("name", "created", "workers", "state"):
        table.add_column(col)
    for t in response.tokens:
        table.add_row(t.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created_unix)), str(t.workers),
                      "revoked" if t.revoked else "active")
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The join token's name.")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
) -> None:
    """Revoke a join token and the credentials of every worker registered with it."""
    try:
        with _control(coordinator) as control:
            response = control.revoke_token(name)
    except ControlError as exc:
        _fail(str(exc))
    console.print(f"revoked {name}: {response.revoked} token(s) and worker credential(s)", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
