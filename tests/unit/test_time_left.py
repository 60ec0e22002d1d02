"""Calls near their deadline: held no longer than they can be answered, and given no task that
would reach nobody (coordinator/time_left.py), tested alone and through the servicer."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.service import ChangeSignal, WorkerService
from autoswarm.coordinator.store import Store
from autoswarm.coordinator.time_left import DeadlinePolicy
from autoswarm.v1 import common_pb2, worker_pb2
from swarm import Clock, write_study

HARDWARE = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
POLICY = DeadlinePolicy()


@given(asked=st.floats(-10, 1e4), left=st.one_of(st.none(), st.floats(0, 1e4)))
def test_a_hold_is_what_was_asked_or_ends_before_the_deadline_or_is_none(asked, left):
    hold = POLICY.hold(asked, left)
    assert 0.0 <= hold <= min(max(asked, 0.0), POLICY.max_wait)
    if left is not None and hold > 0:
        assert hold <= left - min(POLICY.margin, left * POLICY.margin_share), "the empty answer has time to arrive"
    if hold < min(max(asked, 0.0), POLICY.max_wait):
        assert hold == 0.0 or hold >= POLICY.min_hold, "cut by the deadline: worth holding, or answered at once"


def test_a_poll_with_room_is_held_as_asked_and_a_late_one_is_answered_at_once():
    # A real worker's poll: 300 s asked, deadline 315 s; it reached its handler 2 s late.
    assert POLICY.hold(300, 313) == 300
    # It waited 280 s on its way in: held to 5 s before its deadline.
    assert POLICY.hold(300, 35) == 30
    # 1.1 s left: a hold of under a second would only make it come back later; answer now.
    assert POLICY.hold(300, 1.1) == 0.0
    assert POLICY.hold(300, 0.0) == 0.0
    assert POLICY.hold(300, None) == 300 and POLICY.hold(1e6, None) == POLICY.max_wait
    # A short poll asked with plenty of room keeps its own length, however short.
    assert POLICY.hold(0.5, 15) == 0.5


def test_no_task_for_a_call_whose_deadline_is_nearly_past():
    assert POLICY.may_hand_out(None) and POLICY.may_hand_out(30.0) and POLICY.may_hand_out(POLICY.task_margin)
    assert not POLICY.may_hand_out(POLICY.task_margin / 2) and not POLICY.may_hand_out(0.0)


class _Context:
    """The parts of a grpc.aio servicer context the Lease and Report handlers read."""

    def __init__(self, left: float) -> None:
        self.left = left

    def time_remaining(self) -> float:
        return self.left

    def done(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    async def abort(self, code, details: str) -> None:
        raise AssertionError(f"the call was refused: {code} {details}")


def _service(tmp_path) -> tuple[WorkerService, Engine, str]:
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=2.0, lease_grace=30.0), clock=Clock())
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=300)).data)
    worker, _ = engine.register("", "alpha", HARDWARE, 1, ["params"])
    return WorkerService(engine, ChangeSignal()), engine, worker


def test_a_lease_call_arriving_at_its_deadline_is_told_to_come_back_and_the_task_stays_free(tmp_path):
    service, engine, worker = _service(tmp_path)
    request = worker_pb2.LeaseRequest(worker_id=worker, wait_seconds=300, state="idle")
    late = asyncio.run(service.Lease(request, _Context(left=0.3)))
    assert not late.has_task, "its answer would reach nobody: no task for it"
    assert late.lease_wait_seconds > 0 and late.heartbeat_interval_seconds > 0, "told when to come back"
    assert not engine.leasing.running.get(worker), "nothing leased in its name"
    # The same worker, calling again in time, gets the task at once.
    again = asyncio.run(service.Lease(request, _Context(left=315.0)))
    assert again.has_task


def test_a_report_arriving_at_its_deadline_is_recorded_but_leases_no_next_task(tmp_path):
    service, engine, worker = _service(tmp_path)
    task = engine.lease(worker)

    def report(lease_id: str, left: float, candidate: bytes = b"") -> worker_pb2.ReportResponse:
        request = worker_pb2.ReportRequest(worker_id=worker, lease_id=lease_id, result=worker_pb2.Result(
            status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=1.0, candidate=candidate))
        request.next.worker_id = worker
        return asyncio.run(service.Report(request, _Context(left)))

    in_time = report(task.lease_id, left=30.0)
    assert in_time.result_id and in_time.next.has_task, "with time left, the report leases the next task"
    late = report(in_time.next.task.lease_id, left=0.2, candidate=b"X = 2.0\nY = 3\n")
    assert late.result_id, "the result is recorded all the same"
    assert late.HasField("next") and not late.next.has_task, "no next task the worker would never hear of"
    assert not engine.leasing.running.get(worker), "nothing leased in its name"
