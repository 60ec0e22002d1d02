"""Two explores of one champion leased at the same moment make different compass steps.

Neither edit is in the other's memory (an edit is made on the worker after the lease), so
both would take the same best move and the second would end `stale-conflict`. The coordinator
tells each explore how many of its parent's explores leased before it have not announced their
edit, and the order seed they used (`in_flight.EditsInMaking`); compass search orders its moves
with that seed and leaves the first ones to them (`compass.after_peers`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autoswarm import words
from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.in_flight import EditsInMaking, Peers
from autoswarm.coordinator.service import task_message
from autoswarm.coordinator.store import Store
from autoswarm.v1 import worker_pb2
from autoswarm.worker.mutators import create_mutator
from autoswarm.worker.mutators.base import MutationRequest
from autoswarm.worker.mutators.compass import after_peers
from autoswarm.worker.mutators.params import constant_values
from swarm import Clock, write_study

SOURCE = "LR = 3e-4\nDEPTH = 4\nBATCH = 32\nDECAY = 0.02\nWIDTH = 128\n"
# As tinylm: four preferred ways, tied, and a fifth constant without a preference.
COMPASS = {"search": "compass", "scale": 0.7,
           "prefer": {"LR": "up", "DEPTH": "down", "BATCH": "down", "DECAY": "up"}}


# -- which edit, after the peers' -----------------------------------------------------------------


@pytest.mark.parametrize("names, ahead, index", [
    (["A", "A", "B", "C"], 0, 0),          # alone: the best
    (["A", "A", "B", "C"], 1, 2),          # the next constant's best, not A's second step
    (["A", "A", "B", "C"], 2, 3),
    (["A", "A", "B", "C"], 3, 1),          # every constant taken: a second step of one
    (["A", "B"], 2, 0),                    # nothing else left: round again
    (["A"], 5, 0),
    ([], 1, None),
])
def test_after_peers_leaves_each_earlier_edit_its_constant(names, ahead, index):
    assert after_peers(names, ahead) == index


def test_edits_in_making_count_the_unannounced_explores_of_the_same_parent():
    making = EditsInMaking()
    assert making.lease("a", "p1", seed=11) == Peers(0, 11)
    assert making.lease("b", "p1", seed=22) == Peers(1, 11), "ordered as the first did"
    assert making.lease("x", "p2", seed=33) == Peers(0, 33), "another parent's explores are no peers"
    making.made("a")                                  # announced: in the memory's ideas now
    # c is told of b only, with the seed b ordered with: b took the second constant of that
    # order, a's constant comes last for c (in flight), so c takes the third.
    assert making.lease("c", "p1", seed=44) == Peers(1, 11)
    making.made("b")
    making.made("c")
    making.made("c")                                  # a close after the announcement: nothing left
    assert making.lease("d", "p1", seed=55) == Peers(0, 55)
    assert len(making) == 2


# -- the engine tells each lease -------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=1.0, lease_grace=5.0), clock=Clock())
    engine.add_study(pack_directory(write_study(tmp_path / "study", direction="minimize", timeout=10)).data)
    return engine


def _worker(engine: Engine, name: str) -> str:
    return engine.register("", name, {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])[0]


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "", "", {})


def test_explores_leased_together_are_told_their_rank_and_one_order_seed(engine: Engine):
    alpha, beta = _worker(engine, "alpha"), _worker(engine, "beta")
    baseline = engine.lease(alpha)
    assert baseline.kind == "baseline" and baseline.edits_ahead == 0
    engine.report(alpha, baseline.lease_id, _ok(10.0))
    a, b = engine.lease(alpha, pipelined=True), engine.lease(beta, pipelined=True)
    assert (a.kind, b.kind) == ("explore", "explore")
    assert (a.edits_ahead, b.edits_ahead) == (0, 1) and b.order_seed == a.seed != b.seed
    # Over the wire as well; an older worker ignores the fields, an older coordinator sends 0.
    wire = worker_pb2.Task.FromString(task_message(b).SerializeToString())
    assert (wire.edits_ahead, wire.order_seed) == (1, a.seed)
    assert worker_pb2.Task().edits_ahead == 0

    # Once a has announced its edit it is in the memory's ideas in flight, not counted again.
    engine.heartbeat(alpha, [a.lease_id], "working", descriptions={a.lease_id: "X 1.0 -> 2.0"})
    c = engine.lease(alpha, pipelined=True)
    assert "X 1.0 -> 2.0" in c.memory and (c.edits_ahead, c.order_seed) == (1, a.seed)
    # A lease that ends without announcing (a failed edit) is forgotten too.
    engine.report(beta, b.lease_id, ResultIn("mutator-error", None, {}, b"", "", "no edit", {}))
    engine.report(alpha, c.lease_id, ResultIn("mutator-error", None, {}, b"", "", "no edit", {}))
    d = engine.lease(beta, pipelined=True)
    assert (d.edits_ahead, d.order_seed) == (0, d.seed)


# -- the mutator takes the next constant -------------------------------------------------------------


def _edit(tmp_path: Path, options: dict, seed: int, ahead: int = 0, order_seed: int = 0,
          memory: str = "") -> str:
    (tmp_path / "t.py").write_text(SOURCE)
    request = MutationRequest(workdir=tmp_path, target="t.py", program="", memory=memory, seed=seed,
                              timeout_seconds=10.0, edits_ahead=ahead, order_seed=order_seed)
    return create_mutator("params", options).mutate(request).description


def _constant(description: str) -> str:
    return description.split(" ", 1)[0]


def test_two_edits_leased_together_step_different_constants(tmp_path: Path):
    alone, together = 0, 0
    for first in range(40):
        second = 1000 + first
        made = _edit(tmp_path, COMPASS, first)
        assert made == _edit(tmp_path, COMPASS, first, ahead=0, order_seed=77), "alone: as before"
        together += _constant(made) == _constant(_edit(tmp_path, COMPASS, second, ahead=1, order_seed=first))
        alone += _constant(made) == _constant(_edit(tmp_path, COMPASS, second))
    assert together == 0
    assert alone >= 4, "without the rank, four tied preferred ways collide about one time in four"


def test_a_third_takes_a_third_constant_and_an_announced_one_is_left_alone(tmp_path: Path):
    seeds = (5, 6, 7)
    names = [_constant(_edit(tmp_path, COMPASS, seed, ahead=k, order_seed=seeds[0])) for k, seed in enumerate(seeds)]
    assert len(set(names)) == 3 and set(names) <= set(COMPASS["prefer"])
    # The first announced its edit before the third leased: it is in flight, and the third is
    # told of the second only (same order seed), so it still takes a constant of its own.
    memory = f"{words.MEMORY_IN_FLIGHT}\n- {_edit(tmp_path, COMPASS, seeds[0])}\n"
    third = _constant(_edit(tmp_path, COMPASS, seeds[2], ahead=1, order_seed=seeds[0], memory=memory))
    assert third not in names[:2]


def test_random_search_is_not_changed_by_the_rank(tmp_path: Path):
    options = {"scale": 0.3}
    for seed in range(10):
        assert _edit(tmp_path, options, seed) == _edit(tmp_path, options, seed, ahead=1, order_seed=seed + 1)


def test_a_hostile_rank_still_makes_one_edit_of_a_known_constant(tmp_path: Path):
    # The rank and the order seed come from the coordinator: out-of-range values must still give
    # one literal edit of one of the target's constants, never an error or an edit of nothing.
    known = {name for name, _ in constant_values(SOURCE)}
    for ahead, order_seed in ((2**31 - 1, -(2**63)), (10**6, 2**63 - 1), (7, 0)):
        made = _edit(tmp_path, COMPASS, 3, ahead=ahead, order_seed=order_seed)
        assert _constant(made) in known, made
        assert (tmp_path / "t.py").read_text() != SOURCE
