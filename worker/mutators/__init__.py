"""Mutators: what proposes an edit to the study's target (offline `params` for now)."""

from __future__ import annotations

from collections.abc import Mapping

from worker.mutators.base import (
    MutationOutcome,
    MutationRequest,
    Mutator,
    MutatorConfigError,
    MutatorError,
)
from worker.mutators.params import ParamsMutator

KNOWN_KINDS: tuple[str, ...] = ("params",)

__all__ = [
    "KNOWN_KINDS",
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
    raise MutatorConfigError(
        f"mutator.kind: unknown mutator {kind!r}; known kinds: {', '.join(KNOWN_KINDS)}"
    )
