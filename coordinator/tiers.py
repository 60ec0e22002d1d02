"""Comparability tiers learned from data: classes whose baselines predict each other. Pure.

Under a fixed time budget each hardware class scores a version differently, but usually
in a stable way: a faster GPU trains further, so its scores are the slower one's shifted
and stretched. When a class's baselines of past champions relate to the reference class's
by a stable offset and scale (`y = offset + scale · x`, fitted by least squares), the
class is in the reference's tier: its baseline of a new champion is *predicted* from the
reference's, with the prediction's error added to the noise of every judgement, and the
class need not measure every champion itself.

Membership is earned and lost on evidence:
- a class joins with `MIN_SHARED` champions measured on both it and the reference, a
  positive scale, and every point of the fit within `AGREE_SIGMAS` of the line;
- a member still measures a direct baseline of one champion in `CHECK_EVERY` (a spot check);
  a direct baseline that misses its prediction by more than `LEAVE_SIGMAS` makes the class
  leave: its earlier points are forgotten and it must earn its way back from new ones.

The reference is chosen by evidence, never by name or by who measured first (`reference`):
the class whose direct baselines rest on the most independent workers (each champion's point
counts once per distinct worker that measured it, up to `VOUCHERS`), so one machine in a
made-up class that measures every champion first cannot become what a whole tier is
predicted from while a class measured by two machines exists.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from autoswarm.hardware_class import is_moved

MIN_SHARED = 3          # champions measured on both a class and the reference before it joins
AGREE_SIGMAS = 3.0      # every fitted point within this many σ of the line
LEAVE_SIGMAS = 4.0      # a direct baseline this far from its prediction: the class leaves
CHECK_EVERY = 8         # a member measures a direct baseline of one champion in this many
MAX_POINTS = 32         # the newest points a fit uses: relations may drift slowly
VOUCHERS = 2            # distinct workers behind one point that count towards the reference's evidence

Sigma = Callable[[str], float]   # σ of one run on a class


@dataclass(frozen=True)
class Relation:
    """How a class's baselines follow the reference's: y ≈ offset + scale · x."""

    offset: float
    scale: float
    residual: float        # σ of a point about the line (at least what the runs' noise explains)
    shared: int            # points the fit rests on
    x_mean: float
    x_spread: float        # Σ (x - x̄)²

    def predict(self, x: float) -> tuple[float, float]:
        """(predicted baseline, variance of the prediction) for a reference baseline `x`."""
        leverage = 1.0 / self.shared + ((x - self.x_mean) ** 2 / self.x_spread if self.x_spread > 0 else 0.0)
        return self.offset + self.scale * x, self.residual ** 2 * leverage


@dataclass(frozen=True)
class Prediction:
    mean: float
    variance: float
    reference: str


@dataclass
class _Points:
    """A class's direct baselines by version, in the order they were measured."""

    means: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)     # runs each mean rests on
    workers: dict[str, int] = field(default_factory=dict)  # distinct workers each mean rests on

    def evidence(self, newest: str | None) -> int:
        """How much independent evidence the points are: each counts once per distinct worker
        behind it, up to `VOUCHERS`; not the `newest` version's (whoever measures a new
        champion first gains nothing by it)."""
        return sum(min(self.workers.get(v, 1), VOUCHERS) for v in self.means if v != newest)


