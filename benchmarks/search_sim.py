"""Search scaling on a simulated clock: the coordinator's real engine, N simulated workers.

The same synthetic landscape as `search_scaling.py`, but no processes and no waiting: each
worker leases a task from the real `Engine` (SQLite store in a temporary directory), edits
with the real `params` mutator (reading the swarm memory it was sent, announcing its idea
the way a worker's heartbeat does), and reports its score after `--eval-seconds` of
simulated time (±10% jitter); workers run in parallel on the simulated clock
(`swarm_sim.py`). A hundred runs take a minute, so policies can be compared over many
seeds; the wall-clock benchmark then checks the figures on real processes.

By default the study compares absolute scores with quorum 1 and no noise (hardware-independent
metric, private cluster). `--compare paired --quorum 2 --classes 8 --sigma 0.02` runs the
configuration a public swarm needs: classes that measure with their own offset, scale, noise
and speed, every claim verified by another owner; `--liars` adds lying workers.

    python benchmarks/search_sim.py                         # N = 1, 2, 4, 8; 8 seeds each
    python benchmarks/search_sim.py --constants 4 --off 4 --seeds 20
    python benchmarks/search_sim.py --compare paired --quorum 2 --classes 8 --sigma 0.02
"""

from __future__ import annotations

import argparse
import collections
import math
import random
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from autoswarm.coordinator.engine import TaskSpec  # noqa: E402
from search_scaling import Landscape  # noqa: E402
from swarm_sim import LIAR_KINDS, Problem, Swarm, reproducible  # noqa: E402
from swarm_sim import simulate as simulate_swarm  # noqa: E402
from autoswarm.worker.mutators.base import MutationRequest  # noqa: E402
from autoswarm.worker.mutators.params import ParamsMutator  # noqa: E402


@dataclass(frozen=True)
class Run:
    seconds: float          # simulated time to reach the target (or the limit)
    evaluations: int
    decisions: collections.Counter[str]
    baseline_share: float = 0.0
    verification_share: float = 0.0
    idle_share: float = 0.0
    false_acceptances: int = 0


def _edit(task: TaskSpec, rng: random.Random, workdir: Path) -> tuple[str, str]:
    """The params mutator's edit of the task's parent, as a worker would make it."""
    assert task.parent is not None
    target = workdir / "target.py"
    target.write_bytes(task.parent.content)
    outcome = ParamsMutator().mutate(MutationRequest(workdir, "target.py", "", task.memory,
                                                     rng.randrange(2**31), 60.0))
    return target.read_text(), outcome.description


def problem(landscape: Landscape, eval_seconds: float) -> Problem:
    """The landscape as a study for `swarm_sim`, with the acceptance policy filled in."""
    def files(compare: str, quorum: int) -> dict[str, bytes]:
        toml = landscape.study_toml(eval_seconds).replace('compare = "absolute"', f'compare = "{compare}"') \
            .replace("quorum = 1", f"quorum = {quorum}")
        return {"study.toml": toml.encode(), "target.py": landscape.target(0.0, 0.0).encode()}
    return Problem("scaling", files, landscape.score, _edit)


NOISELESS = Swarm(workers=1, classes=1, compare="absolute", quorum=1, sigma=0.0)


def simulate(landscape: Landscape, workers: int, seed: int, eval_seconds: float, target: float,
             limit: float, swarm: Swarm = NOISELESS) -> Run:
    """One race to `target` with `workers` workers; deterministic in `seed`."""
    s = replace(swarm, workers=workers, eval_seconds=eval_seconds)
    out = simulate_swarm(problem(landscape, eval_seconds), s, seed, target=target, limit=limit, stop_at_target=True)
    seconds = out.time_to_target if out.time_to_target is not None else limit
    return Run(min(seconds, limit), out.evaluations, out.decisions, out.share("baseline"), out.share("verify"),
               out.idle_share, out.false_acceptances)


def spread(seconds: Iterable[float]) -> str:
    """The runs' quartiles and mean: one seed's run differs from the next by tens of percent,
    so a median of four moves by several percent with any change that alters the runs' paths
    (`benchmarks/README.md`, "Session 6"); the spread says how far to trust it."""
    values = sorted(seconds)
    if len(values) < 2:
        return f"mean {statistics.fmean(values):.1f} s" if values else "no runs"
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"quartiles {q1:.1f}-{q3:.1f} s, mean {statistics.fmean(values):.1f} s"


def main() -> None:
    reproducible()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=8, help="runs per configuration (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (seeds --seed … --seed + --seeds - 1)")
    parser.add_argument("--constants", type=int, default=Landscape.constants)
    parser.add_argument("--off", type=int, default=Landscape.off)
    parser.add_argument("--eval-seconds", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=-0.5)
    parser.add_argument("--limit", type=float, default=3600.0, help="simulated seconds before giving up")
    parser.add_argument("--decisions", action="store_true", help="also print what the evaluations were used for")
    parser.add_argument("--no-independent", action="store_true", help="skip the N independent loops (N x seeds runs)")
    for f in fields(Swarm):
        if f.name not in ("workers", "eval_seconds", "liar_kind"):
            value = getattr(NOISELESS, f.name)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--liar-kind", default="always", choices=LIAR_KINDS)
    args = parser.parse_args()
    landscape = Landscape(args.constants, args.off)
    swarm = replace(NOISELESS, **{f.name: getattr(args, f.name) for f in fields(Swarm)
                                  if f.name not in ("workers", "eval_seconds")})
    # The one-worker reference is the single-machine loop: one honest worker of class 0 that
    # keeps what it measures (quorum 1: nobody else could verify), whatever the swarm's classes.
    single_swarm = replace(swarm, classes=1, liars=0.0, quorum=1)

    singles: dict[int, float] = {}   # one-worker runs by seed, shared by the independent-loop races

    def single(seed: int) -> float:
        if seed not in singles:
            singles[seed] = simulate(landscape, 1, seed, args.eval_seconds, args.target, args.limit,
                                     single_swarm).seconds
        return singles[seed]

    seeds = range(args.seed, args.seed + args.seeds)
    base = statistics.median(single(seed) for seed in seeds)
    for n in args.workers:
        runs = [simulate(landscape, n, seed, args.eval_seconds, args.target, args.limit,
                         swarm if n > 1 else single_swarm) for seed in seeds]
        median = statistics.median(r.seconds for r in runs)
        # N independent single-worker loops, the first to arrive counts: autoresearch run N times.
        independent = math.nan if args.no_independent else statistics.median(
            min(single(1000 + seed * n + i) for i in range(n)) for seed in seeds)
        print(f"N={n}: {median:6.1f} s simulated (median of {args.seeds}; {spread(r.seconds for r in runs)}), "
              f"speedup {base / median:.2f} "
              f"({base / median / n:.0%} of N), {statistics.median(r.evaluations for r in runs):.0f} evaluations, "
              f"baselines {statistics.fmean(r.baseline_share for r in runs):.1%}, "
              f"verifications {statistics.fmean(r.verification_share for r in runs):.1%}, "
              f"idle {statistics.fmean(r.idle_share for r in runs):.1%}, "
              f"false acceptances {sum(r.false_acceptances for r in runs)}; "
              f"independent loops {independent:6.1f} s (speedup {base / independent:.2f})", flush=True)
        if args.decisions:
            total = sum((r.decisions for r in runs), collections.Counter())
            print("    " + ", ".join(f"{k} {v}" for k, v in total.most_common()))


if __name__ == "__main__":
    main()
