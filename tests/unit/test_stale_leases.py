"""Stale leases: work leased ahead on a champion that has been replaced since.

The pure rule (`coordinator/staleness.py`), the engine naming such leases in its heartbeat and
report answers (real SQLite), and a pipelined slot handing back a stale task it has not
started while one already evaluating finishes (worker/slot.py, with the evaluation stubbed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.scheduler import BASELINE, EXPLORE, VERIFY
from autoswarm.coordinator.staleness import is_stale
from autoswarm.coordinator.store import Store
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker import slot as slot_module
from autoswarm.worker.reporting import Answers
from autoswarm.worker.slot import PipelinedSlot
from swarm import Clock, wait_for, write_study

# -- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, parent, candidate, champion, stale", [
    (EXPLORE, "c1", "", "c1", False),          # an edit of the champion
    (EXPLORE, "c1", "", "c2", True),           # an edit of a replaced champion
    (BASELINE, "c0", "c1", "c1", False),       # a baseline of the champion (its parent is c0)
    (BASELINE, "c0", "c1", "c2", True),        # a baseline of a replaced champion
    (BASELINE, "c1", "c2", "c1", True),        # parent = champion is not what makes a baseline current
    (VERIFY, "c1", "v9", "c2", False),         # a claim needs its checks whatever the champion is
    (VERIFY, "c2", "v9", "c2", False),
])
def test_which_leases_are_stale(kind, parent, candidate, champion, stale):
    assert is_stale(kind, parent, candidate, champion) is stale


# -- the engine names them ----------------------------------------------------------------------


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "", "", {})


@pytest.fixture
def engine(tmp_path):
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(lease_factor=1.0, lease_grace=5.0), clock=Clock())
    engine.add_study(pack_directory(write_study(tmp_path / "study", direction="minimize", timeout=10)).data)
    return engine


def _worker(engine: Engine, name: str) -> str:
    worker_id, _ = engine.register("", name, {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])
    return worker_id


def test_a_keep_makes_the_other_leases_on_the_old_champion_stale(engine):
    alpha, beta = _worker(engine, "alpha"), _worker(engine, "beta")
    baseline = engine.lease(alpha, pipelined=True)
    assert engine.report(alpha, baseline.lease_id, _ok(10.0)).stale == []
    # Both pipelined workers hold two explores of the first champion (one evaluating, one ahead).
    a1, a2 = engine.lease(alpha, pipelined=True), engine.lease(alpha, pipelined=True)
    b1, b2 = engine.lease(beta, pipelined=True), engine.lease(beta, pipelined=True)
    assert engine.heartbeat(beta, [b1.lease_id, b2.lease_id], "working").stale == []

    outcome = engine.report(alpha, a1.lease_id, _ok(8.0, b"X = 2\n"))
    assert outcome.decision == "keep"
    assert outcome.stale == [a2.lease_id], "the reporter hears at once that its task leased ahead is stale"
    assert engine.heartbeat(beta, [b1.lease_id, b2.lease_id], "working").stale == [b1.lease_id, b2.lease_id]
    # A lease taken now is on the new champion, and not stale.
    fresh = engine.lease(alpha, pipelined=True)
    assert fresh.parent.content == b"X = 2\n"
    assert engine.report(beta, b1.lease_id, _ok(9.5, b"X = 3\n")).stale == [b2.lease_id]
    # Handed back, the stale lease frees its place: it is no longer named, and nothing is lost.
    assert engine.release(alpha, [a2.lease_id]) == 1
    assert engine.heartbeat(alpha, [fresh.lease_id], "working").stale == []
    assert engine.report(alpha, fresh.lease_id, _ok(9.0, b"X = 4\n")).stale == []


def test_a_baseline_of_a_replaced_champion_is_stale(tmp_path):
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=1.0, lease_grace=5.0), clock=Clock())
    study = write_study(tmp_path / "study", direction="minimize", timeout=10,
                        acceptance='compare = "paired"\nquorum = 1\nmin_delta = 0.5')
    engine.add_study(pack_directory(study).data)
    alpha = engine.register("", "alpha", {"cpu_model": "Alpha", "cpu_cores": 2, "gpus": []}, 1, ["params"])[0]
    beta = engine.register("", "beta", {"cpu_model": "Beta", "cpu_cores": 2, "gpus": []}, 1, ["params"])[0]

    def run(worker: str, metric: float, content: bytes = b"") -> str:
        task = engine.lease(worker)
        return engine.report(worker, task.lease_id, _ok(metric, content)).decision

    assert [run(alpha, 10.0), run(alpha, 10.01), run(beta, 20.0), run(beta, 20.01)] == ["baseline"] * 4
    assert run(alpha, 7.0, b"X = 2\n") == "keep"
    beta_baseline = engine.lease(beta)        # class Beta measures the new champion
    assert beta_baseline.kind == "baseline"
    assert engine.heartbeat(beta, [beta_baseline.lease_id], "working").stale == []
    assert [run(alpha, 7.01), run(alpha, 7.0), run(alpha, 4.0, b"X = 3\n")] == ["baseline", "baseline", "keep"]
    assert engine.heartbeat(beta, [beta_baseline.lease_id], "working").stale == [beta_baseline.lease_id], \
        "a baseline of the replaced champion is not worth starting"


# -- a pipelined slot drops what it has not started -----------------------------------------------


@dataclass
class _Prepared:
    task: worker_pb2.Task


@dataclass
class FakeHost:
    """A worker as a slot sees it: tasks t1, t2, ...; the test says what each answer names stale."""

    leases: int = 0
    limit: int = 4
    finishing: threading.Event = field(default_factory=threading.Event)
    released: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    stale_after: dict[str, list[str]] = field(default_factory=dict)   # delivered lease -> stale in its answer
    slot: PipelinedSlot | None = None

    def gate_open(self) -> bool:
        return True

    def wait_for_gate(self) -> None:
        pass

    def lease_task(self, nothing_yet=None) -> worker_pb2.Task | None:
        if self.leases >= self.limit:
            self.finishing.wait(0.05)
            return None
        self.leases += 1
        return worker_pb2.Task(lease_id=f"t{self.leases}", kind=common_pb2.TASK_KIND_EXPLORE)

    def release(self, lease_ids: list[str]) -> None:
        self.released.extend(lease_ids)

    def track(self, slot: int, lease_id: str, cancel: threading.Event) -> None:
        pass

    def untrack(self, slot: int, lease_id: str) -> None:
        pass

    def deliver(self, lease_id: str, result: worker_pb2.Result) -> None:
        self.delivered.append(lease_id)
        if len(self.delivered) + len(self.released) >= self.limit:
            self.finishing.set()

    def await_answer(self, lease_id: str) -> None:
        assert self.slot is not None
        self.slot.drop_stale(self.stale_after.get(lease_id, []))


@pytest.fixture
def pipeline(monkeypatch, tmp_path):
    """A slot of depth 2 whose edits are instant and whose evaluations wait for `go`."""
    evaluated: list[str] = []
    discarded: list[str] = []
    go = threading.Event()
    prepare_gate: dict[str, threading.Event] = {}

    def prepare(context, task, fetch, cancel, mutators):
        gate = prepare_gate.get(task.lease_id)
        if gate is not None:
            gate.wait(10)
        return _Prepared(task)

    def evaluate(context, prepared, cancel):
        evaluated.append(prepared.task.lease_id)
        go.wait(10)
        return worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=1.0)

    monkeypatch.setattr(slot_module, "PreparedTask", _Prepared)
    monkeypatch.setattr(slot_module, "prepare_task", prepare)
    monkeypatch.setattr(slot_module, "evaluate_prepared", evaluate)
    monkeypatch.setattr(slot_module, "discard_prepared", lambda context, prepared: discarded.append(
        prepared.task.lease_id))
    host = FakeHost()
    slot = PipelinedSlot(0, None, host, lambda h, d: None, lambda: ("params",), depth=2)  # type: ignore[arg-type]
    host.slot = slot
    return slot, host, go, evaluated, discarded, prepare_gate


def _run(slot: PipelinedSlot) -> threading.Thread:
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    return thread


def test_the_task_leased_ahead_of_a_keep_is_handed_back_and_replaced(pipeline):
    slot, host, go, evaluated, discarded, _ = pipeline
    host.stale_after = {"t1": ["t2"]}   # t1's report replaced the champion t2 was made on
    thread = _run(slot)
    wait_for(lambda: host.leases >= 2, 10, what="t2 leased ahead while t1 evaluates")
    go.set()
    thread.join(10)
    assert not thread.is_alive()
    assert "t2" not in evaluated and host.released == ["t2"] and discarded == ["t2"]
    assert evaluated == ["t1", "t3", "t4"], "the stale task's place went to a task leased after the keep"
    assert host.delivered == ["t1", "t3", "t4"]


def test_a_task_already_evaluating_finishes_though_stale(pipeline):
    slot, host, go, evaluated, discarded, _ = pipeline
    host.limit = 2
    thread = _run(slot)
    wait_for(lambda: evaluated == ["t1"] and host.leases == 2, 10, what="t1 evaluating, t2 leased ahead")
    assert slot.drop_stale(["t1"]) == [], "an evaluation under way is not cut short"
    go.set()
    thread.join(10)
    assert host.delivered == ["t1", "t2"] and host.released == [] and discarded == []


def test_a_task_still_being_prepared_is_handed_back_when_its_preparation_ends(pipeline):
    slot, host, go, evaluated, discarded, prepare_gate = pipeline
    host.limit = 3
    prepare_gate["t2"] = threading.Event()
    thread = _run(slot)
    wait_for(lambda: evaluated == ["t1"] and host.leases == 2, 10, what="t2 being prepared")
    assert slot.drop_stale(["t2", "t-unknown"]) == ["t2"]
    assert host.released == [], "a preparation under way (a setup, perhaps) is not cut short"
    prepare_gate["t2"].set()
    wait_for(lambda: host.released == ["t2"], 10, what="t2 handed back once prepared")
    go.set()
    thread.join(10)
    assert evaluated == ["t1", "t3"] and discarded == ["t2"]


def test_answers_wait_only_for_a_result_not_yet_answered():
    answers = Answers()
    assert answers.wait("never-delivered", 0.0)
    answers.expect("l-1")
    assert not answers.wait("l-1", 0.01)
    answers.expect("l-2")
    threading.Timer(0.05, answers.answered, args=("l-2",)).start()
    assert answers.wait("l-2", 10)
    answers.answered("l-3")   # answered before anyone waits: no one is left waiting on it
    assert answers.wait("l-3", 0.0)


def test_a_stale_task_whose_preparation_failed_is_reported_not_dropped(pipeline, monkeypatch):
    slot, host, go, evaluated, discarded, prepare_gate = pipeline
    host.limit = 2
    prepare_gate["t2"] = threading.Event()
    prepared = slot_module.prepare_task

    def failing(context, task, fetch, cancel, mutators):
        if task.lease_id == "t2":
            prepare_gate["t2"].wait(10)
            return worker_pb2.Result(status=common_pb2.RESULT_STATUS_MUTATOR_ERROR, log_tail="the agent failed")
        return prepared(context, task, fetch, cancel, mutators)
    monkeypatch.setattr(slot_module, "prepare_task", failing)
    thread = _run(slot)
    wait_for(lambda: evaluated == ["t1"] and host.leases == 2, 10, what="t2 being prepared")
    slot.drop_stale(["t2"])
    prepare_gate["t2"].set()
    go.set()
    thread.join(10)
    assert host.delivered == ["t1", "t2"] and host.released == [], "a failure costs no evaluation: it is reported"
