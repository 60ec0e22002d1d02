"""One call per task (`ReportRequest.next`) and idle long-polls woken when work appears,
between real coordinator and worker processes on loopback."""

from __future__ import annotations

import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from conftest import FAST_COORDINATOR
from swarm import CoordinatorProcess, db_rows, free_port, wait_for, write_study

pytestmark = pytest.mark.integration


def rpc_counts(coordinator: CoordinatorProcess) -> dict[str, float]:
    """Calls answered OK so far, by method, from the coordinator's own metrics."""
    text = urllib.request.urlopen(coordinator.metrics_url, timeout=10).read().decode()
    counts: dict[str, float] = {}
    for labels, value in re.findall(r'^autoswarm_rpc_duration_seconds_count\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("grpc_code") == "OK":
            counts[found["grpc_method"]] = counts.get(found["grpc_method"], 0.0) + float(value)
    return counts


def register(stub, name: str, mutators: list[str], cpu: str = "Test CPU") -> str:
    return stub.Register(worker_pb2.RegisterRequest(
        name=name, slots=1, mutators=mutators, hardware=common_pb2.Hardware(cpu_model=cpu, cpu_cores=2)),
        timeout=10).worker_id


def ok_result(metric: float) -> worker_pb2.Result:
    return worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=metric,
                             candidate=b"X = 1.0\nY = 3\n", description="test")


@pytest.fixture
def coordinator(tmp_path):
    proc = CoordinatorProcess(db=tmp_path / "swarm.db", log=tmp_path / "coordinator.log",
                              args=FAST_COORDINATOR, metrics_port=free_port())
    proc.start()
    yield proc
    proc.kill()


