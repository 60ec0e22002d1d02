"""Swarm memory: what the swarm already tried, as a bounded text agents read before editing.

autoresearch keeps `results.tsv` so its agent does not repeat itself; a swarm needs the same
across machines, plus the ideas other workers are evaluating right now. Pure formatting:
the engine feeds it outcomes and in-flight ideas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoswarm import words
from autoswarm.coordinator.reasons import shorten

DEFAULT_MEMORY_CHARS = 6000
_TAIL_CHARS = 160


@dataclass(frozen=True)
class Tried:
    """One explore outcome worth remembering."""

    description: str
    decision: str             # keep, discard, crash, claim, rejected, stale-conflict, ...
    improvement: float | None
    on_champion: bool         # tried on the current champion (else on an earlier one)
    error_tail: str = ""      # last line of a failed evaluation's log


# How much an outcome teaches an agent, most first: kept ideas; then ideas that beat a champion
# and are not kept yet (claimed, over the claimant's claim limit, beaten on an older champion);
# then failures to avoid (crashes, timeouts, tampering: every word not named here) and
# improvements the verifiers refuted; last, ideas that were no better and outcomes that say
# nothing about the idea.
_RANK = {
    words.KEEP: 0,
    words.CLAIM: 1, words.CLAIM_LIMIT: 1, words.STALE_MERGED: 1, words.STALE_CONFLICT: 1, words.STALE_INCLUDED: 1,
    words.REJECTED: 2, words.OUTVOTED: 2,
    words.DISCARD: 3, words.NO_CHANGE: 3, words.DUPLICATE: 3, words.UNJUDGED: 3, words.WAITING: 3, words.IGNORED: 3,
}
_FAILED_RANK = 2


def informativeness(decision: str) -> int:
    """0 (teaches the most) to 3: where an outcome with this decision goes in the memory."""
    return _RANK.get(decision, _FAILED_RANK)


def _line(t: Tried) -> str:
    delta = f" ({t.improvement:+.4g})" if t.improvement is not None else ""
    # Cut at the end: the front of an error line names the exception (`ValueError: ...`).
    tail = f" — {shorten(t.error_tail, _TAIL_CHARS)}" if t.error_tail else ""
    return f"- [{t.decision}]{delta} {t.description or '(no description)'}{tail}"


def tried_sections(tried: Sequence[Tried]) -> list[tuple[str, list[str]]]:
    """The outcome part of the memory: on this champion, then earlier; most informative first.

    `tried` is newest first. Kept apart from `build_memory` so the engine can cache it: it
    changes only when a result arrives, while ideas in flight change all the time.
    """
    current = [t for t in tried if t.on_champion]
    earlier = [t for t in tried if not t.on_champion]
    sections = []
    for title, items in ((words.MEMORY_ON_CHAMPION, current), (words.MEMORY_EARLIER, earlier)):
        ranked = sorted(enumerate(items), key=lambda p: (informativeness(p[1].decision), p[0]))
        sections.append((title, [_line(t) for _, t in ranked]))
    return sections


def render(sections: Sequence[tuple[str, Sequence[str]]], limit: int) -> str:
    """Sections as text (title, then its lines), cut at a line boundary within `limit`."""
    out: list[str] = []
    used = 0
    for title, lines in sections:
        if not lines:
            continue
        if used + len(title) + 1 > limit:
            break
        out.append(title)
        used += len(title) + 1
        for line in lines:
            if used + len(line) + 1 > limit:
                break
            out.append(line)
            used += len(line) + 1
    return "\n".join(out)


def build_memory(tried: Sequence[Tried], in_flight: Sequence[str], limit: int = DEFAULT_MEMORY_CHARS,
                 rendered_tried: str | None = None) -> str:
    """The memory text: ideas in flight, then outcomes on this champion, then earlier ones.

    `tried` is newest first; or pass `rendered_tried`, the outcomes already rendered with
    `render(tried_sections(...), limit)`, which the engine caches. Lines are dropped from the
    end once `limit` characters are reached.
    """
    ideas = render([(words.MEMORY_IN_FLIGHT,
                     [f"- {d}" for d in in_flight if d])], limit)
    room = limit - len(ideas) - (1 if ideas else 0)
    outcomes = rendered_tried if rendered_tried is not None else render(tried_sections(tried), limit)
    if len(outcomes) > room:
        outcomes = outcomes[:room].rsplit("\n", 1)[0] if room > 0 else ""
    return "\n".join(part for part in (ideas, outcomes) if part)
