"""A cheaper cycle (issue 20): what the engine keeps worked out between requests says what
working it out afresh would (a class's dispute and its direct baseline, cached per change of
the study's runs), and
the group commit batches the requests of a busy coordinator however they arrive."""

from __future__ import annotations

import asyncio
import random
import statistics
from dataclasses import replace

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.group_commit import GroupCommit
from autoswarm.coordinator.store import LeaseRecord, Store, VersionRecord
from autoswarm.coordinator.study_state import StudyState
from autoswarm.hardware_class import is_moved
from swarm import Clock, write_study

CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
SIGMA = 0.01


def _fresh_dispute(state: StudyState, version: str, hardware_class: str) -> bool | None:
    """`StudyState.dispute` worked out from the runs as they are now, past any cache."""
    runs = state.samples.runs_by_worker(version, hardware_class)
    return False if len(runs) < 2 else state._dispute_of(hardware_class, runs)


def _fresh_baseline(state: StudyState, version: str, hardware_class: str, worker_id: str,
                    exclude: frozenset[str]) -> tuple[float, int] | None:
    """`StudyState.direct_baseline` worked out from `direct_runs` as they are now."""
    runs = state.direct_runs(version, hardware_class, worker_id, exclude)
    return (statistics.fmean(value for value, _ in runs), len(runs)) if runs else None


def _every_dispute_is_current(state: StudyState, workers: list[str]) -> int:
    keys = list(state.samples._runs)
    for version, hardware_class in keys:
        assert state.dispute(version, hardware_class) == _fresh_dispute(state, version, hardware_class), \
            (version, hardware_class)
        some_run = frozenset(list(state.samples.run_ids(version, hardware_class))[:1])
        for worker_id in ["", *workers]:
            for exclude in (frozenset(), some_run):
                cached = state.direct_baseline(version, hardware_class, worker_id, exclude)
                assert (None if cached is None else (cached.mean, cached.runs)) == \
                    _fresh_baseline(state, version, hardware_class, worker_id, exclude), (version, worker_id)
    return len(keys)


def test_a_cached_dispute_and_baseline_follow_every_new_run_and_every_worker_moved_out(tmp_path):
    """A class of honest workers and a spoofer (its baselines far off): the class is undecided,
    disputed, then split; after every report each (version, class) reads as worked out afresh,
    its dispute and its baseline as each worker's runs are compared with (with and without a
    run left out)."""
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    study = write_study(tmp_path / "study", direction="maximize", acceptance='compare = "paired"\nquorum = 2')
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    workers = [engine.register("", f"w{i}", CPU, 1, ["params"], owner=f"owner{i}")[0] for i in range(5)]
    spoofer = workers[-1]
    state = engine._studies["tiny"]
    rng = random.Random(3)
    checked = 0
    outcomes: set[bool | None] = set()
    for round_ in range(14):
        for worker in workers:
            clock.now += 1.0
            task = engine.lease(worker)
            if task is None:
                continue
            value = (1.5 if worker == spoofer else 1.0) + rng.gauss(0.0, SIGMA)
            candidate = f"X = {round_}.{worker[-6:]}\nY = 3\n".encode() if task.kind == "explore" else b""
            engine.report(worker, task.lease_id, ResultIn("ok", value, {}, candidate, "an edit", "", {}))
            checked += _every_dispute_is_current(state, workers)
            outcomes |= {state.dispute(v, c) for v, c in state.samples._runs}
    assert checked > 50
    assert True in outcomes and False in outcomes, "the class was disputed, and agreed once the spoofer left"
    assert any(is_moved(s.record.hardware_class) for s in engine.worker_summaries()), "the spoofer was moved out"


