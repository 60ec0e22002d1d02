"""Duplicates are free: never an evaluation, caught before evaluating, listed once in the memory."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.store import Store
from swarm import write_study


def _ok(metric: float, candidate: bytes = b"", description: str = "") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, description, "", {})


def _duplicate(candidate: bytes, description: str) -> ResultIn:
    return ResultIn("duplicate", None, {}, candidate, description, "", {})


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture(params=[3])
def setup(tmp_path, request):
    """An engine whose study has a budget of `request.param` evaluations, the baseline done."""
    store = Store(tmp_path / "swarm.db")
    ticks = itertools.count(1000.0, 0.5)  # time moves on, so the memory is rebuilt between leases
    engine = Engine(store, EngineConfig(lease_factor=100.0, lease_grace=5.0), clock=lambda: next(ticks))
    engine.add_study(pack_directory(write_study(tmp_path / "study", direction="minimize")).data,
                     max_evaluations=request.param)
    worker, _ = engine.register("", "alpha", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 2, ["params"])
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))  # the baseline: evaluation 1 of 3
    return engine, worker, store, tmp_path


def test_a_duplicate_costs_no_evaluation_of_the_budget_even_after_a_restart(setup):
    engine, worker, store, tmp_path = setup
    for _ in range(5):
        engine.report(worker, engine.lease(worker).lease_id, _duplicate(b"X = 9\n", "X 1.0 -> 9"))
    assert engine.study_summaries()[0].evaluations == 1
    explore = engine.lease(worker)
    assert explore is not None and explore.kind == "explore", "the budget of 3 still has room"
    store.close()
    again = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=lambda: 1000.0)
    assert again.study_summaries()[0].evaluations == 1


@pytest.mark.parametrize("setup", [0], indirect=True)
def test_a_duplicate_is_listed_once_in_the_memory_so_agents_avoid_it(setup):
    engine, worker, _, _ = setup
    for _ in range(3):
        engine.report(worker, engine.lease(worker).lease_id, _duplicate(b"X = 9\n", "X 1.0 -> 9"))
    memory = engine.lease(worker).memory
    assert memory.count("X 1.0 -> 9") == 1 and "[duplicate]" in memory


@pytest.mark.parametrize("setup", [0], indirect=True)
def test_an_old_champion_or_an_edit_in_flight_from_another_parent_is_caught_before_evaluating(setup):
    engine, worker, _, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(8.0, b"X = 2\n", "X 1.0 -> 2"))  # champion
    engine.report(worker, engine.lease(worker).lease_id, _ok(6.0, b"X = 3\n", "X 2 -> 3"))    # champion
    back = engine.lease(worker)   # X 3 -> 2: the previous champion again
    assert engine.heartbeat(worker, [back.lease_id], "working", {}, {back.lease_id: _digest(b"X = 2\n")}).duplicates \
        == [back.lease_id], "an old champion is not measured again"
    engine.report(worker, back.lease_id, _duplicate(b"X = 2\n", "X 3 -> 2"))
    first, second = engine.lease(worker), engine.lease(worker)
    assert engine.heartbeat(worker, [first.lease_id], "working", {}, {first.lease_id: _digest(b"X = 7\n")}).duplicates \
        == []
    assert engine.heartbeat(worker, [second.lease_id], "working", {},
                            {second.lease_id: _digest(b"X = 7\n")}).duplicates == [second.lease_id]


@pytest.mark.parametrize("setup", [0], indirect=True)
def test_a_failed_edit_is_no_evaluation_in_progress_lines_though_it_uses_the_budget(setup):
    from autoswarm.status_view import evaluations_done
    from autoswarm.v1 import control_pb2

    engine, worker, _, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, ResultIn("mutator-error", None, {}, b"", "", "no edit", {}))
    engine.report(worker, engine.lease(worker).lease_id, _ok(8.0, b"X = 2\n", "X 1.0 -> 2"))
    summary, = engine.study_summaries()
    assert (summary.evaluations, summary.failed_edits) == (3, 1)
    status = control_pb2.StudyStatus(evaluations=summary.evaluations, failed_edits=summary.failed_edits,
                                     max_evaluations=30)
    assert evaluations_done(status) == "2/30 (+1 failed edit)"
