"""Three-way merge of target versions, so that ideas found in parallel combine.

When an edit improved on a parent that is no longer the champion, its change (parent →
edit) is replayed onto the current champion. Changes that touch the same lines of the
parent conflict; changes on different lines — even adjacent ones — merge cleanly.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Hunk:
    """Lines base[start:end] replaced by `lines`."""

    start: int
    end: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class MergeResult:
    content: bytes | None        # None on conflict
    conflict: str                # what collided, for the hint recorded with the result


def _hunks(base: list[str], other: list[str]) -> list[Hunk]:
    matcher = difflib.SequenceMatcher(None, base, other, autojunk=False)
    hunks: list[Hunk] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            # Line for line: one hunk per line, so that two sides rewriting neighbouring lines
            # (or the same line the same way) still merge.
            hunks.extend(Hunk(i1 + k, i1 + k + 1, (other[j1 + k],)) for k in range(i2 - i1)
                         if base[i1 + k] != other[j1 + k])
        else:
            hunks.append(Hunk(i1, i2, tuple(other[j1:j2])))
    return hunks


def _collide(a: Hunk, b: Hunk) -> bool:
    if a == b:
        return False  # the same change on both sides merges to itself
    if a.start == a.end and b.start == b.end:
        return a.start == b.start  # two insertions at the same place: order is ambiguous
    if a.start == a.end:
        return b.start < a.start < b.end
    if b.start == b.end:
        return a.start < b.start < a.end
    return a.start < b.end and b.start < a.end


def merge3(base: bytes, ours: bytes, theirs: bytes) -> MergeResult:
    """Applies the change base→theirs onto ours (both descend from base)."""
    try:
        base_l, ours_l, theirs_l = (t.decode("utf-8").splitlines(keepends=True) for t in (base, ours, theirs))
    except UnicodeDecodeError:
        return MergeResult(None, "the target is not UTF-8 text")
    mine, their = _hunks(base_l, ours_l), _hunks(base_l, theirs_l)
    for a in their:
        for b in mine:
            if _collide(a, b):
                where = f"line {a.start + 1}" if a.end - a.start <= 1 else f"lines {a.start + 1}-{a.end}"
                return MergeResult(None, f"both changed {where} of their common parent")
    combined = sorted({*mine, *their}, key=lambda h: (h.start, h.end))
    out: list[str] = []
    pos = 0
    for hunk in combined:
        out.extend(base_l[pos:hunk.start])
        out.extend(hunk.lines)
        pos = max(pos, hunk.end)
    out.extend(base_l[pos:])
    return MergeResult("".join(out).encode("utf-8"), "")


def merge_base(a: str, b: str, parent_of: Callable[[str], str]) -> str | None:
    """The nearest common ancestor of versions `a` and `b`, or None if they share none.

    `parent_of` gives a version's parent ("" for the study's first version). A version counts
    as its own ancestor, so when `a` descends from `b` the answer is `b`. The base of a 3-way
    merge must be an ancestor of both sides: a champion that overtook from an earlier version
    does not descend from the old champion, and merging against the old champion instead
    would read the champion's missing edits as reverts.
    """
    ancestors: set[str] = set()
    walk = a
    while walk and walk not in ancestors:
        ancestors.add(walk)
        walk = parent_of(walk)
    seen: set[str] = set()
    walk = b
    while walk and walk not in seen:
        if walk in ancestors:
            return walk
        seen.add(walk)
        walk = parent_of(walk)
    return None