class Tiers:
    """Direct baselines per class, and which classes the reference's baselines can stand for."""

    def __init__(self) -> None:
        self._points: dict[str, _Points] = {}
        self._left: dict[str, int] = {}       # class -> how many times it left its tier
        # Fits until the next baseline: leasing asks on every call. (The noise they use moves
        # with verifications too, a little; the next baseline refits.)
        self._relations: dict[str, Relation | None] = {}
        self._reference: str | None = None    # chosen again on every point (`_choose_reference`)
        self._newest: str | None = None       # the version most recently measured for the first time
        self._seen: set[str] = set()

    def observe(self, version: str, hardware_class: str, mean: float, sigma: Sigma, runs: int = 1,
                workers: int = 1) -> bool:
        """A class's direct baseline of a version (its latest mean, of `runs` runs by `workers`
        distinct workers). Returns False when this point made the class leave its tier (it
        disagreed with the prediction)."""
        points = self._points.setdefault(hardware_class, _Points())
        self._relations.clear()
        reference = self.reference()
        stays = True
        if reference is not None and reference != hardware_class and version not in points.means \
                and self.member(hardware_class, sigma):
            predicted = self._predict_from(hardware_class, reference, version, sigma)
            if predicted is not None:
                noise = sigma(hardware_class) ** 2 + predicted[1]
                if abs(mean - predicted[0]) > LEAVE_SIGMAS * math.sqrt(noise):
                    points.means.clear()          # start over from this point
                    points.runs.clear()
                    points.workers.clear()
                    self._left[hardware_class] = self._left.get(hardware_class, 0) + 1
                    stays = False
        points.means[version] = mean
        points.runs[version] = max(runs, 1)
        points.workers[version] = max(workers, 1)
        if version not in self._seen:
            self._seen.add(version)
            self._newest = version
        self._reference = self._choose_reference(sigma)
        self._relations.clear()
        return stays

    def reference(self) -> str | None:
        """The class the others are predicted from, or None (see `_choose_reference`)."""
        return self._reference

    def _choose_reference(self, sigma: Sigma) -> str | None:
        """The class whose direct baselines are the most independent evidence (`_Points.evidence`:
        champions measured, each counted once per distinct worker up to `VOUCHERS`, the newest
        champion not yet, unless it is the first: measuring it first wins nothing); then the class that left its tier
        least often, then the least noisy (its error is in every member's prediction), then
        the one that is the reference already. Not the most runs: a class of one machine
        repeats more. The name decides only between classes equal in all of these.

        Never a class a worker was moved to (`hardware_class.is_moved`): such a class is one
        machine that measured unlike the class it named, perhaps a liar. It may follow the
        reference as a member (its prediction judges only its own worker's runs), but its
        points must never be what other classes are predicted from. Nor does a name that sorts
        first, or measuring each champion first, make a class the reference: one machine in a
        made-up class "0000" has half the evidence of a class measured by two."""
        candidates = [c for c in self._points if not is_moved(c) and self._points[c].means]
        if not candidates:
            return None

        def key(c: str) -> tuple[int, int, float, bool]:
            return (self._points[c].evidence(newest), -self._left.get(c, 0), -sigma(c), c == self._reference)

        newest = self._newest if len(self._seen) > 1 else None   # the first champion is all there is

        best = max(key(c) for c in candidates)
        return min(c for c in candidates if key(c) == best)

    def relation(self, hardware_class: str, sigma: Sigma) -> Relation | None:
        """The fitted relation of a class to the reference, or None when it is not established."""
        if hardware_class not in self._relations:
            self._relations[hardware_class] = self._fit(hardware_class, sigma)
        return self._relations[hardware_class]

    def _fit(self, hardware_class: str, sigma: Sigma) -> Relation | None:
        reference = self.reference()
        if reference is None or reference == hardware_class:
            return None
        mine = self._points.get(hardware_class, _Points()).means
        theirs = self._points[reference].means
        shared = [v for v in mine if v in theirs][-MAX_POINTS:]
        if len(shared) < MIN_SHARED:
            return None
        xs = [theirs[v] for v in shared]
        ys = [mine[v] for v in shared]
        x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - x_mean) ** 2 for x in xs)
        # The scale is learned only where the champions spread far beyond the noise; over a
        # short range, offset alone (scale 1) predicts as well and cannot run wild.
        if sxx > 16 * len(xs) * sigma(reference) ** 2 and len(xs) >= MIN_SHARED:
            scale = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sxx
            dof = len(xs) - 2
        else:
            scale, dof = 1.0, len(xs) - 1
            sxx = 0.0
        if scale <= 0:
            return None
        offset = y_mean - scale * x_mean
        residuals = [y - (offset + scale * x) for x, y in zip(xs, ys)]
        rss = sum(r * r for r in residuals)
        floor2 = sigma(hardware_class) ** 2 + scale ** 2 * sigma(reference) ** 2
        residual = math.sqrt(max(rss / dof if dof > 0 else 0.0, floor2))
        if any(abs(r) > AGREE_SIGMAS * residual for r in residuals) or \
                (dof > 0 and rss / dof > AGREE_SIGMAS ** 2 * floor2):
            return None
        return Relation(offset, scale, residual, len(xs), x_mean, sxx)

    def member(self, hardware_class: str, sigma: Sigma) -> bool:
        """Whether the reference's baselines stand for this class's (the reference is not a member)."""
        return self.relation(hardware_class, sigma) is not None

    def _predict_from(self, hardware_class: str, reference: str, version: str,
                      sigma: Sigma, basis: tuple[float, int] | None = None) -> tuple[float, float] | None:
        points = self._points[reference]
        x = points.means.get(version)
        relation = self.relation(hardware_class, sigma)
        if x is None or relation is None:
            return None
        x, runs = basis if basis is not None else (x, points.runs.get(version, 1))
        mean, variance = relation.predict(x)
        # The reference's own error on this champion is in every member's prediction of it:
        # the line's uncertainty is not all of it.
        return mean, variance + relation.scale ** 2 * sigma(reference) ** 2 / max(runs, 1)

    def predict(self, version: str, hardware_class: str, sigma: Sigma,
                basis: tuple[float, int] | None = None) -> Prediction | None:
        """The class's baseline of `version` predicted from the reference's, if it is a member.

        `basis`: (mean, runs) of some of the reference's runs of `version` to predict from
        instead of its whole baseline (a check compared with runs its claim was not:
        `References.independent_of`); the class must still be a member with the reference's
        point of `version` known."""
        reference = self.reference()
        if reference is None:
            return None
        predicted = self._predict_from(hardware_class, reference, version, sigma, basis)
        return None if predicted is None else Prediction(predicted[0], predicted[1], reference)

    def wants_direct(self, hardware_class: str, champion_seq: int, sigma: Sigma) -> bool:
        """Whether this class should measure the champion itself (else the tier stands for it).

        The reference, and every class outside the tier, measure each champion; a member
        measures one in `CHECK_EVERY`, at a phase of its own so spot checks spread out.
        """
        if not self.member(hardware_class, sigma):
            return True
        phase = zlib.crc32(hardware_class.encode()) % CHECK_EVERY
        return champion_seq % CHECK_EVERY == phase

    def classes(self) -> int:
        """How many reported classes (not classes workers were moved to) have measured direct
        baselines: moved workers do not make a swarm of few classes tiered (two moved liars
        made a 2-class swarm four 'classes' and a tier of stale points)."""
        return sum(not is_moved(c) for c in self._points)

    def left(self, hardware_class: str) -> int:
        """How many times a class has left its tier on disagreement."""
        return self._left.get(hardware_class, 0)
