"""References for paired judging: direct baselines first, tier predictions widen the bar, else wait."""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet

import pytest

from autoswarm.coordinator import acceptance
from autoswarm.coordinator.baselines import Waiting, reference
from autoswarm.coordinator.noise import Noise
from autoswarm.coordinator.tiers import Prediction
from autoswarm.study import AcceptancePolicy

NOISE = Noise(sigma=0.02, estimate=0.018, own=10, pooled=50, usable=True)


def test_a_direct_baseline_wins_over_a_prediction():
    ref = reference(1.5, 2, NOISE, Prediction(9.0, 0.0001, "cpu:ref"))
    assert ref is not None and (ref.score, ref.runs, ref.predicted) == (1.5, 2.0, False)


def test_a_prediction_widens_the_bar_by_its_own_error():
    variance = 0.03 ** 2
    ref = reference(None, 0, NOISE, Prediction(2.0, variance, "cpu:ref"))
    assert ref is not None and ref.predicted and ref.score == 2.0
    policy = AcceptancePolicy(compare="paired", noise_sigmas=2.0)
    bar = acceptance.threshold(policy, ref.sigma, ref.runs)
    assert bar == pytest.approx(2.0 * math.sqrt(0.02 ** 2 + variance))
    assert bar > acceptance.threshold(policy, NOISE.sigma, 2)


def test_without_baseline_prediction_or_noise_the_result_waits():
    assert reference(None, 0, NOISE, None) is None
    assert reference(1.0, 3, Noise(0.0, 0.0, 0, 0, False)) is None


def test_a_deterministic_metric_judged_on_a_prediction_uses_the_prediction_error():
    ref = reference(None, 0, Noise(0.0, 0.0, 3, 0, True), Prediction(1.0, 0.01, "cpu:ref"))
    assert ref is not None and ref.sigma == pytest.approx(0.1) and ref.runs == 1.0


def test_results_wait_per_class_and_are_taken_oldest_first():
    waiting = Waiting()
    waiting.add("cpu:a", "r1")
    waiting.add("cpu:b", "r2")
    waiting.add("cpu:a", "r3")
    assert waiting.count() == 3 and waiting.count("cpu:a") == 2 and waiting.classes() == {"cpu:a", "cpu:b"}
    assert waiting.take("cpu:a") == ["r1", "r3"]
    assert waiting.take("cpu:a") == [] and waiting.count() == 1
    waiting.discard("r2")
    assert waiting.count() == 0 and not waiting.classes()


