"""Where a slot's time goes (autoswarm/slot_time.py) and the lease cap of pipelined workers."""

from __future__ import annotations

import math

from autoswarm.coordinator import scheduler
from autoswarm.coordinator.service import slot_times_in
from autoswarm.slot_time import SlotClock, SlotTime
from autoswarm.v1 import common_pb2
from swarm import Clock


def test_an_edit_prepared_during_an_evaluation_is_not_time_the_slot_waits_for_its_agent():
    clock = Clock(100.0)
    slot = SlotClock(0, clock)
    clock.now += 2          # waiting for the first task
    slot.preparing(True)
    clock.now += 1          # the first edit: the device idles behind the agent
    slot.preparing(False)
    slot.evaluating(True)
    slot.preparing(True)    # the next edit is made while the first is evaluated
    clock.now += 5
    slot.preparing(False)
    clock.now += 5
    slot.evaluating(False)
    t = slot.read()
    assert (t.waiting, t.mutating, t.evaluating) == (2, 1, 10)
    assert t.share("evaluating") == 10 / 13
    assert t.describe() == "evaluating 77%, mutating 8%, waiting 15%"


def test_shares_before_any_time_passed_are_zero():
    assert SlotTime(3).share("evaluating") == 0.0


def _worker(running: int, pipelined: bool) -> scheduler.WorkerView:
    return scheduler.WorkerView("w", frozenset({"params"}), running, slots=2, pipelined=pipelined)


def _study() -> scheduler.StudyView:
    return scheduler.StudyView("s", "params", paired=False, champion_measured=True, baseline_in_flight=0,
                               in_flight=0, evaluations=0, max_evaluations=0)


def test_a_pipelined_worker_may_hold_one_task_ahead_per_slot_and_no_more():
    assert scheduler.choose_task([_study()], _worker(2, pipelined=False)) is None
    assert scheduler.choose_task([_study()], _worker(3, pipelined=True)).kind == scheduler.EXPLORE
    assert scheduler.choose_task([_study()], _worker(4, pipelined=True)) is None


def test_slot_times_from_the_network_that_are_not_finite_or_negative_count_as_zero():
    messages = [common_pb2.SlotTime(slot=0, evaluating_seconds=math.nan, mutating_seconds=-5, waiting_seconds=3)]
    assert slot_times_in(messages) == [SlotTime(0, 0.0, 0.0, 3.0)]
