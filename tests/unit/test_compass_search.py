"""Compass search in the params mutator: what it reads from the swarm memory and where it steps."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from autoswarm import words
from autoswarm.coordinator.memory import Tried, build_memory
from autoswarm.worker.mutators import create_mutator
from autoswarm.worker.mutators.base import MutationRequest, MutatorConfigError
from autoswarm.worker.mutators.compass import (
    FINER,
    FURTHER,
    MOMENTUM,
    OPPOSITE,
    PREFERRED,
    Outcome,
    outcomes,
    plan,
)
from autoswarm.worker.mutators.params import compass_edits, known

SOURCE = "LR = 3e-4\nDEPTH = 4\nBATCH = 32\nDECAY = -1.5E-2\nWIDTH = 0x80\n"


def _memory(on_champion: list[str], earlier: list[str] = (), in_flight: list[str] = ()) -> str:
    parts = []
    if in_flight:
        parts += [words.MEMORY_IN_FLIGHT, *(f"- {d}" for d in in_flight)]
    if on_champion:
        parts += [words.MEMORY_ON_CHAMPION, *on_champion]
    if earlier:
        parts += [words.MEMORY_EARLIER, *earlier]
    return "\n".join(parts) + "\n"


def _first(moves, name: str):
    return next(m for m in moves if m.name == name)


# --- reading the memory ---------------------------------------------------------------------


def test_outcomes_reads_single_constant_edits_with_their_section_and_improvement() -> None:
    memory = _memory(
        ["- [discard] (-0.3206) LR 3e-4 -> 2.51e-4", "- [crash] DEPTH 4 -> 9 — RuntimeError: out of memory",
         "- [discard] (+0.01) LR 3e-4 -> 4e-4, DEPTH 4 -> 5", "- [keep] (+1) a free-text idea of an agent"],
        ["- [keep] (+0.6142) DECAY -1.5E-2 -> -3E-2", "- [stale-merged] (+0.2) WIDTH 0x40 -> 0x80"],
        in_flight=["BATCH 32 -> 16"],
    )
    assert outcomes(memory) == [
        Outcome("LR", 3e-4, 2.51e-4, "discard", -0.3206, True),
        Outcome("DEPTH", 4, 9, "crash", None, True),
        Outcome("DECAY", 1.5e-2, 3e-2, "keep", 0.6142, False),   # magnitudes: the sign is kept
        Outcome("WIDTH", 64, 128, "stale-merged", 0.2, False),
    ]
    assert outcomes(memory)[1].failed and not outcomes(memory)[0].failed
    assert outcomes("- [discard] (-1) LR 3e-4 -> 2e-4\n") == [], "a line under no known heading says nothing"


def test_a_line_the_coordinator_writes_is_read_back() -> None:
    tried = [Tried("BATCH 32 -> 18", words.KEEP, 0.81652, on_champion=False),
             Tried("DEPTH 4 -> 5", words.DISCARD, -0.418728, on_champion=True)]
    found = outcomes(build_memory(tried, in_flight=["LR 3e-4 -> 6e-4"]))
    assert [(o.name, o.decision, o.on_champion) for o in found] == [("DEPTH", "discard", True), ("BATCH", "keep", False)]
    assert found[0].improvement == pytest.approx(-0.4187, abs=1e-4)


def test_known_matches_a_whole_edit_only() -> None:
    memory = _memory(["- [discard] (-0.3) DEPTH 4 -> 20", "- [discard] (-0.1) LR 3e-4 -> 2.5e-4"])
    assert known("DEPTH 4 -> 20", memory) and known("LR 3e-4 -> 2.5e-4", memory)
    assert not known("DEPTH 4 -> 2", memory) and not known("LR 3e-4 -> 2.5", memory)
    assert not known("H 4 -> 20", memory), "a name inside another name is not that name"


# --- where it steps ---------------------------------------------------------------------------


VALUES = {"LR": 3e-4, "DEPTH": 4.0, "BATCH": 32.0}


def test_a_worse_step_is_tried_the_opposite_way_as_far_first() -> None:
    tried = outcomes(_memory(["- [discard] (-0.4) DEPTH 4 -> 8"]))
    moves = plan(VALUES, tried, 0.7, {}, (), random.Random(1))
    assert (moves[0].name, moves[0].direction, moves[0].score) == ("DEPTH", -1, OPPOSITE)
    assert moves[0].step == pytest.approx(math.log(2))
    assert all(m.direction == -1 for m in moves if m.name == "DEPTH"), "the worse way is not repeated"


def test_a_better_step_below_the_bar_goes_further_the_same_way() -> None:
    tried = outcomes(_memory(["- [discard] (+0.2) BATCH 32 -> 16", "- [discard] (-0.5) DEPTH 4 -> 8"]))
    moves = plan(VALUES, tried, 0.7, {}, (), random.Random(1))
    assert (moves[0].name, moves[0].direction, moves[0].score) == ("BATCH", -1, FURTHER)
    assert moves[0].step == pytest.approx(2 * math.log(2))


def test_a_kept_step_keeps_its_momentum_on_the_new_champion() -> None:
    tried = outcomes(_memory([], ["- [keep] (+0.6) LR 1.5e-4 -> 3e-4", "- [discard] (-0.2) BATCH 32 -> 64"]))
    moves = plan(VALUES, tried, 0.7, {}, (), random.Random(1))
    assert [(m.name, m.direction, m.score) for m in moves[:2]] == [("LR", 1, MOMENTUM), ("BATCH", -1, MOMENTUM)]


def test_without_evidence_the_preferred_way_comes_first_and_both_ways_are_offered() -> None:
    for seed in range(20):
        moves = plan(VALUES, [], 0.7, {"DEPTH": -1, "LR": 1}, (), random.Random(seed))
        assert {(m.name, m.direction) for m in moves[:2]} == {("DEPTH", -1), ("LR", 1)}
        assert moves[0].score == PREFERRED
        assert {(m.name, m.direction) for m in moves} == {(n, d) for n in VALUES for d in (1, -1)}


def test_worse_both_ways_tries_half_the_step_the_less_bad_way() -> None:
    tried = outcomes(_memory(["- [discard] (-0.4) DEPTH 4 -> 8", "- [discard] (-0.1) DEPTH 4 -> 2"]))
    depth = [m for m in plan(VALUES, tried, 0.7, {}, (), random.Random(1)) if m.name == "DEPTH"]
    assert [(m.direction, m.score) for m in depth] == [(-1, FINER)]
    assert depth[0].step == pytest.approx(math.log(2) / 2)


def test_constants_in_flight_or_waiting_for_their_judgement_come_last() -> None:
    tried = outcomes(_memory(["- [waiting] LR 3e-4 -> 6e-4"]))
    moves = plan(VALUES, tried, 0.7, {"LR": 1, "BATCH": -1}, ("BATCH",), random.Random(3))
    assert [m.name for m in moves[:2]] == ["DEPTH", "DEPTH"]
    assert {m.name for m in moves[2:]} == {"LR", "BATCH"}


def test_when_every_constant_has_a_step_on_its_way_the_next_is_not_the_same_step_again() -> None:
    # Results wait for a baseline: each constant has a step in flight or unjudged.
    tried = outcomes(_memory(["- [waiting] LR 3e-4 -> 6e-4", "- [waiting] DEPTH 4 -> 2"],
                             ["- [stale-merged] (+0.8) BATCH 32 -> 16"]))
    moves = plan(VALUES, tried, 0.7, {"LR": 1, "DEPTH": -1, "BATCH": -1}, (), random.Random(4))
    for name, way in (("LR", 1), ("DEPTH", -1), ("BATCH", -1)):
        move = next(m for m in moves if (m.name, m.direction) == (name, way))
        assert move.step == pytest.approx(2 * math.log(2)), (name, move)


def test_twice_a_big_step_on_its_way_is_capped_at_twice_the_scale() -> None:
    tried = outcomes(_memory([], ["- [stale-merged] (+1.3) LR 3e-4 -> 1.35e-3"]))
    move = next(m for m in plan(VALUES, tried, 0.7, {"LR": 1}, (), random.Random(4)) if m.name == "LR")
    assert move.direction == 1 and move.step == pytest.approx(1.4)


def test_a_step_being_replayed_onto_the_champion_is_not_tried_again_meanwhile() -> None:
    # LR 3e-4 -> 6e-4 beat the champion before this one; the coordinator replays it here.
    tried = outcomes(_memory([], ["- [stale-merged] (+0.76) LR 3e-4 -> 6e-4", "- [keep] (+0.6) DEPTH 8 -> 4"]))
    moves = plan(VALUES, tried, 0.7, {"LR": 1}, (), random.Random(2))
    assert moves[0].name == "DEPTH" and {m.name for m in moves[-2:]} == {"LR"}
    # Once the replay is kept, LR has moved on, and its momentum counts.
    moves = plan({**VALUES, "LR": 6e-4}, tried, 0.7, {}, (), random.Random(2))
    assert {(m.name, m.direction, m.score) for m in moves[:2]} == {("LR", 1, MOMENTUM), ("DEPTH", -1, MOMENTUM)}


def test_evidence_about_another_value_of_the_constant_is_not_this_champions() -> None:
    tried = outcomes(_memory(["- [discard] (-0.4) DEPTH 6 -> 12"]))
    moves = plan(VALUES, tried, 0.7, {"DEPTH": 1}, (), random.Random(1))
    assert (_first(moves, "DEPTH").direction, _first(moves, "DEPTH").score) == (1, PREFERRED)


# --- the edits ----------------------------------------------------------------------------------


def test_compass_edits_change_one_literal_the_planned_way() -> None:
    edits = compass_edits(SOURCE, "", seed=5, scale=0.7, prefer={"DEPTH": -1, "DECAY": 1, "WIDTH": 1, "LR": 1,
                                                                 "BATCH": -1})
    first = {}
    for new_source, description in edits:
        name, old, _, new = description.split(" ")
        first.setdefault(name, new)
        changed = [a for a, b in zip(SOURCE.splitlines(), new_source.splitlines()) if a != b]
        assert len(changed) == 1 and changed[0].startswith(name)
    assert first["DEPTH"] == "2" and first["BATCH"] in ("15", "16", "17")
    assert first["DECAY"].startswith("-") and 2.5e-2 < -float(first["DECAY"]) < 3.5e-2
    assert first["WIDTH"].startswith("0x") and int(first["WIDTH"], 16) > 0x80


def test_an_int_at_one_is_not_stepped_down() -> None:
    edits = compass_edits("DEPTH = 1\n", "", seed=0, scale=0.7, prefer={"DEPTH": -1})
    assert [d for _, d in edits] == ["DEPTH 1 -> 2"]


def _request(tmp_path: Path, memory: str, seed: int = 3) -> MutationRequest:
    return MutationRequest(workdir=tmp_path, target="t.py", program="", memory=memory, seed=seed,
                           timeout_seconds=10.0)


def test_the_mutator_steps_a_known_edit_aside(tmp_path: Path) -> None:
    mutator = create_mutator("params", {"search": "compass", "scale": 0.7, "include": ["DEPTH"],
                                        "prefer": {"DEPTH": "down"}})
    (tmp_path / "t.py").write_text(SOURCE)
    assert mutator.mutate(_request(tmp_path, "")).description == "DEPTH 4 -> 2"
    (tmp_path / "t.py").write_text(SOURCE)
    # The planned edit is in flight on another worker: the next move, not a duplicate.
    outcome = mutator.mutate(_request(tmp_path, _memory([], in_flight=["DEPTH 4 -> 2"])))
    assert outcome.description == "DEPTH 4 -> 8"


@pytest.mark.parametrize("options, problem", [
    ({"search": "sideways"}, "mutator.search"),
    ({"search": "compass", "max_changes": 2}, "one constant at a time"),
    ({"prefer": {"LR": "up"}}, 'add search = "compass"'),
    ({"search": "compass", "prefer": {"LR": "higher"}}, "mutator.prefer"),
    ({"search": "compass", "prefer": ["LR"]}, "mutator.prefer"),
    ({"search": "compass", "include": ["DEPTH"], "prefer": {"LR": "up"}}, "LR is not among"),
    ({"search": "compass", "exclude": ["LR"], "prefer": {"LR": "up"}}, "LR is not among"),
])
def test_bad_compass_options_are_refused_with_the_reason(options: dict, problem: str) -> None:
    with pytest.raises(MutatorConfigError, match=problem):
        create_mutator("params", options)


def _score(values: dict[str, float]) -> float:
    """A made-up objective (lower is better) with its optimum far from the defaults, like a
    GPU-sized model on a CPU: LR wants 8x higher, DEPTH 4x lower, BATCH as it is."""
    return (math.log(values["LR"] / 2.4e-3)) ** 2 + (math.log(values["DEPTH"] / 1)) ** 2 \
        + (math.log(values["BATCH"] / 32)) ** 2


def _search(tmp_path: Path, options: dict, rounds: int, seed: int) -> float:
    """A champion loop as the coordinator runs it, one worker: keep a better edit, remember all."""
    mutator = create_mutator("params", options)
    source = "LR = 3e-4\nDEPTH = 4\nBATCH = 32\n"
    best = _score({"LR": 3e-4, "DEPTH": 4, "BATCH": 32})
    tried: list[Tried] = []
    for r in range(rounds):
        (tmp_path / "t.py").write_text(source)
        outcome = mutator.mutate(_request(tmp_path, build_memory(tried, []), seed=seed * 1000 + r))
        new_source = (tmp_path / "t.py").read_text()
        namespace: dict[str, float] = {}
        exec(new_source, namespace)  # noqa: S102 - the test's own three constants
        score = _score({k: float(namespace[k]) for k in ("LR", "DEPTH", "BATCH")})
        improvement = best - score
        kept = improvement > 0.05
        tried = [Tried(t.description, t.decision, t.improvement, on_champion=t.on_champion and not kept)
                 for t in tried]
        tried.insert(0, Tried(outcome.description, words.KEEP if kept else words.DISCARD, improvement,
                              on_champion=not kept))
        if kept:
            source, best = new_source, score
    return best


def test_compass_search_finds_more_than_random_steps_in_a_few_candidates(tmp_path: Path) -> None:
    start = _score({"LR": 3e-4, "DEPTH": 4, "BATCH": 32})
    compass = [_search(tmp_path, {"search": "compass", "scale": 0.7}, 6, seed) for seed in range(8)]
    blind = [_search(tmp_path, {"max_changes": 1, "scale": 0.7}, 6, seed) for seed in range(8)]
    # Without any hint, compass search improves in every run within 6 candidates...
    assert all(b < start - 0.05 for b in compass), compass
    # ...and gets further than blind steps do on average.
    assert sum(compass) < sum(blind), (compass, blind)
    # With the study's hints its first candidate already helps.
    hinted = [_search(tmp_path, {"search": "compass", "scale": 0.7, "prefer": {"LR": "up", "DEPTH": "down"}}, 1, s)
              for s in range(8)]
    assert all(b < start - 0.05 for b in hinted), hinted
