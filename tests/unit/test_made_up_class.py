"""A made-up hardware class named to sort first never becomes a tier's reference.

Through the real engine and store (acceptance_sim's study, paired, quorum 2): four honest
classes of two machines each, and one attacker's machine that claims a class of its own,
"0000", measures every champion before anyone else, and reports its baselines of each new
champion low. Were it the reference (on main before session 5 it was, on every tie of
baseline counts: the first name), every member's baseline of a champion would be predicted
from its numbers, a null edit would look good on every member at once, and a claim and its
check, both judged on that prediction, would accept it. The reference is chosen by evidence
(`Tiers.reference`: distinct workers behind each point, a new champion not counted until the
next), so no member is ever predicted from the attacker's class, and no worse edit is accepted.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from acceptance_sim import PROBLEM  # noqa: E402

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn  # noqa: E402
from autoswarm.coordinator.ids import seeded_ids  # noqa: E402
from autoswarm.coordinator.store import Store  # noqa: E402

HONEST = {"Intel Xeon": (0.0, 0.02), "AMD EPYC": (0.4, 0.02), "Apple M2": (-0.3, 0.03), "Ampere Altra": (0.2, 0.02)}
ATTACKER_MODEL = "0000"
EVALUATIONS = 700


def test_an_attackers_class_named_0000_never_becomes_the_reference(tmp_path):
    rng = random.Random(11)
    clock = [1_000_000.0]
    store = Store(tmp_path / "swarm.db", ids=seeded_ids(11))
    engine = Engine(store, EngineConfig(), clock=lambda: clock[0])
    engine.add_study(pack_files(PROBLEM.files("paired", 2)).data)
    hardware = lambda model: {"cpu_model": model, "cpu_cores": 2, "gpus": []}  # noqa: E731
    # The attacker goes first in every round: it measures each new champion before anyone.
    attacker, attacker_class = engine.register("", "a", hardware(ATTACKER_MODEL), 1, ["params"], owner="attacker")
    workers = [(attacker, 0.1, 0.02, True)]
    for n, (model, (offset, sigma)) in enumerate(HONEST.items()):
        for k in range(2):
            wid, _ = engine.register("", f"{model}-{k}", hardware(model), 1, ["params"], owner=f"volunteer{n}{k}")
            workers.append((wid, offset, sigma, False))
    state = engine.registry.studies[PROBLEM.name]
    classes = [attacker_class, *(f"cpu:{model} x2" for model in HONEST)]
    references: set[str] = set()
    evaluations = 0
    while evaluations < EVALUATIONS:
        for wid, offset, sigma, lies in workers:
            clock[0] += 0.1
            task = engine.lease(wid)
            if task is None:
                continue
            if task.kind == "explore":
                assert task.parent is not None
                text, description = PROBLEM.edit(task, rng, tmp_path)
            else:
                assert task.candidate is not None
                text, description = task.candidate.content.decode(), ""
            value = offset + PROBLEM.score(text) + rng.gauss(0.0, sigma)
            if lies and task.kind == "baseline":
                value -= 0.5      # the champion looks worse here: every edit of it looks better
            engine.report(wid, task.lease_id,
                          ResultIn("ok", value, {}, text.encode() if task.kind == "explore" else b"",
                                   description, "", {}))
            evaluations += 1
            reference = state.tiers.reference()
            if reference is not None and any(state.tiers.member(c, state.sigma_of) for c in classes):
                references.add(reference)   # what members are predicted from
    assert state.tiered, "five classes: tiers stand in for direct baselines"
    assert references, "members were predicted from a reference"
    assert attacker_class not in references, "a made-up class that sorts first never led the tier"
    chain = store.champions(PROBLEM.name)
    scores = [PROBLEM.score(store.version(PROBLEM.name, c.version).content.decode()) for c in chain]
    assert len(chain) > 3, "the study moved on"
    assert all(b > a for a, b in zip(scores, scores[1:])), "no champion worse than the one it replaced"
    store.close()
