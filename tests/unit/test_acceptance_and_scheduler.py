"""The pure decision modules: acceptance and scheduling."""

from __future__ import annotations

import math

import pytest

from autoswarm.study import AcceptancePolicy
from coordinator.acceptance import improvement, judge
from coordinator.scheduler import StudyView, WorkerView, choose_task


@pytest.mark.parametrize("direction, champion, candidate, accept", [
    ("minimize", 1.00, 0.99, True),
    ("minimize", 1.00, 1.00, False),   # equal is not an improvement
    ("minimize", 1.00, 1.01, False),
    ("maximize", 1.00, 1.01, True),
    ("maximize", 1.00, 0.99, False),
    ("maximize", -5.0, -4.0, True),
])
def test_absolute_rule_is_autoresearch_keep_if_strictly_better(direction, champion, candidate, accept):
    assert judge(AcceptancePolicy(), direction, champion, candidate).accept is accept


def test_min_delta_is_a_strict_threshold():
    policy = AcceptancePolicy(min_delta=0.01)
    assert not judge(policy, "minimize", 1.0, 0.995).accept
    assert not judge(policy, "minimize", 1.0, 0.991).accept
    assert improvement("minimize", 1.0, 0.991) == pytest.approx(0.009)
    assert judge(policy, "minimize", 1.0, 0.98).accept
    assert judge(policy, "maximize", 0.5, 0.52).accept


def test_non_finite_metrics_are_never_accepted():
    assert not judge(AcceptancePolicy(), "minimize", 1.0, math.nan).accept
    assert not judge(AcceptancePolicy(), "maximize", 1.0, math.inf).accept


def _study(name="s", measured=True, baseline=0, in_flight=0, evaluations=0, budget=0, kind="params", blocked=False):
    return StudyView(name, kind, measured, baseline, in_flight, evaluations, budget, blocked)


WORKER = WorkerView(frozenset({"params"}), running=0, slots=1)


def test_an_unmeasured_champion_gets_one_baseline_first():
    assert choose_task([_study(measured=False)], WORKER).kind == "baseline"
    assert choose_task([_study(measured=False, baseline=1, in_flight=1)], WORKER) is None


def test_explore_once_measured_and_only_with_a_mutator_the_worker_has():
    assert choose_task([_study()], WORKER).kind == "explore"
    assert choose_task([_study(kind="llm")], WORKER) is None
    # A baseline needs no mutator.
    assert choose_task([_study(kind="llm", measured=False)], WORKER).kind == "baseline"


def test_slots_and_budget_limit_leases():
    assert choose_task([_study()], WorkerView(frozenset({"params"}), running=1, slots=1)) is None
    assert choose_task([_study(evaluations=9, in_flight=1, budget=10)], WORKER) is None
    assert choose_task([_study(evaluations=8, in_flight=1, budget=10)], WORKER) is not None
    assert choose_task([_study(blocked=True)], WORKER) is None


def test_fair_share_prefers_the_study_with_less_in_flight_and_baselines_first():
    studies = [_study("a", in_flight=3), _study("b", in_flight=1), _study("c", measured=False, in_flight=5)]
    assert choose_task(studies, WORKER).study == "c"
    assert choose_task(studies[:2], WORKER).study == "b"
