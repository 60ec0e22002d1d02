"""The acceptance simulation is reproducible: a run is a function of its seed.

Runs benchmarks/acceptance_sim.py's simulation (the real engine and store, a simulated clock).
Regression (session 5): the engine drew worker, lease and merge-claim ids from `secrets`, and
sorts and files them in sets (a worker moved out of its class even carries its id in its
class's name), so the same seed gave a different run in every process (64 workers on 32
classes, inflating liars, seed 15: 70 and 107 helpful edits turned down in two runs) and a
frozen study could be neither traced nor reproduced.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from acceptance_sim import PROBLEM  # noqa: E402
from swarm_sim import Swarm, simulate  # noqa: E402

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.coordinator.engine import Engine, EngineConfig  # noqa: E402
from autoswarm.coordinator.ids import Ids, seeded_ids  # noqa: E402
from autoswarm.coordinator.store import Store  # noqa: E402

# Spoofers get honest workers and themselves moved out of their classes (ids in class names),
# merges open claims with ids of their own: every kind of id is drawn within a short run.
SWARM = Swarm(workers=8, classes=3, liars=0.25, liar_kind="spoofer")


def _run(seed: int) -> str:
    out = simulate(PROBLEM, SWARM, seed, target=-0.2, max_evaluations=300)
    assert out.evaluations == 300 and out.trace
    return out.trace


def test_a_seed_gives_the_same_run_whether_it_runs_first_or_after_other_seeds():
    first = _run(3)
    after_others = (_run(4), _run(5), _run(3))
    assert after_others[2] == first, "the same seed, the same trace: ids, workers, decisions, champions"
    assert len({first, after_others[0], after_others[1]}) == 3, "other seeds, other runs"


def test_seeded_ids_repeat_by_seed_and_random_ids_do_not(tmp_path):
    hardware = {"cpu_model": "Sim CPU", "cpu_cores": 2, "gpus": []}

    def ids_of(name: str, ids: Ids | None) -> tuple[str, str, int]:
        store = Store(tmp_path / f"{name}.db", ids=ids)
        engine = Engine(store, EngineConfig(), clock=lambda: 1_000_000.0)
        worker, _ = engine.register("", "w", hardware, 1, ["params"])
        lease_id = store.new_lease_id(1_000_000.0)
        seed = store.ids.randbits(62)
        store.close()
        return worker, lease_id, seed

    assert ids_of("a", seeded_ids(1)) == ids_of("b", seeded_ids(1))
    assert ids_of("c", seeded_ids(2)) != ids_of("d", seeded_ids(1))
    assert ids_of("e", None)[0] != ids_of("f", None)[0], "a live coordinator's ids are random"


def test_champion_zero_is_dated_by_the_engine_clock(tmp_path):
    """The store dated a new study's champion 0 by the wall clock, not the engine's: in a
    simulation it lay years after every result, and a run that never moved its champion
    could not count as frozen."""
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(), clock=lambda: 1_000_000.0)
    engine.add_study(pack_files(PROBLEM.files("paired", 2)).data)
    assert [c.created for c in store.champions(PROBLEM.name)] == [1_000_000.0]
    store.close()
