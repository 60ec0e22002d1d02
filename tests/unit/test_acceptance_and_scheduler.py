"""The pure decision modules: acceptance, scheduling and merging."""

from __future__ import annotations

import math

import pytest

from autoswarm.study import AcceptancePolicy
from autoswarm.coordinator.acceptance import (
    Measurement, Trust, champion_score, claim_outcome, improvement, independent, judge, may_measure, robust_sigma,
    threshold,
)
from autoswarm.coordinator.merge import merge3, merge_base
from autoswarm.coordinator.scheduler import ClassBaseline, StudyView, VerifyNeed, WorkerView, choose_task

ABSOLUTE = AcceptancePolicy(compare="absolute")
PAIRED = AcceptancePolicy(compare="paired", quorum=2)


@pytest.mark.parametrize("direction, champion, candidate, accept", [
    ("minimize", 1.00, 0.99, True),
    ("minimize", 1.00, 1.00, False),   # equal is not an improvement
    ("minimize", 1.00, 1.01, False),
    ("maximize", 1.00, 1.01, True),
    ("maximize", 1.00, 0.99, False),
    ("maximize", -5.0, -4.0, True),
])
def test_absolute_rule_is_autoresearch_keep_if_strictly_better(direction, champion, candidate, accept):
    assert judge(ABSOLUTE, direction, champion, candidate).accept is accept


def test_min_delta_is_a_strict_threshold():
    policy = AcceptancePolicy(min_delta=0.01)
    assert not judge(policy, "minimize", 1.0, 0.995).accept
    assert not judge(policy, "minimize", 1.0, 0.991).accept
    assert improvement("minimize", 1.0, 0.991) == pytest.approx(0.009)
    assert judge(policy, "minimize", 1.0, 0.98).accept
    assert judge(policy, "maximize", 0.5, 0.52).accept


def test_non_finite_metrics_are_never_accepted():
    assert not judge(ABSOLUTE, "minimize", 1.0, math.nan).accept
    assert not judge(ABSOLUTE, "maximize", 1.0, math.inf).accept


def test_noise_floor_is_k_sigma_of_one_run_against_a_baseline_mean():
    # |run - run| has median 0.6745·√2·σ; one wild difference (a liar) barely moves the median.
    assert robust_sigma([0.6744897501960817 * math.sqrt(2) * 0.1] * 9 + [50.0]) == pytest.approx(0.1)
    assert robust_sigma([]) == 0.0
    # One run against a mean of 2: sqrt(1 + 1/2) σ, times noise_sigmas = 2.
    assert threshold(PAIRED, 0.1, 2) == pytest.approx(2 * 0.1 * math.sqrt(1.5))
    assert threshold(AcceptancePolicy(compare="paired", min_delta=1.0), 0.1, 2) == 1.0
    assert judge(PAIRED, "maximize", 10.0, 10.3, sigma=0.1, baseline_runs=2).accept      # 0.3 > 0.245
    assert not judge(PAIRED, "maximize", 10.0, 10.2, sigma=0.1, baseline_runs=2).accept  # 0.2 < 0.245


def _m(worker, confirms=True, owner="", cls="cpu:a", value=1.0, gain=None, noise=0.1):
    return Measurement(worker, owner, cls, value, (0.5 if confirms else 0.1) if gain is None else gain, 0.2,
                       confirms, noise)


def test_quorum_counts_distinct_workers_and_owners_and_a_refutation_rejects():
    assert claim_outcome(PAIRED, [_m("a")], 0) == "pending"
    assert claim_outcome(PAIRED, [_m("a"), _m("a")], 0) == "pending", "the same worker twice is one"
    assert claim_outcome(PAIRED, [_m("a", owner="x"), _m("b", owner="x")], 0) == "pending", "same owner"
    assert claim_outcome(PAIRED, [_m("a", owner="x"), _m("b", owner="y")], 0) == "accepted"
    # Within noise of each other, but one is not above the bar: not confirmed.
    assert claim_outcome(PAIRED, [_m("a"), _m("b", confirms=False)], 0) == "rejected"
    # Far apart: neither decides; an arbiter is asked for.
    assert claim_outcome(PAIRED, [_m("a", gain=5.0), _m("b", confirms=False, gain=0.0)], 0) == "pending"
    assert claim_outcome(PAIRED, [_m("a")], 3) == "rejected", "not reproducible elsewhere"
    assert independent([_m("a"), _m("b"), _m("a")]) == 2
    assert not may_measure([_m("b")], "a", "", "a", "")
    assert not may_measure([_m("b")], "a", "", "b", "")
    assert not may_measure([], "a", "x", "c", "x")
    assert may_measure([_m("b")], "a", "x", "c", "y")