def test_a_tier_members_spot_check_is_one_run_and_its_prediction_judges_meanwhile():
    """Among five classes, four follow the reference by an offset: they measure a champion only
    as a spot check, of one run, and go on being judged on the tier's prediction."""
    import random
    from dataclasses import replace

    from autoswarm.coordinator.store import ChampionRecord, StudyRecord
    from autoswarm.coordinator.study_state import SPOT_CHECK_RUNS, StudyState
    from autoswarm.coordinator.tiers import CHECK_EVERY
    from autoswarm.study import parse_study

    spec = {"name": "tiny", "target": "target.py", "evaluate": "python target.py", "metric": "score",
            "direction": "maximize", "timeout": 10, "time_budget": 1,
            "acceptance": {"compare": "paired", "quorum": 2, "baseline_runs": 2}}
    state = StudyState(StudyRecord("tiny", spec, "bundle", 0, "", 0.0), parse_study(spec), 10,
                       ChampionRecord("tiny", 0, "v0", 1.0, "r-0", 0.0), 0, 0, 0, 1.0)
    rng = random.Random(3)
    classes = {"ref": 0.0, "m1": 1.0, "m2": -0.5, "m3": 2.0, "m4": 0.3}
    for seq in range(5):
        for cls, offset in classes.items():
            for run in range(2):
                state.add_baseline(f"v{seq}", cls, f"{cls}-w{run}", offset + 0.1 * seq + rng.gauss(0, 0.01),
                                   f"r-{seq}-{cls}-{run}")
    assert state.tiered and state.tiers.reference() is not None
    reference_class = state.tiers.reference()
    members = [cls for cls in classes if cls != reference_class and state.tiers.member(cls, state.sigma_of)]
    assert members, "classes related by an offset join the reference's tier"
    for seq in range(5, 5 + CHECK_EVERY):
        state.champion = replace(state.champion, seq=seq, version=f"v{seq}")
        for cls in members:
            wanted = state.baseline_target(cls, 2)
            spot = state.tiers.wants_direct(cls, seq, state.sigma_of)
            assert wanted == (SPOT_CHECK_RUNS if spot else 0) == (1 if spot else 0)
    cls = members[0]
    state.champion = replace(state.champion, seq=20, version="v20")
    state.add_baseline("v20", reference_class, "r-w", 2.0, "r-20-ref")
    state.add_baseline("v20", reference_class, "r-w2", 2.0, "r-20-ref2")
    predicted = state.reference("v20", cls)
    assert predicted is not None
    state.add_baseline("v20", cls, f"{cls}-w0", predicted[0] + 0.005, "r-20-spot")
    assert state.tiers.member(cls, state.sigma_of), "a spot check that agrees keeps the class in its tier"
    assert state.direct_runs("v20", cls) == [], "one spot-check run judges nothing"
    after = state.reference("v20", cls)
    assert after is not None and after[0] == pytest.approx(predicted[0], abs=0.02), "the prediction goes on"


def _paired_state():  # type: ignore[no-untyped-def]
    from autoswarm.coordinator.store import ChampionRecord, StudyRecord
    from autoswarm.coordinator.study_state import StudyState
    from autoswarm.study import parse_study

    spec = {"name": "tiny", "target": "target.py", "evaluate": "python target.py", "metric": "score",
            "direction": "maximize", "timeout": 10, "time_budget": 1,
            "acceptance": {"compare": "paired", "quorum": 2, "baseline_runs": 2}}
    return StudyState(StudyRecord("tiny", spec, "bundle", 0, "", 0.0), parse_study(spec), 10,
                      ChampionRecord("tiny", 0, "v0", 1.0, "r-0", 0.0), 0, 0, 0, 1.0)


def test_a_moved_workers_class_follows_the_tier_but_never_leads_it_nor_tiers_a_small_swarm():
    """Issue 15, class attacks: every worker moved out of its class measured every champion
    itself (25% of all evaluations in baselines with baseline liars at 32 classes). Its class
    of one may follow the reference, a lie included (a steady +10 is a steady offset, and
    its prediction judges only its own runs), but is never the reference, however many
    champions it measured, nor counts towards tiering a swarm of few classes."""
    import random
    from dataclasses import replace

    from autoswarm.coordinator.study_state import SPOT_CHECK_RUNS
    from autoswarm.hardware_class import moved_class

    rng = random.Random(4)
    small = _paired_state()
    moved = [moved_class("cpu:a", "w-liar"), moved_class("cpu:b", "w-other")]
    for seq in range(5):
        for cls, offset in {"cpu:a": 0.0, "cpu:b": 0.5, moved[0]: 10.0, moved[1]: 3.0}.items():
            for run in range(2):
                small.add_baseline(f"v{seq}", cls, f"{cls}-w{run}", offset + 0.1 * seq + rng.gauss(0, 0.01))
    assert not small.tiered, "two reported classes and two moved workers are not four classes"

    state = _paired_state()
    liar = moved_class("cpu:m1", "w-liar")
    classes = {"ref": 0.0, "m1": 1.0, "m2": -0.5, "m3": 2.0, liar: 10.0}
    for seq in range(5):
        for cls, offset in classes.items():
            for run in range(2 if cls != liar else 3):   # the moved worker measures more than anyone
                worker = f"{cls}-w{run}" if cls != liar else "w-liar"
                state.add_baseline(f"v{seq}", cls, worker, offset + 0.1 * seq + rng.gauss(0, 0.01))
    assert state.tiered and state.tiers.reference() in {"ref", "m1", "m2", "m3"}
    assert state.tiers.member(liar, state.sigma_of), "its steady offset is a relation like any other"
    state.champion = replace(state.champion, seq=5, version="v5")
    spot = state.tiers.wants_direct(liar, 5, state.sigma_of)
    assert state.baseline_target(liar, 1) == (SPOT_CHECK_RUNS if spot else 0), "no longer every champion, twice"
    reference = state.tiers.reference()
    assert reference is not None
    for run in range(2):
        state.add_baseline("v5", reference, f"{reference}-w{run}", classes[reference] + 0.5 + rng.gauss(0, 0.01))
    predicted = state.reference("v5", liar, "w-liar")
    assert predicted is not None and predicted[0] == pytest.approx(10.5, abs=0.1), "it judges its own runs only"
    for other in ("m1", "m2", "m3"):
        if other != reference:
            found = state.reference("v5", other)
            assert found is not None and found[0] == pytest.approx(classes[other] + 0.5, abs=0.1)


