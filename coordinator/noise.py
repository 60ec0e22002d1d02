"""Noise of repeated measurements, learned once and shared across hardware classes. Pure.

Every hardware class has its own run-to-run noise σ_c, but classes are alike enough that a
shared σ with a per-class factor describes them: σ_c = σ_pool · f_c. Evidence comes from
any two runs of the same version on the same class — baseline repeats, and verify or explore
runs of a version that is measured again later (a claimed candidate becomes champion and is
baselined) — so noise is learned from work the swarm does anyway.

A class's σ is estimated in log space and shrunk towards the pool of the *other* classes
(a normal prior whose spread is the spread of the classes' factors), so a new class is usable
at once from what the swarm knows, and its own runs take over as they accumulate. The pool
only ever widens a class's bar: never below the class's own estimate. The σ a
bar is built on is not the point estimate but an upper bound: `Z_EVIDENCE` standard errors
above it. A class that rests on two differences therefore sets a wide bar, never a tight one
(a σ estimated from few runs is below the truth half the time, which is how null edits got
through); a class with a hundred differences sets a bar close to its σ. At half a standard
error, a class whose σ rested on 50 differences and came out 20% low (one in twelve do) let
a near-null edit through about one run in ten at 64 workers (two 2σ runs in a row); at 1.5
the bar holds to one in fifteen such classes, and the swarm reaches its target as fast.

While the whole study rests on a handful of differences (its very first class, a study of
one or two machines), that log-normal bound is not honest: the estimate from one difference
is a half-normal draw, below a third of the truth one time in five. There the bar's σ is
also at least the chi-square upper bound of the study's differences (`thin_factor`: the
estimate times √(k / χ²_α(k)) for k degrees of freedom, α the same one-sided level as
`Z_EVIDENCE`): 17× the estimate on one difference, 4.5× on two, 1.6× on ten. So a study
judges as soon as it has one difference of noise, on a bar as wide as that evidence is thin.

A study may state its noise (`[acceptance] noise_prior`: σ of one run, as its author measured
it): every class then counts it as `STATED_DIFFERENCES` differences of its own, so a class's
first judgements rest on that and its first runs (a bar of 1.6× the estimate on its first
difference, not 17×), and its own runs outweigh the statement as they accumulate. It narrows
only what thin evidence widened: a class whose own runs show more noise than stated still
gets a bar at its own σ̂ at least.

The estimate of one class is the mean absolute difference, scaled to σ, after leaving out
differences over `WILD` times the median (a liar, a glitch): nearly as efficient as a
standard deviation on honest runs (a median needs 2.4 times the runs for the same
precision), and a minority of wild runs moves it little.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The variance of log(σ̂) for σ̂ from n differences is about LOG_VAR_ONE / n (the mean of a
# half-normal has a relative variance of (π/2 − 1) ≈ 0.571 per sample; rounded up).
LOG_VAR_ONE = 0.6
WILD = 5.0                  # a difference this many times the median is a wild run, left out
MIN_TRIMMED = 16            # ... among this many differences or more (fewer: no majority to tell it by)
Z_EVIDENCE = 1.5            # a bar's σ sits this many standard errors above the estimate
DEFAULT_SPREAD = 0.4        # spread (sd of log factor) between classes before data shows it
MIN_SPREAD = 0.2            # classes are never assumed more alike than this
MIN_DIFFERENCES = 1         # nothing is judged (results wait) until the study has this many
# Degrees of freedom one difference is worth in the chi-square bound: the mean absolute
# difference is 0.876 as efficient as a standard deviation, 1 / (2 · 0.571).
DOF_PER_DIFFERENCE = 0.876
EXACT_BELOW = 400           # differences under which the chi-square bound is worked out (above: its limit)
STATED_DIFFERENCES = 8      # differences of its own every class counts a study's stated noise as
MAX_WEIGHT = 64             # one class's say in the pool is capped: a huge class is not the swarm
HALF_NORMAL_MEAN = 2.0 / math.sqrt(math.pi)   # E|a − b| / σ for two runs with noise σ


@dataclass(frozen=True)
class Noise:
    """The noise to judge one class's measurements with."""

    sigma: float          # σ of one run for bars: the estimate raised for thin evidence
    estimate: float       # the point estimate of σ
    own: int              # differences measured on this class itself
    pooled: int           # differences on other classes that informed it
    usable: bool          # False: nothing is known yet, judge nothing
    evidence: float = 1.0  # the factor thin evidence puts on the estimate (`pooled_noise`)

    @property
    def inflation(self) -> float:
        """How much wider than the estimate the bar is because of thin evidence.

        Only the evidence factor: a class whose own runs show more noise than the pool's
        estimate has a bar at its own σ̂, and more runs would not narrow that."""
        return self.evidence if self.estimate > 0 else 1.0