def test_champion_score_is_the_median_of_the_agreeing_majority_claimant_included():
    measurements = [_m("liar", value=100.0, gain=99.0), _m("b", value=2.0), _m("c", value=4.0)]
    assert champion_score(PAIRED, measurements) == 3.0, "the outvoted number never enters it"
    honest = [_m("claimant", value=3.9), _m("b", value=4.0), _m("c", value=4.1)]
    assert champion_score(PAIRED, honest) == 4.0, "the claimant's number counts like any other"
    assert champion_score(ABSOLUTE, [_m("a", value=7.0)]) == 7.0


def test_trust_is_slow_to_earn_and_quick_to_lose():
    assert not Trust().quarantined
    assert not Trust(refuted=1).quarantined, "one refutation is forgiven as noise"
    assert Trust(refuted=2).quarantined
    assert Trust(confirmed=7, refuted=2).quarantined
    assert not Trust(confirmed=8, refuted=2).quarantined


def _study(name="s", paired=False, measured=True, baseline=0, in_flight=0, evaluations=0, budget=0, kind="params",
           blocked=False, cb=ClassBaseline(0, 0, 0), verify=()):
    return StudyView(name, kind, paired, measured, baseline, in_flight, evaluations, budget, cb, tuple(verify), blocked)


WORKER = WorkerView("w1", frozenset({"params"}), running=0, slots=1)


def test_an_unmeasured_champion_gets_one_baseline_first():
    assert choose_task([_study(measured=False)], WORKER).kind == "baseline"
    assert choose_task([_study(measured=False, baseline=1, in_flight=1)], WORKER) is None


def test_explore_once_measured_and_only_with_a_mutator_the_worker_has():
    assert choose_task([_study()], WORKER).kind == "explore"
    assert choose_task([_study(kind="llm")], WORKER) is None
    assert choose_task([_study(kind="llm", measured=False)], WORKER).kind == "baseline"


def test_paired_class_without_a_complete_baseline_measures_it_first():
    incomplete = ClassBaseline(done=1, in_flight=0, target=2, measured_by=frozenset({"w2"}), others_available=False)
    assert choose_task([_study(paired=True, cb=incomplete)], WORKER).kind == "baseline"
    # No barrier: while the first free workers measure it, the others explore (their results wait).
    busy = ClassBaseline(done=0, in_flight=2, target=2, measured_by=frozenset({"w2", "w3"}))
    assert choose_task([_study(paired=True, cb=busy)], WORKER).kind == "explore", "no barrier"
    waiting = _study(paired=True, cb=busy, verify=[VerifyNeed("c1", needed=1)])
    assert choose_task([waiting], WORKER).kind == "explore", "a verification goes only where it can be judged"
    mine = ClassBaseline(done=1, in_flight=0, target=2, measured_by=frozenset({"w1"}), others_available=True)
    assert choose_task([_study(paired=True, cb=mine)], WORKER).kind == "explore", "a peer of the class repeats it"
    quarantined = WorkerView("w1", frozenset({"params"}), 0, 1, quarantined=True)
    assert choose_task([_study(paired=True, cb=incomplete)], quarantined) is None, "its results would be thrown away"
    alone = ClassBaseline(done=1, in_flight=0, target=2, measured_by=frozenset({"w1"}), others_available=False)
    assert choose_task([_study(paired=True, cb=alone)], WORKER).kind == "baseline", "a lone worker repeats"
    complete = ClassBaseline(done=2, in_flight=0, target=2)
    assert choose_task([_study(paired=True, cb=complete)], WORKER).kind == "explore"


