"""Which task a worker gets next. Pure policy over a snapshot of the studies.

Priority: a champion that has never been measured gets its baseline first; then explore.
Across studies, fair share: the study with the least work in flight goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StudyView:
    """What the scheduler needs to know about one study."""

    name: str
    mutator_kind: str
    champion_measured: bool
    baseline_in_flight: int
    in_flight: int
    evaluations: int
    max_evaluations: int      # 0: unbounded
    blocked: bool = False     # the study has an error and takes no work


@dataclass(frozen=True)
class WorkerView:
    """What the scheduler needs to know about the worker asking."""

    mutators: frozenset[str]
    running: int
    slots: int


@dataclass(frozen=True)
class Assignment:
    study: str
    kind: str                 # "baseline" or "explore"


def budget_left(study: StudyView) -> bool:
    """Whether a new task would stay within the study's evaluation budget."""
    return study.max_evaluations <= 0 or study.evaluations + study.in_flight < study.max_evaluations


def choose_task(studies: Sequence[StudyView], worker: WorkerView) -> Assignment | None:
    """The next task for this worker, or None when there is nothing it may take now."""
    if worker.running >= worker.slots:
        return None
    candidates: list[tuple[int, int, int, str, str]] = []
    for s in studies:
        if s.blocked or not budget_left(s):
            continue
        if not s.champion_measured:
            # Nothing can be judged before the champion has a score; one baseline at a time.
            if s.baseline_in_flight == 0:
                candidates.append((0, s.in_flight, s.evaluations, s.name, "baseline"))
            continue
        if s.mutator_kind in worker.mutators:
            candidates.append((1, s.in_flight, s.evaluations, s.name, "explore"))
    if not candidates:
        return None
    _, _, _, name, kind = min(candidates)
    return Assignment(name, kind)
