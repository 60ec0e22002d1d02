"""Global acceptance: which measured edit becomes the champion. Pure decision logic.

No I/O here: the engine feeds it measurements from the store and records what it decides,
the way BOINC keeps its validator apart from its transport. The rules (DESIGN.md §5):

- *Comparable scores.* Under a fixed time budget a score depends on the hardware, so with
  `compare = "paired"` a measurement is compared only with the champion's baseline *in the
  same hardware class*. `absolute` compares raw scores (hardware-independent metrics).
- *Noise.* Repeated baselines of the same version in a class give that class's noise σ.
  An improvement counts only above `max(min_delta, noise_sigmas · σ_diff)`, where σ_diff is
  the noise of "one run minus the baseline mean": σ·sqrt(1 + 1/n_baseline).
- *Verification.* A claim becomes champion after `quorum` confirmations by distinct workers
  (distinct owners where known); the first refutation rejects it.
- *Trust.* Slow to earn, quick to lose: refuted claims quarantine a worker.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoswarm.study import AcceptancePolicy

MAX_VERIFY_FAILURES = 3      # a candidate that crashes this often elsewhere is not reproducible
DISCREPANCY_BARS = 3.0       # a refuted claim costs trust when it overshot others by this many bars


@dataclass(frozen=True)
class Verdict:
    """The decision on one measurement and the numbers behind it."""

    accept: bool
    improvement: float   # positive means better, in the metric's own units, whatever the direction
    threshold: float
    reason: str


@dataclass(frozen=True)
class Baseline:
    """A version's score in one hardware class."""

    mean: float
    runs: int


def improvement(direction: str, reference: float, candidate: float) -> float:
    """How much better `candidate` is than `reference`: positive is better."""
    return reference - candidate if direction == "minimize" else candidate - reference


def baseline_of(values: Sequence[float]) -> Baseline | None:
    return Baseline(statistics.fmean(values), len(values)) if values else None


def robust_sigma(differences: Sequence[float]) -> float:
    """σ of one run from absolute differences between pairs of runs of the same thing.

    A difference of two runs has σ·√2; the median of its absolute value is 0.6745 of
    that (a half-normal's median). A median ignores a minority of outliers.
    """
    if not differences:
        return 0.0
    return statistics.median(differences) / (0.6744897501960817 * math.sqrt(2.0))


def threshold(policy: AcceptancePolicy, sigma: float, baseline_runs: int) -> float:
    """The smallest improvement that counts for one run against a baseline of `baseline_runs`."""
    if policy.compare == "absolute" or baseline_runs <= 0:
        return policy.min_delta
    sigma_diff = sigma * math.sqrt(1.0 + 1.0 / baseline_runs)
    return max(policy.min_delta, policy.noise_sigmas * sigma_diff)


def judge(policy: AcceptancePolicy, direction: str, reference: float, value: float,
          sigma: float = 0.0, baseline_runs: int = 0) -> Verdict:
    """Does one measurement beat the reference (the champion's score, or its class baseline)?

    With `compare = "absolute"` and `min_delta = 0` this is autoresearch's rule: kept if
    the metric strictly improved.
    """
    if not (math.isfinite(reference) and math.isfinite(value)):
        return Verdict(False, math.nan, policy.min_delta, "a metric is not finite")
    gain = improvement(direction, reference, value)
    bar = threshold(policy, sigma, baseline_runs)
    if gain > bar:
        return Verdict(True, gain, bar, f"improved by {gain:.6g} > {bar:.6g}")
    return Verdict(False, gain, bar, f"improvement {gain:.6g} not above {bar:.6g}")


@dataclass(frozen=True)
class Measurement:
    """One worker's evaluation of a claimed candidate, judged against its own class."""

    worker_id: str
    owner: str
    hardware_class: str
    value: float
    improvement: float
    threshold: float
    confirms: bool


def independent(measurements: Sequence[Measurement]) -> int:
    """How many measurements come from distinct workers and distinct (known) owners."""
    workers: set[str] = set()
    owners: set[str] = set()
    count = 0
    for m in measurements:
        if m.worker_id in workers or (m.owner and m.owner in owners):
            continue
        workers.add(m.worker_id)
        if m.owner:
            owners.add(m.owner)
        count += 1
    return count


def claim_outcome(policy: AcceptancePolicy, measurements: Sequence[Measurement], failures: int) -> str:
    """"accepted", "rejected" or "pending" for a claim with these measurements so far."""
    if any(not m.confirms for m in measurements):
        return "rejected"
    if failures >= MAX_VERIFY_FAILURES:
        return "rejected"
    if independent([m for m in measurements if m.confirms]) >= policy.quorum:
        return "accepted"
    return "pending"


def may_measure(measurements: Sequence[Measurement], claimant: str, claimant_owner: str,
                worker_id: str, owner: str) -> bool:
    """Whether this worker's measurement would count as an independent confirmation."""
    if worker_id == claimant or (owner and owner == claimant_owner):
        return False
    return all(m.worker_id != worker_id and not (owner and m.owner == owner) for m in measurements)


def discrepant(measurements: Sequence[Measurement], claimant: str) -> bool:
    """Whether a refuted claim was exaggerated beyond what noise explains.

    An honest claim on a noisy metric is sometimes refuted: it cleared the bar by luck. A
    lie shows as a gap between the claimed improvement and what others measured that is
    several times the bar. Only that costs trust, so honest volunteers are not quarantined
    for bad luck.
    """
    claimed = next((m for m in measurements if m.worker_id == claimant), None)
    refuting = [m for m in measurements if not m.confirms]
    if claimed is None or not refuting:
        return False
    bar = max([claimed.threshold, *(m.threshold for m in refuting)])
    gap = claimed.improvement - max(m.improvement for m in refuting)
    return gap > DISCREPANCY_BARS * bar if bar > 0 else gap > 0


@dataclass(frozen=True)
class Trust:
    """A worker's record of claims: confirmed, and refuted as exaggerated (see `discrepant`)."""

    confirmed: int = 0
    refuted: int = 0

    @property
    def quarantined(self) -> bool:
        """Slow to earn, quick to lose: one refutation is forgiven as noise, a second is not
        unless many confirmed claims stand behind it (at least four per refutation)."""
        return self.refuted >= 2 and self.confirmed < 4 * self.refuted

    @property
    def may_verify(self) -> bool:
        """A worker caught exaggerating even once does not judge others' claims until it has
        earned back four confirmed claims per exaggeration."""
        return self.refuted == 0 or self.confirmed >= 4 * self.refuted


def champion_score(policy: AcceptancePolicy, measurements: Sequence[Measurement]) -> float:
    """The score shown for a new champion: the mean of its confirming measurements.

    With a quorum above one the claimant's own number is left out, so a worker that
    exaggerated a real improvement does not set the bar for everyone after it.
    """
    confirming = [m for m in measurements if m.confirms]
    trusted = confirming[1:] if policy.quorum > 1 and len(confirming) > 1 else confirming
    return statistics.fmean(m.value for m in trusted)


def class_deltas(measurements: Sequence[Measurement]) -> Mapping[str, float]:
    """Mean improvement per hardware class, for the lineage view."""
    by_class: dict[str, list[float]] = {}
    for m in measurements:
        by_class.setdefault(m.hardware_class, []).append(m.improvement)
    return {cls: statistics.fmean(values) for cls, values in sorted(by_class.items())}
