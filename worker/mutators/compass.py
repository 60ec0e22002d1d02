"""Compass search for the `params` mutator: which constant to move next, and which way.

A blind random step moves a hyperparameter the wrong way half the time, and a short run (ten
minutes, a handful of candidates) often sees nothing but wrong-way steps. Compass search (a
coordinate pattern search on a log scale) reads what the swarm memory says was tried and moves
one constant at a time the way the evidence points:

- a step that was better but not kept (below the bar) goes *further* the same way;
- a step that was worse (or crashed) is tried the *opposite* way, as far;
- a constant whose step was kept on an earlier champion keeps its *momentum*;
- a constant with no evidence goes the way the study *prefers* (`[mutator] prefer`), else a
  random way;
- a constant worse both ways at this step is tried *finer*, at half the step, last.

Pure: text and numbers in, ranked moves out; the params mutator writes the literal.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from autoswarm import words

# How likely a kind of move is to help, highest first; ties are broken at random.
FURTHER, OPPOSITE, MOMENTUM, PREFERRED, FRESH, FINER = 3.0, 2.5, 2.0, 1.5, 1.0, 0.5
_JITTER = 0.1            # relative spread of a step's length, so that parallel draws differ
_SAME = 1e-9             # relative tolerance when matching a memory line's value to the source's
# Decisions whose improvement is not known yet: the constant is left alone until it is.
_PENDING = frozenset({words.WAITING, words.CLAIM, words.CLAIM_LIMIT, words.UNJUDGED})
# An edit that beat an earlier champion and is being replayed onto this one: the same step
# of the same constant from the same value is on its way (as a merge), not to be tried again.
_REPLAYED = frozenset({words.STALE_MERGED})
# Decisions that say nothing about the step (the candidate was not a new measurement).
_SILENT = frozenset({words.DUPLICATE, words.NO_CHANGE, words.IGNORED})

_LINE = re.compile(r"^- \[(?P<decision>[^\]]+)\](?: \((?P<improvement>[^)]*)\))? (?P<description>.*)$")
_VALUE = r"-?\s*[0-9][0-9A-Za-z_.+-]*"   # as params writes it: 3e-4, -1.5E-2, 0x1F, 1_000
_EDIT = re.compile(rf"^(?P<name>_*[A-Z][A-Z0-9_]*) (?P<old>{_VALUE}) -> (?P<new>{_VALUE})$")
_TAIL = " — "            # the memory's separator before a failed evaluation's error line


@dataclass(frozen=True)
class Outcome:
    """One single-constant edit the memory lists, with what came of it (magnitudes: the
    params mutator scales a constant's magnitude and keeps its sign)."""

    name: str
    old: float                  # > 0
    new: float                  # > 0, != old
    decision: str
    improvement: float | None   # positive: better (the memory's sign)
    on_champion: bool           # tried on the current champion

    @property
    def direction(self) -> int:
        return 1 if self.new > self.old else -1

    @property
    def step(self) -> float:
        return abs(math.log(self.new / self.old))

    @property
    def failed(self) -> bool:
        """A crash, timeout, refusal...: every decision that is neither a judgement nor silent."""
        return self.improvement is None and self.decision not in _PENDING | _SILENT | {words.DISCARD, words.KEEP}


@dataclass(frozen=True)
class Move:
    """A step for one constant: its log-length and sign, and why (one of the scores above)."""

    name: str
    direction: int     # +1: larger magnitude, -1: smaller
    step: float        # |log(new / old)|
    score: float

    def factor(self, jitter: float = 0.0) -> float:
        """The multiplier for the constant's magnitude; `jitter` in [-1, 1] stretches the step."""
        return math.exp(self.direction * self.step * (1.0 + _JITTER * jitter))


def outcomes(memory: str) -> list[Outcome]:
    """The single-constant edits the swarm memory lists as tried, newest first in each section.

    Lines under the heading of ideas in flight are skipped (they have no outcome), as are
    edits of several constants at once (their effect is not one constant's) and lines that are
    not a params edit.
    """
    found: list[Outcome] = []
    section: bool | None = None
    for line in memory.splitlines():
        if not line.startswith("- "):
            section = {words.MEMORY_ON_CHAMPION: True, words.MEMORY_EARLIER: False}.get(line.strip())
            continue
        match = _LINE.match(line)
        if section is None or match is None:
            continue
        description = match["description"].split(_TAIL, 1)[0].strip()
        edit = _EDIT.match(description)
        if edit is None:
            continue
        old, new = _number(edit["old"]), _number(edit["new"])
        improvement = _number(match["improvement"]) if match["improvement"] else None
        if old is None or new is None or old == 0 or new == 0 or old == new or (old > 0) != (new > 0):
            continue
        found.append(Outcome(edit["name"], abs(old), abs(new), match["decision"], improvement, section))
    return found


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(" ", ""))
    except ValueError:
        try:
            value = float(int(text.replace(" ", ""), 0))
        except ValueError:
            return None
    return value if math.isfinite(value) else None


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _SAME * max(abs(a), abs(b))


