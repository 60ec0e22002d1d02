"""The pooled noise model: a new class is usable at once, a thin class sets a wide bar."""

from __future__ import annotations

import random

from autoswarm.coordinator.noise import ALPHA, MIN_DIFFERENCES, STATED_DIFFERENCES, NoiseModel, chi2_quantile, thin_factor


def _measure(model: NoiseModel, cls: str, sigma: float, pairs: int, rng: random.Random, version: str = "v") -> None:
    for i in range(pairs):
        model.add(f"{version}{i}", cls, "w1", rng.gauss(0.0, sigma))
        model.add(f"{version}{i}", cls, "w2", rng.gauss(0.0, sigma))


def test_nothing_measured_means_nothing_is_judged():
    model = NoiseModel()
    assert not model.noise("cpu:a").usable
    assert model.wants_repeats("cpu:a")


def test_runs_of_a_version_give_its_baseline_and_who_measured_it():
    model = NoiseModel()
    model.add("v", "cpu:a", "w1", 1.0)
    model.add("v", "cpu:a", "w2", 3.0)
    runs = model.baseline("v", "cpu:a")
    assert runs is not None and runs.n == 2 and runs.mean == 2.0
    assert model.measured_by("v", "cpu:a") == {"w1", "w2"}
    assert model.baseline("v", "cpu:b") is None and model.differences("cpu:a") == 1


def test_a_new_class_is_usable_at_once_from_the_other_classes():
    rng = random.Random(1)
    model = NoiseModel()
    for c in range(6):
        _measure(model, f"cpu:{c}", 0.02, 20, rng)
    assert not model.wants_repeats("cpu:new")
    new = model.noise("cpu:new")
    assert new.usable and new.own == 0 and new.pooled == 120
    assert 0.015 < new.estimate < 0.027
    # Its bar is wider than a well-measured class's: it has shown nothing of its own yet.
    assert new.sigma > model.noise("cpu:0").sigma


def test_a_thin_class_never_sets_a_bar_tighter_than_its_evidence_allows():
    """Over many draws, a class resting on 2 differences rarely gets a bar σ well below its true σ."""
    rng = random.Random(2)
    below = 0
    trials = 400
    for _ in range(trials):
        model = NoiseModel()
        for c in range(4):
            _measure(model, f"cpu:{c}", 0.02, 15, rng)
        _measure(model, "cpu:thin", 0.02, 2, rng)
        below += model.noise("cpu:thin").sigma < 0.8 * 0.02
    assert below / trials < 0.05
    # Alone (no other class to learn from), thin evidence widens the bar a lot.
    model = NoiseModel()
    _measure(model, "cpu:alone", 0.02, 2, rng)
    alone = model.noise("cpu:alone")
    assert alone.inflation > 1.25


def test_evidence_narrows_the_bar_and_a_noisier_class_is_seen_as_noisier():
    rng = random.Random(3)
    model = NoiseModel()
    for c in range(5):
        _measure(model, f"cpu:{c}", 0.02, 20, rng)
    inflations = []
    for _ in range(4):
        _measure(model, "gpu:slow", 0.06, 10, rng, version=f"s{len(inflations)}")
        inflations.append(model.noise("gpu:slow").inflation)
    assert all(b < a for a, b in zip(inflations, inflations[1:])), inflations
    slow = model.noise("gpu:slow")
    # The pool of quieter classes pulls the estimate, but never the bar below the class's own σ.
    assert slow.sigma > 0.05, slow
    assert slow.estimate > 1.5 * model.noise("cpu:0").estimate
    # Its bar sits at its own σ̂, well above the pooled estimate: that is its noise, not thin
    # evidence, so it is not counted as inflation (more runs would not narrow it: no repeats).
    assert slow.inflation < slow.sigma / slow.estimate - 0.05, slow


def test_thin_evidence_inflation_shrinks_with_own_runs():
    rng = random.Random(4)
    model = NoiseModel()
    _measure(model, "cpu:new", 0.02, 2, rng)
    first = model.noise("cpu:new")
    _measure(model, "cpu:new", 0.02, 30, rng, version="later")
    later = model.noise("cpu:new")
    assert first.inflation > later.inflation > 1.0
    # A class alone has no pool to hold it up: its bar is its estimate times the evidence factor.
    assert later.sigma >= later.estimate


def test_one_wild_run_moves_the_estimate_little():
    rng = random.Random(4)
    model = NoiseModel()
    _measure(model, "cpu:a", 0.02, 30, rng)
    before = model.noise("cpu:a").estimate
    model.add("x", "cpu:a", "liar", 0.0)
    model.add("x", "cpu:a", "liar", 50.0)
    assert abs(model.noise("cpu:a").estimate - before) < 0.1 * before