def test_a_worker_reports_and_leases_in_one_call_and_every_result_is_recorded(tmp_path, coordinator, start_worker):
    evaluations = 16
    # No edit improves (a constant score): every result is a plain one, none opens a claim
    # that a lone worker could not verify itself.
    flat = "import time\ntime.sleep(0.3)\nprint('score: 1.0')\n"
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", body=flat), max_evaluations=evaluations)
    worker = start_worker(coordinator.address, "solo")   # pipelined: it leases one task ahead

    def results() -> int:
        return db_rows(coordinator.db, "SELECT COUNT(*) FROM results")[0][0]

    # Counted halfway, before the budget's tail: there a report's `next` finds nothing and the
    # worker long-polls Lease, as often as the polls end, until the study is done.
    wait_for(lambda: results() >= evaluations // 2, 90, what="half the evaluations")
    halfway = rpc_counts(coordinator)
    # Report + Lease would be one Lease per result; here the first task and the one leased
    # ahead while it ran come from Lease (a poll or two while the first baseline runs), every
    # later one with the report before it.
    assert halfway.get("Lease", 0) <= 4 < evaluations // 2, halfway
    wait_for(lambda: coordinator.study("tiny").done, 90, what="the study to finish")
    recorded = results()
    assert recorded >= evaluations
    assert rpc_counts(coordinator).get("Report", 0) >= recorded
    worker.stop()
    assert not list((worker.state_dir / "outbox").glob("*.msgpack")), "nothing left unsent"
    assert not (worker.state_dir / "rejected").exists()


def test_a_report_without_next_is_answered_as_before_and_one_with_next_leases(tmp_path, coordinator):
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study"), max_evaluations=5)
    channel, stub = coordinator.worker_stub()
    with channel:
        old = register(stub, "old", ["params"])
        first = stub.Lease(worker_pb2.LeaseRequest(worker_id=old, wait_seconds=5), timeout=30)
        assert first.has_task
        answer = stub.Report(worker_pb2.ReportRequest(worker_id=old, lease_id=first.task.lease_id,
                                                      result=ok_result(-20.0)), timeout=30)
        assert answer.result_id and not answer.HasField("next"), "an older worker hears only the report"

        new = register(stub, "new", ["params"])
        lease = stub.Lease(worker_pb2.LeaseRequest(worker_id=new, wait_seconds=5), timeout=30).task
        answer = stub.Report(worker_pb2.ReportRequest(
            worker_id=new, lease_id=lease.lease_id, result=ok_result(-20.0),
            next=worker_pb2.LeaseRequest(worker_id=new, wait_seconds=60)), timeout=30)
        assert answer.result_id and not answer.duplicate
        assert answer.HasField("next") and answer.next.has_task
        assert answer.next.task.lease_id != lease.lease_id
        assert answer.next.heartbeat_interval_seconds > 0 and answer.next.lease_wait_seconds > 0
        active = db_rows(coordinator.db, "SELECT worker_id, state FROM leases WHERE id=?", answer.next.task.lease_id)
        assert active == [(new, "active")], "the next lease is on disk before the answer"
        # Still idempotent per lease: a repeat is told so, and changes nothing.
        again = stub.Report(worker_pb2.ReportRequest(worker_id=new, lease_id=lease.lease_id,
                                                     result=ok_result(-20.0)), timeout=30)
        assert again.duplicate and again.result_id == answer.result_id

        # Until the budget is spent: then the answer says "no task" at once (a report is never
        # held for work, whatever wait_seconds asks; a held call would pass its 20 s deadline).
        for _ in range(10):
            lease = answer.next.task
            answer = stub.Report(worker_pb2.ReportRequest(
                worker_id=new, lease_id=lease.lease_id, result=ok_result(-20.0),
                next=worker_pb2.LeaseRequest(worker_id=new, wait_seconds=60)), timeout=20)
            assert answer.result_id and answer.HasField("next")
            if not answer.next.has_task:
                break
        assert not answer.next.has_task and answer.next.lease_wait_seconds > 0
        assert db_rows(coordinator.db, "SELECT COUNT(*) FROM leases WHERE state='active'") == [(0,)]
        assert db_rows(coordinator.db, "SELECT COUNT(*) FROM results") == [(5,)]
        assert coordinator.study("tiny").done


def test_an_idle_worker_is_woken_at_once_when_work_it_can_do_appears_among_many_waiters(tmp_path, coordinator):
    """40 idle workers that can run nothing here wait longer than this one; work it can do
    (a paused study resumed) still reaches it at once, not when its long-poll runs out."""
    channel, stub = coordinator.worker_stub()
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study"))
    with channel, ThreadPoolExecutor(max_workers=48) as pool:
        wanted = register(stub, "wanted", ["params"])
        # It measures the initial version first, so that only explore work (params) is left.
        for _ in range(10):
            task = stub.Lease(worker_pb2.LeaseRequest(worker_id=wanted, wait_seconds=5), timeout=30).task
            if task.kind == common_pb2.TASK_KIND_EXPLORE:
                stub.Release(worker_pb2.ReleaseRequest(worker_id=wanted, lease_ids=[task.lease_id]), timeout=10)
                break
            stub.Report(worker_pb2.ReportRequest(worker_id=wanted, lease_id=task.lease_id,
                                                 result=ok_result(-20.0)), timeout=30)
        assert task.kind == common_pb2.TASK_KIND_EXPLORE
        with coordinator.control() as control:
            control.change_study("tiny", action="pause")
        bystanders = [register(stub, f"bystander-{i}", ["none"], cpu="Other CPU") for i in range(40)]
        polls = [pool.submit(stub.Lease, worker_pb2.LeaseRequest(worker_id=b, wait_seconds=45, state="idle"),
                             timeout=75) for b in bystanders]
        time.sleep(1.0)   # the bystanders wait first, so they are the longest waiting
        t0 = time.monotonic()
        poll = pool.submit(stub.Lease, worker_pb2.LeaseRequest(worker_id=wanted, wait_seconds=45, state="idle"),
                           timeout=90)
        time.sleep(1.0)
        assert not poll.done(), "paused: nothing to do yet"
        with coordinator.control() as control:
            control.change_study("tiny", action="resume")
        answer = poll.result(timeout=90)
        waited = time.monotonic() - t0
        assert answer.has_task and answer.task.kind == common_pb2.TASK_KIND_EXPLORE, "the poll ended with work"
        assert waited < 20, f"woken by the resumed study, not at the end of its 45 s poll ({waited:.0f} s)"
        for p in polls:   # the others had nothing they could do, and still have not
            try:
                assert not p.result(timeout=90).has_task
            except grpc.RpcError as exc:
                pytest.fail(f"a bystander's poll failed: {exc.code().name}")