def plan(values: Mapping[str, float], tried: Sequence[Outcome], scale: float,
         prefer: Mapping[str, int], avoid: Iterable[str], rng: random.Random) -> list[Move]:
    """Moves for the constants `values` (name -> current magnitude, > 0), best first.

    `scale` is the log-length of a first step; `prefer` maps names to the way (+1 larger,
    -1 smaller) the study expects to help; constants in `avoid` (being evaluated elsewhere), with
    a result not judged yet, or whose step from this value is being replayed onto the champion
    (`stale-merged`) come after all others. Ties are ordered by `rng`.
    """
    avoid = set(avoid)
    ranked: list[tuple[bool, float, float, Move]] = []
    for name, value in values.items():
        mine = [t for t in tried if t.name == name]
        current = [t for t in mine if t.on_champion and _same(t.old, value)]
        # Steps on their way from this value: not judged yet, or being replayed as a merge.
        coming = [t for t in current if t.decision in _PENDING and t.improvement is None] + \
            [t for t in mine if t.decision in _REPLAYED and not t.on_champion and _same(t.old, value)]
        for move in _moves(name, current, mine, scale, prefer.get(name, 0), rng):
            same_way = [t.step for t in coming if t.direction == move.direction]
            if same_way:
                # Should it come to that (everything else is on its way too), not the same step
                # again: twice as far, which teaches something new whatever the first shows.
                # At most 2 × scale (×4 at 0.7): run 7 doubled a ×4.5 merge into a ×22 step.
                move = replace(move, step=max(move.step, min(2 * max(same_way), 2 * scale)))
            ranked.append((name in avoid or bool(coming), -move.score, rng.random(), move))
    ranked.sort(key=lambda r: r[:3])
    return [move for *_, move in ranked]


def after_peers(names: Sequence[str], ahead: int) -> int | None:
    """Which edit to make of those planned (their constants' names, best first, the ones the
    memory lists already left out) when `ahead` edits of the same parent, planned in the same
    order, are being made elsewhere: the k-th of them (k = 0, 1, ...) took the best edit of the
    k-th constant, so this one takes the best edit of constant number `ahead`. With fewer
    constants than that it takes the others' second-best edits in turn (another step of a
    constant taken). None when there is no edit.

    Two explores leased at the same moment see the same memory, neither's edit in it: the first
    (`ahead` 0) makes the best edit, the second (1) the next constant's, and so on.
    """
    if not names:
        return None
    firsts: dict[str, int] = {}
    for index, name in enumerate(names):
        firsts.setdefault(name, index)
    best = list(firsts.values())
    if ahead < len(best):
        return best[max(0, ahead)]
    taken = set(best)
    others = [index for index in range(len(names)) if index not in taken] or best
    return others[(ahead - len(best)) % len(others)]


def _moves(name: str, current: Sequence[Outcome], mine: Sequence[Outcome], scale: float,
           preferred: int, rng: random.Random) -> list[Move]:
    """The candidate moves for one constant, from its evidence on the current champion first."""
    judged = [t for t in current if t.improvement is not None or t.failed]
    if not judged:
        way = _momentum(mine)
        if way:
            return [Move(name, way, scale, MOMENTUM), Move(name, -way, scale, FRESH - 0.5)]
        way = preferred or rng.choice((1, -1))
        return [Move(name, way, scale, PREFERRED if preferred else FRESH),
                Move(name, -way, scale, FRESH - 0.5)]
    moves: list[Move] = []
    worse: dict[int, float] = {}
    for way in (1, -1):
        steps = [t for t in judged if t.direction == way]
        if not steps:
            continue
        if all(not t.failed and (t.improvement or 0.0) > 0 for t in steps):
            moves.append(Move(name, way, 2 * max(t.step for t in steps), FURTHER))
        else:
            worse[way] = min(t.step for t in steps if t.failed or (t.improvement or 0.0) <= 0)
    for way, step in worse.items():
        if -way not in worse and not any(m.direction == -way for m in moves):
            moves.append(Move(name, -way, step, OPPOSITE))
    if len(worse) == 2:
        # Worse both ways: the optimum is near; half a step, the less bad way first.
        less_bad = max((1, -1), key=lambda w: _best(judged, w))
        moves.append(Move(name, less_bad, min(worse.values()) / 2, FINER))
    return moves


def _best(judged: Sequence[Outcome], way: int) -> float:
    return max((t.improvement if t.improvement is not None else -math.inf) for t in judged if t.direction == way)


def _momentum(mine: Sequence[Outcome]) -> int:
    """The way earlier champions' evidence points for a constant: +1, -1 or 0 (none or mixed).

    A kept step counts twice, any other judged step once, for its way when it was better and
    against it when it was worse.
    """
    total = 0.0
    for t in mine:
        if t.on_champion or t.improvement is None or t.improvement == 0:
            continue
        weight = 2.0 if t.decision == words.KEEP else 1.0
        total += weight * t.direction * (1 if t.improvement > 0 else -1)
    return (total > 0) - (total < 0)
