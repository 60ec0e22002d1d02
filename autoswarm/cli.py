"""The `autoswarm` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from autoswarm.bundle import BundleError
from autoswarm.control import ControlClient, ControlError
from autoswarm.report import (FORMATS, SHORT_HASH, format_metric, history_record, lineage_record, lineage_tsv,
                              render_rows, result_text, results_tsv)
from autoswarm.screen import add_plain_row, labelled
from autoswarm.status_view import mutator_counts, status_tables, study_state  # noqa: F401 (mutator_counts: API)
from autoswarm.status_view import evaluations_done
from autoswarm.study import StudyError
from autoswarm.v1 import control_pb2
from autoswarm.words import count
from autoswarm.worker import agent_box
from autoswarm.worker.mutators import config as mutator_flags

# Options of the top-level callback that may also be written after the subcommand
# (`autoswarm status --token T`), unless that subcommand has an option of the same name.
GLOBAL_OPTIONS = ("--token", "--ca", "--coordinator")


def hoist_global_options(group: TyperGroup, args: list[str]) -> list[str]:
    """`args` with the global options found after the subcommand moved in front of it.

    Pure: walks the subcommand path, then moves each global option (and its value) that the
    leaf command does not define itself; everything after `--` is left alone.
    """
    command: Any = group  # typer's own (vendored) click: commands are told apart by duck typing
    i = 0
    while hasattr(command, "commands") and i < len(args):
        token = args[i]
        if token == "--":
            return args
        if token.startswith("-"):
            i += 1 if "=" in token or token not in GLOBAL_OPTIONS else 2
            continue
        sub = command.commands.get(token)
        if sub is None:
            return args
        command, i = sub, i + 1
    own = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    front, rest, j = [], list(args[:i]), i
    while j < len(args):
        token = args[j]
        if token == "--":
            rest.extend(args[j:])
            break
        name = token.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and name not in own:
            width = 1 if "=" in token else 2
            front.extend(args[j:j + width])
            j += width
            continue
        rest.append(token)
        j += 1
    return front + rest


def _hide_flag_metavars(command: Any, ctx: Any) -> None:
    """On/off flags (--help too) take no value: their help shows no `<bool>`."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_metavars(sub, ctx)


