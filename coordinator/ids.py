"""Where the coordinator's fresh ids come from: worker and lease ids, merge claim ids, lease seeds.

A live coordinator draws them from `secrets` (`Ids()`): nobody can guess the next one. A
simulation passes `seeded_ids(seed)` to its `Store`, so that a run is a function of its seed
alone: ids are keys the engine sorts and files in sets, and a worker moved out of its class
carries its id in its class's name, so random ids made the same seed give a different run in
every process (64 workers / 32 classes, inflating liars, seed 15: 70 and 107 helpful edits
turned down in two runs).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ids:
    """A source of fresh ids: `token_hex(n)` is n random bytes in hex, `randbits(k)` k random bits."""

    token_hex: Callable[[int], str] = secrets.token_hex
    randbits: Callable[[int], int] = secrets.randbits


def seeded_ids(seed: int | str) -> Ids:
    """Ids drawn from a generator of their own seeded with `seed`: the same seed, the same ids,
    in any process and after anything else it ran. For simulations and tests only (guessable)."""
    rng = random.Random(f"ids:{seed}")
    return Ids(token_hex=lambda n: rng.randbytes(n).hex(), randbits=rng.getrandbits)
