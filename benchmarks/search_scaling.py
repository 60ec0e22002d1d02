"""Search scaling: time to reach a target score with 1, 2, 4, 8 workers.

A synthetic study with a known optimum (`Landscape`): constants on a log-scale bowl, a few of
them far off. Each evaluation waits out `--eval-seconds` the way a GPU job would (so 8
workers do not fight over 2 CPU cores) and prints the score plus optional Gaussian noise.
Everything is real: a coordinator process and N worker processes over loopback, with the
offline `params` mutator. `search_sim.py` runs the same landscape through the coordinator's
engine on a simulated clock, for many seeds in seconds.

For comparison, N *independent* single-worker loops (N coordinators, one worker each) race
to the same target and the first to reach it counts — what you get by running autoresearch
N times without a swarm.

    python benchmarks/search_scaling.py                      # N = 1, 2, 4, 8; 3 seeds each
    python benchmarks/search_scaling.py --workers 1 8 --seeds 1 --eval-seconds 0.5
    python benchmarks/search_scaling.py --constants 4 --off 4   # every constant off: few edits fail
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoswarm.control import ControlClient  # noqa: E402

@dataclass(frozen=True)
class Landscape:
    """A synthetic study with a known optimum: `constants` module-level constants on a log-scale
    bowl (score 0 at the optimum, higher is better), of which `off` start 10x too high or too
    low and the rest at their optimum — like a training script whose few mistuned knobs hide
    among many that are fine, so that most edits do not help.
    """

    constants: int = 16
    off: int = 3

    def optimum(self) -> dict[str, float]:
        rng = random.Random(2026)
        return {f"K{i:02d}": float(f"{10 ** rng.uniform(-3, 3):.3g}") for i in range(self.constants)}

    def start(self) -> dict[str, float]:
        rng = random.Random(11)
        return {name: float(f"{value * (10.0 if rng.random() < 0.5 else 0.1) if i < self.off else value:.3g}")
                for i, (name, value) in enumerate(self.optimum().items())}

    def score(self, source: str) -> float:
        """The true (noise-free) score of a version of the target."""
        values = {k: float(v) for k, v in re.findall(r"^(K\d+) = (\S+)$", source, re.M)}
        return -sum(math.log(values[k] / v) ** 2 for k, v in self.optimum().items())

    def target(self, eval_seconds: float, noise: float) -> str:
        """The target file: the constants, then an evaluation that waits and prints the score."""
        constants = "".join(f"{k} = {v!r}\n" for k, v in self.start().items())
        return constants + textwrap.dedent(f"""\
            import math, random, time
            OPTIMUM = {self.optimum()!r}
            time.sleep({eval_seconds})
            score = -sum(math.log(globals()[k] / v) ** 2 for k, v in OPTIMUM.items())
            print(f"score: {{score + random.gauss(0.0, {noise})}}")
            """)

    def study_toml(self, eval_seconds: float) -> str:
        return textwrap.dedent(f"""\
            name = "scaling"
            target = "target.py"
            evaluate = "python target.py"
            metric = "score"
            direction = "maximize"
            timeout = {max(30, 10 * eval_seconds)}
            [acceptance]
            compare = "absolute"
            quorum = 1
            """)


def write_study(directory: Path, landscape: Landscape, eval_seconds: float, noise: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study.toml").write_text(landscape.study_toml(eval_seconds))
    (directory / "target.py").write_text(landscape.target(eval_seconds, noise))
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "autoswarm", *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait()


class Swarm:
    """One coordinator and `workers` worker processes on one study."""

    def __init__(self, root: Path, study: Path, workers: int) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.address = f"127.0.0.1:{free_port()}"
        ready = root / "ready.json"
        self.procs = [spawn(["coordinator", "--db", str(root / "swarm.db"), "--listen", self.address,
                             "--ready-file", str(ready), "--metrics-port", "0", "--auth", "none"], root / "coord.log")]
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"coordinator did not start: {(root / 'coord.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.control = ControlClient(self.address)
        self.study = study
        self.workers = workers
        self.procs += [spawn(["worker", "--coordinator", self.address, "--name", f"w{i}", "--slots", "1",
                              "--state-dir", str(root / f"w{i}")], root / f"w{i}.log") for i in range(workers)]

    def ready(self) -> bool:
        return len(self.control.status().workers) >= self.workers

    def start(self) -> None:
        self.control.add_study(self.study)

    def best(self) -> float | None:
        try:
            s = self.control.status().studies[0]
        except (grpc.RpcError, IndexError, RuntimeError):
            return None
        return s.champion_metric if s.has_champion_metric else None

    def evaluations(self) -> int:
        return self.control.status().studies[0].evaluations

    def close(self) -> None:
        self.control.close()
        stop(self.procs)


def race(swarms: list[Swarm], target: float, limit: float) -> tuple[float, int]:
    """Seconds until any swarm's champion reaches `target` (or `limit`), and evaluations spent.

    The clock starts when every worker process has registered, so interpreter start-up on a
    loaded machine is not counted as search time.
    """
    deadline = time.monotonic() + 120
    while not all(s.ready() for s in swarms):
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not register within 120 s")
        time.sleep(0.1)
    for s in swarms:
        s.start()
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if any((b := s.best()) is not None and b >= target for s in swarms):
            break
        time.sleep(0.2)
    return time.monotonic() - started, sum(s.evaluations() for s in swarms)


def run(workers: int, independent: bool, args: argparse.Namespace, tmp: Path, seed: int) -> tuple[float, int]:
    study = write_study(tmp / f"study-{seed}", Landscape(args.constants, args.off), args.eval_seconds, args.noise)
    layout = [1] * workers if independent else [workers]
    swarms = [Swarm(tmp / f"{'ind' if independent else 'swarm'}-{workers}-{seed}-{i}", study, n)
              for i, n in enumerate(layout)]
    try:
        return race(swarms, args.target, args.limit)
    finally:
        for s in swarms:
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=3, help="repetitions per configuration (median reported)")
    parser.add_argument("--eval-seconds", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--constants", type=int, default=Landscape.constants, help="constants in the target")
    parser.add_argument("--off", type=int, default=Landscape.off, help="how many of them start 10x off their optimum")
    parser.add_argument("--target", type=float, default=-0.5, help="true score to reach (optimum 0; start -5.3 per constant off)")
    parser.add_argument("--limit", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="autoswarm-scaling-") as name:
        tmp = Path(name)
        base: float | None = None
        for n in args.workers:
            swarm = [run(n, False, args, tmp, seed) for seed in range(args.seeds)]
            independent = [run(n, True, args, tmp, seed) for seed in range(args.seeds)] if n > 1 else swarm
            t_swarm = statistics.median(t for t, _ in swarm)
            t_ind = statistics.median(t for t, _ in independent)
            base = base if base is not None else t_swarm
            row = {"workers": n, "swarm_seconds": t_swarm, "swarm_speedup": base / t_swarm,
                   "independent_seconds": t_ind, "independent_speedup": base / t_ind,
                   "swarm_evaluations": statistics.median(e for _, e in swarm)}
            rows.append(row)
            print(f"N={n}: swarm {t_swarm:6.1f} s (speedup {row['swarm_speedup']:.2f}, "
                  f"{row['swarm_speedup'] / n:.0%} of N)   independent loops {t_ind:6.1f} s "
                  f"(speedup {row['independent_speedup']:.2f})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