def test_a_check_judged_on_the_same_reference_runs_as_its_claim_goes_to_a_class_of_its_own_runs():
    """Issue 15, session 5 (64 workers, 32 classes, baseline liars, seed 14): a member's claim,
    judged on its tier's prediction from the reference's runs of the parent, was confirmed by a
    reference worker compared with those very runs; one low reference baseline made a worse
    edit look good on both. Such a check is held back from the reference and from members
    predicted from it while a class judged on its own runs is connected."""
    from dataclasses import replace

    from autoswarm.coordinator.acceptance import Measurement
    from autoswarm.coordinator.records import ClaimRecord
    from autoswarm.coordinator.study_state import PendingClaim

    state, classes, rng = _tiered_state()
    reference = state.tiers.reference()
    assert state.tiered and reference in classes and not state.tiers.member("odd", state.sigma_of)
    members = [c for c in classes if c != reference]
    state.champion = replace(state.champion, seq=5, version="v5")
    for run in range(2):
        state.add_baseline("v5", reference, f"{reference}-w{run}", classes[reference] + 0.5 + rng.gauss(0, 0.01))
        state.add_baseline("v5", "odd", f"odd-w{run}", 0.2 + rng.gauss(0, 0.01))
    claimant = members[0]
    record = ClaimRecord("c1", "tiny", "v6", "v5", "explore", f"{claimant}-w0", "r-claim", "pending", "", 0.0)
    predicted = Measurement(f"{claimant}-w0", "o-claimant", claimant, 1.0, 0.2, 0.05, True)   # no direct runs
    claim = PendingClaim(record, [predicted])
    assert state.judged_on_reference("v5", reference) and state.judged_on_reference("v5", members[1])
    assert not state.judged_on_reference("v5", "odd")
    assert state.on_reference(claim, reference) and state.on_reference(claim, members[1])
    assert not state.on_reference(claim, "odd")
    state.claims[record.id] = claim
    live = frozenset({reference, *members, "odd"})
    for asking in (reference, members[1]):
        need, = state.view(f"{asking}-w1", asking, frozenset({f"{asking}-w1"}), frozenset({f"{asking}-w1"}), live).verify
        assert asking in need.measured_classes and need.other_classes_live, "held back from this class"
    need, = state.view("odd-w1", "odd", frozenset({"odd-w1"}), frozenset({"odd-w1"}), live).verify
    assert "odd" not in need.measured_classes, "a class judged on its own runs checks it"
    # With no such class connected, the check is not held back for ever.
    need, = state.view(f"{reference}-w1", reference, frozenset(), frozenset(), live - {"odd"}).verify
    assert not (reference in need.measured_classes and need.other_classes_live)


