"""An accepted merge's checks are its classes' first runs of the new champion.

A merge is a version the coordinator made, so the checks that accepted it are the first runs
anyone made of it; they measure what a baseline task of the new champion would. The pure rule
(`merging.checks_as_baselines`) and the engine applying it, live and after a restart, driven
directly (real engine, SQLite in a temporary directory, scripted workers).
"""

from __future__ import annotations

import random
import re

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.acceptance import Measurement, Settlement
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.merging import MERGE_ORIGIN, checks_as_baselines
from autoswarm.coordinator.store import Store
from autoswarm.coordinator.study_state import Samples
from swarm import Clock, write_study

CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
CLASS = "cpu:Test x2"
SIGMA = 0.01
START = "X = 1\nY = 3\nZ = 5\n"


def _run(worker: str, cls: str, value: float, result_id: str) -> Measurement:
    return Measurement(worker, f"owner-{worker}", cls, value, 0.5, 0.1, True, result_id=result_id)


def test_only_an_accepted_merges_agreeing_runs_count_and_each_difference_once():
    agreeing = (_run("a", "c1", 1.5, "r1"), _run("b", "c1", 1.49, "r2"), _run("c", "c2", 2.5, "r3"))
    accepted = Settlement("accepted", agreeing)
    taken = checks_as_baselines(MERGE_ORIGIN, accepted)
    assert [(m.result_id, noise) for m, noise in taken] == [("r1", True), ("r2", False), ("r3", True)], \
        "the difference of two checks on one class was noted when they were checked"
    assert checks_as_baselines("explore", accepted) == [], "an explore claim's runs were picked for being high"
    assert checks_as_baselines(MERGE_ORIGIN, Settlement("pending", agreeing, needed=1)) == []
    assert checks_as_baselines(MERGE_ORIGIN, Settlement("unconfirmed", agreeing)) == []
    outvoted = Settlement("accepted", agreeing[:1], outvoted=(_run("d", "c3", 9.0, "r4"),))
    assert [m.result_id for m, _ in checks_as_baselines(MERGE_ORIGIN, outvoted)] == ["r1"], "no outvoted run"
    assert checks_as_baselines(MERGE_ORIGIN, Settlement("accepted", (_run("a", "c1", 1.5, ""),))) == [], \
        "a run with no result row to point at is not taken"


def test_a_run_added_without_noise_evidence_adds_no_difference():
    samples = Samples()
    samples.add("v", "c1", "a", 1.0, "r1")
    samples.add("v", "c1", "b", 1.1, "r2", noise=False)
    assert samples.differences("c1") == 0 and samples.baseline("v", "c1").runs == 2
    before = samples.generation
    samples.add("v", "c1", "c", 1.3, "r3")
    assert samples.differences("c1") == 1 and samples.generation > before


def _true(content: bytes) -> float:
    """The edits X = 2 and Y = 7 each help by 0.5; any other change is null."""
    text = content.decode()
    return 1.0 + 0.5 * ("X = 2\n" in text) + 0.5 * ("Y = 7\n" in text)


def _with(content: bytes, name: str, value: str) -> bytes:
    return re.sub(rf"^{name} = .*$", f"{name} = {value}", content.decode(), flags=re.M).encode()


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "an edit", "", {})


def _champion(engine: Engine) -> bytes:
    return engine.version("tiny", "")[0].content


def test_a_merges_checks_are_the_new_champions_first_baseline_runs_live_and_after_a_restart(tmp_path):
    clock, rng = Clock(), random.Random(4)
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    study = write_study(tmp_path / "study", acceptance='compare = "paired"\nquorum = 2', constants=START, body="")
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    workers = [engine.register("", f"w{i}", CPU, 1, ["params"], owner=f"volunteer{i}")[0] for i in range(5)]
    nulls = iter(range(6, 10_000))

    def step(worker: str) -> None:
        """One task of `worker`, reported at once: honest runs, null edits."""
        clock.now += 1.0
        task = engine.lease(worker)
        if task is None:
            return
        if task.kind == "explore":
            content = _with(task.parent.content, "Z", str(next(nulls)))
        else:
            content = task.candidate.content
        engine.report(worker, task.lease_id, _ok(_true(content) + rng.gauss(0.0, SIGMA),
                                                 content if task.kind == "explore" else b""))

    def until(done, who: list[str]) -> None:
        for _ in range(60):
            if done():
                return
            for worker in who:
                step(worker)
        raise AssertionError("the swarm never got there")

    first, second, others = workers[0], workers[1], workers[2:]
    until(lambda: sum(r.kind == "explore" for r in engine.store.results("tiny")) >= len(workers), workers)
    # Two edits of the same champion at once: the first is claimed and accepted, the second
    # arrives stale, beats its parent, and is merged onto the new champion.
    start = _champion(engine)
    a, b = engine.lease(first), engine.lease(second)
    assert a.kind == b.kind == "explore" and a.parent.content == b.parent.content == start
    edited_a, edited_b = _with(start, "X", "2"), _with(start, "Y", "7")
    assert engine.report(first, a.lease_id, _ok(_true(edited_a), edited_a)).decision == "claim"
    until(lambda: _champion(engine) == edited_a, others)
    assert engine.report(second, b.lease_id, _ok(_true(edited_b), edited_b)).decision == "stale-merged"
    merged = _with(edited_a, "Y", "7")
    until(lambda: _champion(engine) == merged, others)

    state = engine._studies["tiny"]
    merge_claim = next(c for c in engine.store.claims("tiny") if c.version == state.champion.version)
    assert merge_claim.origin == MERGE_ORIGIN and merge_claim.state == "accepted"
    checks = [r.id for r in engine.store.results("tiny") if r.claim == merge_claim.id and r.kind == "verify"]
    assert len(checks) >= 2, "a merge has no claimant's run: two checks"
    runs = state.samples.runs_by_worker(state.champion.version, CLASS)
    assert {rid for series in runs.values() for _, rid in series} == set(checks), \
        "the checks are the class's first runs of the new champion; no baseline task measured it yet"

    engine.store.close()
    again = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    reloaded = again._studies["tiny"].samples.runs_by_worker(state.champion.version, CLASS)
    assert {rid for series in reloaded.values() for _, rid in series} == set(checks), "as after a restart"
    again.store.close()
