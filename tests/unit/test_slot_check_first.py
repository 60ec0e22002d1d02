"""A pipelined slot evaluates a check before the tasks it leased ahead of it (worker/slot.py).

The scheduler puts verifications first, but a slot holds two tasks: with two workers the one
leased ahead is an explore made before the merge it should check existed, and evaluated first
its edit, once kept, would supersede that merge unchecked. The check comes with the answer to
the result just delivered (`ReportRequest.next`), a moment after the evaluator is free, so the
evaluator waits for that lease, and for a check's preparation, before it picks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker import slot as slot_module
from autoswarm.worker.slot import PipelinedSlot
from swarm import wait_for


@dataclass
class _Prepared:
    task: worker_pb2.Task


@dataclass
class Host:
    """A worker as a slot sees it: tasks of the kinds in `kinds`, in order; the lease that rides
    on a delivered result's report (`carried`) comes back after `lease_delay` seconds."""

    kinds: list[int]
    carried: bool = True
    lease_delay: float = 0.3
    finishing: threading.Event = field(default_factory=threading.Event)
    leases: int = 0
    delivered: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    idle_poll: threading.Event | None = None   # set: when out of tasks, long-poll until it is set

    def gate_open(self) -> bool:
        return True

    def wait_for_gate(self) -> None:
        pass

    def lease_task(self, nothing_yet=None) -> worker_pb2.Task | None:
        if self.leases >= len(self.kinds):
            if self.idle_poll is not None:
                if nothing_yet is not None:
                    nothing_yet()        # the carried answer had no task: a long-poll follows
                self.idle_poll.wait(60)
            self.finishing.wait(0.05)
            return None
        if self.delivered:
            time.sleep(self.lease_delay)   # the report's round trip, which also leases
        self.leases += 1
        return worker_pb2.Task(lease_id=f"t{self.leases}", kind=self.kinds[self.leases - 1])

    def release(self, lease_ids: list[str]) -> None:
        self.released.extend(lease_ids)
        if len(self.delivered) + len(self.released) >= len(self.kinds):
            self.finishing.set()

    def track(self, slot: int, lease_id: str, cancel: threading.Event) -> None:
        pass

    def untrack(self, slot: int, lease_id: str) -> None:
        pass

    def deliver(self, lease_id: str, result: worker_pb2.Result) -> bool:
        self.delivered.append(lease_id)
        if len(self.delivered) + len(self.released) >= len(self.kinds):
            self.finishing.set()
        return self.carried

    def await_answer(self, lease_id: str) -> None:
        pass


@pytest.fixture
def slot_of(monkeypatch):
    """A slot of depth 2 over `Host(kinds)`: returns (slot, host, evaluated, gates), where an
    evaluation waits for `gates["go"]` and a preparation for `gates[lease id]` when set."""
    evaluated: list[str] = []
    gates: dict[str, threading.Event] = {"go": threading.Event()}

    def prepare(context, task, fetch, cancel, mutators):
        gate = gates.get(task.lease_id)
        if gate is not None:
            gate.wait(10)
        return _Prepared(task)

    def evaluate(context, prepared, cancel):
        evaluated.append(prepared.task.lease_id)
        gates["go"].wait(10)
        return worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=1.0)

    monkeypatch.setattr(slot_module, "PreparedTask", _Prepared)
    monkeypatch.setattr(slot_module, "prepare_task", prepare)
    monkeypatch.setattr(slot_module, "evaluate_prepared", evaluate)
    monkeypatch.setattr(slot_module, "discard_prepared", lambda context, prepared: None)

    def make(kinds: list[int], **options: object) -> tuple[PipelinedSlot, Host, list[str], dict[str, threading.Event]]:
        host = Host(kinds, **options)  # type: ignore[arg-type]
        slot = PipelinedSlot(0, None, host, lambda h, d: None, lambda: ("params",), depth=2)  # type: ignore[arg-type]
        return slot, host, evaluated, gates
    return make


EXPLORE, VERIFY, BASELINE = common_pb2.TASK_KIND_EXPLORE, common_pb2.TASK_KIND_VERIFY, common_pb2.TASK_KIND_BASELINE


def _run(slot: PipelinedSlot) -> threading.Thread:
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    return thread


