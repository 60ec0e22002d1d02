"""Mutators: what proposes an edit to the study's target.

`params` (offline constant perturbation), `llm` (an OpenAI-compatible chat-completions server)
and `command` (an agent CLI such as Claude Code, Codex or aider, run in the scratch copy).
"""

from __future__ import annotations

from collections.abc import Mapping

from autoswarm.worker.mutators.base import (
    MutationOutcome,
    MutationRequest,
    Mutator,
    MutatorConfigError,
    MutatorError,
)
from autoswarm.worker.mutators.command import CommandMutator
from autoswarm.worker.mutators.llm import LlmMutator
from autoswarm.worker.mutators.params import ParamsMutator

KNOWN_KINDS: tuple[str, ...] = ("params", "llm", "command")

__all__ = [
    "KNOWN_KINDS",
    "CommandMutator",
    "LlmMutator",
    "MutationOutcome",
    "MutationRequest",
    "Mutator",
    "MutatorConfigError",
    "MutatorError",
    "ParamsMutator",
    "create_mutator",
]


def create_mutator(kind: str, options: Mapping[str, object]) -> Mutator:
    """The mutator named by a study's `[mutator] kind`, built from the table's other keys.

    Raises MutatorConfigError (a MutatorError and a ValueError) naming the known kinds for an
    unknown kind, or naming the option and the fix for a bad option.
    """
    if kind == "params":
        return ParamsMutator.from_options(options)
    if kind == "llm":
        return LlmMutator.from_options(options)
    if kind == "command":
        return CommandMutator.from_options(options)
    raise MutatorConfigError(
        f"mutator.kind: unknown mutator {kind!r}; known kinds: {', '.join(KNOWN_KINDS)}"
    )
