"""What a worker's agents (llm, command) spent, against the volunteer's `--llm-budget`.

Pure bookkeeping: the worker adds each edit's cost; once the cap is reached the agent kinds
drop out of the kinds the worker runs, and the worker tells the coordinator (or stops, when
nothing is left).
"""

from __future__ import annotations

import threading

from autoswarm.worker.mutators.config import Budget

AGENT_KINDS = frozenset({"llm", "command"})  # mutators that spend money or tokens: the budget caps them


class AgentSpend:
    """Cost so far, and the mutator kinds that budget leaves."""

    def __init__(self, kinds: tuple[str, ...], budget: Budget | None) -> None:
        self._kinds = kinds
        self._budget = budget
        self._lock = threading.Lock()
        self.usd = 0.0          # what this worker's agents cost since it started
        self.tokens = 0
        self.capped = False

    def kinds(self) -> tuple[str, ...]:
        """The mutator kinds the worker runs now: without agents once the budget is spent."""
        if self.capped:
            return tuple(kind for kind in self._kinds if kind not in AGENT_KINDS)
        return self._kinds

    def add(self, usd: float, tokens: int) -> bool:
        """Adds an edit's cost; True the first time the cap is reached."""
        with self._lock:
            self.usd += usd
            self.tokens += tokens
            newly = self._budget is not None and not self.capped and self._budget.spent(self.usd, self.tokens)
            if newly:
                self.capped = True
        return newly
