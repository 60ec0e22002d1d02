"""Hardware classes checked, not believed: the engine's class checks, driven directly.

Each test runs the real engine (SQLite in a temporary directory) with scripted workers that
report what their machine would measure. What must hold (issues 14 and 15):

- a big honest class stays one class, however many workers measure each baseline;
- spoofers of one owner naming an honest class are one voice: they leave, the honest stay;
- a class whose two workers disagree (no majority of owners) is split, not left waiting;
- a quarantined worker's baselines leave its class at once, as when the store is read again;
- a strike from before a worker was moved out of its class counts once, after a restart too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.store import Store
from autoswarm.hardware_class import is_moved
from swarm import Clock, write_study

CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
CLASS = "cpu:Test x2"
SIGMA = 0.01


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "an edit", "", {})


def _engine(tmp_path, owners: list[str]) -> tuple[Engine, list[str], Clock]:
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    study = write_study(tmp_path / "study", direction="maximize", acceptance='compare = "paired"\nquorum = 2')
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    workers = [engine.register("", f"w{i}", CPU, 1, ["params"], owner=owner)[0] for i, owner in enumerate(owners)]
    return engine, workers, clock


def _drive(engine: Engine, clock: Clock, workers: list[str], baseline: Callable[[str], float], rounds: int,
           rng: random.Random) -> dict[str, list[str]]:
    """Round robin: each worker takes a task and reports at once. Baselines report
    `baseline(worker)` plus noise; explores and verifications report the champion's level
    (null edits). Returns each worker's decisions."""
    decisions: dict[str, list[str]] = {w: [] for w in workers}
    for round_ in range(rounds):
        for worker in workers:
            clock.now += 1.0
            task = engine.lease(worker)
            if task is None:
                continue
            value = baseline(worker) + rng.gauss(0.0, SIGMA)
            candidate = f"X = {round_}.{worker[-6:]}\nY = 3\n".encode() if task.kind == "explore" else b""
            decisions[worker].append(engine.report(worker, task.lease_id, _ok(value, candidate)).decision)
    return decisions


def _classes(engine: Engine) -> dict[str, str]:
    return {s.record.id: s.record.hardware_class for s in engine.worker_summaries()}


def test_a_big_honest_class_stays_one_class_and_judges(tmp_path):
    """Regression: a search capped at 12 workers moved every later worker out of the class,
    and with its own repeats gone the class's baseline stayed disputed: 64 workers stalled."""
    engine, workers, clock = _engine(tmp_path, [f"volunteer{i}" for i in range(24)])
    decisions = _drive(engine, clock, workers, lambda w: 1.0, rounds=6, rng=random.Random(1))
    assert set(_classes(engine).values()) == {CLASS}, "nobody honest is moved out"
    assert sum(d == "discard" for ds in decisions.values() for d in ds) > len(workers), "null edits are judged"
    state = engine._studies["tiny"]
    assert state.waiting.count() == 0, "nothing waits: the class's baseline is not disputed"
    assert not state.disputed(state.champion.version, CLASS)


def test_spoofers_of_one_owner_are_one_voice_and_cannot_take_an_honest_class(tmp_path):
    """Six machines of one attacker, each on other hardware, name the class of two volunteers:
    the majority of the class's owners is honest, so the spoofers leave, whatever their number."""
    owners = ["volunteer0", "volunteer1"] + ["attacker"] * 6
    engine, workers, clock = _engine(tmp_path, owners)
    honest, spoofers = workers[:2], workers[2:]
    offsets = {w: 0.0 for w in honest} | {w: 0.5 + 0.3 * i for i, w in enumerate(spoofers)}
    _drive(engine, clock, workers, lambda w: 1.0 + offsets[w], rounds=8, rng=random.Random(2))
    classes = _classes(engine)
    assert all(classes[w] == CLASS for w in honest), "the volunteers keep their class"
    assert all(is_moved(classes[w]) for w in spoofers if engine.trust(w).moved or classes[w] != CLASS)
    state = engine._studies["tiny"]
    runs = state.samples.runs_by_worker(state.champion.version, CLASS)
    assert runs and set(runs) <= set(honest), "only the volunteers' runs make the class's baseline"
    assert not any(classes[w] == CLASS and state.samples.runs_by_worker(state.champion.version, CLASS).get(w)
                   for w in spoofers)


def test_a_class_of_two_that_disagree_is_split_and_neither_waits_for_ever(tmp_path):
    """One volunteer and one liar whose baselines are far too good, alone in their class: no
    majority of owners says who is right, so each gets a class of its own and is judged
    against its own baselines only. The volunteer's results do not wait for ever."""
    engine, (honest, liar), clock = _engine(tmp_path, ["volunteer", "attacker"])
    decisions = _drive(engine, clock, [honest, liar], lambda w: 1.0 + (5.0 if w == liar else 0.0), rounds=16,
                       rng=random.Random(3))
    classes = _classes(engine)
    assert is_moved(classes[honest]) and is_moved(classes[liar]) and classes[honest] != classes[liar]
    assert decisions[honest][-4:] and "waiting" not in decisions[honest][-4:], decisions[honest]
    state = engine._studies["tiny"]
    baseline = state.samples.baseline(state.champion.version, classes[honest])
    assert baseline is not None and abs(baseline.mean - 1.0) < 5 * SIGMA, "the volunteer's class holds its own runs"