def test_a_quarantined_peer_is_nobody_to_leave_a_baseline_repeat_to():
    """Issue 15 (session 6's stall): a class of four whose three honest workers each measured the
    champion once, the fourth quarantined (its runs taken out) but still connected. A repeat the
    class wants is no longer left to "someone else available": the quarantined worker gets no
    task, so an honest one measures it."""
    from autoswarm.coordinator import scheduler

    state = _paired_state()
    for i, value in enumerate((1.0, 1.01, 0.99)):
        state.add_baseline("v0", "cpu:a", f"w{i}", value, f"r-{i}")
    state.add_baseline("v0", "cpu:a", "w-liar", 1.5, "r-liar")
    state.samples.remove_worker("cpu:a", "w-liar")   # quarantined
    members = frozenset({"w0", "w1", "w2", "w-liar"})
    view = state.view("w0", "cpu:a", members, members, frozenset({"cpu:a"}))
    cb = view.class_baseline
    assert cb.done < cb.target, "the class wants another run of the champion"
    assert cb.measured_by == {"w0", "w1", "w2"}
    assert not cb.others_available, "the quarantined peer measures nothing: nobody else is available"
    task = scheduler.choose_task([view], scheduler.WorkerView("w0", frozenset({view.mutator_kind}), 0, 1))
    assert task is not None and task.kind == scheduler.BASELINE
    # An honest peer that has not measured it yet is someone to leave it to.
    more = members | {"w3"}
    assert state.view("w0", "cpu:a", more, more, frozenset({"cpu:a"})).class_baseline.others_available


def test_a_check_is_held_back_from_the_reference_only_for_a_class_of_its_own_runs_that_may_make_it():
    """Issue 15, session 8 (64 workers, 32 classes, `always` liars: 127 of 160 liars quarantined
    over seeds 7-16). A check judged on the tier's reference, as its claim was, is held back
    while a class judged on its own runs is connected; but the only such class could not make
    it: it had measured the claim already (seed 7: it refuted a liar's claim, an arbiter was
    wanted), or its one connected worker was a moved liar, the claimant's owner (seed 10). The
    check waited for nobody, the claimant's one open claim with it: one strike, every later
    edit `claim-limit`, never quarantined (and in one run every claim on the champion stalled
    so). Held back only for a class that may make the check; one that may still gets it."""
    from dataclasses import replace

    from autoswarm.coordinator import scheduler
    from autoswarm.coordinator.acceptance import Measurement
    from autoswarm.coordinator.records import ClaimRecord
    from autoswarm.coordinator.study_state import PendingClaim

    state, classes, _ = _tiered_state()
    reference = state.tiers.reference()
    claimant, asking = [c for c in classes if c != reference][:2]
    state.champion = replace(state.champion, seq=4, version="v4")
    assert state.judged_on_reference("v4", asking) and not state.judged_on_reference("v4", "odd")
    lie = Measurement(f"{claimant}-w0", "attacker", claimant, 1.0, 1.0, 0.05, True)        # predicted, no direct runs
    refuted = Measurement("odd-w0", "o-odd", "odd", 0.0, 0.0, 0.05, False, baseline=frozenset({"r"}))
    live = frozenset({*classes, "odd"})
    worker = f"{asking}-w1"

    def held_back(measurements: list[Measurement], odd_connected: dict[str, str]) -> bool:
        """Whether the claim's check is held back from `asking`, with these workers (and their
        owners) of "odd" connected and free to verify."""
        def may_check(cls: str, workers: AbstractSet[str], owners: AbstractSet[str]) -> bool:
            return cls == "odd" and any(w not in workers and o not in owners for w, o in odd_connected.items())

        record = ClaimRecord("c1", "tiny", "v9", "v4", "explore", f"{claimant}-w0", "r-claim", "pending", "", 0.0)
        state.claims = {"c1": PendingClaim(record, list(measurements))}
        need, = state.view(worker, asking, frozenset({worker}), frozenset({worker}), live, may_check).verify
        assert need.needed == 1
        return asking in need.measured_classes and need.other_classes_live

    assert held_back([lie], {"odd-w1": "o-odd1"}), "a class of its own runs may check it: it waits for that one"
    assert not held_back([lie], {"odd-w1": "attacker"}), "the claimant's owner is no checker"
    assert not held_back([lie, refuted], {"odd-w1": "o-odd1"}), "a class that measured it checks it no more"
    view = state.view(worker, asking, frozenset({worker}), frozenset({worker}), live, lambda *_: False)
    task = scheduler.choose_task([view], scheduler.WorkerView(worker, frozenset({view.mutator_kind}), 0, 1,
                                                              owner="o-asking", hardware_class=asking))
    assert task is not None and (task.kind, task.claim_id) == (scheduler.VERIFY, "c1")