def test_a_deterministic_metric_has_no_noise():
    model = NoiseModel()
    for i in range(3):
        model.add("v", "cpu:a", f"w{i}", 0.5)
    noise = model.noise("cpu:a")
    assert noise.usable and noise.sigma == 0.0
    assert model.noise("cpu:other").sigma == 0.0


def test_the_first_classes_calibrate_until_the_study_has_enough_differences():
    model = NoiseModel()
    for i in range(MIN_DIFFERENCES):
        assert model.wants_repeats("cpu:a")
        model.add_difference("cpu:a", 0.01 * (i + 1))
    assert not model.wants_repeats("cpu:a") and not model.wants_repeats("cpu:b")


def test_a_study_with_one_difference_judges_on_an_honest_chi_square_bound():
    """Alone, the bar's σ from one or two differences is below the true σ no more often than
    the bound's level says (the log-normal bound alone was below it one time in five)."""
    assert MIN_DIFFERENCES == 1
    rng = random.Random(5)
    for pairs in (1, 2, 3):
        trials, below = 4000, 0
        for _ in range(trials):
            model = NoiseModel()
            _measure(model, "cpu:first", 1.0, pairs, rng)
            noise = model.noise("cpu:first")
            assert noise.usable
            below += noise.sigma < 1.0
        assert below / trials < ALPHA + 0.015, (pairs, below / trials)
    assert thin_factor(1) > 10 > thin_factor(2) > thin_factor(10) > thin_factor(1000) > 1.0


def test_chi_square_quantiles_match_tables():
    assert abs(chi2_quantile(0.05, 1) - 0.00393) < 1e-5
    assert abs(chi2_quantile(0.95, 10) - 18.307) < 1e-3
    assert abs(chi2_quantile(0.5, 2) - 1.3863) < 1e-4


def test_the_chi_square_bound_only_bites_while_the_study_has_few_differences():
    """A new class in a swarm that knows its noise is judged on the pooled (log-normal) bound."""
    rng = random.Random(6)
    model = NoiseModel()
    for c in range(6):
        _measure(model, f"cpu:{c}", 0.02, 20, rng)
    new = model.noise("cpu:new")
    assert new.evidence > thin_factor(120)


def test_a_stated_noise_sets_the_first_bar_where_one_difference_cannot():
    """tinylm's first two baselines 0.21 apart: alone, a bar σ of 17× the estimate (3.1, so a
    0.7-1.0 bits-per-byte gain was discarded); with the study's stated σ of 0.12 counted as
    STATED_DIFFERENCES differences of the class's own, about 0.2 (1.6× the pooled estimate)."""
    model = NoiseModel()
    model.add("v", "cpu:a", "w1", 5.10)
    model.add("v", "cpu:a", "w2", 5.31)
    alone, stated = model.noise("cpu:a"), model.noise("cpu:a", stated=0.12)
    assert alone.sigma > 3.0 and alone.inflation > 16
    assert stated.usable and stated.inflation == thin_factor(1 + STATED_DIFFERENCES) < 1.7
    assert 0.12 < stated.estimate < 0.21 and stated.sigma < 0.25
    # Stated alone, before any run: usable, on a bar as wide as 8 differences allow.
    none = NoiseModel().noise("cpu:a", stated=0.12)
    assert none.usable and abs(none.sigma - 0.12 * thin_factor(STATED_DIFFERENCES)) < 1e-9


def test_a_stated_noise_never_holds_a_bar_below_what_the_class_shows():
    """A study that states too little noise: its first difference already lifts the bar to the
    class's own σ̂, and its own runs outweigh the statement as they accumulate."""
    rng = random.Random(7)
    model = NoiseModel()
    model.add("v", "cpu:a", "w1", 0.0)
    model.add("v", "cpu:a", "w2", 2.0)           # σ̂ = 2 / (2/√π) ≈ 1.77
    assert model.noise("cpu:a", stated=0.01).sigma >= 1.77
    model = NoiseModel()
    _measure(model, "cpu:a", 1.0, 200, rng)
    noise = model.noise("cpu:a", stated=0.01)
    # 8 stated differences against 200 of its own: the estimate is 4% of the way (in log σ) to the
    # statement, and the bar's σ is the class's own σ̂ at least.
    own = NoiseModel()
    _measure(own, "cpu:a", 1.0, 200, random.Random(7))
    assert 0.8 < noise.estimate < 1.0 and noise.sigma >= own.noise("cpu:a").estimate


def test_a_stated_noise_is_not_a_guess_the_bar_can_be_fooled_by():
    """Over many draws of a class whose true σ is the stated one, the bar's σ on its first
    difference is below the truth no more often than an evidence bound of 8 differences allows."""
    rng = random.Random(8)
    trials, below = 2000, 0
    for _ in range(trials):
        model = NoiseModel()
        _measure(model, "cpu:first", 1.0, 1, rng)
        below += model.noise("cpu:first", stated=1.0).sigma < 1.0
    assert below / trials < ALPHA
