"""The pure parts of "one call per task" and of waking idle long-polls, tested alone."""

from __future__ import annotations

import asyncio
from concurrent import futures
from pathlib import Path

import grpc
from hypothesis import given
from hypothesis import strategies as st

from autoswarm.coordinator.judging import Judgement
from autoswarm.coordinator.liveness import LivenessPolicy
from autoswarm.coordinator.reporting import may_create_work
from autoswarm.coordinator.service import MAX_LEASE_WAIT_SECONDS, ChangeSignal, hold_seconds
from autoswarm.coordinator.store import ResultRecord
from autoswarm.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from autoswarm.worker.carry import CarriedReports
from autoswarm.worker.connection import Connection
from autoswarm.worker.outbox import Outbox
from autoswarm.worker.reporting import Reporter


@given(asked=st.floats(-10, 1e4), left=st.one_of(st.none(), st.floats(0, 1e4)))
def test_a_long_poll_is_held_no_longer_than_asked_and_ends_before_the_callers_deadline(asked, left):
    hold = hold_seconds(asked, left)
    assert 0.0 <= hold <= min(max(asked, 0.0), MAX_LEASE_WAIT_SECONDS)
    if left is not None:
        assert hold <= left * 0.8 or hold <= left - 5.0, "an empty answer still reaches the worker in time"
    if left is None or left > asked + 5:
        assert hold == min(max(asked, 0.0), MAX_LEASE_WAIT_SECONDS), "a deadline with room does not shorten it"


def test_idle_long_polls_grow_with_the_swarm_up_to_a_quiet_links_limit():
    policy = LivenessPolicy()
    assert policy.poll_seconds(1_000) == policy.min_poll
    assert policy.poll_seconds(20_000) == 100.0
    assert policy.poll_seconds(100_000) == policy.max_poll == policy.max_interval
    # Idle workers together start at most poll_budget polls a second however big the swarm.
    for connected in (10_000, 60_000, 100_000, 1_000_000):
        assert connected / policy.poll_seconds(connected) <= max(policy.poll_budget, connected / policy.max_poll)


def test_a_change_reaches_a_waiter_of_every_kind_however_many_of_another_kind_wait():
    async def scenario() -> tuple[list[bool], bool, list[bool]]:
        signal = ChangeSignal(fanout=2, wake_all_below=4)
        crowd = [asyncio.create_task(signal.wait(0.3, group="gpu-less")) for _ in range(20)]
        await asyncio.sleep(0)
        lone = asyncio.create_task(signal.wait(5.0, group="gpu"))
        await asyncio.sleep(0)
        assert len(signal) == 21
        signal.notify()
        woken_lone = await lone
        crowd_woken = await asyncio.gather(*crowd)
        # A waiter that found work passes it on within its own group only.
        again = [asyncio.create_task(signal.wait(0.2, group=g)) for g in ("a", "a", "b")]
        await asyncio.sleep(0)
        signal.notify(1, "a")
        return crowd_woken, woken_lone, await asyncio.gather(*again)
    crowd, lone, again = asyncio.run(scenario())
    assert lone, "the only waiter of its kind is woken"
    assert sum(crowd) == 2 and crowd[:2] == [True, True], "two of the crowd, longest waiting first"
    assert again == [True, False, False]


def _record(status: str = "ok", kind: str = "explore") -> ResultRecord:
    return ResultRecord(id="l-1", study="s", worker_id="w", worker_name="w", hardware_class="c", kind=kind,
                        version="v", parent="p", status=status, metric=1.0, extra={}, decision="discard",
                        description="", log_tail="", timings={}, created=0.0)


def test_only_a_report_that_may_make_work_for_others_wakes_waiting_polls():
    plain = Judgement(_record())
    assert not may_create_work("explore", "ok", plain), "a plain explore result: the reporter leases on"
    assert may_create_work("baseline", "ok", plain), "a baseline's place is free"
    assert may_create_work("verify", "ok", plain), "a verification's place is free"
    assert may_create_work("explore", "duplicate", plain), "not counted against the budget"
    assert may_create_work("explore", "setup-failed", plain)
    assert may_create_work("explore", "ok", Judgement(_record(), waits=True)), "its class needs a baseline"
    assert may_create_work("explore", "ok", Judgement(_record(), credits=["w2"]))
    assert may_create_work("explore", "ok", Judgement(_record(), decisions=[("l-0", "keep")]))


class _OlderCoordinator(worker_pb2_grpc.WorkerServiceServicer):
    """Answers reports as a coordinator from before `ReportRequest.next` did: never `next`."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def Report(self, request, context):
        self.reports.append(request.lease_id)
        return worker_pb2.ReportResponse(result_id=request.lease_id, decision="discard")


def test_a_worker_goes_back_to_report_and_lease_when_its_coordinator_is_older(tmp_path: Path):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    older = _OlderCoordinator()
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(older, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    connection = Connection(f"127.0.0.1:{port}")
    try:
        outbox = Outbox(tmp_path / "outbox")
        carried = CarriedReports(connection, Reporter(outbox, tmp_path / "rejected", connection, lambda: "w-1"),
                                 lambda: "w-1")
        result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=1.0)
        carried.keep("l-1", result, lease_follows=True)
        assert [e.lease_id for e in outbox.pending()] == ["l-1"], "on disk before anything is sent"
        assert carried.report_and_lease(worker_pb2.LeaseRequest(worker_id="w-1")) is None, "then lease as before"
        assert older.reports == ["l-1"] and not outbox.pending(), "the report itself arrived"
        assert not carried.supported
        carried.keep("l-2", result, lease_follows=True)
        assert len(carried) == 0, "from now on results go the old way, through the outbox thread"
        assert [e.lease_id for e in outbox.pending()] == ["l-2"]
    finally:
        connection.close()
        server.stop(None)


def test_a_carried_result_the_coordinator_cannot_take_goes_to_the_outbox_thread(tmp_path: Path):
    connection = Connection(f"127.0.0.1:{_closed_port()}")
    try:
        outbox = Outbox(tmp_path / "outbox")
        carried = CarriedReports(connection, Reporter(outbox, tmp_path / "rejected", connection, lambda: "w-1"),
                                 lambda: "w-1")
        carried.keep("l-1", worker_pb2.Result(status=common_pb2.RESULT_STATUS_CRASH), lease_follows=True)
        assert carried.report_and_lease(worker_pb2.LeaseRequest(worker_id="w-1")) is None
        assert carried.supported, "unreachable is not older"
        assert [e.lease_id for e in outbox.pending()] == ["l-1"], "kept for the outbox thread to resend"
        assert len(carried) == 0
    finally:
        connection.close()


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