def _tiered_state():  # type: ignore[no-untyped-def]
    """A paired study (with the random draws it went on with) of four classes in one tier (offsets, five champions of two runs each) and
    one class unlike the others ("odd": never a member, it measures every champion itself)."""
    import random

    rng = random.Random(5)
    state = _paired_state()
    classes = {"ref": 0.0, "m1": 1.0, "m2": -0.5, "m3": 2.0}
    for seq in range(5):
        for cls, offset in classes.items():
            for run in range(2):
                state.add_baseline(f"v{seq}", cls, f"{cls}-w{run}", offset + 0.1 * seq + rng.gauss(0, 0.01))
        for run in range(2):
            state.add_baseline(f"v{seq}", "odd", f"odd-w{run}", (-1) ** seq + rng.gauss(0, 0.01))
    return state, classes, rng


LEVEL = 0.2   # each class's true score of the new champion, above its offset


def test_a_check_predicted_from_the_reference_runs_its_claim_rested_on_waits_for_a_fresh_one():
    """Issue 15, session 12 (64 workers, 32 classes, verify-only liars, seeds 95, 100, 125): at 32
    classes every class is a tier member, so nothing holds a check back from the reference. A null
    edit's claim on one member and its honest check on another were both judged on predictions
    from the same two reference runs of the parent, one of them low: both looked good, and the
    edit was accepted. A check judged on the reference is now compared only with reference runs
    no measurement of its claim rested on: with none left it waits, and the reference measures
    the parent once more for it."""
    from dataclasses import replace

    from autoswarm.coordinator import scheduler
    from autoswarm.coordinator.records import ClaimRecord
    from autoswarm.coordinator.study_state import PendingClaim

    state, classes, _ = _tiered_state()
    reference = state.tiers.reference()
    claimant, checker = [c for c in classes if c != reference][:2]
    state.champion = replace(state.champion, seq=5, version="v5")
    true_parent = classes[reference] + LEVEL   # a champion within the range the tier was fitted on
    # Both of the reference's runs low, by about as much as each other (so its workers agree).
    state.add_baseline("v5", reference, f"{reference}-w0", true_parent - 0.06, "r-ref-0")
    state.add_baseline("v5", reference, f"{reference}-w1", true_parent - 0.065, "r-ref-1")
    rested_on = state.reference_run_ids("v5", claimant, f"{claimant}-w0")
    assert rested_on == {"r-ref-0", "r-ref-1"}, "a member's prediction rests on the reference's runs"
    predicted = state.reference("v5", claimant, f"{claimant}-w0")
    assert predicted is not None and predicted[0] < classes[claimant] + LEVEL - 0.04, "predicted low"

    # The claim: a null edit, measured at its class's true parent score, looks good on the low prediction.
    record = ClaimRecord("c1", "tiny", "v6", "v5", "explore", f"{claimant}-w0", "r-claim", "pending", "", 0.0)
    first = replace(_measured(state, claimant, classes[claimant] + LEVEL, "r-claim"), reference_runs=rested_on)
    assert first.confirms, "the null edit passes its bar on the low prediction"
    on_the_same_runs = _measured(state, checker, classes[checker] + LEVEL, "r-check")
    assert on_the_same_runs.confirms, "and an honest check predicted from the same runs would confirm it"
    claim = PendingClaim(record, [first])
    state.claims[record.id] = claim
    used = state.independent_of(claim, checker)
    assert rested_on <= used
    assert state.reference("v5", checker, f"{checker}-w0", used) is None, "no reference run left: it waits"
    claim.waiting["r-check"] = (f"{checker}-w0", checker)
    assert state.waits_for_reference(claim)

    # The reference's workers are asked for one more run of the parent.
    worker = f"{reference}-w0"
    members = frozenset({f"{reference}-w0", f"{reference}-w1"})
    view = state.view(worker, reference, members, members, frozenset({*classes, "odd"}))
    assert view.class_baseline.target > view.class_baseline.done, "the reference measures the parent again"
    task = scheduler.choose_task([view], scheduler.WorkerView(worker, frozenset({view.mutator_kind}), 0, 1,
                                                              owner="o-ref", hardware_class=reference))
    assert task is not None and task.kind == scheduler.BASELINE
    # With the fresh run the check is judged on it alone: the null edit no longer passes.
    state.add_baseline("v5", reference, f"{reference}-w0", true_parent + 0.005, "r-ref-2")
    found = state.reference("v5", checker, f"{checker}-w0", state.independent_of(claim, checker))
    assert found is not None
    score, sigma, runs = found
    assert score == pytest.approx(classes[checker] + LEVEL, abs=0.03), "predicted from the fresh run"
    policy = state.spec.acceptance
    verdict = acceptance.judge(policy, state.spec.direction, score, classes[checker] + LEVEL, sigma, runs)
    assert not verdict.accept, "the null edit's check refutes it"
    assert state.reference_run_ids("v5", checker, f"{checker}-w0", state.independent_of(claim, checker)) == {"r-ref-2"}


