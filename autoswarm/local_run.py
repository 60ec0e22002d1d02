"""`autoswarm run`: a coordinator and N workers on this machine, one study, live progress.

Everything runs as real processes talking gRPC over loopback, exactly as a swarm would;
this module only starts them, watches the coordinator's status, and writes the outputs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoswarm.control import ControlClient, ControlError
from autoswarm.report import results_tsv
from autoswarm.study import Study, load_study
from autoswarm.v1 import control_pb2


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


@dataclass(frozen=True)
class RunSummary:
    study: Study
    out: Path
    evaluations: int
    improvements: int
    initial_metric: float | None
    best_metric: float | None
    best_path: Path
    results_path: Path
    error: str


def default_out_dir(study: Study) -> Path:
    return Path("runs") / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # Own session: Ctrl-C in the terminal reaches us only, and we stop children in order.
        return subprocess.Popen([sys.executable, "-m", "autoswarm", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(proc: subprocess.Popen, ready: Path, log_path: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return int(json.loads(ready.read_text())["port"])
        if proc.poll() is not None:
            raise RuntimeError(f"the coordinator exited with {proc.returncode}:\n{_tail(log_path)}")
        time.sleep(0.05)
    raise RuntimeError(f"the coordinator did not start within {timeout:.0f}s:\n{_tail(log_path)}")


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM (finish then stop), a second SIGTERM (stop now), then SIGKILL."""
    for attempt, wait in ((1, grace), (2, 5.0)):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run_study(options: RunOptions, on_progress: Callable[[control_pb2.StudyStatus, control_pb2.StatusResponse, float], None]
              = lambda s, st, e: None) -> RunSummary:
    """Runs the study to its budget and writes results.tsv, best/<target> and the db under `out`."""
    study = load_study(options.study_dir)
    out = (options.out or default_out_dir(study)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    ready = out / "coordinator.json"
    ready.unlink(missing_ok=True)
    coordinator = _spawn(["coordinator", "--db", str(out / "swarm.db"), "--listen", "127.0.0.1:0",
                          "--ready-file", str(ready), "--lease-grace", str(options.lease_grace),
                          # No fixed metrics port (several runs may share a machine); no tokens: loopback only.
                          "--metrics-port", "0", "--auth", "none"],
                         logs / "coordinator.log")
    workers: list[subprocess.Popen] = []
    ray_workers = None
    try:
        port = _wait_ready(coordinator, ready, logs / "coordinator.log")
        address = f"127.0.0.1:{port}"
        with ControlClient(address) as control:
            control.add_study(options.study_dir, options.max_evals)
            if options.ray:
                from autoswarm.worker.ray_pool import ActorSpec, LocalRayWorkers

                # The same worker loop in Ray actors; each logs to workers/<name>/worker.log.
                ray_workers = LocalRayWorkers.start(ActorSpec(
                    coordinator=address, mutators=(study.mutator.kind,), slots=options.slots_per_worker,
                    state_root=str(out / "workers")), options.workers)
            for i in range(0 if options.ray else options.workers):
                workers.append(_spawn(["worker", "--coordinator", address, "--name", f"local-{i + 1}",
                                       "--slots", str(options.slots_per_worker),
                                       # Your own study: its mutator (llm, command...) is trusted.
                                       "--mutator", study.mutator.kind,
                                       "--state-dir", str(out / "workers" / f"worker-{i + 1}")],
                                      logs / f"worker-{i + 1}.log"))
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
            _stop(workers, grace=3.0)
            if ray_workers:
                ray_workers.stop(grace=3.0)
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
            study=study, out=out, evaluations=status.evaluations, improvements=status.improvements,
            initial_metric=status.initial_metric if status.has_initial_metric else None,
            best_metric=status.champion_metric if status.has_champion_metric else None,
            best_path=best_path, results_path=results_path, error=status.error,
        )
    except ControlError as exc:
        raise RuntimeError(f"{exc}\ncoordinator log:\n{_tail(logs / 'coordinator.log')}") from None
    finally:
        _stop(workers, grace=3.0)
        if ray_workers:
            ray_workers.stop(grace=3.0)
        _stop([coordinator], grace=5.0)


def _study_status(response: control_pb2.StatusResponse, name: str) -> control_pb2.StudyStatus:
    for s in response.studies:
        if s.name == name:
            return s
    raise RuntimeError(f"the coordinator does not list study {name!r}")
