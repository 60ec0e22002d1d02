"""Where a slot's time goes, seen from its GPU (or CPU share): evaluating, mutating, waiting.

A pipelined slot prepares the next edit while the current one is evaluated, so "mutating"
counts only the time the slot's device sits idle behind its agent: the agent's work hidden
behind an evaluation is not lost time. Pure bookkeeping over an injectable clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

EVALUATING, MUTATING, WAITING = "evaluating", "mutating", "waiting"
ACTIVITIES = (EVALUATING, MUTATING, WAITING)


@dataclass(frozen=True)
class SlotTime:
    """Seconds a slot spent on each activity since the worker started."""

    slot: int
    evaluating: float = 0.0
    mutating: float = 0.0
    waiting: float = 0.0

    @property
    def total(self) -> float:
        return self.evaluating + self.mutating + self.waiting

    def share(self, activity: str) -> float:
        """Fraction of the time spent on `activity` (0 before any time has passed)."""
        return getattr(self, activity) / self.total if self.total > 0 else 0.0

    def describe(self) -> str:
        """E.g. "evaluating 97%, mutating 2%, waiting 1%"."""
        return ", ".join(f"{activity} {self.share(activity):.0%}" for activity in ACTIVITIES)


class SlotClock:
    """Accumulates a slot's time: evaluating while an evaluation runs, else mutating while an
    edit (or a bundle, or a setup) is being prepared, else waiting (for a task, the machine)."""

    def __init__(self, slot: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.slot = slot
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()
        self._seconds = dict.fromkeys(ACTIVITIES, 0.0)
        self._evaluating = 0
        self._preparing = 0

    def _activity(self) -> str:
        return EVALUATING if self._evaluating else MUTATING if self._preparing else WAITING

    def _advance(self) -> None:
        now = self._clock()
        self._seconds[self._activity()] += max(0.0, now - self._since)
        self._since = now

    def evaluating(self, on: bool) -> None:
        """An evaluation starts (True) or ends (False)."""
        with self._lock:
            self._advance()
            self._evaluating += 1 if on else -1

    def preparing(self, on: bool) -> None:
        """Preparing a task (fetch, setup, edit) starts (True) or ends (False)."""
        with self._lock:
            self._advance()
            self._preparing += 1 if on else -1

    def read(self) -> SlotTime:
        """The totals up to now."""
        with self._lock:
            self._advance()
            return SlotTime(self.slot, **self._seconds)