def test_a_check_leased_with_the_report_goes_before_the_explore_leased_ahead(slot_of):
    slot, host, evaluated, gates = slot_of([BASELINE, EXPLORE, VERIFY, EXPLORE])
    thread = _run(slot)
    wait_for(lambda: host.leases == 2, 10, what="the explore leased ahead while the baseline runs")
    gates["go"].set()
    thread.join(20)
    assert not thread.is_alive()
    assert evaluated == ["t1", "t3", "t2", "t4"], "the check first, then the explore prepared before it"


def test_the_evaluator_waits_for_the_checks_preparation(slot_of):
    slot, host, evaluated, gates = slot_of([BASELINE, EXPLORE, VERIFY], lease_delay=0.0)
    gates["t3"] = threading.Event()   # the check's bundle is being fetched
    thread = _run(slot)
    wait_for(lambda: host.leases == 2, 10, what="the explore leased ahead")
    gates["go"].set()
    wait_for(lambda: host.leases == 3, 10, what="the check leased with the baseline's report")
    time.sleep(0.2)
    assert evaluated == ["t1"], "the explore waits while the check is prepared"
    gates["t3"].set()
    thread.join(20)
    assert not thread.is_alive() and evaluated == ["t1", "t3", "t2"]


def test_without_a_lease_riding_on_the_report_the_slot_goes_on_in_lease_order(slot_of):
    """A result sent on its own (no `next`: an older coordinator, or nothing leased after it):
    nothing is waited for, and tasks run as leased."""
    slot, host, evaluated, gates = slot_of([BASELINE, EXPLORE, EXPLORE], carried=False, lease_delay=0.0)
    thread = _run(slot)
    gates["go"].set()
    thread.join(20)
    assert not thread.is_alive() and evaluated == ["t1", "t2", "t3"]


def test_a_dropped_check_is_not_waited_for(slot_of):
    slot, host, evaluated, gates = slot_of([BASELINE, EXPLORE, VERIFY], lease_delay=0.0)
    gates["t3"] = threading.Event()
    thread = _run(slot)
    wait_for(lambda: host.leases == 2, 10, what="the explore leased ahead")
    gates["go"].set()
    wait_for(lambda: host.leases == 3, 10, what="the check leased")
    assert slot.drop_stale(["t3"]) == ["t3"]   # its claim was closed meanwhile (`staleness`)
    wait_for(lambda: evaluated == ["t1", "t2"], 5, what="the explore, without waiting out the bound")
    gates["t3"].set()
    thread.join(20)
    assert not thread.is_alive() and host.released == ["t3"]


def test_a_stopping_worker_finishes_the_check_it_runs_and_hands_back_what_it_leased_before(slot_of):
    slot, host, evaluated, gates = slot_of([BASELINE, EXPLORE, VERIFY], lease_delay=0.0)
    first = threading.Event()
    gates["go"] = first
    thread = _run(slot)
    wait_for(lambda: host.leases == 2, 10, what="the explore leased ahead")
    second = threading.Event()
    gates["go"] = second            # the check's evaluation waits on this one
    first.set()
    wait_for(lambda: evaluated == ["t1", "t3"], 10, what="the check evaluating before the explore")
    assert slot.stop_ahead() == ["t2"], "the explore leased before the check is ahead of it"
    host.finishing.set()
    second.set()
    thread.join(20)
    assert not thread.is_alive() and host.delivered == ["t1", "t3"] and host.released == ["t2"]


def test_a_long_poll_with_nothing_does_not_hold_up_the_task_leased_ahead(slot_of, monkeypatch):
    """The report a result rode on brought no task (the budget is spent, or nothing is owed):
    the lease call long-polls on, for up to minutes, and the task already prepared starts at
    once instead of waiting for a check that is not coming (the quickstart's last evaluation
    stood 10 s)."""
    monkeypatch.setattr(slot_module, "CHECK_WAIT_SECONDS", 3600.0)   # only the hook can end the wait
    slot, host, evaluated, gates = slot_of([BASELINE, EXPLORE], idle_poll=threading.Event())
    thread = _run(slot)
    wait_for(lambda: host.leases == 2, 10, what="the explore leased ahead while the baseline runs")
    gates["go"].set()
    wait_for(lambda: evaluated == ["t1", "t2"], 30, what="the explore started while the lease call long-polls")
    host.idle_poll.set()
    thread.join(20)
    assert not thread.is_alive()
