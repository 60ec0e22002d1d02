"""The mutator contract: given a scratch copy of the study, edit the target in place."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Usage:
    """What an edit cost: LLM tokens (from the servers' `usage`) and US dollars where known."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.cost_usd + other.cost_usd)

    @classmethod
    def of(cls, usage: object) -> Usage:
        """From an OpenAI-style usage object or dict (missing or odd fields count as 0)."""
        def number(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, 0)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0
        return cls(number("prompt_tokens"), number("completion_tokens"))


class MutatorError(Exception):
    """The mutator could not produce an edit; str() is the reason reported to the coordinator.

    `usage`: what the failed attempts cost (tokens are spent on unusable answers too).
    """

    def __init__(self, message: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class MutatorConfigError(MutatorError, ValueError):
    """The study asks for an unknown mutator or gives it bad options (a study file error)."""


def reject_unknown_options(kind: str, options: Mapping[str, object], known: Iterable[str]) -> None:
    """Raises MutatorConfigError naming the first option `kind` does not know (`kind` itself is fine)."""
    known = tuple(known)
    unknown = sorted(set(options) - set(known) - {"kind"})
    if unknown:
        raise MutatorConfigError(
            f"mutator.{unknown[0]}: unknown option for the {kind} mutator; known options: {', '.join(known)}"
        )


@dataclass(frozen=True)
class MutationRequest:
    """One edit to make.

    `workdir` is a scratch copy of the study bundle whose target already holds the parent
    version; `target` is the target's path relative to it. `program` is program.md's text and
    `memory` what the swarm already tried (both free text, possibly empty). `edits_ahead`: how
    many edits of the same parent, leased just before this one, are being made elsewhere and
    are not in `memory` yet; they order their choices with `order_seed` (a mutator that ranks
    its edits leaves them the first `edits_ahead`). 0: as if alone.
    """

    workdir: Path
    target: str
    program: str
    memory: str
    seed: int
    timeout_seconds: float
    cancel: threading.Event | None = None
    edits_ahead: int = 0
    order_seed: int = 0


@dataclass(frozen=True)
class MutationOutcome:
    """What the mutator did, as one line, e.g. "LR 0.01 -> 0.013, BATCH_SIZE 32 -> 48"."""

    description: str
    usage: Usage = Usage()


@runtime_checkable
class Mutator(Protocol):
    """Edits files in `request.workdir` in place; raises MutatorError when it cannot."""

    kind: str

    def mutate(self, request: MutationRequest) -> MutationOutcome:
        """Make one edit to the target and describe it."""
        ...