@dataclass
class RunStats:
    """Repeated runs of one version on one hardware class."""

    n: int = 0
    mean: float = 0.0
    last: float = 0.0
    workers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ClassFit:
    log_sigma: float       # log of the class's own robust σ (floored for exact repeats)
    n: int
    zero: bool             # every repeat was identical (a deterministic metric)


class NoiseModel:
    """Runs per (version, class) and the pooled noise they imply.

    `add` takes any run of a version on a class; `baseline` is the mean of a version's runs
    on a class; `noise` is the class's σ for bars, shared with the rest of the swarm.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], RunStats] = {}
        self._diffs: dict[str, list[float]] = {}
        self._fits: dict[str, ClassFit] | None = None

    # -- evidence -------------------------------------------------------------------------

    def add(self, version: str, hardware_class: str, worker_id: str, value: float) -> None:
        """One run of `version` on `hardware_class`: a difference from the previous one is noise."""
        runs = self._runs.setdefault((version, hardware_class), RunStats())
        if runs.n:
            self.add_difference(hardware_class, value - runs.last)
        runs.n += 1
        runs.mean += (value - runs.mean) / runs.n
        runs.last = value
        runs.workers.add(worker_id)

    def add_difference(self, hardware_class: str, difference: float) -> None:
        """The difference between two runs of the same version on one class."""
        self._diffs.setdefault(hardware_class, []).append(abs(difference))
        self._fits = None

    def baseline(self, version: str, hardware_class: str) -> RunStats | None:
        runs = self._runs.get((version, hardware_class))
        return runs if runs and runs.n else None

    def measured_by(self, version: str, hardware_class: str) -> frozenset[str]:
        runs = self._runs.get((version, hardware_class))
        return frozenset(runs.workers) if runs else frozenset()

    def differences(self, hardware_class: str | None = None) -> int:
        """Differences on one class, or on all classes together."""
        if hardware_class is not None:
            return len(self._diffs.get(hardware_class, ()))
        return sum(len(d) for d in self._diffs.values())

    def wants_repeats(self, hardware_class: str) -> bool:
        """Whether this class should measure an extra baseline repeat for the noise model.

        Only while the whole study has too few differences to pool from: then the first
        classes calibrate it. After that, a new class learns from the pool and its own work.
        """
        return self.differences() < MIN_DIFFERENCES

    # -- estimate -------------------------------------------------------------------------

    def noise(self, hardware_class: str, stated: float = 0.0) -> Noise:
        """The class's σ for bars, from its own differences, the other classes' and the noise the
        study states (`stated`, σ of one run; 0: none)."""
        if self._fits is None:
            self._fits = class_fits(self._diffs)
        return pooled_noise(self._fits, hardware_class, stated)


def class_fits(differences: Mapping[str, Sequence[float]]) -> dict[str, ClassFit]:
    """Each class's own robust σ from its absolute run-to-run differences (classes with none left out)."""
    raw = {cls: _robust_mean(d) / HALF_NORMAL_MEAN for cls, d in differences.items() if d}
    positive = [s for s in raw.values() if s > 0]
    # Exact repeats (σ̂ = 0) are floored far below the others so logs stay finite.
    floor = min(positive) * 1e-3 if positive else 1.0
    return {cls: ClassFit(math.log(max(s, floor)), len(differences[cls]), s == 0) for cls, s in raw.items()}


def _robust_mean(differences: Sequence[float]) -> float:
    """Mean absolute difference without the wild ones (over `WILD` × the median)."""
    if len(differences) < MIN_TRIMMED:
        return statistics.fmean(abs(d) for d in differences)   # too few to tell a wild one from noise
    cut = WILD * statistics.median(differences)
    kept = [abs(d) for d in differences if abs(d) <= cut] or [0.0]
    return statistics.fmean(kept)


