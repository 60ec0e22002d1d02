"""Whether a hardware class's workers measure alike: the class checks of `StudyState`.

A paired study compares runs within one class, so a class is only as good as the agreement of
the workers that name it. Before a class's runs of a version judge anything, its workers'
runs are checked against each other (`acceptance.class_check`) on a σ no other worker can
inflate (each machine's own noise); a class that disagrees is *disputed* (its mean is no
baseline), takes more runs, and its outliers (or, with no majority of owners, every worker)
are moved out of it (`class_outliers`). These checks only read the study's samples; the
decisions are `acceptance`'s, and what is done about them the engine's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoswarm.hardware_class import origin_class
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.acceptance import Baseline

if TYPE_CHECKING:
    from autoswarm.coordinator.store import ChampionRecord
    from autoswarm.coordinator.study_state import Samples
    from autoswarm.study import Study

# A class's baselines are checked for workers that measure unlike the rest once its noise
# rests on this many differences (the σ is raised for thin evidence: 2.65× at two, so a class
# of two honest workers judges after four baselines); a class is only split, though, once its
# noise rests on MIN_SPLIT_DOF (a thin σ that is low by chance must not split honest machines).
MIN_CHECK_DOF = 2
MIN_SPLIT_DOF = 4
MACHINE_SPREAD = 8.0         # honest machines of one class may differ by this many times one machine's noise
DISPUTE_RUNS = 4             # × baseline_runs: runs a disputed class takes before it is split


@dataclass(frozen=True)
class Outlier:
    """A worker whose baseline runs disagree with the agreeing majority of its reported class."""

    worker_id: str
    result_id: str        # its latest run of the version ("": the one reported now)


class ClassChecks:
    """The class checks of a study (a base of `References` and so of `StudyState`, which holds
    the data): a class's dispute per version, and who must leave a class."""

    spec: Study
    samples: Samples
    champion: ChampionRecord
    # The champion's accepted claim's agreeing runs: (class, worker, value).
    evidence: list[tuple[str, str, float]]
    # `dispute` per (version, class), valid for the (samples, generation, acceptance policy) it was worked out on.
    _disputes: dict[tuple[str, str], bool | None]
    # `direct_baseline`, `direct_run_ids` per (version, class, worker or "", runs left out, reserve): as `_disputes`.
    _direct_baselines: dict[tuple[str, str, str, frozenset[str], bool], tuple[Baseline | None, frozenset[str]]]
    _disputes_of: tuple[object, int, object] | None

    def dispute_runs(self) -> int:
        """Runs of one version a disputed class takes (from distinct workers while it has them)
        before its dispute is settled by splitting it (`class_outliers`)."""
        return DISPUTE_RUNS * self.spec.acceptance.baseline_runs

    def class_outliers(self, version: str, worker_class: str, worker_id: str, value: float,
                       owner_of: Callable[[str], str | None] = lambda worker: None,
                       members: frozenset[str] = frozenset()) -> list[Outlier]:
        """Who, with this new baseline run counted, must leave its reported class (`acceptance.class_check`).

        The workers outside the group that holds a strict majority of the class's owners. When
        no group does (a bimodal class: spoofers of one owner against honest workers of
        another, or a liar against the one honest worker of a small class), more runs are
        taken from other workers while any of the class's `members` (those that may measure:
        connected, not quarantined) has not measured
        `version` and fewer than `dispute_runs` were made; then the class is split: every
        worker that measured it moves to a class of its own, where only its own runs judge
        it. Nothing is trusted more than what each machine says about itself.

        Judged on the noise each machine shows on its own (which no other worker can inflate)
        once there is enough of it. Workers moved out of the class still count towards its
        majority, but only those still in it are returned (to be moved).
        """
        origin = origin_class(worker_class)
        runs = self.samples.runs_in(version, origin)
        if version == self.champion.version:
            # With two baselines per champion a liar is one of two: the claim's runs break the tie.
            for cls, worker, run in self.evidence:
                if origin_class(cls) == origin:
                    held_in, series = runs.get(worker, (cls, []))
                    runs[worker] = (held_in, [*series, (run, "")])
        cls, series = runs.get(worker_id, (worker_class, []))
        runs[worker_id] = (cls, [*series, (value, "")])
        check = self._class_check(origin, {w: [v for v, _ in r] for w, (_, r) in runs.items()},
                                  {w: owner_of(w) or "" for w in runs})
        if check is None:
            return []
        moving = check.outliers
        if check.split:
            in_class = {w for w, (c, _) in runs.items() if c == origin}
            made = sum(len(r) for w, (c, r) in runs.items() if c == origin)
            if (members - in_class) and made < self.dispute_runs():
                return []   # another worker of the class may still show who is right
            if max(self.samples.own_sigma(origin)[1], self.samples.own_sigma(None)[1]) < MIN_SPLIT_DOF:
                return []   # more repeats first: noise known this thinly may just be low by chance
            moving = check.split
        return [Outlier(w, runs[w][1][-1][1]) for w in sorted(moving) if runs[w][0] == origin]

    def disputed(self, version: str, hardware_class: str) -> bool:
        """Whether the workers whose runs make a class's baseline of `version` disagree beyond
        noise (`acceptance.class_check`), or may (no machine's own noise is known yet to tell
        noise from a spoofer, and their runs differ): one of two may be a spoofer."""
        return self.dispute(version, hardware_class) is not False

    def dispute(self, version: str, hardware_class: str) -> bool | None:
        """True: the class's workers measure `version` unlike each other beyond noise; False:
        alike (or one worker); None: their runs differ but no machine's own noise is known yet.

        Undecided, each worker's runs are judged against its own runs (`reference`), and the
        class takes more runs to decide (`view`)."""
        # Asked on every lease and judgement, for every claim's parent; it changes only with the
        # runs (`Samples.generation`) or the study's acceptance policy.
        self._fresh_memo()
        key = (version, hardware_class)
        if key not in self._disputes:
            runs = self.samples.runs_by_worker(version, hardware_class)
            # Each machine's own repeats say best what noise is here: a difference between two
            # workers is what is in question, and a spoofer's would inflate other estimates.
            self._disputes[key] = False if len(runs) < 2 else self._dispute_of(hardware_class, runs)
        return self._disputes[key]

    def _fresh_memo(self) -> None:
        """Drops what was worked out from the runs (`dispute`, `direct_baseline`) once they or the
        acceptance policy changed."""
        was = self._disputes_of
        if was is None or was[0] is not self.samples or was[1] != self.samples.generation \
                or was[2] is not self.spec.acceptance:
            self._disputes_of = (self.samples, self.samples.generation, self.spec.acceptance)
            self._disputes, self._direct_baselines = {}, {}

    def _disputed_runs(self, hardware_class: str, runs: Mapping[str, Sequence[tuple[float, str]]]) -> bool:
        return self._dispute_of(hardware_class, runs) is not False

    def _dispute_of(self, hardware_class: str, runs: Mapping[str, Sequence[tuple[float, str]]]) -> bool | None:
        check = self._class_check(origin_class(hardware_class), {w: [v for v, _ in r] for w, r in runs.items()})
        if check is None:
            values = [v for series in runs.values() for v, _ in series]
            return None if max(values) > min(values) else False   # nothing tells noise from a spoofer yet
        return check.disputed

    def _check_sigma(self, origin: str, widened: bool = True) -> float | None:
        """The σ a class check uses. Its floor is what no other worker can inflate: the noise of
        each machine against itself, from the class's own repeats (from every class's while it
        has fewer than `MIN_CHECK_DOF`), raised to an upper bound for thin evidence (a median
        σ from n differences is off by ≈1.17/√n). Two honest machines of one model differ a
        little more than one machine from itself, so the σ is `widened` to the median
        run-to-run σ of the whole study (`Samples.sigma(None)`: across workers and classes),
        but never beyond `MACHINE_SPREAD` times a machine's own noise, however many spoofers'
        runs widen that median. None until the study has `MIN_CHECK_DOF` repeats on one machine."""
        own, dof = self.samples.own_sigma(origin)
        if dof < MIN_CHECK_DOF:
            own, dof = self.samples.own_sigma(None)
            if dof < MIN_CHECK_DOF:
                return None
        floor = own * (1.0 + 2.0 * 1.17 / math.sqrt(dof))
        between, dof = self.samples.sigma(None)
        if not widened or dof < MIN_CHECK_DOF:
            return floor
        return max(floor, min(between, MACHINE_SPREAD * own))

    def _class_check(self, origin: str, runs: Mapping[str, Sequence[float]],
                     owners: Mapping[str, str] | None = None) -> acceptance.ClassCheck | None:
        """`acceptance.class_check` of one version's runs on a class, on the widened σ; where that
        leaves a group chained (spoofers spread out to widen the study's σ and bridge the
        gaps), on each machine's own noise alone. None while no σ is known."""
        sigma = self._check_sigma(origin)
        if sigma is None:
            return None
        check = acceptance.class_check(self.spec.acceptance, runs, sigma, owners)
        if check.chained:
            floor = self._check_sigma(origin, widened=False)
            assert floor is not None
            check = acceptance.class_check(self.spec.acceptance, runs, floor, owners)
        return check
