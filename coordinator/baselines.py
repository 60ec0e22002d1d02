"""What a measurement is judged against in a paired study, and the results that wait for it. Pure.

A run on hardware class c is compared with c's baseline of its parent. That baseline is
either *direct* (runs of the parent on c itself) or *predicted* by c's comparability tier
from the reference class's baseline (`tiers.Tiers`), whose error then widens the bar. When
neither exists yet the result waits, stored but unjudged (`Waiting`), until the class's
baseline arrives; nothing a worker measured is thrown away for want of a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autoswarm.coordinator.frozen import quick
from autoswarm.coordinator.noise import Noise
from autoswarm.coordinator.tiers import Prediction

# A predicted baseline with no error at all still counts as this many runs.
MAX_EFFECTIVE_RUNS = 1e6


@quick
@dataclass(frozen=True)
class Reference:
    """The score to beat on one class, the noise of one run there, and how many runs the
    score is worth (`acceptance.threshold` widens the bar by √(1 + 1/runs))."""

    score: float
    sigma: float
    runs: float
    predicted: bool = False


def reference(direct_mean: float | None, direct_runs: int, noise: Noise,
              prediction: Prediction | None = None) -> Reference | None:
    """The reference for judging one run, or None when the result must wait.

    A direct baseline wins over a prediction. A prediction's variance v is folded in as
    the equivalent number of runs, σ²/v, so the bar's σ_diff is √(σ² + v) exactly.
    """
    if not noise.usable:
        return None
    if direct_mean is not None and direct_runs > 0:
        return Reference(direct_mean, noise.sigma, float(direct_runs))
    if prediction is None:
        return None
    if prediction.variance <= 0:
        runs = MAX_EFFECTIVE_RUNS
    elif noise.sigma <= 0:
        # A deterministic metric judged across classes: the prediction's error is all the noise.
        return Reference(prediction.mean, math.sqrt(prediction.variance), 1.0, predicted=True)
    else:
        runs = min(noise.sigma ** 2 / prediction.variance, MAX_EFFECTIVE_RUNS)
    return Reference(prediction.mean, noise.sigma, runs, predicted=True)


@dataclass
class Waiting:
    """Results stored unjudged, by the hardware class whose baseline they wait for.

    Oldest first: when a class's baseline arrives its results are judged in the order they
    were measured, as they would have been had the baseline been there.
    """

    _by_class: dict[str, dict[str, None]] = field(default_factory=dict)

    def add(self, hardware_class: str, result_id: str) -> None:
        self._by_class.setdefault(hardware_class, {})[result_id] = None

    def take(self, hardware_class: str) -> list[str]:
        """The class's waiting results, oldest first; they wait no longer."""
        return list(self._by_class.pop(hardware_class, {}))

    def discard(self, result_id: str) -> None:
        for cls in list(self._by_class):
            self._by_class[cls].pop(result_id, None)
            if not self._by_class[cls]:
                del self._by_class[cls]

    def count(self, hardware_class: str | None = None) -> int:
        """Results waiting on one class, or on all."""
        if hardware_class is not None:
            return len(self._by_class.get(hardware_class, ()))
        return sum(len(v) for v in self._by_class.values())

    def classes(self) -> frozenset[str]:
        return frozenset(self._by_class)
