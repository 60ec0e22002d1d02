"""Bad input over the wire: each gets a status code or an idempotent answer, and changes nothing."""

from __future__ import annotations

import math
import sqlite3

import grpc
import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from swarm import wait_for, write_study

pytestmark = pytest.mark.integration


def _count(db, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _snapshot(db) -> tuple[int, int, int, int]:
    return (_count(db, "SELECT COUNT(*) FROM results"), _count(db, "SELECT COUNT(*) FROM champions"),
            _count(db, "SELECT COUNT(*) FROM versions"), _count(db, "SELECT COUNT(*) FROM leases WHERE state='active'"))


@pytest.fixture
def scripted(tmp_path, start_coordinator):
    """A coordinator with one study and a hand-driven worker holding one baseline lease."""
    coordinator = start_coordinator("--lease-factor", "1", "--lease-grace", "1", "--max-message-bytes", "1048576",
                                    "--max-target-bytes", "65536")
    with coordinator.control() as control:
        # Leases last timeout × 1 + 1 s grace: 6 s, room for a loaded machine between a lease and its report.
        control.add_study(write_study(tmp_path / "study", timeout=5))
    channel, stub = coordinator.worker_stub()
    worker_id = stub.Register(worker_pb2.RegisterRequest(
        name="scripted", slots=4, mutators=["params"],
        hardware=common_pb2.Hardware(cpu_model="Test CPU", cpu_cores=2))).worker_id
    yield coordinator, stub, worker_id
    channel.close()


def _report(stub, worker_id, lease_id, **result):
    return stub.Report(worker_pb2.ReportRequest(worker_id=worker_id, lease_id=lease_id,
                                                result=worker_pb2.Result(**result)), timeout=10)


def _lease(stub, worker_id):
    response = stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=5), timeout=10)
    assert response.has_task
    return response.task


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_report_for_unknown_lease_is_not_found(scripted):
    coordinator, stub, worker_id = scripted
    before = _snapshot(coordinator.db)
    assert _code(lambda: _report(stub, worker_id, "l-doesnotexist", status=common_pb2.RESULT_STATUS_OK,
                                 has_metric=True, metric=1.0)) == grpc.StatusCode.NOT_FOUND
    assert _snapshot(coordinator.db) == before


def test_report_with_nan_metric_is_invalid_and_changes_nothing(scripted):
    coordinator, stub, worker_id = scripted
    task = _lease(stub, worker_id)
    before = _snapshot(coordinator.db)
    for bad in (math.nan, math.inf, -math.inf):
        assert _code(lambda: _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK,
                                     has_metric=True, metric=bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK)) \
        == grpc.StatusCode.INVALID_ARGUMENT, "ok without a metric"
    assert _snapshot(coordinator.db) == before
    # The lease is still usable: a correct report goes through afterwards.
    assert _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK, has_metric=True,
                   metric=-18.25).decision == "baseline"


def test_second_report_for_the_same_lease_gets_the_first_answer(scripted):
    coordinator, stub, worker_id = scripted
    task = _lease(stub, worker_id)
    first = _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=-18.25)
    after_first = _snapshot(coordinator.db)
    # A repeat, even with a different (better) metric, changes nothing and says it is a duplicate.
    second = _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=99.0)
    assert not first.duplicate and second.duplicate
    assert (second.result_id, second.decision) == (first.result_id, first.decision)
    assert _snapshot(coordinator.db) == after_first
    assert coordinator.study("tiny").champion_metric == -18.25


def test_report_for_an_expired_lease_is_refused(scripted):
    coordinator, stub, worker_id = scripted
    task = _lease(stub, worker_id)
    # Lease lifetime is timeout (5 s) × 1 + 1 s grace; no heartbeat is sent.
    wait_for(lambda: _count(coordinator.db, "SELECT COUNT(*) FROM leases WHERE state='expired'") == 1, 30,
             what="lease expiry")
    before = _snapshot(coordinator.db)
    assert _code(lambda: _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK,
                                 has_metric=True, metric=1.0)) == grpc.StatusCode.FAILED_PRECONDITION
    assert _snapshot(coordinator.db) == before
    # ...and the work is handed out again.
    again = _lease(stub, worker_id)
    assert again.kind == common_pb2.TASK_KIND_BASELINE and again.lease_id != task.lease_id


def test_another_workers_lease_is_permission_denied(scripted):
    coordinator, stub, worker_id = scripted
    task = _lease(stub, worker_id)
    intruder = stub.Register(worker_pb2.RegisterRequest(name="intruder", slots=1, mutators=["params"])).worker_id
    before = _snapshot(coordinator.db)
    assert _code(lambda: _report(stub, intruder, task.lease_id, status=common_pb2.RESULT_STATUS_OK,
                                 has_metric=True, metric=1.0)) == grpc.StatusCode.PERMISSION_DENIED
    assert _snapshot(coordinator.db) == before


def test_oversized_payloads_are_refused(scripted):
    coordinator, stub, worker_id = scripted
    task = _lease(stub, worker_id)
    _report(stub, worker_id, task.lease_id, status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=-18.25)
    explore = _lease(stub, worker_id)
    assert explore.kind == common_pb2.TASK_KIND_EXPLORE
    before = _snapshot(coordinator.db)
    # Over the message cap (1 MiB): refused by gRPC itself.
    assert _code(lambda: _report(stub, worker_id, explore.lease_id, status=common_pb2.RESULT_STATUS_OK,
                                 has_metric=True, metric=0.0, candidate=b"x" * (2 << 20))) \
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under the message cap but over the target cap (64 KiB).
    assert _code(lambda: _report(stub, worker_id, explore.lease_id, status=common_pb2.RESULT_STATUS_OK,
                                 has_metric=True, metric=0.0, candidate=b"x" * (100 << 10))) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert _snapshot(coordinator.db) == before
    assert coordinator.proc.poll() is None, "the coordinator is still running"


def test_unknown_worker_and_bad_registration_are_refused(scripted):
    coordinator, stub, _ = scripted
    assert _code(lambda: stub.Lease(worker_pb2.LeaseRequest(worker_id="w-nobody", wait_seconds=0), timeout=5)) \
        == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.Register(worker_pb2.RegisterRequest(name="", slots=1), timeout=5)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: stub.Register(worker_pb2.RegisterRequest(name="x", slots=0), timeout=5)) \
        == grpc.StatusCode.INVALID_ARGUMENT
