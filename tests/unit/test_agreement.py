"""Replica agreement, class checks and trust: the pure rules of issue 14, alone."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoswarm.hardware_class import HardwareError, checked_hardware, hardware_class, is_moved, moved_class, origin_class
from autoswarm.study import AcceptancePolicy
from autoswarm.coordinator.acceptance import (
    AGREE_SIGMAS, MAX_ARBITERS, Measurement, Trust, agree, champion_score, class_check,
    initial_baselines,
    recorded_score, settle,
)

Q2 = AcceptancePolicy(compare="paired", quorum=2)
Q3 = AcceptancePolicy(compare="paired", quorum=3)
NOISE = 0.01      # σ of one measurement's improvement
BAR = 0.03        # the bar each measurement is judged against


def m(worker: str, gain: float, *, value: float | None = None, cls: str = "cpu:a", noise: float = NOISE,
      owner: str = "") -> Measurement:
    """A measurement of `gain`; it confirms when the gain clears the bar."""
    return Measurement(worker, owner, cls, 1.0 + gain if value is None else value, gain, BAR, gain > BAR, noise,
                       f"r-{worker}")


def test_replicas_agree_within_noise_worse_or_better_and_across_classes_within_a_factor():
    assert agree(Q2, m("a", 0.10), m("b", 0.12))
    assert not agree(Q2, m("a", 0.10), m("b", 0.10 + 1.01 * AGREE_SIGMAS * NOISE * 2 ** 0.5)), "too good"
    assert not agree(Q2, m("a", 0.10), m("b", 0.10 - 1.01 * AGREE_SIGMAS * NOISE * 2 ** 0.5)), "too bad"
    # A fixed time budget lets faster hardware gain more from the same edit.
    assert agree(Q2, m("a", 0.10), m("b", 0.15, cls="gpu:x"))
    assert not agree(Q2, m("a", 0.10), m("b", 0.40, cls="gpu:x"))
    # No noise known (absolute): within half of the larger gain, or min_delta.
    assert agree(Q2, m("a", 0.10, noise=0), m("b", 0.13, noise=0))
    assert not agree(Q2, m("a", 0.03, noise=0), m("b", 0.6, noise=0))
    assert agree(AcceptancePolicy(quorum=2, min_delta=1.0), m("a", 0.0, noise=0), m("b", 0.9, noise=0))


def test_two_agreeing_confirmations_accept_with_the_median_claimant_included():
    settled = settle(Q2, [m("claimant", 0.10, value=5.10), m("v", 0.12, value=5.12)], claimant="claimant")
    assert (settled.outcome, settled.outvoted) == ("accepted", ())
    assert settled.score == pytest.approx(5.11)


def test_a_lying_verifier_asks_for_an_arbiter_and_is_outvoted():
    claim = [m("claimant", 0.10, value=5.10), m("liar", 5.0, value=10.0)]
    assert settle(Q2, claim, claimant="claimant").outcome == "pending"
    assert settle(Q2, claim, claimant="claimant").needed == 1
    settled = settle(Q2, [*claim, m("arbiter", 0.11, value=5.11)], claimant="claimant")
    assert settled.outcome == "accepted"
    assert [o.worker_id for o in settled.outvoted] == ["liar"]
    assert settled.score == pytest.approx(5.105), "the lie is not in the score"


def test_a_lying_claimant_is_outvoted_and_its_claim_rejected():
    claim = [m("liar", 5.0), m("v", 0.0)]
    assert settle(Q2, claim, claimant="liar").outcome == "pending", "one refutation against one claim decides nothing"
    settled = settle(Q2, [*claim, m("arbiter", 0.005)], claimant="liar")
    assert settled.outcome == "rejected"
    assert [o.worker_id for o in settled.outvoted] == ["liar"]


def test_a_claim_that_only_cleared_the_bar_by_luck_is_unconfirmed_and_costs_nobody():
    settled = settle(Q2, [m("claimant", 0.04), m("v", 0.02)], claimant="claimant")
    assert (settled.outcome, settled.outvoted) == ("unconfirmed", ())


def test_no_agreeing_majority_after_the_arbiters_is_unconfirmed_without_blame():
    values = [0.1, 1.0, 2.0, 3.0][: Q2.quorum + MAX_ARBITERS]
    ms = [m(f"w{i}", v) for i, v in enumerate(values)]
    assert settle(Q2, ms[:-1], claimant="w0").outcome == "pending"
    settled = settle(Q2, ms, claimant="w0")
    assert (settled.outcome, settled.outvoted) == ("unconfirmed", ())


def test_failures_and_quorum_1_and_larger_quorums():
    assert settle(Q2, [m("a", 0.1)], failures=3).outcome == "unconfirmed"
    assert settle(AcceptancePolicy(), [m("a", 0.1)]).outcome == "accepted", "quorum 1 trusts the first report"
    three = [m("c", 0.10), m("v1", 0.11), m("liar", 2.0)]
    assert settle(Q3, three, claimant="c").needed == 1
    settled = settle(Q3, [*three, m("v2", 0.09)], claimant="c")
    assert settled.outcome == "accepted" and [o.worker_id for o in settled.outvoted] == ["liar"]


def test_one_owner_counts_once():
    same = [m("a", 0.1, owner="x"), m("b", 0.1, owner="x")]
    assert settle(Q2, same, claimant="a").outcome == "pending"


honest_error = st.floats(min_value=-1.0, max_value=1.0)    # in units of NOISE: replicas agree pairwise


@settings(max_examples=200, deadline=None)
@given(quorum=st.integers(1, 4), gain=st.floats(-1.0, 1.0), errors=st.lists(honest_error, min_size=1, max_size=6),
       lie=st.floats(-50.0, 50.0), liar_first=st.booleans())
def test_one_liar_never_sets_the_score_or_decides_against_an_honest_majority(quorum, gain, errors, lie, liar_first):
    policy = AcceptancePolicy(compare="paired", quorum=quorum)
    honest = [m(f"h{i}", gain + e * NOISE, value=10 + gain + e * NOISE) for i, e in enumerate(errors)]
    far = abs(lie) > 3 * AGREE_SIGMAS * NOISE
    liar = m("liar", gain + lie, value=10 + gain + lie)
    ms = [liar, *honest] if liar_first else [*honest, liar]
    settled = settle(policy, ms, claimant=ms[0].worker_id)
    if settled.outcome == "pending":
        # A liar within a few σ may tie with the honest majority: an arbiter then decides.
        assert not far or len(honest) < max(quorum, 2), "an honest majority of a quorum decides"
        return
    if settled.agreeing:
        values = [a.value for a in settled.agreeing]
        assert min(values) <= settled.score <= max(values)
        if far and len(honest) >= quorum and len(honest) >= 2:
            assert "liar" in {o.worker_id for o in settled.outvoted}
            assert abs(settled.score - (10 + gain)) <= NOISE, "the score is the honest replicas' centre"
    if settled.outcome == "accepted":
        assert all(a.confirms for a in settled.agreeing)


@settings(max_examples=100, deadline=None)
@given(quorum=st.integers(2, 5), gain=st.floats(-100, 100))
def test_no_single_number_decides_a_claim_when_the_quorum_is_above_one(quorum, gain):
    policy = AcceptancePolicy(compare="paired", quorum=quorum)
    assert settle(policy, [m("alone", gain)], claimant="alone").outcome == "pending"


def test_champion_score_ignores_an_outvoted_number():
    assert champion_score(Q2, [m("liar", 5.0, value=100.0), m("b", 0.1, value=2.0), m("c", 0.1, value=4.0)]) == 3.0


def test_the_recorded_score_stays_in_one_hardware_classes_units():
    mostly_fast = [m("a", 0.1, value=5.1), m("b", 0.12, value=5.12), m("c", 0.1, value=2.1, cls="cpu:slow")]
    assert recorded_score(mostly_fast) == pytest.approx(5.1), "the slow run carried into the fast units: 5.0 + 0.1"
    # One each: the other class's gain is carried into the first's units; no single number sets it.
    split = [m("a", 0.1, value=5.1), m("c", 0.14, value=2.14, cls="cpu:slow")]
    assert recorded_score(split, "maximize") == pytest.approx(5.12)
    minimizing = [Measurement("a", "", "cpu:a", 4.9, 0.1, BAR, True, NOISE),
                  Measurement("c", "", "cpu:slow", 1.86, 0.14, BAR, True, NOISE)]
    assert recorded_score(minimizing, "minimize") == pytest.approx(4.88)
    assert recorded_score([m("a", 0.1, value=5.1)]) == 5.1, "quorum 1: the one report"


def test_the_first_champion_needs_a_majority_of_baselines_over_possible_liars():
    assert [initial_baselines(AcceptancePolicy(quorum=q)) for q in (1, 2, 3)] == [1, 3, 5]


def test_a_worker_measuring_unlike_its_class_is_an_outlier_only_against_a_majority():
    honest = {"a": [1.00, 1.01], "b": [0.99, 1.00], "c": [1.02]}
    assert class_check(Q2, {**honest, "liar": [5.0]}, 0.01).outliers == {"liar"}
    assert not class_check(Q2, {**honest, "slow": [0.97]}, 0.01).disputed, "within noise"
    two = class_check(Q2, {"a": [1.0], "liar": [5.0]}, 0.01)
    assert two.outliers == set() and two.split == {"a", "liar"}, "two that disagree: no majority, split"
    tie = class_check(Q2, {"a": [1.0], "b": [1.0], "c": [5.0], "d": [5.0]}, 0.01)
    assert tie.outliers == set() and tie.split == {"a", "b", "c", "d"}, "a tie"
    assert not class_check(AcceptancePolicy(quorum=2, min_delta=10), {**honest, "liar": [5.0]}, 0.01).disputed


def test_a_big_honest_class_is_one_group_however_many_workers_measured():
    """Regression: a search capped at 12 workers made every worker past the 12th an outlier."""
    rng = random.Random(3)
    runs = {f"w{i:02d}": [rng.gauss(-10.3, 0.02)] for i in range(64)}
    check = class_check(Q2, runs, 0.02)
    assert not check.disputed and check.outliers == set()
    check = class_check(Q2, {**runs, "liar": [-9.3]}, 0.02)
    assert check.outliers == {"liar"}


def test_the_majority_of_a_class_is_counted_in_owners_not_workers():
    """Sixteen spoofers of one attacker name the class of two honest volunteers: one voice."""
    spoofers = {f"s{i}": [1.0 + 0.2 * i] for i in range(16)}
    honest = {"h1": [0.0], "h2": [0.01]}
    owners = {**{w: "attacker" for w in spoofers}, "h1": "vol1", "h2": "vol2"}
    check = class_check(Q2, {**spoofers, **honest}, 0.01, owners)
    assert check.majority == {"h1", "h2"} and check.outliers == set(spoofers)
    # The same spoofers all lying alike (one group of 16 machines): still one owner of three.
    alike = {f"s{i}": [1.0] for i in range(16)}
    check = class_check(Q2, {**alike, **honest}, 0.01, {**owners, **{w: "attacker" for w in alike}})
    assert check.majority == {"h1", "h2"} and check.outliers == set(alike)
    # One honest volunteer against one attacker: no majority; the class splits.
    check = class_check(Q2, {**alike, "h1": [0.0]}, 0.01, {"h1": "vol1", **{w: "attacker" for w in alike}})
    assert check.disputed and not check.majority and check.split == {"h1", *alike}
    # Without owners (each worker its own), sixteen agreeing Sybils do outvote two: a stated limit.
    assert class_check(Q2, {**alike, **honest}, 0.01).outliers == set(honest)


def test_a_chain_of_workers_placed_in_the_gaps_makes_no_majority():
    """A liar cannot glue two groups into one by reporting values in between."""
    chain = {f"c{i}": [i * 0.05] for i in range(11)}          # 0 … 0.5 in steps just under the tolerance
    check = class_check(Q2, chain, 0.01)
    assert len(check.groups) == 1 and check.chained and check.disputed and not check.majority


def test_a_class_whose_workers_disagree_is_disputed_until_settled():
    assert class_check(Q2, {"a": [1.0], "liar": [5.0]}, 0.01).disputed, "one of two: nothing says who"
    assert not class_check(Q2, {"a": [1.0], "b": [1.01]}, 0.01).disputed
    assert not class_check(Q2, {"a": [1.0]}, 0.01).disputed
    assert class_check(Q2, {"a": [1.0], "b": [1.0], "liar": [5.0]}, 0.01).disputed, "until the outlier is moved out"


def test_trust_one_open_claim_until_trusted_and_two_strikes_quarantine():
    assert Trust().open_claims_allowed == 1
    assert Trust(confirmed=4).open_claims_allowed > 1
    assert Trust(confirmed=40, refuted=1).open_claims_allowed == 1
    assert Trust(refuted=1).may_verify and not Trust(refuted=1).quarantined, "a second lie finds it out"
    assert not Trust(refuted=2).may_verify
    assert Trust(refuted=2).quarantined
    assert not Trust(moved=True).quarantined and Trust(moved=True).may_verify, "moved is not struck"
    assert Trust(moved=True, refuted=1, refuted_moved=1).quarantined, "a moved worker's first strike quarantines it"
    assert Trust(moved=True, refuted=2, refuted_moved=1).quarantined
    assert not Trust(moved=True, refuted=1).quarantined, "a strike from before the move counts once"
    assert Trust(moved=True, confirmed=10).open_claims_allowed == 1


@pytest.mark.parametrize("hardware, field", [
    ({"cpu_model": "Alpha\x00 CPU"}, "hardware.cpu_model"),
    ({"cpu_model": "Alpha CPU\n"}, "hardware.cpu_model"),
    ({"cpu_model": "Alpha\tCPU"}, "hardware.cpu_model"),
    ({"cpu_model": "x" * 129}, "hardware.cpu_model"),
    ({"cpu_model": "ok", "cpu_cores": -1}, "hardware.cpu_cores"),
    ({"cpu_model": "ok", "cpu_cores": 10**6}, "hardware.cpu_cores"),
    ({"cpu_model": "ok", "gpus": [{"name": "H100\r", "memory_bytes": 1}]}, "hardware.gpus[0].name"),
    ({"cpu_model": "ok", "gpus": [{"name": "H100", "memory_bytes": -5}]}, "hardware.gpus[0].memory_bytes"),
    ({"cpu_model": "ok", "gpus": [{"name": "H100", "memory_bytes": 1}] * 65}, "at most 64 GPUs"),
])
def test_hardware_reports_with_control_characters_or_out_of_bounds_are_refused(hardware, field):
    with pytest.raises(HardwareError, match=field.replace("[", r"\[").replace("]", r"\]")):
        checked_hardware(hardware)


def test_a_checked_report_keeps_real_names_and_classes_are_printable_and_bounded():
    checked = checked_hardware({"cpu_model": "  AMD EPYC 7B13 64-Core Processor ", "cpu_cores": 2,
                                "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 << 30, "driver": "550"}]})
    assert checked["cpu_model"] == "AMD EPYC 7B13 64-Core Processor"
    key = hardware_class("Evil\x00\nCPU" + "x" * 1000, 2, [])
    assert key.isprintable() and len(key) < 150


@given(st.text(max_size=200), st.integers(-10, 10**7))
def test_any_class_key_is_printable_and_bounded(cpu_model, cores):
    key = hardware_class(cpu_model, cores, [])
    assert key.isprintable() and len(key) <= 150


def test_a_moved_class_names_its_origin_and_is_never_the_origin():
    moved = moved_class("cpu:Alpha x2", "w-1")
    assert is_moved(moved) and not is_moved("cpu:Alpha x2")
    assert origin_class(moved) == "cpu:Alpha x2" and moved != "cpu:Alpha x2"
    assert moved_class(moved, "w-1") == moved
