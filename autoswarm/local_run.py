"""`autoswarm run`: a coordinator and N workers on this machine, one study, live progress.

Everything runs as real processes talking gRPC over loopback, exactly as a swarm would;
this module only starts them, watches the coordinator's status, and writes the outputs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoswarm.control import ControlClient, ControlError
from autoswarm.report import results_tsv
from autoswarm.study import Study, load_study
from autoswarm.v1 import control_pb2
from autoswarm.worker.donation import THREAD_VARIABLES


@dataclass(frozen=True)
class RunOptions:
    study_dir: Path
    workers: int = 2
    max_evals: int = 40
    duration: float = 600.0
    out: Path | None = None
    slots_per_worker: int = 1
    lease_grace: float = 30.0
    ray: bool = False  # workers as actors on a local Ray instance instead of subprocesses
    stop_grace: float = 60.0  # seconds workers get to finish the edit and evaluation they are running


@dataclass(frozen=True)
class RunSummary:
    study: Study
    out: Path
    evaluations: int        # evaluations that ran
    improvements: int
    initial_metric: float | None
    best_metric: float | None
    best_path: Path
    results_path: Path
    error: str
    interrupted: bool = False  # stopped early by Ctrl-C or SIGTERM
    failed_edits: int = 0      # explore tasks whose agent made no edit: in the budget, not evaluations
    unchecked_claims: int = 0  # claimed improvements the budget left no room to check (kept, resumable)


def default_out_dir(study: Study) -> Path:
    return Path("runs") / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def child_command(args: list[str]) -> list[str]:
    """The command line of a child process running `autoswarm ARGS` with this interpreter.

    `-P`: `python -m` would otherwise put the current folder first on the import path, and a
    folder named `autoswarm` there (the parent of a clone) would shadow the installed package.
    """
    return [sys.executable, "-P", "-m", "autoswarm", *args]




def worker_thread_limits(cpus: int, workers: int, slots_per_worker: int,
                         environ: Mapping[str, str]) -> dict[str, str]:
    """Thread counts for the workers of one run, which all share this machine's `cpus`.

    Numerical libraries start one thread per core: N workers would each start one per core and
    slow each other down (torch's threads spin while they wait for each other), so each slot
    gets its share of the cores. One worker with one slot keeps them all; variables the user
    set are left as they are. A worker with several slots divides the cores itself.
    """
    tasks = max(1, workers) * max(1, slots_per_worker)
    if tasks <= 1:
        return {}
    share = str(max(1, cpus // tasks))
    return {name: share for name in THREAD_VARIABLES if name not in environ}


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _spawn(args: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # Own session: Ctrl-C in the terminal reaches us only, and we stop children in order.
        return subprocess.Popen(child_command(args), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **env} if env else None)


class StopRequest:
    """SIGTERM (and SIGINT) handled like Ctrl-C: the first stops the run, a second hurries the stop.

    The first signal raises KeyboardInterrupt in the main thread, which ends the progress
    loop; later ones only set `hurry`, so that they cannot break off the orderly stop of the
    children (which would orphan them).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self.hurry = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            self.hurry = True
            return
        self.requested = True
        raise KeyboardInterrupt

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _free_port() -> int:
    """A loopback port that is free right now (for the run's web page)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, ready: Path, log_path: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return int(json.loads(ready.read_text())["port"])
        if proc.poll() is not None:
            raise RuntimeError(f"the coordinator exited with {proc.returncode}:\n{_tail(log_path)}")
        time.sleep(0.05)
    raise RuntimeError(f"the coordinator did not start within {timeout:.0f}s:\n{_tail(log_path)}")


def _stop(procs: list[subprocess.Popen], grace: float, stop: StopRequest | None = None) -> None:
    """SIGTERM (finish then stop), a second SIGTERM (stop now), then SIGKILL.

    `grace` is how long the first may take; a second signal to us (`stop.hurry`) cuts it short.
    """
    for attempt, wait in ((1, grace), (2, 5.0)):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if attempt == 1 and stop is not None and stop.hurry:
                break
            time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


ProgressFn = Callable[[control_pb2.StudyStatus, control_pb2.StatusResponse, float], None]


def run_study(options: RunOptions, on_progress: ProgressFn = lambda s, st, e: None) -> RunSummary:
    """Runs the study to its budget and writes results.tsv, best/<target> and the db under `out`.

    Ctrl-C or SIGTERM (also under nohup) ends the search early: the workers get
    `options.stop_grace` seconds to finish what they run, the outputs are still written, and
    no child process is left behind. Running again with the same `out` resumes the study.
    """
    with StopRequest() as stop:
        return _run_study(options, on_progress, stop)


def _run_study(options: RunOptions, on_progress: ProgressFn, stop: StopRequest) -> RunSummary:
    study = load_study(options.study_dir)
    out = (options.out or default_out_dir(study)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    ready = out / "coordinator.json"
    ready.unlink(missing_ok=True)
    coordinator = _spawn(["coordinator", "--db", str(out / "swarm.db"), "--listen", "127.0.0.1:0",
                          "--ready-file", str(ready), "--lease-grace", str(options.lease_grace),
                          # No fixed metrics port (several runs may share a machine); no tokens: loopback only.
                          "--metrics-port", "0", "--auth", "none", "--web-port", str(_free_port())],
                         logs / "coordinator.log")
    workers: list[subprocess.Popen] = []
    ray_workers = None
    try:
        port = _wait_ready(coordinator, ready, logs / "coordinator.log")
        web_port = json.loads(ready.read_text()).get("web_port")
        if web_port:
            print(f"web page: http://127.0.0.1:{web_port}/ (while the run lasts)", file=sys.stderr, flush=True)
        address = f"127.0.0.1:{port}"
        with ControlClient(address) as control:
            _add_or_update(control, options)
            if options.ray:
                from autoswarm.worker.ray_pool import ActorSpec, LocalRayWorkers

                # The same worker loop in Ray actors; each logs to workers/<name>/worker.log. Each
                # gets its share of this machine's cores, as the local workers below would.
                ray_workers = LocalRayWorkers.start(ActorSpec(
                    coordinator=address, mutators=(study.mutator.kind,), slots=options.slots_per_worker,
                    state_root=str(out / "workers"), cpus=float(max(1, _usable_cpus() // max(1, options.workers)))),
                    options.workers)
            threads = worker_thread_limits(_usable_cpus(), options.workers, options.slots_per_worker, os.environ)
            for i in range(0 if options.ray else options.workers):
                workers.append(_spawn(["worker", "--coordinator", address, "--name", f"local-{i + 1}",
                                       "--slots", str(options.slots_per_worker),
                                       # Your own study: its mutator (llm, command...) is trusted.
                                       "--mutator", study.mutator.kind,
                                       "--state-dir", str(out / "workers" / f"worker-{i + 1}")],
                                      logs / f"worker-{i + 1}.log", threads))
            started = time.monotonic()
            status = _study_status(control.status(), study.name)
            try:
                while True:
                    elapsed = time.monotonic() - started
                    response = control.status()
                    status = _study_status(response, study.name)
                    on_progress(status, response, elapsed)
                    if status.done or elapsed >= options.duration:
                        break
                    if workers and all(w.poll() is not None for w in workers):
                        raise RuntimeError(f"all workers exited; see {logs}:\n{_tail(logs / 'worker-1.log')}")
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass  # stop early, still write what was found
            _stop(workers, options.stop_grace, stop)
            if ray_workers:
                ray_workers.stop(grace=options.stop_grace)
            response = control.status()
            status = _study_status(response, study.name)
            on_progress(status, response, time.monotonic() - started)
            history = control.history(study.name)
            results_path = out / "results.tsv"
            results_path.write_text(results_tsv(history.metric, history.rows))
            best = control.version(study.name)
            best_path = out / "best" / Path(study.target).name
            best_path.parent.mkdir(parents=True, exist_ok=True)
            best_path.write_bytes(best.content)
        return RunSummary(
            study=study, out=out, evaluations=status.evaluations - status.failed_edits,
            failed_edits=status.failed_edits, improvements=status.improvements,
            initial_metric=status.initial_metric if status.has_initial_metric else None,
            best_metric=status.champion_metric if status.has_champion_metric else None,
            best_path=best_path, results_path=results_path, error=status.error, interrupted=stop.requested,
            unchecked_claims=status.pending_claims,
        )
    except ControlError as exc:
        raise RuntimeError(f"{exc}\ncoordinator log:\n{_tail(logs / 'coordinator.log')}") from None
    finally:
        _stop(workers, options.stop_grace, stop)
        if ray_workers:
            ray_workers.stop(grace=options.stop_grace)
        _stop([coordinator], 5.0, stop)


def _add_or_update(control: ControlClient, options: RunOptions) -> None:
    """Adds the study; resuming one whose program, data or mutator settings were edited, updates it.

    A change to what is measured (target, metric, evaluate...) is still refused, with the reason.
    """
    try:
        control.add_study(options.study_dir, options.max_evals)
    except ControlError as exc:
        if not str(exc).startswith("ALREADY_EXISTS") or "was removed" in str(exc):
            raise
        updated = control.update_study(options.study_dir)
        control.change_study(updated.study, max_evaluations=options.max_evals)


def _study_status(response: control_pb2.StatusResponse, name: str) -> control_pb2.StudyStatus:
    for s in response.studies:
        if s.name == name:
            return s
    raise RuntimeError(f"the coordinator does not list study {name!r}")
