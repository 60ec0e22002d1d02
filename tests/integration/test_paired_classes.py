"""Paired acceptance across three hardware classes, one of them twice as slow and noisy.

A real coordinator over loopback and scripted workers (real gRPC clients whose scores the
test controls): each class measures the true score with its own offset and scale, the
slow class with twice the noise and half the pace (it takes a task every other round).
Most edits are null (a comment changes); a few switch a slot on, a true improvement.
"""

from __future__ import annotations

import random

import pytest

from scripted import SLOT_RE, ScriptedWorker, connect, slots_score, switch_a_slot, touch_the_note
from test_acceptance import SCRIPTED, _champion_contents, _rows, slots_study

pytestmark = pytest.mark.integration

SIGMA = 0.05
STEP = 6 * SIGMA            # a true improvement: 6σ on the quiet classes, 3σ on the slow one


def _scaled(scale: float):  # type: ignore[no-untyped-def]
    base = slots_score(STEP)
    return lambda content: scale * base(content)


def test_three_classes_keep_true_improvements_and_never_a_null_edit(tmp_path, start_coordinator):
    coordinator = start_coordinator(*SCRIPTED)
    with coordinator.control() as control:
        control.add_study(slots_study(tmp_path / "study", 'compare = "paired"\nquorum = 2'))
    channel, stub = connect(coordinator.address)

    def mostly_null(content: str, rng: random.Random) -> tuple[str, str]:
        return switch_a_slot(content, rng) if rng.random() < 0.15 else touch_the_note(content, rng)

    # (class, offset, scale, noise, rounds per task)
    classes = [("Alpha", 0.0, 1.0, SIGMA, 1), ("Beta", 4.0, 1.3, SIGMA, 1), ("Slow", -3.0, 1.0, 2 * SIGMA, 2)]
    workers = [(ScriptedWorker(stub, f"{cls}-{i}", f"{cls} CPU", _scaled(scale), mostly_null, sigma=noise,
                               offset=offset, seed=100 * n + i).register(), pace)
               for n, (cls, offset, scale, noise, pace) in enumerate(classes) for i in range(2)]
    rng = random.Random(5)
    tasks = 0
    for round_ in range(160):
        order = [w for w, pace in workers if round_ % pace == 0]
        rng.shuffle(order)
        tasks += sum(w.step() is not None for w in order)

    base = slots_score(STEP)
    scores = [base(c) for c in _champion_contents(coordinator, "slots")]
    assert all(b > a for a, b in zip(scores, scores[1:])), f"a champion that is not better: {scores}"
    null_trials = sum(1 for w, _ in workers for k, _, d in w.log if k == "explore" and d.startswith("note"))
    true_trials = [d for w, _ in workers for k, _, d in w.log if k == "explore" and d.startswith("switch")]
    assert null_trials >= 150, f"only {null_trials} null edits were tried in {tasks} tasks"
    final = dict(SLOT_RE.findall(_champion_contents(coordinator, "slots")[-1]))
    landed = sum(final[d.split()[1]] == "1" for d in true_trials)
    assert landed >= 0.5 * len(true_trials) and landed >= 5, \
        f"{landed} of {len(true_trials)} true improvements landed"
    # The slow, noisy class took part in judging: its measurements confirmed or refuted claims.
    slow_ids = {w.worker_id for w, _ in workers if w.name.startswith("Slow")}
    judged = _rows(coordinator.db, "SELECT worker_id FROM results WHERE kind='verify' AND improvement IS NOT NULL")
    assert any(w in slow_ids for (w,) in judged), "the slow class verified claims too"
    channel.close()