class _Root(TyperGroup):
    """The top-level command: global options anywhere, flags without `<bool>`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _hide_flag_metavars(self, ctx)
        return super().parse_args(ctx, hoist_global_options(self, args))


app = typer.Typer(no_args_is_help=True, add_completion=False, cls=_Root,
                  help="autoresearch on a swarm: a coordinator, volunteer workers, global acceptance.")
study_app = typer.Typer(no_args_is_help=True, help="Manage the studies a coordinator runs.")
app.add_typer(study_app, name="study")
# No markup anywhere: every string printed (table cells too) is shown as it is, so names and
# hints with brackets (`lab[gpu] box`, `autoswarm[plot]`) survive; styles come from Text.
# soft_wrap: messages are not broken at the terminal's width (paths stay copyable).
console = Console(markup=False, soft_wrap=True)
err = Console(stderr=True, markup=False, soft_wrap=True)

CoordinatorOpt = Annotated[str, typer.Option("--coordinator", "-c", envvar="AUTOSWARM_COORDINATOR",
                                             help="HOST:PORT of the coordinator.")]


@app.callback()
def _global_options(
    token: Annotated[Optional[str], typer.Option(envvar="AUTOSWARM_TOKEN", show_envvar=True,
                                                 help="Admin token for control commands.")] = None,
    ca: Annotated[Optional[Path], typer.Option(envvar="AUTOSWARM_CA", show_envvar=True,
                                               help="CA certificate of a coordinator that serves TLS.")] = None,
    coordinator: Annotated[Optional[str], typer.Option(
        "--coordinator", "-c", envvar="AUTOSWARM_COORDINATOR", show_envvar=True,
        help="HOST:PORT of the coordinator, for every command that talks to one.")] = None,
) -> None:
    """Global options; each may also come after the subcommand (`autoswarm status --token T`)."""
    # The commands read these from the environment; a flag wins over an inherited value.
    if token:
        os.environ["AUTOSWARM_TOKEN"] = token
    if ca:
        os.environ["AUTOSWARM_CA"] = str(ca)
    if coordinator:
        os.environ["AUTOSWARM_COORDINATOR"] = coordinator


T = TypeVar("T")


def _control(address: str) -> ControlClient:
    """A control client using --token / AUTOSWARM_TOKEN and --ca / AUTOSWARM_CA."""
    return ControlClient(address)


def _fail(message: str) -> NoReturn:
    # Literal text: hints such as `pip install 'autoswarm[plot]'` keep their brackets.
    err.print(labelled("error:", "bold red", message), highlight=False)
    raise typer.Exit(2)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def _metric(has: bool, value: float) -> str:
    return format_metric(value) if has else "—"


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
    stop_grace: Annotated[float, typer.Option(min=0.0, help=(
        "On Ctrl-C, SIGTERM or the end of the budget: seconds workers get to finish the edit and "
        "evaluation they are running (a second signal stops at once)."))] = 60.0,
) -> None:
    """Search a study with a local coordinator and local workers; write results.tsv and the best target.

    Run it again with the same --out to resume: the champion, history and budget carry on.
    """
    from autoswarm.local_run import RunOptions, run_study

    table_state: dict[str, object] = {"last": -1}

    def render(status: control_pb2.StudyStatus, response: control_pb2.StatusResponse, elapsed: float) -> Table:
        table = Table(title=Text(f"autoswarm · {status.name}"), show_header=False, box=None)
        add_plain_row(table, "evaluations", f"{evaluations_done(status)}  ({elapsed:.0f}s of {duration:.0f}s)")
        add_plain_row(table, f"best {status.metric}", f"{_metric(status.has_champion_metric, status.champion_metric)} "
                      f"(start {_metric(status.has_initial_metric, status.initial_metric)}, {status.direction})")
        add_plain_row(table, "improvements", str(status.improvements))
        states = [w.state for w in response.workers]
        add_plain_row(table, "workers", ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "starting")
        return table

    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=4) as live:
                summary = run_study(RunOptions(study_dir, workers, max_evals, duration, out, ray=ray, stop_grace=stop_grace),
                                    lambda s, r, e: live.update(render(s, r, e)))
        else:
            def progress(status: control_pb2.StudyStatus, response: control_pb2.StatusResponse, elapsed: float) -> None:
                if status.evaluations != table_state["last"]:
                    table_state["last"] = status.evaluations
                    console.print(f"[{elapsed:5.0f}s] evaluations {evaluations_done(status)}  "
                                  f"best {status.metric} {_metric(status.has_champion_metric, status.champion_metric)}  "
                                  f"improvements {status.improvements}", markup=False, highlight=False)
            summary = run_study(RunOptions(study_dir, workers, max_evals, duration, out, ray=ray, stop_grace=stop_grace), progress)
    except (StudyError, BundleError) as exc:
        _fail(str(exc))
    except RuntimeError as exc:
        _fail(str(exc))
    console.print()
    if summary.error:
        err.print(labelled("study stopped:", "bold red", summary.error))
    if summary.interrupted:
        err.print(f"stopped early; resume with: autoswarm run {study_dir} --out {summary.out}",
                  markup=False, highlight=False)
    start = _metric(summary.initial_metric is not None, summary.initial_metric or 0.0)
    best = _metric(summary.best_metric is not None, summary.best_metric or 0.0)
    failed = f" (+{count(summary.failed_edits, 'failed edit')})" if summary.failed_edits else ""
    console.print(Text.assemble((summary.study.name, "bold"), f": {count(summary.evaluations, 'evaluation')}{failed}, "
                                f"{count(summary.improvements, 'improvement')}, {summary.study.metric} {start} → {best}"),
                  highlight=False)
    console.print(f"results: {summary.results_path}\nbest {summary.study.target}: {summary.best_path}\n"
                  f"database: {summary.out / 'swarm.db'}", markup=False, highlight=False)
    if summary.unchecked_claims and max_evals and summary.evaluations + summary.failed_edits >= max_evals:
        checks = summary.unchecked_claims * max(1, summary.study.acceptance.quorum - 1)  # the claimant's run counts
        err.print(f"{count(summary.unchecked_claims, 'claimed improvement')} left unchecked: the budget ran out "
                  f"first; check with: autoswarm run {study_dir} --out {summary.out} --max-evals "
                  f"{summary.evaluations + summary.failed_edits + checks}",
                  markup=False, highlight=False)
    if summary.error:
        raise typer.Exit(1)


# -- coordinator --------------------------------------------------------------------------

@app.command()
def coordinator(
    db: Annotated[Path, typer.Option(help="SQLite database file (created if missing).")] = Path("swarm.db"),
    listen: Annotated[str, typer.Option(help="Address to serve gRPC on, e.g. 0.0.0.0:50051.")] = "127.0.0.1:50051",
    lease_factor: Annotated[float, typer.Option(min=1.0, help="Lease lifetime = study timeout × this + grace.")] = 2.0,
    lease_grace: Annotated[float, typer.Option(min=0.0, help="Seconds added to every lease lifetime.")] = 30.0,
    heartbeat_interval: Annotated[float, typer.Option(min=0.2, help=(
        "Shortest interval between a worker's heartbeats; longer leases and bigger swarms get longer ones."))] = 5.0,
    heartbeat_budget: Annotated[float, typer.Option(min=0.01, help=(
        "Heartbeats per second the whole swarm may send: a bigger swarm is told to heartbeat less often "
        "(never so rarely that a lease could lapse)."))] = 500.0,
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
    join_rate: Annotated[float, typer.Option(min=0, help=(
        "Workers admitted per second as they register or reconnect after a restart; the rest are told "
        "when to come back (docs/scaling.md). 0: no limit."))] = 100.0,
    max_slots: Annotated[int, typer.Option(min=1, help="Most tasks one worker may hold at once.")] = 64,
    max_log_tail: Annotated[int, typer.Option(min=0, help="Characters of a result's log tail kept.")] = 8000,
    web_port: Annotated[int, typer.Option(min=0, max=65535, help=(
        "Serve the read-only web page and its JSON API at http://HOST:PORT/, HOST being --listen's host; "
        "0 turns it off."))] = 0,
    web_require_token: Annotated[bool, typer.Option(
        help="The web page needs a reader (or admin) token (`autoswarm token create --reader`).")] = False,
    web_refresh: Annotated[float, typer.Option(min=0.0, hidden=True, help=(
        "Seconds the web page's credit snapshot is served before it is rebuilt."))] = 5.0,
    verbose: bool = False,
) -> None:
    """Run a coordinator: holds the champions, leases tasks, decides acceptance."""
    from autoswarm.coordinator.engine import EngineConfig, Limits
    from autoswarm.coordinator.liveness import LivenessPolicy
    from autoswarm.coordinator.server import ServerConfig, serve

    _setup_logging(verbose)
    if auth not in ("tokens", "none"):
        _fail(f"--auth must be 'tokens' or 'none', not {auth!r}")
    config = ServerConfig(db=db, listen=listen, fsync=fsync, ready_file=ready_file,
                          max_message_bytes=max_message_bytes, metrics_port=metrics_port,
                          auth=auth == "tokens", admin_token_file=admin_token_file,
                          tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
                          worker_rate=worker_rate, worker_burst=max(3 * worker_rate, 1.0),
                          join_rate=join_rate, join_burst=max(5 * join_rate, 1.0),
                          web_port=web_port, web_require_token=web_require_token, web_refresh=web_refresh,
                          engine=EngineConfig(lease_factor=lease_factor, lease_grace=lease_grace,
                                              heartbeat_interval=heartbeat_interval,
                                              liveness=LivenessPolicy(heartbeat_budget=heartbeat_budget),
                                              limits=Limits(max_target_bytes=max_target_bytes, max_slots=max_slots,
                                                            max_log_tail_chars=max_log_tail)))
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        _fail(str(exc))


# -- study add ----------------------------------------------------------------------------

DEFAULT_STUDY_BUDGET = 100  # evaluations: `study add` never starts an unbounded search by accident


def _budget(max_evaluations: int) -> str:
    return count(max_evaluations, "evaluation") if max_evaluations else "unbounded"


@study_app.command("add")
def study_add(
    study_dir: Annotated[Path, typer.Argument(help="Study directory (holds study.toml).")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    max_evals: Annotated[int, typer.Option("--max-evals", min=0, help=(
        "Evaluation budget (0: unbounded)."))] = DEFAULT_STUDY_BUDGET,
    priority: Annotated[int, typer.Option(min=1, max=1000, help=(
        "Share of the swarm against other studies: 2 gets twice the workers of 1."))] = 1,
) -> None:
    """Upload a study to a coordinator; its workers start on it at once."""
    try:
        with _control(coordinator) as control:
            response = control.add_study(study_dir, max_evals, priority)
    except (StudyError, BundleError, ControlError) as exc:
        _fail(str(exc))
    verb = "already present" if response.already_present else "added"
    console.print(f"study {response.study} {verb}: budget {_budget(response.max_evaluations)} "
                  f"(--max-evals to change, 0: unbounded), priority {response.priority or 1}, "
                  f"bundle {response.bundle_hash[:SHORT_HASH]}, champion {response.champion_hash[:SHORT_HASH]}",
                  highlight=False)


@study_app.command("update")
def study_update(
    study_dir: Annotated[Path, typer.Argument(help="The study's directory, with a new program, data or [mutator].")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
) -> None:
    """Replace a study's files when only program.md, the evaluation's data or mutator settings changed.

    Champion, history and budget stay; the update is recorded in the lineage. A changed
    target, metric, evaluate command, time budget or acceptance policy is a new study.
    """
    try:
        with _control(coordinator) as control:
            response = control.update_study(study_dir)
    except (StudyError, BundleError, ControlError) as exc:
        _fail(str(exc))
    if response.already_present:
        console.print(f"study {response.study}: nothing changed", highlight=False)
        return
    console.print(f"study {response.study} updated ({', '.join(response.changed)}): bundle "
                  f"{response.bundle_hash[:SHORT_HASH]}, champion {response.champion_hash[:SHORT_HASH]} kept",
                  highlight=False)


def _ask(coordinator: str, call: Callable[[ControlClient], T]) -> T:
    """`call(control)` on a control client of `coordinator`; its ControlError becomes the error shown."""
    try:
        with _control(coordinator) as control:
            return call(control)
    except ControlError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _change(study: str | None, coordinator: str, action: str = "", priority: int = 0,
            max_evaluations: int | None = None) -> control_pb2.ChangeStudyResponse:
    return _ask(coordinator, lambda control: control.change_study(
        study or _only_study(control.status()), action, priority, max_evaluations))


StudyArg = Annotated[Optional[str], typer.Argument(help="Study name (optional when the coordinator runs one).")]


@study_app.command("pause")
def study_pause(study: StudyArg = None, coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """Stop leasing a study's tasks; its running tasks are handed back (resume picks up from the champion)."""
    response = _change(study, coordinator, "pause")
    console.print(f"study {response.study.name} paused: {count(response.leases_released, 'running task')} handed back",
                  highlight=False)