def test_a_cached_dispute_is_dropped_when_the_runs_or_the_policy_change(tmp_path):
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    study = write_study(tmp_path / "study", direction="maximize", acceptance='compare = "paired"\nquorum = 2')
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    state = engine._studies["tiny"]
    samples = state.samples
    # Own repeats of two machines, so that a class check knows each machine's noise.
    for worker in ("a", "b"):
        for value in (1.0, 1.01, 1.0):
            samples.add(f"v-{worker}", "cls", worker, value)
    samples.add("v", "cls", "a", 1.0)
    samples.add("v", "cls", "b", 1.004)
    assert state.dispute("v", "cls") is False
    samples.add("v", "cls", "c", 9.0)                       # a third worker, far off
    assert state.dispute("v", "cls") is True, "a new run is seen at once"
    samples.remove_worker("cls", "c")
    assert state.dispute("v", "cls") is False, "so is a worker taken out"
    generation = samples.generation
    state.spec = replace(state.spec, acceptance=replace(state.spec.acceptance, quorum=3))
    assert state._disputes_of is not None
    state.dispute("v", "cls")
    assert state._disputes_of[2] is state.spec.acceptance and samples.generation == generation, \
        "a new policy is worked out afresh"


def _version() -> VersionRecord:
    return VersionRecord("s", "v0", "", b"X = 1\n", "initial", "", 0.0)


def _lease(lease_id: str) -> LeaseRecord:
    return LeaseRecord(lease_id, "s", "w", "explore", "v0", "", 0, 0.0, 1e12, "active", None)


def test_requests_that_arrive_one_per_turn_share_commits_once_the_coordinator_is_busy(tmp_path):
    """A saturated grpc.aio server starts about one request per turn of the loop: counted per
    commit, every batch was small and each request paid a commit of its own. Counted over the
    window, the fourth of four quick single requests waits for the window, and a quiet
    coordinator's requests, one per window, never wait. (Whether its commit has begun within
    five turns: it runs on the store's writer thread, so the answer itself comes a little later.)"""
    commits: list[float] = []
    store = Store(tmp_path / "swarm.db", group_commit=True, on_commit=commits.append)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _version())
    store.commit_batch()

    async def one(group: GroupCommit, lease_id: str) -> bool:
        store.insert_lease(_lease(lease_id))
        before = group.commits
        waiting = asyncio.ensure_future(group.durable())
        for _ in range(5):
            await asyncio.sleep(0)
        begun = group.commits > before
        group.flush()
        await asyncio.wait_for(waiting, 30)
        return begun

    async def busy() -> list[bool]:
        group = GroupCommit(store, busy_window=3600.0, busy_batch=3)
        return [await one(group, f"l-{i}") for i in range(4)]

    async def quiet() -> list[bool]:
        group = GroupCommit(store, busy_window=1e-6, busy_batch=3)
        answered = []
        for i in range(4):
            await asyncio.sleep(0.01)   # longer than the window: each request is alone in its own
            answered.append(await one(group, f"q-{i}"))
        return answered

    assert asyncio.run(busy()) == [True, True, True, False], "three single requests make a busy window"
    assert asyncio.run(quiet()) == [True] * 4
    assert not store.uncommitted


def test_a_task_memory_lists_the_newest_ideas_in_flight(tmp_path):
    """The memory's ideas in flight are read from the newest end (not by copying every idea in
    flight on every lease): 60 workers each evaluating an idea, the next explore task lists the
    newest 50, oldest first, and none older."""
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", direction="maximize")).data, max_evaluations=0)
    cpu = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
    workers = [engine.register("", f"w{i}", cpu, 1, ["params"])[0] for i in range(61)]
    first = engine.lease(workers[0])
    engine.report(workers[0], first.lease_id, ResultIn("ok", 1.0, {}, b"", "", "", {}))   # the baseline
    for i, worker in enumerate(workers[:60]):
        task = engine.lease(worker)
        assert task is not None and task.kind == "explore"
        engine.heartbeat(worker, [task.lease_id], "working", {task.lease_id: f"idea number {i:02d}"})
    memory = engine.lease(workers[60]).memory
    assert [line for line in memory.splitlines() if "idea number" in line] == \
        [f"- idea number {i:02d}" for i in range(10, 60)]
