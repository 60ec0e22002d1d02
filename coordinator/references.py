"""What a run in a paired study is compared with: the reference lookups of `StudyState`.

A run on hardware class c is judged against c's direct runs of its parent, else c's tier's
prediction (`baselines.reference`), with the class's pooled noise. A check of a claim on the
claimant's class, or on any class judged on the tier's reference as the claim was, is
compared with runs the claim was not (`independent_of`): two measurements compared with one
baseline share its error. These lookups only read the
study's samples, tiers and claims; the decisions on them are `acceptance`'s.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from autoswarm.coordinator import baselines
from autoswarm.hardware_class import is_moved
from autoswarm.coordinator.acceptance import Baseline
from autoswarm.coordinator.class_checks import ClassChecks
from autoswarm.coordinator.noise import Z_EVIDENCE

if TYPE_CHECKING:
    from autoswarm.coordinator.study_state import PendingClaim
    from autoswarm.coordinator.tiers import Tiers

MIN_TIER_CLASSES = 4          # tiers stand in for direct baselines only among this many classes
# A class repeats baselines while its σ's standard error (in log σ) is above this: its bar is
# then exp(Z_EVIDENCE · REPEAT_LOG_ERROR) times its estimate or more (1.73 at Z_EVIDENCE = 1.5).
REPEAT_LOG_ERROR = 0.365
MAX_REPEATS = 16              # ... until its own noise rests on this many differences
# A claim's first measurement on a class leaves up to this many of its newest baseline runs
# (beyond `baseline_runs`) to the claim's checks there, which are compared with them alone.
CHECK_RESERVE = 2


class References(ClassChecks):
    """The reference lookups of a study (a base of `StudyState`, which holds the data), on the
    class checks' `dispute` of each class's runs."""

    scores: dict[str, float]
    tiers: Tiers

    @property
    def paired(self) -> bool:
        return self.spec.acceptance.compare == "paired"

    @property
    def tiered(self) -> bool:
        """Whether tiers stand in for direct baselines: only among `MIN_TIER_CLASSES` classes or more.

        A predicted baseline carries the reference's error into every class of its tier, so
        a claim and its verification from two classes of one tier are not independent. With
        few classes a direct baseline each costs little; with many it is what paired
        acceptance would otherwise pay per class and champion.
        """
        return self.tiers.classes() >= MIN_TIER_CLASSES

    def sigma_of(self, hardware_class: str) -> float:
        """σ of one run on a class, as bars use it (pooled across classes)."""
        return self.samples.noise(hardware_class).sigma

    def thin(self, hardware_class: str) -> bool:
        """Whether this class's bar is still much wider than its noise for want of evidence (its
        σ's standard error over `REPEAT_LOG_ERROR`, before `MAX_REPEATS` own differences): it then
        measures each champion once more after its first edit (`baseline_target`), and an edit
        that falls short of the widened bar only waits for that run (`Judging.explore_verdict`).

        Never a class a worker was moved to (`hardware_class.is_moved`): one machine that
        measured unlike the class it named has shown nothing real yet, and a spoofer's made-up
        class must not cost the swarm repeats; its bar stays as wide as its evidence."""
        if is_moved(hardware_class):
            return False
        return math.log(self.samples.noise(hardware_class).inflation) > Z_EVIDENCE * REPEAT_LOG_ERROR and \
            self.samples.differences(hardware_class) < MAX_REPEATS

    def baseline_under_way(self, version: str, hardware_class: str) -> bool:
        """Whether the class has measured `version`, fewer times than a baseline takes, and its
        workers agree so far: its baseline is being made, and a result may wait for it."""
        runs = self.samples.baseline(version, hardware_class)
        return runs is not None and runs.runs < self.spec.acceptance.baseline_runs \
            and self.dispute(version, hardware_class) is False

    def noise_of(self, version: str, hardware_class: str, worker_id: str = "",
                 exclude: AbstractSet[str] = frozenset(), reserve: bool = False) -> float:
        """σ of one run's improvement over `version`'s baseline on this class (as `worker_id`'s
        runs are judged: see `reference`): σ·√(1 + 1/n). 0 where no noise is known
        (`compare = "absolute"`)."""
        reference = self.reference(version, hardware_class, worker_id, exclude, reserve)
        if reference is None or not reference[2]:
            return 0.0
        _, sigma, runs = reference
        return sigma * math.sqrt(1.0 + 1.0 / runs)

    def direct_runs(self, version: str, hardware_class: str, worker_id: str = "",
                    exclude: AbstractSet[str] = frozenset(), reserve: bool = False) -> list[tuple[float, str]]:
        """The class's direct runs of `version`, (value, result id), that a run by `worker_id`
        is compared with (see `reference`), without those in `exclude`; [] when none may be.

        `reserve`: for a claim's first measurement on a class (quorum 2 or more), the newest
        runs beyond `baseline_runs`, up to `CHECK_RESERVE`, are left out (`reserved`): a check of
        the claim on the same class is compared with them, at once and independently."""
        runs = self.samples.runs_by_worker(version, hardware_class)
        if sum(len(series) for series in runs.values()) < self.spec.acceptance.baseline_runs:
            return []   # its next run is on the way: a bar on one run would be √2 wider than on two
        dispute = self.dispute(version, hardware_class)
        if dispute is None and worker_id:
            chosen = runs.get(worker_id, [])
        elif dispute is not False:
            return []   # its workers disagree: the outlier is moved out, or more runs show who is right
        else:
            chosen = sorted((run for series in runs.values() for run in series), key=lambda run: run[1])
        if exclude:
            chosen = [run for run in chosen if run[1] not in exclude]
        return chosen[:len(chosen) - self.reserved(len(chosen))] if reserve else chosen

    def reserved(self, runs: int) -> int:
        """Of `runs` direct runs, how many the first measurement of a claim leaves to its checks:
        the newest beyond `baseline_runs`, at most `CHECK_RESERVE` (none with quorum 1)."""
        if self.spec.acceptance.quorum < 2:
            return 0
        return max(0, min(CHECK_RESERVE, runs - self.spec.acceptance.baseline_runs))

    def direct_baseline(self, version: str, hardware_class: str, worker_id: str = "",
                        exclude: AbstractSet[str] = frozenset(), reserve: bool = False) -> Baseline | None:
        """The mean and count of `direct_runs`, None without any. Asked several times on every
        paired lease and judgement: worked out once per change of the runs (`_fresh_memo`)."""
        return self._direct(version, hardware_class, worker_id, exclude, reserve)[0]

    def direct_run_ids(self, version: str, hardware_class: str, worker_id: str = "",
                       exclude: AbstractSet[str] = frozenset(), reserve: bool = False) -> frozenset[str]:
        """The result ids of `direct_runs` (the runs a measurement is compared with), from the
        same memo as `direct_baseline`."""
        return self._direct(version, hardware_class, worker_id, exclude, reserve)[1]

    def _direct(self, version: str, hardware_class: str, worker_id: str, exclude: AbstractSet[str],
                reserve: bool) -> tuple[Baseline | None, frozenset[str]]:
        self._fresh_memo()
        # The worker counts only while the class's dispute is undecided (`direct_runs`).
        key = (version, hardware_class, worker_id if self.dispute(version, hardware_class) is None else "",
               frozenset(exclude), reserve)
        found = self._direct_baselines.get(key)
        if found is None:
            runs = self.direct_runs(version, hardware_class, worker_id, exclude, reserve)
            found = self._direct_baselines[key] = (
                Baseline(statistics.fmean(value for value, _ in runs), len(runs)) if runs else None,
                frozenset(result_id for _, result_id in runs))
        return found

    def reference(self, version: str, hardware_class: str, worker_id: str = "",
                  exclude: AbstractSet[str] = frozenset(), reserve: bool = False) -> tuple[float, float, float] | None:
        """(score to beat, noise σ, baseline runs) for a candidate whose parent is `version`,
        measured by `worker_id` ("": any worker of the class), against direct runs not in
        `exclude` (a confirmation is not compared with the runs its claim was: `independent_of`).

        Paired: the class's own baseline, else its tier's prediction (whose error counts as
        fewer runs), with the pooled noise; None while neither exists (the result waits).
        While the class's workers' runs differ and no machine's own noise is known yet to
        tell noise from a spoofer (`dispute` undecided), a worker's run is judged against
        its own runs of `version` alone: no other worker's number, honest or not, is in it,
        and the class's noise, from their difference, is as wide as any offset between them.
        """
        if not self.paired:
            score = self.scores.get(version)
            return None if score is None else (score, 0.0, 0)
        baseline = self.direct_baseline(version, hardware_class, worker_id, exclude, reserve)
        prediction = None
        if not baseline and self.tiered:
            left = self._reference_runs_left(version, exclude)
            if left is None:
                prediction = self.tiers.predict(version, hardware_class, self.sigma_of)
            elif left:   # none left: the result waits for the reference's next run
                prediction = self.tiers.predict(version, hardware_class, self.sigma_of,
                                                (statistics.fmean(value for value, _ in left), len(left)))
        found = baselines.reference(baseline.mean if baseline else None, baseline.runs if baseline else 0,
                                    self.samples.noise(hardware_class), prediction)
        return None if found is None else (found.score, found.sigma, found.runs)

    def _reference_runs_left(self, version: str, exclude: AbstractSet[str]) -> list[tuple[float, str]] | None:
        """The tier reference's runs of `version`, (value, result id), not in `exclude`, for a prediction
        made from them alone; None when `exclude` holds none of them (the whole baseline is used)."""
        reference = self.tiers.reference()
        if not exclude or reference is None:
            return None
        runs = [run for series in self.samples.runs_by_worker(version, reference).values() for run in series]
        if not any(result_id in exclude for _, result_id in runs):
            return None
        return [run for run in runs if run[1] not in exclude]

    def reference_run_ids(self, version: str, hardware_class: str, worker_id: str = "",
                          exclude: AbstractSet[str] = frozenset(), reserve: bool = False) -> frozenset[str]:
        """The tier reference's runs of `version` that a run on this class is judged on (as
        `reference` judges it): its direct runs when the class is the reference, those a
        prediction is made from when it is a member without direct runs; none otherwise."""
        reference = self.tiers.reference() if self.paired and self.tiered else None
        if reference is None:
            return frozenset()
        if hardware_class == reference:
            return self.direct_run_ids(version, hardware_class, worker_id, exclude, reserve)
        if self.direct_baseline(version, hardware_class, worker_id, exclude, reserve) is not None:
            return frozenset()
        left = self._reference_runs_left(version, exclude)   # the runs `reference` predicts from
        return self.samples.run_ids(version, reference) if left is None else frozenset(rid for _, rid in left)

    def judged_on_reference(self, version: str, hardware_class: str) -> bool:
        """Whether a run on this class of a child of `version` is judged on the tier's reference
        runs of it: the class is the reference, or a member without direct runs of its own."""
        if not self.paired or not self.tiered:
            return False
        reference = self.tiers.reference()
        if hardware_class == reference:
            return True
        return self.direct_baseline(version, hardware_class) is None and \
            self.tiers.predict(version, hardware_class, self.sigma_of) is not None

    def on_reference(self, pending: PendingClaim, hardware_class: str) -> bool:
        """Whether a check of this claim on `hardware_class` would be judged on the same runs
        of the tier's reference as one of its measurements was (a member's prediction is made
        from them, and the reference's own runs are them): one low reference baseline makes a
        null edit look good on both, so the two are not independent (seed 14 of 64 workers, 32
        classes, baseline liars: a member's claim predicted from the reference, confirmed by a
        reference worker against the very runs the prediction came from). Such a check is now
        compared only with the reference's other runs (`independent_of`), and waits for one
        where there is none; this tells the scheduler to prefer a class judged on its own runs,
        which judges the check at once."""
        if not self.judged_on_reference(pending.record.parent, hardware_class):
            return False
        reference = self.tiers.reference()
        return any(m.hardware_class == reference or not m.baseline for m in pending.measurements)

    def independent_of(self, pending: PendingClaim, hardware_class: str) -> frozenset[str]:
        """The baseline runs a check of this claim on `hardware_class` must not be compared with:
        those the claim's first measurement (its claimant's) was, when it is of that class, and
        every run of the parent there by the claimant or that measurement's worker. And when the
        check is judged on the tier's reference (`judged_on_reference`), the reference's runs
        any measurement of the claim rested on (`Measurement.reference_runs`), and the
        claimant's and first measurer's runs of the reference: the check is compared with, or
        predicted from, the reference's other runs, or waits for its next one.

        Two measurements compared with one class baseline share its error: one low baseline
        makes a null edit look good twice (a false acceptance with 64 workers on one class).
        Every later check of the claim on that class, arbiters too, uses the runs the claim did
        not; a check measured before such a run exists waits for the class's next one
        (`Judging.judge_verify`). Nor is a claimant's own baseline run ever what its claim is
        checked against: a liar that measures its parent a little low (within the class's
        agreement) and its edit high would otherwise have an honest check confirm it. An
        audit, checked for trust only, is compared as its claim was."""
        if pending.audit or not pending.measurements:
            return frozenset()
        first = pending.measurements[0]
        parent, measurers = pending.record.parent, {pending.record.claimant_worker, first.worker_id}
        used: set[str] = set()
        if first.hardware_class == hardware_class:
            used.update(first.baseline, self._runs_of(parent, hardware_class, measurers))
        if self.judged_on_reference(parent, hardware_class):
            # Seeds 95, 100, 125 of 64 workers, 32 classes, verify-only liars: a null edit's claim
            # and its check from two tier members, both predicted from the same 2-3 reference
            # runs, one of them low: a false acceptance.
            reference = self.tiers.reference()
            assert reference is not None
            used.update(self._runs_of(parent, reference, measurers))
            for measurement in pending.measurements:
                used.update(measurement.reference_runs)
        return frozenset(used)

    def _runs_of(self, version: str, hardware_class: str, workers: AbstractSet[str]) -> set[str]:
        """The result ids of these workers' runs of `version` on the class."""
        runs = self.samples.runs_by_worker(version, hardware_class)
        return {rid for w in workers for _, rid in runs.get(w, ())}

    def waits_for_reference(self, pending: PendingClaim) -> bool:
        """Whether a check of this claim waits on a tier member for a run of the reference that
        none of the claim's measurements rested on (`independent_of`): the reference's next
        baseline run of the parent is wanted."""
        reference = self.tiers.reference() if self.paired and self.tiered else None
        parent = pending.record.parent
        return reference is not None and any(
            cls != reference and self.judged_on_reference(parent, cls)
            and self.reference(parent, cls, worker, self.independent_of(pending, cls)) is None
            for worker, cls in pending.waiting.values())