@study_app.command("resume")
def study_resume(study: StudyArg = None, coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """Lease a paused study's tasks again."""
    response = _change(study, coordinator, "resume")
    console.print(f"study {response.study.name} resumed", highlight=False)


@study_app.command("remove")
def study_remove(study: Annotated[str, typer.Argument(help="Study name.")],
                 coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """Archive a study: no more tasks, gone from status; its champion and results stay in the database."""
    response = _change(study, coordinator, "remove")
    console.print(f"study {response.study.name} removed ({count(response.leases_released, 'running task')} handed "
                  "back); its results stay readable with --db", highlight=False)


@study_app.command("set")
def study_set(
    study: StudyArg = None,
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    priority: Annotated[Optional[int], typer.Option(min=1, max=1000, help="Share of the swarm.")] = None,
    max_evals: Annotated[Optional[int], typer.Option("--max-evals", min=0, help="Budget (0: unbounded).")] = None,
) -> None:
    """Change a running study's priority or evaluation budget."""
    if priority is None and max_evals is None:
        _fail("nothing to change: pass --priority N and/or --max-evals N")
    response = _change(study, coordinator, "", priority or 0, max_evals)
    console.print(f"study {response.study.name}: priority {response.study.priority}, "
                  f"budget {_budget(response.study.max_evaluations)}", highlight=False)


@study_app.command("list")
def study_list(coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """The studies a coordinator runs, with their state, budget and priority."""
    response = _ask(coordinator, lambda control: control.status())
    table = Table(title="studies", title_justify="left")
    for col in ("study", "state", "evaluations", "kept", "priority", "metric", "best"):
        table.add_column(col)
    for s in response.studies:
        add_plain_row(table, s.name, study_state(s), f"{s.evaluations}/{s.max_evaluations or '∞'}",
                      str(s.improvements), str(s.priority or 1), f"{s.metric} ({s.direction})",
                      _metric(s.has_champion_metric, s.champion_metric))
    console.print(table if response.studies else "no studies: autoswarm study add DIR")


@study_app.command("show")
def study_show(study: StudyArg = None, coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """One study: its settings as the coordinator validated them, state, budget, champion."""
    response = _ask(coordinator, lambda control: control.status())
    name = study or _only_study(response)
    found = [s for s in response.studies if s.name == name]
    if not found:
        _fail(f"no study named {name!r} (the coordinator has: {', '.join(s.name for s in response.studies) or 'none'})")
    s = found[0]
    spec = json.loads(s.spec_json or "{}")
    table = Table(show_header=False, box=None, title=Text(f"study {s.name}"), title_justify="left")
    mutator = spec.get("mutator", {})
    for key, value in [
        ("state", study_state(s) + (f": {s.error}" if s.error else "")),
        ("target", spec.get("target", "")), ("program", spec.get("program", "")),
        ("evaluate", spec.get("evaluate", "")), ("metric", f"{s.metric} ({s.direction})"),
        ("time budget", f"{spec['time_budget']}s" if spec.get("time_budget") is not None else "none"),
        ("timeout", f"{spec.get('timeout', '')}s"), ("acceptance", f"{s.compare}, quorum {s.quorum}"),
        ("mutator", ", ".join(f"{k}={v}" for k, v in mutator.items())),
        ("budget", f"{s.evaluations} of {_budget(s.max_evaluations)}"), ("priority", str(s.priority or 1)),
        ("best", f"{_metric(s.has_champion_metric, s.champion_metric)} "
                 f"(start {_metric(s.has_initial_metric, s.initial_metric)}), {count(s.improvements, 'improvement')}"),
        ("champion", s.champion_hash), ("bundle", s.bundle_hash),
    ]:
        add_plain_row(table, key, str(value))
    console.print(table)


def _only_study(response: control_pb2.StatusResponse) -> str:
    """The name of the coordinator's one study; a clear error when it has none or several."""
    return _one_of([s.name for s in response.studies], "the coordinator")


def _one_of(names: list[str], where: str) -> str:
    if len(names) == 1:
        return names[0]
    if not names:
        _fail(f"{where} has no study yet")
    _fail(f"{where} has {len(names)} studies: pass one with --study ({', '.join(names)})")
    raise AssertionError("unreachable")


# -- worker -------------------------------------------------------------------------------

_DONATION = "Donation controls"
_SANDBOX = "Sandbox"


@app.command()
def worker(
    ctx: typer.Context,
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    slots: Annotated[Optional[int], typer.Option(min=1, help="Tasks at once (default: one per GPU, else 1).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name shown in status (default: hostname).")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(help="Identity, outbox and caches.")] = None,
    keep_scratch: Annotated[bool, typer.Option(help="Keep scratch copies for debugging.")] = False,
    token: Annotated[str, typer.Option("--token", envvar="AUTOSWARM_JOIN_TOKEN", show_envvar=True, help=(
        "Join token from the coordinator's operator. On the command line other users of this machine may see it "
        "until the worker hides it at start: prefer --token-file."))] = "",
    token_file: Annotated[Optional[str], typer.Option(
        "--token-file", "--join-token-file", envvar="AUTOSWARM_JOIN_TOKEN_FILE", show_envvar=True, metavar="PATH", help=(
            "Read the join token from this file (mode 600), or from standard input with '-' (at a terminal it is asked "
            "for without echo). Needed only until the worker has registered: it then keeps its own credential in "
            "--state-dir."))] = None,
    coordinator_ca: Annotated[Optional[Path], typer.Option(
        "--ca", "--coordinator-ca", envvar="AUTOSWARM_CA", help="CA certificate of a coordinator serving TLS.")] = None,
    mutator: mutator_flags.MutatorsOpt = None,
    llm_base_url: mutator_flags.LlmBaseUrlOpt = None,
    llm_model: mutator_flags.LlmModelOpt = None,
    llm_api_key_env: mutator_flags.LlmApiKeyEnvOpt = None,
    llm_temperature: mutator_flags.LlmTemperatureOpt = None,
    llm_max_tokens: mutator_flags.LlmMaxTokensOpt = None,
    llm_timeout: mutator_flags.LlmTimeoutOpt = None,
    llm_retries: mutator_flags.LlmRetriesOpt = None,
    llm_output: mutator_flags.LlmOutputOpt = None,
    llm_structured: mutator_flags.LlmStructuredOpt = None,
    llm_stop: mutator_flags.LlmStopOpt = None,
    llm_price: mutator_flags.LlmPriceOpt = None,
    llm_budget: mutator_flags.LlmBudgetOpt = None,
    agent_command: mutator_flags.AgentCommandOpt = None,
    agent_timeout: mutator_flags.AgentTimeoutOpt = None,
    pipeline: Annotated[bool, typer.Option(help=(
        "Each slot's agent prepares the next edit while the slot evaluates; --no-pipeline: lease, edit, "
        "evaluate in turn."))] = True,
    agent_home: agent_box.AgentHomeOpt = None,
    agent_login: agent_box.AgentLoginOpt = None,
    agent_env: agent_box.AgentEnvOpt = None,
    unsafe_agent_no_sandbox: agent_box.UnsafeAgentOpt = False,
    gpus: Annotated[str, typer.Option(
        rich_help_panel=_DONATION, help=(
            "GPUs to donate, as the start-up `machine:` line numbers them (nvidia-smi's, then AMD's and "
            "Intel's; a Mac's Metal GPU is 0): 0,2 or all or none."))] = "all",
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
    from autoswarm.worker import platforms, process_guard

    refusal = platforms.native_refusal(platforms.system_name())  # Windows: WSL2 or Docker instead
    if refusal:
        _fail(refusal)
    # Before anything else runs or connects: the tokens leave the environment, the command line
    # and the process's readable memory (worker/process_guard.py).
    token_on_command_line = bool(token) and _from_command_line(ctx, "token")
    token = _join_token(token, token_file)
    guard = process_guard.guard_process([token] if token else [])
    from autoswarm.worker.donation import DonationError, DonationPolicy, FileLoad, parse_gpus, parse_hours, parse_size
    from autoswarm.worker.loop import Worker, WorkerOptions, default_state_dir, describe_machine
    from autoswarm.worker.sandbox import SandboxError

    _setup_logging(verbose)
    try:
        mutators = mutator_flags.worker_mutators(mutator_flags.WorkerMutatorFlags(
            mutators=tuple(mutator or ()), llm_base_url=llm_base_url, llm_model=llm_model,
            llm_api_key_env=llm_api_key_env, llm_temperature=llm_temperature, llm_max_tokens=llm_max_tokens,
            llm_timeout=llm_timeout, llm_retries=llm_retries, llm_output=llm_output, llm_structured=llm_structured,
            llm_stop=tuple(llm_stop or ()), llm_price=llm_price, agent_command=agent_command,
            agent_timeout=agent_timeout))
        budget = mutator_flags.parse_budget(llm_budget) if llm_budget else None
    except ValueError as exc:
        _fail(str(exc))
    try:
        donation = {
            "gpus": parse_gpus(gpus), "max_cpus": max_cpus,
            "memory_limit": parse_size(memory_limit) if memory_limit else None,
            "max_processes": max_processes, "max_file_size": parse_size(max_file_size, "--max-file-size"),
            "sandbox": sandbox, "sandbox_read_only": tuple(sandbox_ro or ()), "check_interval": check_interval,
            "agent": agent_box.agent_settings(agent_home, tuple(agent_login or ()), tuple(agent_env or ()),
                                              unsafe_agent_no_sandbox),
            "donation": DonationPolicy(hours=parse_hours(hours) if hours else None, idle_only=idle_only,
                                       busy_cpu_fraction=busy_threshold),
        }
        options = WorkerOptions(coordinator=coordinator, state_dir=state_dir or default_state_dir(), slots=slots,
                                keep_scratch=keep_scratch, mutators=mutators.kinds, mutator_options=mutators.options,
                                token=token, ca=coordinator_ca, pipeline=pipeline,
                                agent_budget=budget,
                                **donation, **({"name": name} if name else {}))
        swarm_worker = Worker(options, load=FileLoad(load_file) if load_file else None)
    except (DonationError, SandboxError, agent_box.AgentBoxError) as exc:
        _fail(str(exc))
    logging.getLogger("autoswarm.worker").info("machine: %s", describe_machine(swarm_worker.hardware))
    for line in swarm_worker.describe_donation():
        logging.getLogger("autoswarm.worker").info("%s", line)
    logging.getLogger("autoswarm.worker").info("%s", guard.describe())
    if token_file not in (None, "-") and swarm_worker.sandbox.shows(Path(token_file)):
        logging.getLogger("autoswarm.worker").warning(
            "evaluations can read --token-file %s (%s): the worker needs the join token only to register, so delete "
            "the file once it says `registered as`", token_file, "they run as this user without bubblewrap"
            if swarm_worker.sandbox.isolation != "bwrap" else "bubblewrap shows it read-only")
    if token_on_command_line:
        logging.getLogger("autoswarm.worker").warning(
            "--token was given on the command line, where every user of this machine could read it (ps) until the "
            "worker hid it just now; next time use --token-file (docs/security.md, \"The worker's own secrets\")")
    logging.getLogger("autoswarm.worker").info("mutators: %s", mutators.describe())
    if "command" in mutators.kinds:  # what confines agent CLIs, as the lines above say for evaluations
        logging.getLogger("autoswarm.worker").info("%s", options.agent.box(swarm_worker.sandbox,
                                                                           options.state_dir).describe())
    from autoswarm.worker.stop_signals import StopSignals

    StopSignals(swarm_worker).install()  # the first finishes running work, a second stops now
    swarm_worker.run()


def _join_token(token: str, token_file: str | None) -> str:
    """The join token given with --token (or AUTOSWARM_JOIN_TOKEN) or read from --token-file."""
    from autoswarm.worker import process_guard

    if token_file is None:
        return token
    if token:
        _fail("give the join token once: --token (or AUTOSWARM_JOIN_TOKEN) or --token-file, not both")
    try:
        return process_guard.read_token_file(token_file)
    except process_guard.TokenFileError as exc:
        _fail(str(exc))


def _from_command_line(ctx: typer.Context | None, name: str) -> bool:
    """Whether option `name` was typed on the command line (not taken from the environment)."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name == "COMMANDLINE"


# -- cluster ------------------------------------------------------------------------------

@app.command()
def cluster(
    coordinator: Annotated[str, typer.Option(
        "--coordinator", "-c", envvar="AUTOSWARM_COORDINATOR",
        help="HOST:PORT of the coordinator, as the Ray nodes reach it.")] = "127.0.0.1:50051",
    workers: Annotated[Optional[int], typer.Option(min=0, help=(
        "Worker actors the pool should have: missing ones are started, extra ones drained; 0 removes all. "
        "Without it: show the pool as it is."))] = None,
    gpus_per_worker: Annotated[float, typer.Option(min=0.0, help="GPUs per actor (Ray's num_gpus).")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(min=0.0, help="CPUs per actor (Ray's num_cpus).")] = 1.0,
    ray_address: Annotated[str, typer.Option(envvar="RAY_ADDRESS", show_envvar=True, help=(
        "Ray cluster to join: auto (the one this machine belongs to) or HEAD_IP:6379."))] = "auto",
    namespace: Annotated[str, typer.Option(help="Ray namespace of the pool's named actors.")] = "autoswarm",
    name: Annotated[str, typer.Option(help="Actors are NAME-0, NAME-1...; pools with other names are left alone.")]
    = "autoswarm-worker",
    token: Annotated[str, typer.Option("--token", envvar="AUTOSWARM_JOIN_TOKEN", show_envvar=True, help=(
        "Join token the actors register with (default: each node's AUTOSWARM_JOIN_TOKEN)."))] = "",
    token_file: Annotated[Optional[str], typer.Option(
        "--token-file", "--join-token-file", envvar="AUTOSWARM_JOIN_TOKEN_FILE", show_envvar=True, metavar="PATH", help=(
            "Read the actors' join token from this file (mode 600), or from standard input with '-', instead of "
            "--token on the command line, where every user of this machine can read it."))] = None,
    coordinator_ca: Annotated[Optional[Path], typer.Option(
        "--ca", "--coordinator-ca", envvar="AUTOSWARM_CA", help="CA certificate of a coordinator serving TLS.")] = None,
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

    token = _join_token(token, token_file)
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
        result = None
        if workers is not None:
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
    if result is not None:
        console.print(f"pool {name} in namespace {namespace}: {len(result.created)} started, "
                      f"{len(result.removed)} removed, {len(result.kept)} kept", highlight=False)
    else:
        console.print(f"pool {name} in namespace {namespace}: {count(len(statuses), 'actor')} "
                      "(--workers N resizes it)", highlight=False)
    if not statuses:
        return
    table = Table(title="worker actors")
    for col in ("actor", "node", "pid", "worker", "state", "tasks", "GPUs"):
        table.add_column(col)
    for entry in statuses:
        st = entry.status
        if st is None:
            add_plain_row(table, entry.member.worker_name, "", "", "", entry.problem, "", "")
        else:
            add_plain_row(table, st.name, st.node, str(st.pid), st.worker_id or "registering", st.state,
                          str(st.completed), ",".join(map(str, st.gpu_ids)) or "-")
    console.print(table)


# -- status, history, best ----------------------------------------------------------------

STATUS_WORKERS = 50     # worker rows `status` lists by default: a screen, not 100,000 rows (~1 s of the coordinator)

@app.command()
def status(
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep a live view open (Ctrl-C to leave).")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between updates with --watch.")] = 2.0,
    workers: Annotated[int, typer.Option("--workers", min=0, help=(
        "Worker rows to list (0: none); every worker is counted by state and class whatever this says."))]
        = STATUS_WORKERS,
    start: Annotated[int, typer.Option("--from", min=0, help="List workers from this one on (0: the first "
                                       "that registered).")] = 0,
) -> None:
    """Studies, champions and workers of a coordinator."""
    try:
        if watch:
            from autoswarm.watch import watch_status

            watch_status(coordinator, interval, console)
            return
        with _control(coordinator) as control:
            response = control.status(workers, start)
    except ControlError as exc:
        _fail(str(exc))
    for part in status_tables(response, console.width, offset=start, limit=workers):
        console.print(part, soft_wrap=False)  # laid out for the terminal's width


def _open_db(db: Path):  # -> Store
    from autoswarm.coordinator.store import Store

    try:
        return Store(db, readonly=True)
    except FileNotFoundError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _db_study(store, db: Path, study: str | None):  # -> StudyRecord
    """The study named (or the database's only one), or a clear error listing what there is."""
    names = [s.name for s in store.studies() if not s.archived]
    name = study or _one_of(names, str(db))
    record = store.study(name)
    if record is None:
        _fail(f"{db} has no study named {name!r} (it has: {', '.join(names) or 'none'})")
    return record


def _offline_history(db: Path, study: str | None) -> control_pb2.HistoryResponse:
    from autoswarm.coordinator.service import history_row

    store = _open_db(db)
    try:
        record = _db_study(store, db, study)
        response = control_pb2.HistoryResponse(study=record.name, metric=record.spec["metric"],
                                               direction=record.spec["direction"])
        response.rows.extend(history_row(r) for r in store.results(record.name))
        return response
    finally:
        store.close()


StudyOpt = Annotated[Optional[str], typer.Option("--study", "-s", help=(
    "Study name (optional when the coordinator or database holds one)."))]
DbOpt = Annotated[Optional[Path], typer.Option(help="Read a coordinator's database file instead.")]


@app.command()
def history(
    study: StudyOpt = None,
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: DbOpt = None,
    lineage: Annotated[bool, typer.Option("--lineage", help="The champion chain: who claimed and verified each.")] = False,
    output_format: Annotated[str, typer.Option("--format", help="tsv (results.tsv), csv or json.")] = "tsv",
) -> None:
    """Every evaluated result as results.tsv (tab-separated, with a header), or the champion chain."""
    if output_format not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    if lineage:
        chain = _lineage(study, coordinator, db)
        sys.stdout.write(lineage_tsv(chain.metric, chain.rows, chain.events) if output_format == "tsv"
                         else render_rows(chain.metric, [lineage_record(r) for r in chain.rows], output_format))
        return
    response = _history(study, coordinator, db)
    sys.stdout.write(results_tsv(response.metric, response.rows) if output_format == "tsv"
                     else render_rows(response.metric, [history_record(r) for r in response.rows], output_format))


def _lineage(study: str | None, coordinator: str, db: Path | None) -> control_pb2.LineageResponse:
    try:
        if db is None:
            with _control(coordinator) as control:
                return control.lineage(study or _only_study(control.status()))
        from autoswarm.coordinator.lineage import lineage
        from autoswarm.coordinator.service import lineage_row, study_event_row

        store = _open_db(db)
        try:
            record = _db_study(store, db, study)
            response = control_pb2.LineageResponse(study=record.name, metric=record.spec["metric"],
                                                   direction=record.spec["direction"])
            response.rows.extend(lineage_row(e) for e in lineage(store, record.name))
            response.events.extend(study_event_row(e) for e in store.study_events(record.name))
            return response
        finally:
            store.close()
    except ControlError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _history(study: str | None, coordinator: str, db: Path | None) -> control_pb2.HistoryResponse:
    """A study's results from a database file when given, else from the coordinator."""
    try:
        if db is not None:
            return _offline_history(db, study)
        with _control(coordinator) as control:
            return control.history(study or _only_study(control.status()))
    except ControlError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@app.command()
def show(
    result_id: Annotated[str, typer.Argument(help="A result id, as `history --format json` lists them.")],
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: DbOpt = None,
    lines: Annotated[int, typer.Option(min=0, help="Lines of the log tail to print (0: all kept).")] = 40,
) -> None:
    """One result: what was tried, what happened and why, with the tail of its log."""
    try:
        if db is not None:
            from autoswarm.coordinator.service import result_detail

            store = _open_db(db)
            try:
                found = store.result(result_id)
                if found is None:
                    _fail(f"{db} has no result {result_id!r}; `autoswarm history --format json` lists result ids")
                record = store.study(found.study)
                detail = result_detail(found, record.spec["metric"] if record else "")
            finally:
                store.close()
        else:
            with _control(coordinator) as control:
                detail = control.result(result_id)
    except ControlError as exc:
        _fail(str(exc))
    console.print(result_text(detail, lines), highlight=False)


@app.command()
def best(
    study: StudyOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "Where to write the champion target file (default: standard output)."))] = None,
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: DbOpt = None,
) -> None:
    """Write the current champion of a study to a file, or to standard output."""
    try:
        if db is not None:
            store = _open_db(db)
            try:
                record = _db_study(store, db, study)
                champion = store.champion(record.name)
                version = store.version(record.name, champion.version) if champion else None
            finally:
                store.close()
            if version is None or champion is None:
                _fail(f"{db}: study {record.name!r} has no champion")
            content, metric, vhash = version.content, champion.metric, version.hash
        else:
            with _control(coordinator) as control:
                message = control.version(study or _only_study(control.status()))
            content, metric, vhash = message.content, (message.metric if message.has_metric else None), message.hash
    except ControlError as exc:
        _fail(str(exc))
    score = format_metric(metric) if metric is not None else "not yet measured"
    if output is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        err.print(f"champion {vhash[:SHORT_HASH]} ({score})", highlight=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(content)
    err.print(f"champion {vhash[:SHORT_HASH]} ({score}) written to {output}", highlight=False)


@app.command()
def plot(
    study: StudyOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("progress.png"),
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    db: DbOpt = None,
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
    err.print(f"{count(drawn.total, 'evaluation')}, {len(drawn.kept)} kept: {output}", highlight=False)


@app.command()
def backup(
    out: Annotated[Path, typer.Argument(help="The backup file to write (must not exist).")],
    db: Annotated[Path, typer.Option(help="The coordinator's database file.")] = Path("swarm.db"),
) -> None:
    """Copy a coordinator's database safely, even while it runs (SQLite's online backup).

    To restore: stop the coordinator, put the backup in place of its --db file (remove the
    old file's -wal and -shm beside it), start the coordinator again.
    """
    from autoswarm.coordinator.store import Store

    if out.exists():
        _fail(f"{out} exists already; choose a new file name (a backup never overwrites)")
    store = _open_db(db)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        store.backup(out)
    finally:
        store.close()
    copy = Store(out, readonly=True)
    try:
        studies = copy.studies()
        results = sum(len(copy.results(s.name)) for s in studies)
    finally:
        copy.close()
    err.print(f"backed up {db} to {out}: {count(len(studies), 'study', 'studies')}, {count(results, 'evaluation')}",
              highlight=False)


token_app = typer.Typer(no_args_is_help=True, help="Join tokens: how volunteers' workers register.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    owner: Annotated[Optional[str], typer.Argument(
        metavar="NAME", help="Who the token is for: the workers' owner (as `token revoke NAME` names it).")] = None,
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    name: Annotated[Optional[str], typer.Option("--name", "-n", hidden=True, help="The same as NAME.")] = None,
    team: Annotated[str, typer.Option(help="The owner's team on the leaderboard.")] = "",
    display_name: Annotated[str, typer.Option(help="The name public pages show (default: --name).")] = "",
    anonymous: Annotated[bool, typer.Option(help="Public pages show a pseudonym instead of the owner's name.")] = False,
    reader: Annotated[bool, typer.Option(help=(
        "A read-only token instead: the web page, status, history and credit; no worker can join with it."))] = False,
) -> None:
    """Create a join token; give it to one person (it is shown once)."""
    name = owner or name
    if not name:
        _fail("name the token's owner: autoswarm token create NAME")
    try:
        with _control(coordinator) as control:
            response = control.create_token(name, team=team, display_name=display_name, anonymous=anonymous,
                                            reader=reader)
    except ControlError as exc:
        _fail(str(exc))
    err.print(f"join token for {response.name} (shown once): ", end="", highlight=False)
    print(response.token)
    err.print(f"they join with: autoswarm worker --coordinator {coordinator} --token-file <file holding it, mode 600>",
              highlight=False)


@token_app.command("list")
def token_list(coordinator: CoordinatorOpt = "127.0.0.1:50051") -> None:
    """List join tokens with the number of workers registered with each."""
    try:
        with _control(coordinator) as control:
            response = control.list_tokens()
    except ControlError as exc:
        _fail(str(exc))
    table = Table(title="join tokens")
    for col in ("name", "kind", "team", "created", "workers", "state"):
        table.add_column(col)
    for t in response.tokens:
        table.add_row(escape(t.name), t.kind or "join", escape(t.team), time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created_unix)), str(t.workers),
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


@app.command()
def credit(
    coordinator: CoordinatorOpt = "127.0.0.1:50051",
    team: Annotated[bool, typer.Option("--team", help="Teams instead of volunteers.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, as the web API's /api/v1/leaderboard.")] = False,
) -> None:
    """Granted credit, recent average credit, discoveries and badges per volunteer (or team)."""
    from autoswarm.credit_view import credit_json, credit_table

    try:
        with _control(coordinator) as control:
            response = control.credit()
    except ControlError as exc:
        _fail(str(exc))
    if as_json:
        print(credit_json(response, teams=team))
    else:
        console.print(credit_table(response, teams=team))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
