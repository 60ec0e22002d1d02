"""The evaluation budget (`--max-evals`, `study add --max-evals`) is a ceiling: baselines,
explores and checks all count and none starts past it; the checks of open claims come first."""

from __future__ import annotations

import itertools
from pathlib import Path

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.scheduler import StudyView, VerifyNeed, WorkerView, choose_task
from autoswarm.coordinator.store import Store
from swarm import write_study

MACHINE = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
WORKER = WorkerView("w1", frozenset({"params"}), running=0, slots=1)


def _view(evaluations: int, in_flight: int = 0, budget: int = 10, owed: int = 0, verify: tuple = ()) -> StudyView:
    return StudyView("s", "params", False, True, 0, in_flight, evaluations, budget, verify=verify, checks_owed=owed)


def test_explores_leave_room_for_the_checks_open_claims_need_and_nothing_starts_past_the_budget():
    assert choose_task([_view(7, owed=2)], WORKER).kind == "explore", "7 done + 2 owed: one explore fits"
    assert choose_task([_view(8, owed=2)], WORKER) is None, "the two owed checks take what is left"
    check = (VerifyNeed("c1", needed=2),)
    assert choose_task([_view(8, owed=2, verify=check)], WORKER).kind == "verify"
    assert choose_task([_view(9, in_flight=1, owed=1, verify=check)], WORKER) is None, "10 done or running: the end"
    assert choose_task([_view(10_000, budget=0, owed=50)], WORKER).kind == "explore", "0: unbounded"


def _ok(metric: float, content: bytes = b"", idea: str = "") -> ResultIn:
    return ResultIn("ok", metric, {}, content, idea, "", {})


def _engine(tmp_path: Path, budget: int) -> tuple[Engine, list[str]]:
    ticks = itertools.count(1000.0, 0.5)
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=100.0), clock=lambda: next(ticks))
    study = write_study(tmp_path / "study", acceptance='compare = "absolute"\nquorum = 2\nmin_delta = 0.01')
    engine.add_study(pack_directory(study).data, max_evaluations=budget)
    workers = [engine.register("", name, MACHINE, 1, ["params"])[0] for name in ("alpha", "beta")]
    for worker in (*workers, workers[0]):  # the first score: the median of 2 x quorum - 1 baselines
        baseline = engine.lease(worker)
        assert baseline.kind == "baseline"
        engine.report(worker, baseline.lease_id, _ok(-20.0))
    return engine, workers


def test_a_claim_found_within_the_budget_is_checked_within_it(tmp_path):
    engine, (alpha, beta) = _engine(tmp_path, budget=6)
    explore = engine.lease(alpha)
    engine.report(alpha, explore.lease_id, _ok(-5.0, b"X = 2.0\nY = 6\n", "closer"))  # 4 of 6, a claim owing 1 check
    other = engine.lease(alpha)
    assert other.kind == "explore", "4 done + 1 owed: room for one more explore"
    check = engine.lease(beta)
    assert check.kind == "verify", "the claim's check, before any explore"
    assert engine.lease(alpha) is None, "6 running or done: nothing more starts"
    engine.report(alpha, other.lease_id, _ok(-30.0, b"X = 9.0\nY = 3\n", "worse"))
    engine.report(beta, check.lease_id, _ok(-5.1))
    summary, = engine.study_summaries()
    assert (summary.evaluations, summary.pending_claims, summary.done) == (6, 0, True)
    assert summary.champion.metric > -20.0, "the improvement was checked and kept"


def test_a_claim_the_budget_has_no_room_to_check_is_left_open_and_checked_when_the_budget_grows(tmp_path):
    engine, (alpha, beta) = _engine(tmp_path, budget=5)
    first, second = engine.lease(alpha), engine.lease(beta)
    assert (first.kind, second.kind) == ("explore", "explore") and engine.lease(alpha) is None
    engine.report(alpha, first.lease_id, _ok(-30.0, b"X = 9.0\nY = 3\n", "worse"))
    engine.report(beta, second.lease_id, _ok(-5.0, b"X = 2.0\nY = 6\n", "closer"))  # the last evaluation: a claim
    summary, = engine.study_summaries()
    assert (summary.evaluations, summary.pending_claims, summary.done) == (5, 1, True), \
        "done at the budget, the claim stored unchecked"
    assert engine.lease(alpha) is None
    engine.change_study("tiny", max_evaluations=6)
    check = engine.lease(alpha)
    assert check is not None and check.kind == "verify", "a larger budget checks it first"
    engine.report(alpha, check.lease_id, _ok(-5.1))
    summary, = engine.study_summaries()
    assert (summary.evaluations, summary.pending_claims, summary.done) == (6, 0, True)
    assert summary.champion.metric > -20.0
