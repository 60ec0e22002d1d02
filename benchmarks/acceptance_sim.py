"""Seeded simulation of global acceptance: noise, hardware classes and lying workers.

Drives the coordinator's real engine (SQLite store in a temporary directory, no network)
with workers running in parallel on a simulated clock (`swarm_sim.py`). A synthetic target
has a known true score (four constants on a log-scale bowl); each hardware class measures it
with its own offset, scale, noise and speed; liars of the chosen kind lie.

Prints, per configuration and over all seeds: the share of evaluations that were baselines
and verifications, the share of worker time spent idle, false acceptances (a new champion
whose true score is not better than the one it replaced), frozen studies, missed true
improvements, the median simulated time until the champion's true score reaches the target,
and how many evaluations went to workers already quarantined.

    python benchmarks/acceptance_sim.py                       # 8 workers, 2 classes, 25% liars, paired, quorum 2
    python benchmarks/acceptance_sim.py --workers 64 --classes 32 --seeds 10
    python benchmarks/acceptance_sim.py --liar-kind always verify-only inflating baseline spoofer
    python benchmarks/acceptance_sim.py --compare absolute --quorum 1 --liars 0
    python benchmarks/acceptance_sim.py --write-readme        # records the table in benchmarks/README.md
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import multiprocessing
import re
import statistics
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from autoswarm.worker.mutators.params import perturb_constants  # noqa: E402
from swarm_sim import LIAR_KINDS, Outcome, Problem, Swarm, reproducible, simulate  # noqa: E402

OPTIMUM = {"A": 3.0, "B": 0.5, "C": 40.0, "D": 2.0}
START = {"A": 1.0, "B": 0.05, "C": 8.0, "D": 6.0}


def true_score(source: str) -> float:
    """Higher is better; 0 at the optimum. Each constant contributes on a log scale."""
    values = {k: float(v) for k, v in re.findall(r"^([A-D]) = (\S+)$", source, re.M)}
    return -sum(math.log(values[k] / OPTIMUM[k]) ** 2 for k in OPTIMUM)


def study_files(compare: str, quorum: int) -> dict[str, bytes]:
    constants = "".join(f"{k} = {v}\n" for k, v in START.items())
    toml = textwrap.dedent(f"""\
        name = "sim"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "maximize"
        time_budget = 60
        timeout = 120
        [acceptance]
        quorum = {quorum}
        compare = "{compare}"
        """)
    return {"study.toml": toml.encode(), "target.py": constants.encode()}


def _edit(task, rng, workdir):  # type: ignore[no-untyped-def]
    return perturb_constants(task.parent.content.decode(), seed=rng.randrange(2**31))


PROBLEM = Problem("sim", study_files, true_score, _edit)

HEADER = (
    "| workers | classes | liars | compare, quorum | seeds | evaluations | baseline share | verification share "
    "| idle share | false acceptances | frozen studies | missed true improvements | time to target (median) "
    "| evaluations by quarantined workers | liars quarantined | honest quarantined |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(swarm: Swarm, runs: list[Outcome]) -> str:
    """One table row summarising the runs of one configuration over its seeds."""
    evaluations = sum(r.evaluations for r in runs)

    def share(kind: str) -> float:
        return sum(r.by_kind[kind] for r in runs) / max(evaluations, 1)

    idle = sum(r.idle_seconds for r in runs) / max(sum(r.idle_seconds + r.busy_seconds for r in runs), 1e-9)
    times = [r.time_to_target for r in runs]
    reached = [t for t in times if t is not None]
    ttt = f"{statistics.median(reached):.1f} s" if reached else "—"
    if reached and len(reached) < len(runs):
        ttt += f" ({len(reached)}/{len(runs)} reached)"
    liars = sum(r.liars for r in runs)
    liar_text = f"{runs[0].liars} {swarm.liar_kind}" if runs[0].liars else "0"
    if swarm.colluding_owners and runs[0].liars:
        liar_text += " (distinct owners)"
    false = sum(r.false_acceptances for r in runs)
    false_seeds = sum(r.false_acceptances > 0 for r in runs)
    return (
        f"| {swarm.workers} | {swarm.classes} | {liar_text} | {swarm.compare}, {swarm.quorum} | {len(runs)} "
        f"| {evaluations} | {share('baseline'):.1%} | {share('verify'):.1%} | {idle:.1%} "
        f"| **{false}** ({false_seeds}/{len(runs)} seeds) | {sum(r.frozen for r in runs)} "
        f"| {sum(r.missed_true_improvements for r in runs)}/{sum(r.true_improvements for r in runs)} | {ttt} "
        f"| {sum(r.quarantined_evaluations for r in runs)} "
        f"| {sum(r.liars_quarantined for r in runs)}/{liars} | {sum(r.honest_quarantined for r in runs)} |"
    )


def main() -> None:
    reproducible()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Swarm(classes=2, liars=0.25)
    for f in fields(Swarm):
        if f.name != "liar_kind":
            value = getattr(defaults, f.name)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--liar-kind", nargs="+", default=["always"], choices=LIAR_KINDS,
                        help="one table row per kind")
    parser.add_argument("--evaluations", type=int, default=2000, help="evaluations per run")
    parser.add_argument("--target", type=float, default=-0.2, help="true score that counts as reaching the target")
    parser.add_argument("--seeds", type=int, default=3, help="runs per row (seed, seed+1, ...)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes the seeds run in (a run is a function of its seed, wherever it runs)")
    parser.add_argument("--write-readme", action="store_true", help="replace the table in benchmarks/README.md")
    args = parser.parse_args()
    rows = []
    # Forked, the workers keep this process's fixed hash seed (`reproducible`).
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) if args.jobs > 1 \
            else contextlib.nullcontext() as pool:
        for kind in args.liar_kind:
            swarm = replace(defaults, **{f.name: getattr(args, f.name) for f in fields(Swarm) if f.name != "liar_kind"},
                            liar_kind=kind)
            seeds = [args.seed + s for s in range(args.seeds)]
            run = functools.partial(simulate, PROBLEM, swarm, target=args.target, max_evaluations=args.evaluations)
            runs = list(pool.map(run, seeds) if pool is not None else map(run, seeds))
            rows.append(row(swarm, runs))
            print(rows[-1], flush=True)
            false = [seed for seed, r in zip(seeds, runs) if r.false_acceptances]
            if false:
                print(f"  {kind}: false acceptances in seeds {', '.join(map(str, false))}", flush=True)
    table = HEADER + "\n" + "\n".join(rows)
    print(table)
    if args.write_readme:
        readme = Path(__file__).with_name("README.md")
        text = readme.read_text() if readme.exists() else "# Benchmarks\n"
        section = f"<!-- acceptance_sim -->\n{table}\n<!-- /acceptance_sim -->"
        if "<!-- acceptance_sim -->" in text:
            text = re.sub(r"<!-- acceptance_sim -->.*?<!-- /acceptance_sim -->", lambda _: section, text, flags=re.S)
        else:
            text += "\n" + section + "\n"
        readme.write_text(text)


if __name__ == "__main__":
    main()
