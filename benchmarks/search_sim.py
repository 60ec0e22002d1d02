"""Search scaling on a simulated clock: the coordinator's real engine, N simulated workers.

The same synthetic landscape as `search_scaling.py`, but no processes and no waiting: each
worker leases a task from the real `Engine` (SQLite store in a temporary directory), edits
with the real `params` mutator (reading the swarm memory it was sent, announcing its idea
the way a worker's heartbeat does), and reports the true score after `--eval-seconds` of
simulated time (±10% jitter). A hundred runs take a minute, so policies can be compared
over many seeds; the wall-clock benchmark then checks the figures on real processes.

    python benchmarks/search_sim.py                         # N = 1, 2, 4, 8; 8 seeds each
    python benchmarks/search_sim.py --constants 4 --off 4 --seeds 20
"""

from __future__ import annotations

import argparse
import collections
import heapq
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn, TaskSpec  # noqa: E402
from autoswarm.coordinator.store import Store  # noqa: E402
from search_scaling import Landscape  # noqa: E402
from autoswarm.worker.mutators.base import MutationRequest  # noqa: E402
from autoswarm.worker.mutators.params import ParamsMutator  # noqa: E402

JITTER = 0.1


@dataclass(frozen=True)
class Run:
    seconds: float          # simulated time to reach the target (or the limit)
    evaluations: int
    decisions: collections.Counter[str]


def _edit(task: TaskSpec, rng: random.Random, workdir: Path) -> tuple[str, str]:
    """The params mutator's edit of the task's parent, as a worker would make it."""
    assert task.parent is not None
    target = workdir / "target.py"
    target.write_bytes(task.parent.content)
    outcome = ParamsMutator().mutate(MutationRequest(workdir, "target.py", "", task.memory,
                                                     rng.randrange(2**31), 60.0))
    return target.read_text(), outcome.description


def simulate(landscape: Landscape, workers: int, seed: int, eval_seconds: float, target: float,
             limit: float) -> Run:
    """One race to `target` with `workers` workers; deterministic in `seed`."""
    rng = random.Random(seed)
    source = landscape.target(0.0, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        clock = [1_000_000.0]
        engine = Engine(Store(Path(tmp) / "sim.db"), EngineConfig(), clock=lambda: clock[0])
        engine.add_study(pack_files({"study.toml": landscape.study_toml(eval_seconds).encode(),
                                     "target.py": source.encode()}).data)
        ids = [engine.register("", f"w{i}", {"cpu_model": "Sim", "cpu_cores": 2, "gpus": []}, 1, ["params"])[0]
               for i in range(workers)]
        start = clock[0]
        # (time, worker, task in progress or None, its source, its description)
        queue: list[tuple[float, int, TaskSpec | None, str, str]] = [(start + 1e-3 * i, i, None, "", "")
                                                                    for i in range(workers)]
        evaluations = 0
        try:
            while queue and clock[0] - start < limit:
                clock[0], i, task, text, description = heapq.heappop(queue)
                if task is not None:
                    candidate = text.encode() if task.kind == "explore" else b""
                    engine.report(ids[i], task.lease_id, ResultIn("ok", landscape.score(text), {}, candidate,
                                                                  description, "", {}))
                    evaluations += 1
                    if (engine.study_summaries()[0].champion.metric or -1e9) >= target:
                        break
                task = engine.lease(ids[i])
                if task is None:
                    heapq.heappush(queue, (clock[0] + 0.5, i, None, "", ""))
                    continue
                if task.kind == "explore":
                    text, description = _edit(task, rng, Path(tmp))
                    engine.heartbeat(ids[i], [task.lease_id], "working", {task.lease_id: description})
                else:
                    assert task.candidate is not None
                    text, description = task.candidate.content.decode(), ""
                done = clock[0] + eval_seconds * (1 + rng.uniform(-JITTER, JITTER))
                heapq.heappush(queue, (done, i, task, text, description))
            decisions = collections.Counter(f"{r.kind}:{r.decision}" for r in engine.store.results("scaling"))
            return Run(min(clock[0] - start, limit), evaluations, decisions)
        finally:
            engine.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=8, help="runs per configuration (median reported)")
    parser.add_argument("--constants", type=int, default=Landscape.constants)
    parser.add_argument("--off", type=int, default=Landscape.off)
    parser.add_argument("--eval-seconds", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=-0.5)
    parser.add_argument("--limit", type=float, default=3600.0, help="simulated seconds before giving up")
    parser.add_argument("--decisions", action="store_true", help="also print what the evaluations were used for")
    args = parser.parse_args()
    landscape = Landscape(args.constants, args.off)

    singles: dict[int, float] = {}   # one-worker runs by seed, shared by the independent-loop races

    def single(seed: int) -> float:
        if seed not in singles:
            singles[seed] = simulate(landscape, 1, seed, args.eval_seconds, args.target, args.limit).seconds
        return singles[seed]

    base: float | None = None
    for n in args.workers:
        runs = [simulate(landscape, n, seed, args.eval_seconds, args.target, args.limit) for seed in range(args.seeds)]
        median = statistics.median(r.seconds for r in runs)
        base = base if base is not None else median
        # N independent single-worker loops, the first to arrive counts: autoresearch run N times.
        independent = statistics.median(min(single(1000 + seed * n + i) for i in range(n)) for seed in range(args.seeds))
        print(f"N={n}: {median:6.1f} s simulated (median of {args.seeds}), speedup {base / median:.2f} "
              f"({base / median / n:.0%} of N), {statistics.median(r.evaluations for r in runs):.0f} evaluations; "
              f"independent loops {independent:6.1f} s (speedup {base / independent:.2f})", flush=True)
        if args.decisions:
            total = sum((r.decisions for r in runs), collections.Counter())
            print("    " + ", ".join(f"{k} {v}" for k, v in total.most_common()))


if __name__ == "__main__":
    main()
