"""References for paired judging: direct baselines first, tier predictions widen the bar, else wait."""

from __future__ import annotations

import math

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