def test_verify_comes_first_but_never_to_the_claimant_or_a_quarantined_worker():
    need = VerifyNeed("c1", needed=1, excluded_workers=frozenset({"w2"}))
    complete = ClassBaseline(done=2, in_flight=0, target=2)
    task = choose_task([_study("a"), _study("b", paired=True, cb=complete, verify=[need])], WORKER)
    assert (task.study, task.kind, task.claim_id) == ("b", "verify", "c1")
    claimant = WorkerView("w2", frozenset({"params"}), 0, 1)
    assert choose_task([_study(verify=[need])], claimant).kind == "explore"
    quarantined = WorkerView("w1", frozenset({"params"}), 0, 1, quarantined=True)
    assert choose_task([_study(verify=[need])], quarantined) is None
    same_owner = WorkerView("w9", frozenset({"params"}), 0, 1, owner="x")
    owned = VerifyNeed("c1", 1, frozenset({"w2"}), frozenset({"x"}))
    assert choose_task([_study(verify=[owned])], same_owner).kind == "explore"


def test_slots_and_budget_limit_leases():
    assert choose_task([_study()], WorkerView("w1", frozenset({"params"}), running=1, slots=1)) is None
    assert choose_task([_study(evaluations=9, in_flight=1, budget=10)], WORKER) is None
    assert choose_task([_study(evaluations=8, in_flight=1, budget=10)], WORKER) is not None
    assert choose_task([_study(blocked=True)], WORKER) is None


def test_fair_share_prefers_the_study_with_less_in_flight_and_baselines_first():
    studies = [_study("a", in_flight=3), _study("b", in_flight=1), _study("c", measured=False, in_flight=5)]
    assert choose_task(studies, WORKER).study == "c"
    assert choose_task(studies[:2], WORKER).study == "b"


BASE = b"LR = 0.1\nBATCH = 32\nWD = 0.01\n"


def test_edits_on_different_lines_merge_even_when_adjacent():
    merged = merge3(BASE, b"LR = 0.2\nBATCH = 32\nWD = 0.01\n", b"LR = 0.1\nBATCH = 64\nWD = 0.01\n")
    assert merged.content == b"LR = 0.2\nBATCH = 64\nWD = 0.01\n"


def test_edits_to_the_same_line_conflict_and_say_where():
    merged = merge3(BASE, b"LR = 0.2\nBATCH = 32\nWD = 0.01\n", b"LR = 0.3\nBATCH = 32\nWD = 0.01\n")
    assert merged.content is None and "line 1" in merged.conflict


def test_an_edit_already_in_the_champion_merges_to_the_champion():
    ours = b"LR = 0.2\nBATCH = 32\nWD = 0.01\n"
    assert merge3(BASE, ours, ours).content == ours
    assert merge3(BASE, ours, b"LR = 0.2\nBATCH = 32\nWD = 0.02\n").content == b"LR = 0.2\nBATCH = 32\nWD = 0.02\n"


def test_insertions_and_deletions_merge_around_each_other():
    theirs = b"import math\nLR = 0.1\nBATCH = 32\nWD = 0.01\n"
    ours = b"LR = 0.1\nBATCH = 32\n"
    assert merge3(BASE, ours, theirs).content == b"import math\nLR = 0.1\nBATCH = 32\n"


def test_neighbouring_lines_rewritten_on_both_sides_merge_line_by_line():
    # One side changed lines 1-2, the other lines 2-3 with the same new line 2: no real collision.
    ours = b"LR = 0.2\nBATCH = 64\nWD = 0.01\n"
    theirs = b"LR = 0.1\nBATCH = 64\nWD = 0.02\n"
    assert merge3(BASE, ours, theirs).content == b"LR = 0.2\nBATCH = 64\nWD = 0.02\n"
    assert merge3(BASE, ours, b"LR = 0.1\nBATCH = 16\nWD = 0.02\n").content is None, "line 2 differs"


def test_merge_base_is_the_nearest_common_ancestor():
    #   root - a - b - c        (the champion chain)
    #           \- x - y       (a branch from a)
    parents = {"root": "", "a": "root", "b": "a", "c": "b", "x": "a", "y": "x"}
    assert merge_base("c", "y", parents.__getitem__) == "a"
    assert merge_base("y", "c", parents.__getitem__) == "a"
    assert merge_base("c", "b", parents.__getitem__) == "b", "an ancestor is its own merge base"
    assert merge_base("c", "c", parents.__getitem__) == "c"
    assert merge_base("c", "elsewhere", {**parents, "elsewhere": ""}.__getitem__) is None
