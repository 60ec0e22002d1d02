"""Duplicates are free: a study whose params space is tiny spends no evaluation on a duplicate."""

from __future__ import annotations

from collections import Counter

import pytest

from swarm import wait_for, write_study

pytestmark = pytest.mark.integration


def test_a_tiny_params_space_spends_no_evaluation_on_a_duplicate(tmp_path, start_coordinator, start_worker):
    # One int constant: a small step from X = 1 only reaches 2, so the mutator must step further
    # once 2 is known; the score peaks at X = 7.
    study = write_study(tmp_path / "study", constants="X = 1\n",
                        body='print(f"score: {-(X - 7) ** 2}")\n')
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=8)
    start_worker(coordinator.address, "only")
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 90, what="the study to finish")
    with coordinator.control() as control:
        rows = control.history("tiny").rows
    evaluated = [r for r in rows if r.has_metric]
    assert status.evaluations == 8 == len(evaluated), [(r.status, r.description) for r in rows]
    explored = Counter((r.parent, r.version) for r in evaluated if r.kind == "explore")
    assert max(explored.values()) == 1, "no candidate was evaluated twice for the same parent"
    rows_seen = "\n".join(f"{r.kind} {r.parent[:6]} -> {r.version[:6]} {r.status}: {r.description}" for r in rows)
    assert not [r for r in evaluated if r.status == "duplicate"], f"an evaluation was spent on a duplicate:\n{rows_seen}"
    free = [r for r in rows if r.status == "duplicate"]
    assert len(rows) == len(evaluated) + len(free) + sum(r.status == "mutator-error" for r in rows), \
        "only duplicates (free) and edits the mutator could not make go uncounted"
