"""Seeded simulation of global acceptance: noise, hardware classes and lying workers.

Drives the coordinator's real engine (SQLite store in a temporary directory, no network)
with simulated workers. A synthetic target has a known true score; each hardware class adds
its own offset (a faster GPU trains further in the same budget), every run adds Gaussian
noise, and liars add a large fake improvement to whatever they report.

Prints false acceptances (a new champion whose true score is not better than the one it
replaced), missed true improvements (honest edits that truly helped their parent by ≥ 4σ and
that acceptance turned down: discarded, or claimed and then not confirmed), and
verification overhead (verify evaluations / all evaluations). Liars lie on their own claims
*and* on every verification they run. By default they belong to one owner (one attacker
with several machines), which the quorum's distinct-owner rule sees through;
`--colluding-owners 1` gives each liar its own owner (independent attackers who confirm
each other), the case no replication scheme can fully stop before the liars are caught.

    python benchmarks/acceptance_sim.py                       # the default scenario
    python benchmarks/acceptance_sim.py --liars 0.25 --quorum 2 --evaluations 3000
    python benchmarks/acceptance_sim.py --write-readme        # records the result in benchmarks/README.md
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn  # noqa: E402
from autoswarm.coordinator.store import Store  # noqa: E402
from autoswarm.worker.mutators.params import perturb_constants  # noqa: E402

OPTIMUM = {"A": 3.0, "B": 0.5, "C": 40.0, "D": 2.0}
START = {"A": 1.0, "B": 0.05, "C": 8.0, "D": 6.0}


def true_score(source: str) -> float:
    """Higher is better; 0 at the optimum. Each constant contributes on a log scale."""
    values = {k: float(v) for k, v in re.findall(r"^([A-D]) = (\S+)$", source, re.M)}
    return -sum(math.log(values[k] / OPTIMUM[k]) ** 2 for k in OPTIMUM)


@dataclass(frozen=True)
class Scenario:
    workers: int = 8
    classes: int = 2
    liars: float = 0.25
    quorum: int = 2
    sigma: float = 0.02
    class_offset: float = 0.5
    lie_boost: float = 1.0
    evaluations: int = 2000
    colluding_owners: int = 0     # 0: all liars are one owner (one attacker, many machines); else distinct owners
    seed: int = 7


@dataclass(frozen=True)
class Outcome:
    evaluations: int
    verifications: int
    baselines: int
    champions: int
    false_acceptances: int
    true_improvements: int
    missed_true_improvements: int
    liars_quarantined: int
    liars: int
    honest_quarantined: int
    start_score: float
    final_score: float

    @property
    def verification_overhead(self) -> float:
        return self.verifications / max(self.evaluations, 1)


def _study_files(quorum: int) -> dict[str, bytes]:
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
        compare = "paired"
        """)
    return {"study.toml": toml.encode(), "target.py": constants.encode()}


