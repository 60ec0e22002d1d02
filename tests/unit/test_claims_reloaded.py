"""Open claims read back from the store (`StudyRegistry.load_study`) as a coordinator that never
stopped holds them: the checks stored waiting for a fresh baseline run (`PendingClaim.waiting`),
the checks in flight, the runs each claim's first measurement was compared with (which its
checks on the same class must not be compared with again), and the superseded claims still
checked for trust (audits: a restart must not let a liar off its strikes).

The real engine on SQLite in a temporary directory, driven by scripted workers whose tasks
overlap; at random moments the engine is closed and a new one opened on the same database,
and its picture of every open claim is compared with the one before.
"""

from __future__ import annotations

import random
import re

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.ids import seeded_ids
from autoswarm.coordinator.leasing import TaskSpec
from autoswarm.coordinator.store import Store
from swarm import Clock, write_study


def _score(content: bytes) -> float:
    x, y = (float(v) for v in re.findall(rb"= ([-0-9.]+)", content)[:2])
    return -(x - 2.5) ** 2 - (y - 7) ** 2


def _picture(engine: Engine) -> dict[str, tuple[object, ...]]:
    """What the engine holds of each open claim, and of each superseded one it still checks for trust."""
    state = engine._studies["tiny"]
    return {cid: (p.record, p.audit, p.measurements[0].baseline if p.measurements else None, dict(p.waiting),
                  frozenset(p.in_flight), p.checks_out, len(p.measurements), p.failures)
            for cid, p in state.claims.items()}


def _result(task: TaskSpec, rng: random.Random) -> ResultIn:
    """A result as an honest machine would measure it; an explore steps one constant."""
    if task.kind == "explore":
        assert task.parent is not None
        x, y = (float(v) for v in re.findall(rb"= ([-0-9.]+)", task.parent.content)[:2])
        if rng.random() < 0.5:
            y += 1
        else:
            x += rng.choice((-0.3, 0.3))
        candidate = f"X = {x:.2f}\nY = {y:.0f}\n".encode()
        return ResultIn("ok", _score(candidate) + rng.gauss(0, 0.02), {}, candidate, "an edit", "", {})
    assert task.candidate is not None
    return ResultIn("ok", _score(task.candidate.content) + rng.gauss(0, 0.02), {}, b"", "", "", {})


def _step(engine: Engine, ids: list[str], held: dict[str, TaskSpec], rng: random.Random, clock: Clock) -> None:
    """One second on: a worker drawn at random reports the task it holds, or leases one."""
    worker = rng.choice(ids)
    clock.now += 1.0
    if worker in held:
        task = held.pop(worker)
        engine.report(worker, task.lease_id, _result(task, rng))
    elif (task := engine.lease(worker)) is not None:
        held[worker] = task


@pytest.mark.parametrize("workers,classes,seed", [(2, 1, 1), (2, 1, 2), (3, 1, 3), (6, 2, 4), (6, 2, 5)])
def test_a_restarted_engine_holds_every_open_claim_as_before(tmp_path, workers, classes, seed):
    clock = Clock()
    # Ids from a seeded generator (a fresh one for each engine): the run is the same every time.
    engine = Engine(Store(tmp_path / "swarm.db", ids=seeded_ids(seed)), EngineConfig(), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", acceptance='compare = "paired"\nquorum = 2')).data)
    ids = [engine.register("", f"w{i}", {"cpu_model": f"C{i % classes}", "cpu_cores": 2, "gpus": []}, 1,
                           ["params"], owner=f"owner{i}")[0] for i in range(workers)]
    rng = random.Random(seed)
    held: dict[str, TaskSpec] = {}
    compared = waited = audits = 0
    for _ in range(300):
        _step(engine, ids, held, rng, clock)
        if _picture(engine) and rng.random() < 0.3:
            before = _picture(engine)
            engine.store.close()
            engine = Engine(Store(tmp_path / "swarm.db", ids=seeded_ids(f"{seed}.{compared}")), EngineConfig(),
                            clock=clock)
            assert _picture(engine) == before
            compared += 1
            waited += sum(1 for p in before.values() if p[3])
            audits += sum(1 for p in before.values() if p[1])
    engine.store.close()
    assert compared >= 5, "the engine was restarted with claims open"
    if workers == 2:
        assert waited, "and with a check waiting for a fresh baseline run"
    if seed == 4:   # this run supersedes claims of untrusted workers, which are checked on
        assert audits, "and with a superseded claim checked for trust"


def test_a_restart_keeps_a_claim_from_being_checked_on_the_reference_runs_it_rested_on(tmp_path):
    """Four classes are tiered: a member's measurement is predicted from the reference's runs of
    the parent, and a check judged on the reference must be compared with other runs
    (`References.independent_of`). Read back after a restart, a measurement rests, as far as the
    store tells, on every run of the reference: never on fewer than it did."""
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db", ids=seeded_ids(7)), EngineConfig(), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", acceptance='compare = "paired"\nquorum = 2')).data)
    ids = [engine.register("", f"w{i}", {"cpu_model": f"C{i % 4}", "cpu_cores": 2, "gpus": []}, 1,
                           ["params"], owner=f"owner{i}")[0] for i in range(8)]
    rng = random.Random(7)
    held: dict[str, TaskSpec] = {}

    def rested_on(e: Engine) -> dict[tuple[str, int], frozenset[str]]:
        return {(cid, k): m.reference_runs for cid, p in e._studies["tiny"].claims.items()
                for k, m in enumerate(p.measurements)}

    restarts = on_reference = 0
    for step in range(900):
        _step(engine, ids, held, rng, clock)
        before = rested_on(engine)
        if any(before.values()) and rng.random() < 0.2:
            engine.store.close()
            engine = Engine(Store(tmp_path / "swarm.db", ids=seeded_ids(f"7.{step}")), EngineConfig(), clock=clock)
            after = rested_on(engine)
            assert after.keys() == before.keys()
            for key, runs in before.items():
                assert runs <= after[key], f"measurement {key} rests on the reference runs it did before"
            restarts += 1
            on_reference += sum(1 for runs in before.values() if runs)
    engine.store.close()
    assert engine._studies["tiny"].tiered, "four classes of agreeing machines are tiered"
    assert restarts >= 3 and on_reference, "restarted while measurements rested on the reference's runs"
