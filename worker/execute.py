"""Runs one leased task on this machine and turns what happened into a Result.

explore:  scratch copy of the bundle → parent written to the target → mutator edits →
          only the target may have changed → evaluation → metric
baseline: scratch copy → the given version written to the target → evaluation → metric
Every failure becomes a status in the Result; nothing here raises for a bad study or edit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from autoswarm import words
from autoswarm.bundle import BundleError
from autoswarm.study import STUDY_FILE, Study, StudyError, decode_study_text, parse_study_text
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.bundles import BundleCache, CachedBundle, Fetch
from autoswarm.worker.hardware import slot_gpu
from autoswarm.worker.metric import MAX_RESULT_FILE_BYTES, parse_metric
from autoswarm.worker.agent_box import AgentBox
from autoswarm.worker.mutators import CommandMutator, create_mutator
from autoswarm.worker.mutators.base import MutationRequest, MutatorError, Usage
from autoswarm.worker.runner import CommandOutcome, resolve_command, run_command
from autoswarm.worker.safe_files import (
    NotRegularFile,
    kind_of,
    read_regular,
    sha256_regular,
    tree_entries,
    write_regular,
)
from autoswarm.worker.sandbox import Access, Sandbox, limit_hit, sandbox_environment

RESULT_FILE = ".autoswarm-result.json"
_IGNORED_DIRS = {"__pycache__", ".pytest_cache"}


@dataclass(frozen=True)
class ExecutionContext:
    """What a slot needs to run tasks: where to work and what it may use."""

    cache: BundleCache
    scratch_root: Path
    data_root: Path                          # AUTOSWARM_CACHE_DIR per study: datasets survive bundles
    slot_env: Mapping[str, str] = field(default_factory=dict)
    mutator_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    log_tail_chars: int = 4000
    keep_scratch: bool = False
    sandbox: Sandbox | None = None           # None: commands run as they are (own process group only)
    # Tells the coordinator which idea this explore lease is about to evaluate (lease id,
    # description, candidate sha256); returns True when that candidate was evaluated already.
    announce: Callable[[str, str, str], bool] | None = None
    # How agent CLIs (the command mutator) are boxed; None: the slot's sandbox, a fresh home per edit.
    agent_box: AgentBox | None = None

    def home_dir(self, study: str) -> Path:
        """$HOME of a study's sandboxed commands: persistent per study, never the volunteer's."""
        return self.data_root.parent / "homes" / study

    @property
    def gpu_slot(self) -> bool:
        return slot_gpu(self.slot_env) is not None


def snapshot(directory: Path) -> dict[str, str]:
    """What every entry under `directory` is, by relative path (caches ignored).

    Regular files by sha256; links by where they point (never followed); directories, FIFOs,
    sockets and devices by their kind, so that creating any of them is a change.
    """
    digests: dict[str, str] = {}
    for rel, info in tree_entries(directory, _IGNORED_DIRS).items():
        if stat.S_ISREG(info.st_mode):
            try:
                digests[rel] = sha256_regular(directory, rel)
            except (NotRegularFile, OSError) as exc:  # replaced while we looked: still a change
                digests[rel] = f"unreadable: {exc}"
        elif stat.S_ISLNK(info.st_mode):
            digests[rel] = "link:" + os.readlink(directory / rel)
        else:
            digests[rel] = kind_of(info.st_mode)
    return digests


def changed_paths(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def _result(status: str, log_tail: str = "", **fields) -> worker_pb2.Result:
    return worker_pb2.Result(status=words.STATUS_CODES[status], log_tail=log_tail, **fields)


def _study_env(context: ExecutionContext, study: Study, scratch: Path | None) -> dict[str, str]:
    """The environment of a study command: an allow-list of the worker's, never a token or key."""
    data_dir = context.data_root / study.name
    data_dir.mkdir(parents=True, exist_ok=True)
    home = context.home_dir(study.name)
    home.mkdir(parents=True, exist_ok=True)
    env = sandbox_environment({**os.environ, **context.slot_env}, home=str(home),
                              tmpdir=os.environ.get("TMPDIR", "/tmp"))
    if study.time_budget is not None:
        env["AUTOSWARM_TIME_BUDGET"] = f"{study.time_budget:g}"
    env["AUTOSWARM_CACHE_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"  # so the log tail shows the last lines even when killed
    env.pop("AUTOSWARM_RESULT", None)
    if scratch is not None:
        env["AUTOSWARM_RESULT"] = str(scratch / RESULT_FILE)
    return env


def _access(context: ExecutionContext, study: Study, env: Mapping[str, str], workdir: Path, *,
            setup: bool) -> Access:
    """What a study command may touch in the sandbox.

    Setup may write the bundle's files, the study's data and its home, and gets the network if
    the study asks. The evaluation writes only its scratch copy and its home, and reads the data:
    one candidate must not change what the next is measured on.
    """
    home = context.home_dir(study.name)
    home.mkdir(parents=True, exist_ok=True)
    data = Path(env["AUTOSWARM_CACHE_DIR"])
    if setup:
        return Access(workdir=workdir, writable=(data,), home=home, network=study.setup_network,
                      gpus=context.gpu_slot)
    return Access(workdir=workdir, read_only=(data,), home=home, gpus=context.gpu_slot)


def _run(context: ExecutionContext, command: str, access: Access, env: dict[str, str], timeout: float,
         log_path: Path, cancel: threading.Event) -> CommandOutcome:
    """Runs a study command in the slot's sandbox (or as it is, without one)."""
    sandbox = context.sandbox
    if sandbox is None:
        return run_command(command, cwd=access.workdir, env=env, timeout_seconds=timeout, log_path=log_path,
                           tail_chars=context.log_tail_chars, cancel=cancel)
    sandbox.make_writable(access.workdir, *access.writable, *([access.home] if access.home else []))
    prepared = sandbox.prepare(resolve_command(command), access, env, timeout)
    return run_command(list(prepared.argv), cwd=access.workdir, env=prepared.env, timeout_seconds=timeout,
                       log_path=log_path, tail_chars=context.log_tail_chars, cancel=cancel, platform=sandbox.platform)


def _setup(context: ExecutionContext, study: Study, bundle: CachedBundle, log_dir: Path,
           cancel: threading.Event) -> tuple[bool, str, float]:
    if not study.setup:
        return True, "", 0.0

    def run(files: Path) -> tuple[bool | None, str]:
        env = _study_env(context, study, None)
        outcome = _run(context, study.setup, _access(context, study, env, files, setup=True), env,
                       max(study.timeout * 10, 600), log_dir / "setup.log", cancel)
        if outcome.cancelled:  # the worker is stopping: not a verdict on the setup
            return None, f"setup `{study.setup}` was cancelled"
        ok = outcome.returncode == 0 and not outcome.timed_out
        limit = None if ok else limit_hit(outcome.returncode, outcome.timed_out, outcome.output_tail)
        reason = "" if ok else (f"setup `{study.setup}` was stopped by {limit}" if limit
                                else f"setup `{study.setup}` timed out" if outcome.timed_out
                                else f"setup `{study.setup}` exited with {outcome.returncode}")
        return ok, (reason + "\n" + outcome.output_tail).strip()

    return context.cache.setup_once(bundle, run)


def evaluate(context: ExecutionContext, study: Study, scratch: Path, log_path: Path,
             cancel: threading.Event) -> tuple[worker_pb2.Result, CommandOutcome]:
    """Runs the study's evaluation in `scratch` and classifies the outcome."""
    env = _study_env(context, study, scratch)
    outcome = _run(context, study.evaluate, _access(context, study, env, scratch, setup=False), env, study.timeout,
                   log_path, cancel)
    timing = {"evaluate_seconds": outcome.duration_seconds}
    limit = None if outcome.cancelled else limit_hit(outcome.returncode, outcome.timed_out, outcome.output_tail)
    if limit:
        return _result("resource-limit", f"stopped by {limit}\n{outcome.output_tail}", **timing), outcome
    if outcome.timed_out:
        return _result("timeout", f"killed after the {study.timeout:g}s timeout\n{outcome.output_tail}", **timing), outcome
    if outcome.returncode != 0:
        return _result("crash", f"exit code {outcome.returncode}\n{outcome.output_tail}", **timing), outcome
    reading = parse_metric(log_path.read_text(errors="replace"), study.metric,
                           _result_file_copy(scratch, log_path.parent))
    if reading.status != "ok":
        tail = f"{reading.detail}\n{outcome.output_tail}"
        return _result(reading.status, tail, extra_metrics=reading.extra, **timing), outcome
    return _result("ok", outcome.output_tail, has_metric=True, metric=reading.value,
                   extra_metrics=reading.extra, **timing), outcome


def _result_file_copy(scratch: Path, private: Path) -> Path:
    """$AUTOSWARM_RESULT copied, without following links, to where only the worker writes.

    The evaluation wrote it, so it may be a link to a volunteer's file or a FIFO: such a file
    is not read, and the copy then says why (parse_metric reports it as an unusable file).
    """
    copy = private / RESULT_FILE
    copy.unlink(missing_ok=True)
    try:
        copy.write_bytes(read_regular(scratch, RESULT_FILE, max_bytes=MAX_RESULT_FILE_BYTES))
    except NotRegularFile as exc:
        if exc.kind != "missing":
            copy.write_text(f"not read: the evaluation left {exc}")
    return copy


@dataclass
class PreparedTask:
    """A task whose edit is made (or whose version is written), ready to be evaluated.

    A pipelined slot prepares the next task while the current one is evaluated; the scratch
    copy stays until `evaluate_prepared` or `discard_prepared` removes it.
    """

    task: worker_pb2.Task
    study: Study
    scratch: Path
    log_dir: Path
    common: dict[str, object]


def prepare_task(context: ExecutionContext, task: worker_pb2.Task, fetch: Fetch,
                 cancel: threading.Event, mutators: Iterable[str] = ("params",)) -> worker_pb2.Result | PreparedTask:
    """Everything before the evaluation: bundle, setup, scratch copy, edit, duplicate check.

    Returns the Result to report when the task ends here (a failed setup, a mutator error, a
    duplicate), else the PreparedTask to evaluate.
    """
    try:
        bundle = context.cache.get(task.bundle_hash, fetch, advertised_bytes=task.bundle_size)
    except BundleError as exc:
        return _result("setup-failed", f"could not get the study bundle: {exc}")
    try:
        # Never through a link: an earlier setup may have replaced the file in the cache.
        study = parse_study_text(decode_study_text(read_regular(bundle.files, STUDY_FILE)), bundle.files)
    except (StudyError, NotRegularFile) as exc:
        return _result("setup-failed", f"{STUDY_FILE} in the bundle is invalid: {exc}")
    scratch = context.scratch_root / task.lease_id
    log_dir = context.scratch_root / f"{task.lease_id}.logs"
    shutil.rmtree(scratch, ignore_errors=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    prepared = PreparedTask(task, study, scratch, log_dir, {})
    ended = True  # until the edit is ready: then the scratch copy is kept for the evaluation
    try:
        ok, setup_tail, setup_seconds = _setup(context, study, bundle, log_dir, cancel)
        if not ok:
            return _result("setup-failed", setup_tail, setup_seconds=setup_seconds,
                           bundle_cache_hit=bundle.cache_hit)
        context.cache.copy_to(bundle, scratch)
        common: dict[str, object] = {"setup_seconds": setup_seconds, "bundle_cache_hit": bundle.cache_hit}
        version = task.parent if task.kind == common_pb2.TASK_KIND_EXPLORE or not task.HasField("candidate") \
            else task.candidate
        try:
            write_regular(scratch, study.target, version.content)  # replaces a link, never writes through it
        except NotRegularFile as exc:
            return _result("setup-failed", f"cannot write the target: {exc} (left so by the setup)", **common)
        if task.kind == common_pb2.TASK_KIND_EXPLORE:
            edited = _mutate(context, study, task, scratch, cancel, mutators)
            if isinstance(edited, worker_pb2.Result):
                edited.MergeFrom(worker_pb2.Result(**common))
                return edited
            candidate, description, mutate_seconds, usage = edited
            common.update(candidate=candidate, description=description, mutate_seconds=mutate_seconds,
                          **_cost(usage))
            if context.announce is not None and context.announce(task.lease_id, description,
                                                                  hashlib.sha256(candidate).hexdigest()):
                return _result("duplicate", "this candidate was already evaluated for the same parent", **common)
        prepared.common.update(common)
        ended = False
        return prepared
    finally:
        if ended:
            discard_prepared(context, prepared)


def evaluate_prepared(context: ExecutionContext, prepared: PreparedTask, cancel: threading.Event) -> worker_pb2.Result:
    """Runs the evaluation of a prepared task and returns the Result to report."""
    try:
        result, _ = evaluate(context, prepared.study, prepared.scratch, prepared.log_dir / "evaluate.log", cancel)
        result.MergeFrom(worker_pb2.Result(**prepared.common))
        return result
    finally:
        discard_prepared(context, prepared)


def discard_prepared(context: ExecutionContext, prepared: PreparedTask) -> None:
    """Removes a prepared task's scratch copy and logs (unless the volunteer keeps them)."""
    if not context.keep_scratch:
        shutil.rmtree(prepared.scratch, ignore_errors=True)
        shutil.rmtree(prepared.log_dir, ignore_errors=True)


def execute_task(context: ExecutionContext, task: worker_pb2.Task, fetch: Fetch,
                 cancel: threading.Event, mutators: Iterable[str] = ("params",)) -> worker_pb2.Result:
    """Runs one task end to end and returns the Result to report."""
    prepared = prepare_task(context, task, fetch, cancel, mutators)
    if isinstance(prepared, worker_pb2.Result):
        return prepared
    return evaluate_prepared(context, prepared, cancel)


def _mutate(context: ExecutionContext, study: Study, task: worker_pb2.Task, scratch: Path,
            cancel: threading.Event, mutators: Iterable[str]) -> worker_pb2.Result | tuple[bytes, str, float, Usage]:
    """Lets the study's mutator edit the scratch copy; only the target may change.

    Every outcome carries what the edit cost (LLM tokens, dollars), a failed one too."""
    kind = study.mutator.kind
    if kind not in set(mutators):
        return _result("mutator-error", f"this worker cannot run the {kind!r} mutator")
    options = {**study.mutator.options, **context.mutator_options.get(kind, {})}
    try:
        program = read_regular(scratch, study.program).decode("utf-8", errors="replace")
    except NotRegularFile:  # missing, or a link the setup left: the agent gets no program
        program = ""
    before = snapshot(scratch)
    started = time.monotonic()
    try:
        mutator = create_mutator(kind, options)
        if isinstance(mutator, CommandMutator):  # the box is the volunteer's choice, never the study's
            mutator = replace(mutator, box=context.agent_box or AgentBox(sandbox=context.sandbox))
        outcome = mutator.mutate(MutationRequest(
            workdir=scratch, target=study.target, program=program, memory=task.memory,
            seed=task.seed, timeout_seconds=study.timeout, cancel=cancel,
            edits_ahead=max(0, task.edits_ahead), order_seed=task.order_seed,
        ))
    except MutatorError as exc:
        return _result("mutator-error", str(exc), mutate_seconds=time.monotonic() - started, **_cost(exc.usage))
    except ValueError as exc:
        return _result("mutator-error", str(exc), mutate_seconds=time.monotonic() - started)
    mutate_seconds = time.monotonic() - started
    spent = _cost(outcome.usage)
    others = [p for p in changed_paths(before, snapshot(scratch)) if p != study.target]
    if others:
        return _result("tampered", "the mutator changed files other than the target: " + ", ".join(others[:20]),
                       description=outcome.description, mutate_seconds=mutate_seconds, **spent)
    try:
        # The target must still be a regular file: a link would upload whatever it points to.
        candidate = read_regular(scratch, study.target)
    except NotRegularFile as exc:
        what = "deleted the target" if exc.kind == "missing" else f"left the target as a {exc.kind}"
        return _result("tampered", f"the mutator {what} {study.target}: only a regular file counts",
                       description=outcome.description, mutate_seconds=mutate_seconds, **spent)
    if candidate == task.parent.content:
        return _result("no-change", "the mutator left the target unchanged",
                       description=outcome.description, mutate_seconds=mutate_seconds, **spent)
    return candidate, outcome.description, mutate_seconds, outcome.usage


def _cost(usage: Usage) -> dict[str, object]:
    """Result fields for what an edit cost."""
    return {"llm_tokens": usage.tokens, "cost_usd": usage.cost_usd}