def _measured(state, hardware_class: str, value: float, result_id: str):  # type: ignore[no-untyped-def]
    """The claimant's measurement of `value` on a class, judged as `Judging._measure` judges it."""
    found = state.reference("v5", hardware_class, f"{hardware_class}-w0")
    assert found is not None
    score, sigma, runs = found
    verdict = acceptance.judge(state.spec.acceptance, state.spec.direction, score, value, sigma, runs)
    return acceptance.Measurement(f"{hardware_class}-w0", f"o-{hardware_class}", hardware_class, value,
                                  verdict.improvement, verdict.threshold, verdict.accept, 0.0, result_id)


def test_while_the_reference_has_no_connected_worker_a_member_measures_the_champion_itself():
    """Issue 15 (64 workers, 32 classes, `always` liars, seed 14): both workers of the tier's
    reference class were moved out of it, so nobody measured the reference's baseline of a new
    champion, no member had a prediction, and 2,666 edits waited to the end of the run. A
    member measures the champion itself while no worker of the reference is connected (as it
    would be when the reference's machines go offline), and waits on the tier again after."""
    from dataclasses import replace

    state, classes, _ = _tiered_state()
    reference = state.tiers.reference()
    member = next(c for c in classes if c != reference)
    state.champion = replace(state.champion, seq=9, version="v9")
    while state.tiers.wants_direct(member, state.champion.seq, state.sigma_of):
        state.champion = replace(state.champion, seq=state.champion.seq + 1)
    worker = f"{member}-w0"
    members = frozenset({worker, f"{member}-w1"})
    here = state.view(worker, member, members, members, frozenset({*classes, "odd"})).class_baseline
    assert here.target == 0, "the reference's baseline stands for the member's"
    gone = state.view(worker, member, members, members, frozenset(classes) - {reference}).class_baseline
    assert gone.target == state.spec.acceptance.baseline_runs, "the reference is away: the member measures it"