def test_a_quarantined_workers_baselines_leave_its_class_at_once_and_after_a_restart(tmp_path):
    engine, workers, clock = _engine(tmp_path, ["a", "b", "c"])
    _drive(engine, clock, workers, lambda w: 1.0, rounds=3, rng=random.Random(4))
    state = engine._studies["tiny"]
    liar = workers[0]
    assert liar in state.samples.runs_by_worker(state.champion.version, CLASS)
    engine.roster.trust_change(liar, strikes=2)
    assert engine.trust(liar).quarantined
    assert liar not in state.samples.runs_by_worker(state.champion.version, CLASS), "its runs judge nothing more"


def test_a_class_of_two_honest_workers_judges_after_four_baselines_and_stays_whole(tmp_path):
    """A newcomer's first run: two workers of one class, honest noise. Their two first runs
    differ (noise), which nothing can tell from a spoofer until the machines repeat
    themselves: one repeat each, and the class judges (8 baselines before this change; issue
    15 asks for 3, not met). Neither is split off: the noise they show explains their difference."""
    engine, (a, b), clock = _engine(tmp_path, ["", ""])
    kinds: list[str] = []
    decisions: list[str] = []
    rng = random.Random(5)
    for step in range(12):
        worker = (a, b)[step % 2]
        clock.now += 1.0
        task = engine.lease(worker)
        assert task is not None
        kinds.append(task.kind)
        candidate = f"X = {step}\nY = 3\n".encode() if task.kind == "explore" else b""
        decisions.append(engine.report(worker, task.lease_id, _ok(1.0 + rng.gauss(0.0, 0.1), candidate)).decision)
        if task.kind == "explore" and decisions[-1] != "waiting":
            break
    assert kinds.count("baseline") <= 4, kinds
    state = engine._studies["tiny"]
    assert state.waiting.count() == 0, "whatever waited was judged once the fourth baseline came"
    assert set(_classes(engine).values()) == {CLASS}, "two honest machines stay one class"


def test_a_strike_from_before_a_move_counts_once_and_one_after_it_twice_after_a_restart_too(tmp_path):
    """Regression (acceptance_sim, 64 workers on 32 classes, spoofers, seed 9): the one honest
    worker of class 0, among 16 spoofers naming it, claimed an edit against two spoofers'
    baseline and was outvoted by verifiers of other classes (a strike); when class 0 was split
    it was moved, and a moved worker's first strike counting as two quarantined it. Only a
    strike on a run measured after the move counts double, live and when the store is read again."""
    engine, workers, clock = _engine(tmp_path, ["a", "b", "c"])
    _drive(engine, clock, workers, lambda w: 1.0, rounds=3, rng=random.Random(4))
    worker = workers[0]
    before = next(r for r in engine.store.results("tiny") if r.worker_id == worker)
    engine.store.record_result(replace(before, decision="outvoted"), rewrite=True)
    engine.roster.trust_change(worker, strikes=1)
    engine.roster.move_out_of_class(worker)
    assert engine.trust(worker).moved and not engine.trust(worker).quarantined, "struck once, in its old class"
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    assert reborn.trust(worker).moved and not reborn.trust(worker).quarantined, "the same after a restart"
    moved_class = _classes(engine)[worker]
    after = replace(before, id="l-after-the-move", hardware_class=moved_class, decision="outvoted", created=clock.now)
    engine.store.record_result(after)
    engine.roster.trust_change(worker, strikes=1, moved_strikes=1)
    assert engine.trust(worker).quarantined, "its first strike measured in its own class counts as two"
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    assert reborn.trust(worker).quarantined
    other = workers[1]
    engine.roster.move_out_of_class(other)
    engine.roster.trust_change(other, strikes=1, moved_strikes=1)
    assert engine.trust(other).quarantined, "a moved worker's first strike after the move still quarantines it"


def test_a_moved_worker_takes_its_runs_to_its_class_of_one_live_and_after_a_restart(tmp_path):
    """A worker moved out of its class measured its champion already: those runs are its own
    machine's, so they go with it (its baseline, its own repeats, its tier points) instead of
    being measured again in its new class, and the store reads them back the same way."""
    engine, (honest, liar), clock = _engine(tmp_path, ["volunteer", "attacker"])
    _drive(engine, clock, [honest, liar], lambda w: 1.0 + (5.0 if w == liar else 0.0), rounds=16,
           rng=random.Random(3))
    classes = _classes(engine)
    assert is_moved(classes[honest]) and is_moved(classes[liar])
    state = engine._studies["tiny"]
    stored = {r.id: r for r in engine.store.results("tiny") if r.kind == "baseline" and r.status == "ok"}
    for worker in (honest, liar):
        kept = {rid for version in {r.version for r in stored.values()}
                for rid in state.samples.run_ids(version, classes[worker])}
        before_move = {rid for rid, r in stored.items() if r.worker_id == worker and r.hardware_class == CLASS}
        assert before_move and before_move <= kept, "its runs from before the move judge its own results"
        assert all(stored[rid].worker_id == worker for rid in kept), "and nobody else's"
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    again = reborn._studies["tiny"]
    for worker in (honest, liar):
        for version in {r.version for r in stored.values()}:
            assert again.samples.run_ids(version, classes[worker]) == state.samples.run_ids(version, classes[worker])