def simulate(s: Scenario) -> Outcome:
    """Runs one seeded scenario through the real engine and scores its decisions."""
    rng = random.Random(s.seed)
    with tempfile.TemporaryDirectory() as tmp:
        clock = [1_000_000.0]
        engine = Engine(Store(Path(tmp) / "sim.db"), EngineConfig(), clock=lambda: clock[0])
        engine.add_study(pack_files(_study_files(s.quorum)).data)
        workers = []
        liar_count = round(s.workers * s.liars)
        for i in range(s.workers):
            cls = i % s.classes
            liar = i < liar_count
            owner = f"attacker{i if s.colluding_owners else 0}" if liar else f"volunteer{i}"
            wid, _ = engine.register("", f"w{i}", {"cpu_model": f"Class{cls} CPU", "cpu_cores": 2, "gpus": []}, 1,
                                     ["params"], owner=owner)
            workers.append((wid, cls, liar))
        liar_ids = {wid for wid, _, liar in workers if liar}
        helpful: set[str] = set()           # explore leases whose edit truly improved its parent by >= 4σ
        evaluations = verifications = baselines = 0
        stall = 0
        while evaluations < s.evaluations and stall < 10 * s.workers:
            wid, cls, liar = workers[rng.randrange(len(workers))]
            clock[0] += 1.0
            task = engine.lease(wid)
            if task is None:
                stall += 1
                continue
            stall = 0
            if task.kind == "explore":
                parent = task.parent.content.decode()
                try:
                    text, description = perturb_constants(parent, seed=rng.randrange(2**31))
                except Exception:
                    engine.release(wid, [task.lease_id])
                    continue
                if true_score(text) - true_score(parent) >= 4 * s.sigma and not liar:
                    helpful.add(task.lease_id)
                candidate = text.encode()
            else:
                text, description, candidate = task.candidate.content.decode(), "", b""
                verifications += task.kind == "verify"
                baselines += task.kind == "baseline"
            measured = true_score(text) + cls * s.class_offset + rng.gauss(0.0, s.sigma)
            if liar and task.kind != "baseline":
                measured += s.lie_boost
            engine.report(wid, task.lease_id, ResultIn("ok", measured, {}, candidate, description, "", {}))
            evaluations += 1
        chain = engine.store.champions("sim")
        contents = [engine.store.version("sim", c.version).content.decode() for c in chain]
        false_acceptances = sum(true_score(b) <= true_score(a) for a, b in zip(contents, contents[1:]))
        # Missed: a real improvement that acceptance turned down (conflicting with a parallel edit
        # on the same line, or already included in the champion, is not a miss of acceptance).
        turned_down = {"discard", "rejected", "unjudged"}
        missed = sum(engine.store.result(lease).decision in turned_down for lease in helpful)
        summaries = {w.record.id: w for w in engine.worker_summaries()}
        outcome = Outcome(
            evaluations=evaluations, verifications=verifications, baselines=baselines, champions=len(chain) - 1,
            false_acceptances=false_acceptances, true_improvements=len(helpful),
            missed_true_improvements=missed,
            liars_quarantined=sum(summaries[w].trust.quarantined for w in liar_ids), liars=len(liar_ids),
            honest_quarantined=sum(summaries[w].trust.quarantined for w, _, liar in workers if not liar),
            start_score=true_score(contents[0]), final_score=true_score(contents[-1]),
        )
        engine.store.close()
        return outcome


def report(s: Scenario, o: Outcome) -> str:
    return (
        f"| {s.workers} | {s.classes} | {o.liars}{' (distinct owners)' if s.colluding_owners and o.liars else ''} | {s.quorum} | {s.sigma:g} | {o.evaluations} | "
        f"{o.champions} | **{o.false_acceptances}** | {o.missed_true_improvements}/{o.true_improvements} | "
        f"**{o.verification_overhead:.1%}** | {o.baselines / max(o.evaluations, 1):.1%} | "
        f"{o.liars_quarantined}/{o.liars} | {o.honest_quarantined} | {o.start_score:.3f} → {o.final_score:.3f} |"
    )


HEADER = (
    "| workers | classes | liars | quorum | σ | evaluations | champions | false acceptances | missed true "
    "improvements | verification overhead | baseline share | liars quarantined | honest quarantined | true score |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field, value in Scenario().__dict__.items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seeds", type=int, default=3, help="run this many seeds (seed, seed+1, ...)")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    rows = []
    for offset in range(args.seeds):
        scenario = Scenario(**{k: getattr(args, k) for k in Scenario().__dict__ if k != "seed"},
                            seed=args.seed + offset)
        outcome = simulate(scenario)
        rows.append(report(scenario, outcome))
    table = HEADER + "\n" + "\n".join(rows)
    print(table)
    if args.write_readme:
        readme = Path(__file__).with_name("README.md")
        text = readme.read_text() if readme.exists() else "# Benchmarks\n"
        section = f"<!-- acceptance_sim -->\n{table}\n<!-- /acceptance_sim -->"
        if "<!-- acceptance_sim -->" in text:
            text = re.sub(r"<!-- acceptance_sim -->.*?<!-- /acceptance_sim -->", section, text, flags=re.S)
        else:
            text += "\n" + section + "\n"
        readme.write_text(text)


if __name__ == "__main__":
    main()
