"""The swarm memory's order (coordinator/memory.py): what teaches an agent the most comes first,
so that it survives the size cap."""

from __future__ import annotations

from autoswarm import words
from autoswarm.coordinator.memory import Tried, build_memory, informativeness, tried_sections


def _tried(description: str, decision: str, improvement: float | None = None) -> Tried:
    return Tried(description, decision, improvement, on_champion=True)


def test_an_improvement_held_back_by_the_claim_limit_ranks_with_claims_above_failures_and_discards():
    tried = [  # newest first, as the engine passes them
        _tried("lr 0.01", words.DISCARD, -0.1),
        _tried("batch 4096", "crash"),
        _tried("warmup 200", words.CLAIM_LIMIT, 0.3),
        _tried("depth 12", words.KEEP, 0.5),
        _tried("dropout 0", words.REJECTED, 0.2),
        _tried("width 512", words.CLAIM, 0.25),
    ]
    ((_, lines), _) = tried_sections(tried)
    assert lines == ["- [keep] (+0.5) depth 12", "- [claim-limit] (+0.3) warmup 200", "- [claim] (+0.25) width 512",
                     "- [crash] batch 4096", "- [rejected] (+0.2) dropout 0", "- [discard] (-0.1) lr 0.01"]


def test_every_explore_decision_has_its_place():
    expected = {
        words.KEEP: 0,
        words.CLAIM: 1, words.CLAIM_LIMIT: 1, words.STALE_MERGED: 1, words.STALE_CONFLICT: 1,
        words.STALE_INCLUDED: 1,
        words.REJECTED: 2, words.OUTVOTED: 2, "crash": 2, "timeout": 2, "tampered": 2, "resource-limit": 2,
        words.DISCARD: 3, words.NO_CHANGE: 3, words.DUPLICATE: 3, words.UNJUDGED: 3, words.WAITING: 3,
        words.IGNORED: 3,
    }
    assert {decision: informativeness(decision) for decision in expected} == expected


def test_a_claim_limit_outcome_survives_the_cap_that_drops_older_failures_and_discards():
    tried = [_tried(f"discard {i}", words.DISCARD, -0.01 * i) for i in range(40)]
    tried += [_tried(f"crash {i}", "crash") for i in range(10)]
    tried.append(_tried("the oldest improvement", words.CLAIM_LIMIT, 0.4))
    memory = build_memory(tried, ["an idea in flight"], limit=200)
    assert len(memory) <= 200
    assert "- [claim-limit] (+0.4) the oldest improvement" in memory and "crash 9" not in memory
    assert memory.index("claim-limit") < memory.index("crash 0"), "newer failures come after it"
