"""Issue 15, session 12: no false acceptance where a claim and its check rest on the same reference runs.

At 64 workers on 32 classes every class is a member of one comparability tier, judged on
predictions from the reference class's runs of the parent. In seeds 95, 100 and 125 with
verify-only liars a null edit's claim on one member was confirmed by an honest check on another,
both predicted from the same 2-3 reference runs, one of them low; in seed 94 (`always` liars) a
liar's claim was confirmed so. A check judged on the reference is now compared only with
reference runs none of its claim's measurements rested on (`References.independent_of`).

Each run is the real engine and store on a simulated clock (benchmarks/acceptance_sim.py), in a
process of its own with the hash seed fixed, as the benchmark runs it: the engine iterates sets,
so another hash seed is another run, and these are the runs that failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import json, sys
sys.path.insert(0, {benchmarks!r})
from acceptance_sim import PROBLEM
from swarm_sim import Swarm, simulate
out = []
for kind, seed in {runs!r}:
    swarm = Swarm(workers=64, classes=32, liars=0.25, liar_kind=kind)
    o = simulate(PROBLEM, swarm, seed, target=-0.2, max_evaluations=4000)
    out.append(dict(kind=kind, seed=seed, false=o.false_acceptances, frozen=o.frozen,
                    honest=o.honest_quarantined, champions=o.champions, evaluations=o.evaluations))
print(json.dumps(out))
"""


def test_the_seeds_where_a_claim_and_its_check_shared_reference_runs_accept_nothing_false():
    runs = [("verify-only", 95), ("verify-only", 100), ("verify-only", 125), ("always", 94)]
    script = RUN.format(benchmarks=str(ROOT / "benchmarks"), runs=runs)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True, timeout=600, check=True)
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    for o in outcomes:
        assert o["evaluations"] == 4000 and o["champions"] > 3, f"the study ran and improved: {o}"
        assert o["false"] == 0, f"{o['kind']} liars, seed {o['seed']}: a false acceptance"
        assert not o["frozen"] and o["honest"] == 0, f"nothing stalled, no honest worker quarantined: {o}"