def pooled_noise(fits: Mapping[str, ClassFit], hardware_class: str, stated: float = 0.0) -> Noise:
    """One class's noise for bars given every class's fit and the noise the study states
    (`stated`: σ of one run, worth `STATED_DIFFERENCES` of the class's own; 0: none). See the
    module's docstring."""
    others = {cls: f for cls, f in fits.items() if cls != hardware_class}
    own = fits.get(hardware_class)
    pooled = sum(f.n for f in others.values())
    counted = pooled + (own.n if own else 0)   # differences the bound rests on
    if fits and all(f.zero for f in fits.values()):
        return Noise(0.0, 0.0, own.n if own else 0, pooled, True)   # a deterministic metric
    precision, weighted = 0.0, 0.0
    if others:
        weights = {cls: min(f.n, MAX_WEIGHT) for cls, f in others.items()}
        total = sum(weights.values())
        centre = sum(weights[c] * f.log_sigma for c, f in others.items()) / total
        # Prior for this class: the other classes' centre, as spread as they are among
        # themselves (less what their own sampling noise explains), plus the centre's error.
        spread2 = DEFAULT_SPREAD ** 2
        if len(others) >= 3:
            between = sum(weights[c] * (f.log_sigma - centre) ** 2 for c, f in others.items()) / total
            sampling = statistics.fmean(LOG_VAR_ONE / f.n for f in others.values())
            spread2 = max(MIN_SPREAD ** 2, between - sampling)
        prior_var = spread2 + LOG_VAR_ONE / total
        precision += 1.0 / prior_var
        weighted += centre / prior_var
    if own is not None:
        precision += own.n / LOG_VAR_ONE
        weighted += own.log_sigma * own.n / LOG_VAR_ONE
    if stated > 0:
        # The study's statement, as if the class had measured it over STATED_DIFFERENCES differences.
        precision += STATED_DIFFERENCES / LOG_VAR_ONE
        weighted += math.log(stated) * STATED_DIFFERENCES / LOG_VAR_ONE
        counted += STATED_DIFFERENCES
    if precision == 0.0 or counted < MIN_DIFFERENCES:
        return Noise(0.0, 0.0, own.n if own else 0, pooled, False)
    mean = weighted / precision
    # Log-normal bound on the pooled estimate, and never narrower than the chi-square bound of
    # every difference the study has (which only bites while it has few: see the docstring).
    evidence = max(math.exp(Z_EVIDENCE / math.sqrt(precision)), thin_factor(counted))
    bar = math.exp(mean) * evidence
    if own is not None and not own.zero:
        # The pool may widen a class's bar, never narrow it below what the class itself
        # showed: a class noisier than the rest must not borrow their tight bars.
        bar = max(bar, math.exp(own.log_sigma))
    return Noise(bar, math.exp(mean), own.n if own else 0, pooled, True, evidence)


# -- the chi-square bound for thin evidence ---------------------------------------------------

ALPHA = statistics.NormalDist().cdf(-Z_EVIDENCE)   # one-sided level of every upper bound here


@functools.cache
def thin_factor(differences: int) -> float:
    """How far above the estimate the truth may be, at level `ALPHA`, when σ̂ rests on this
    many differences: √(k / χ²_α(k)) with k = `DOF_PER_DIFFERENCE` per difference. Pure
    (cached: it depends on one integer only)."""
    if differences <= 0:
        return math.inf
    k = DOF_PER_DIFFERENCE * differences
    if differences >= EXACT_BELOW:
        return math.exp(Z_EVIDENCE / math.sqrt(2.0 * k))   # its limit (the log-normal bound)
    return math.sqrt(k / chi2_quantile(ALPHA, k))


def chi2_quantile(p: float, k: float) -> float:
    """The p-quantile of a chi-square distribution with k (real, > 0) degrees of freedom."""
    lo, hi = -60.0, math.log(k + 20.0 * math.sqrt(k) + 20.0)
    for _ in range(100):   # bisection in log x: 100 halvings of a span of ~64 is exact to 1e-28
        mid = (lo + hi) / 2
        if _lower_gamma(k / 2, math.exp(mid) / 2) < p:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def _lower_gamma(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(a, x) (series below a + 1, else
    Lentz's continued fraction for 1 − P)."""
    if x <= 0:
        return 0.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        for n in range(1, 1000):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return total * math.exp(log_front)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return 1.0 - math.exp(log_front) * h
