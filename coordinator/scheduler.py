"""Which task a worker gets next. Pure policy over a snapshot of the studies.

Priority (DESIGN.md §4): verify before baseline before explore. In a paired study a new
champion's baseline goes to the first free workers of each class that needs one; the rest
of the class explores at once and its results wait for that baseline (no barrier). Across
studies, fair share: the study with the least work in flight for its priority goes first
(priority 2 gets twice the share of priority 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoswarm.coordinator.frozen import quick

VERIFY, BASELINE, EXPLORE = "verify", "baseline", "explore"
_TIER = {VERIFY: 0, BASELINE: 1, EXPLORE: 2}


@quick
@dataclass(frozen=True)
class VerifyNeed:
    """A claim that still needs independent measurements."""

    claim_id: str
    needed: int                               # confirmations still missing, minus those in flight
    excluded_workers: frozenset[str] = frozenset()
    excluded_owners: frozenset[str] = frozenset()
    # Classes that measured the claim already. Measurements in one class share that class's
    # baseline, so one unlucky baseline can make a null edit look good twice; a verifier from
    # another class is preferred while one is connected.
    measured_classes: frozenset[str] = frozenset()
    other_classes_live: bool = False


@quick
@dataclass(frozen=True)
class ClassBaseline:
    """The champion's baseline in the asking worker's hardware class."""

    done: int
    in_flight: int
    target: int                               # runs wanted (more while the class's noise is unknown)
    measured_by: frozenset[str] = frozenset()  # workers that measured it or are measuring it
    others_available: bool = False            # live workers of this class that have not measured it yet
    judgeable: bool | None = None             # a direct or tier-predicted baseline exists (None: done > 0)


@quick
@dataclass(frozen=True)
class StudyView:
    """What the scheduler needs to know about one study, seen from the asking worker."""

    name: str
    mutator_kind: str
    paired: bool
    champion_measured: bool                   # absolute: the champion has a score
    baseline_in_flight: int                   # absolute: baselines of the champion in flight
    in_flight: int
    evaluations: int
    max_evaluations: int                      # 0: unbounded; else every evaluation counts, none goes past it
    class_baseline: ClassBaseline = field(default_factory=lambda: ClassBaseline(0, 0, 0))
    verify: tuple[VerifyNeed, ...] = ()
    blocked: bool = False                     # the study has an error and takes no work
    priority: int = 1                         # its share of the swarm against other studies
    spent: bool = False                       # its agents spent its max_cost_usd / max_tokens: no explore
    checks_owed: int = 0                      # checks its open claims still need (beyond those in flight)


@quick
@dataclass(frozen=True)
class WorkerView:
    """What the scheduler needs to know about the worker asking."""

    worker_id: str
    mutators: frozenset[str]
    running: int
    slots: int
    owner: str = ""
    quarantined: bool = False
    may_verify: bool = True
    hardware_class: str = ""
    pipelined: bool = False                   # its slots prepare the next task while they evaluate


@quick
@dataclass(frozen=True)
class Assignment:
    study: str
    kind: str                                 # "verify", "baseline" or "explore"
    claim_id: str = ""


def within_budget(study: StudyView) -> bool:
    """Whether one more evaluation of any kind stays within the study's evaluation budget.

    `max_evaluations` is a ceiling: baselines, explores and checks all count, and none is
    started past it (README, "--max-evals").
    """
    return room_in_budget(study.evaluations, study.in_flight, study.max_evaluations)


def room_in_budget(evaluations: int, in_flight: int, max_evaluations: int) -> bool:
    """`within_budget` from the three numbers (0: no budget)."""
    return max_evaluations <= 0 or evaluations + in_flight < max_evaluations


def budget_left(study: StudyView) -> bool:
    """Whether a new explore task fits in the budget beside the checks open claims still need:
    those come first, so that an improvement found within the budget is checked within it."""
    return explore_fits(study.spent, study.evaluations, study.in_flight, study.checks_owed, study.max_evaluations)


def explore_fits(spent: bool, evaluations: int, in_flight: int, checks_owed: int, max_evaluations: int) -> bool:
    """`budget_left` of a view with these figures, for a study making its view (which needs
    the answer for its `blocked` before the view exists)."""
    if spent:
        return False
    return max_evaluations <= 0 or evaluations + in_flight + checks_owed < max_evaluations


def _baseline_wanted(study: StudyView, worker: WorkerView) -> tuple[bool, bool]:
    """(this worker should measure a baseline now, it may take other work too).

    Paired studies have no barrier: a class's baseline of a new champion goes to its first
    free workers, up to the runs wanted counting those in flight, and the others explore at
    once (their results wait, stored, until the baseline is there). Absolute studies need the
    champion's score before anything can be judged.
    """
    if not study.paired:
        return (not study.champion_measured and study.baseline_in_flight == 0), study.champion_measured
    cb = study.class_baseline
    if cb.done + cb.in_flight >= cb.target:
        return False, True
    # Distinct workers when the class has several; a lone worker repeats its own baseline.
    repeat_ok = not cb.others_available
    return (worker.worker_id not in cb.measured_by or repeat_ok), True


def _options(study: StudyView, worker: WorkerView) -> list[tuple[int, str, str]]:
    # A quarantined worker's results would be thrown away: it gets no task at all.
    if study.blocked or worker.quarantined or not within_budget(study):
        return []
    take_baseline, ready = _baseline_wanted(study, worker)
    options: list[tuple[int, str, str]] = []
    if take_baseline:
        options.append((_TIER[BASELINE], BASELINE, ""))
    if not ready:
        return options
    # A verification is judged at once, so it goes only to a class that can judge it now.
    cb = study.class_baseline
    judgeable = not study.paired or (cb.judgeable if cb.judgeable is not None else cb.done > 0)
    for need in study.verify if worker.may_verify and judgeable else ():
        if need.needed > 0 and worker.worker_id not in need.excluded_workers \
                and not (worker.owner and worker.owner in need.excluded_owners) \
                and not (worker.hardware_class in need.measured_classes and need.other_classes_live):
            options.append((_TIER[VERIFY], VERIFY, need.claim_id))
            break
    if study.mutator_kind in worker.mutators and budget_left(study):
        options.append((_TIER[EXPLORE], EXPLORE, ""))
    return options


def choose_task(studies: Sequence[StudyView], worker: WorkerView) -> Assignment | None:
    """The next task for this worker, or None when there is nothing it may take now."""
    # A pipelined worker holds one task per slot being evaluated and one being prepared.
    if worker.running >= worker.slots * (2 if worker.pipelined else 1):
        return None
    best: tuple[int, float, float, str, str, str] | None = None
    for s in studies:
        for tier, kind, claim in _options(s, worker):
            share = max(s.priority, 1)
            key = (tier, s.in_flight / share, s.evaluations / share, s.name, kind, claim)
            if best is None or key < best:
                best = key
    if best is None:
        return None
    return Assignment(study=best[3], kind=best[4], claim_id=best[5])
