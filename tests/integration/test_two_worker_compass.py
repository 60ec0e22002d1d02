"""Two real workers leasing explores of one champion at the same moment make different compass
steps (`autoswarm run examples/tinylm --workers 2` made `INIT_STD` ×2 twice, and the second
ended `stale-conflict`: half a round of a newcomer's ten minutes).

The champion's first measurement is the test's own (a scripted worker on the wire), reported
once both real workers wait idle: its report wakes both, and both lease an explore of it at
once. Each then runs the study's setup (two seconds, once per worker) before its edit, so
neither edit is announced, nor in the other's memory, when the other is leased. With one
constant preferred, compass search alone takes the same step on both; told its rank among the
explores still making their edit (`Task.edits_ahead`, `order_seed`), the second steps the next
constant.
"""

from __future__ import annotations

import sys

import pytest

from conftest import FAST_COORDINATOR
from swarm import db_rows, wait_for, write_study
from autoswarm.v1 import common_pb2, worker_pb2

pytestmark = pytest.mark.integration

SETUP_SECONDS = 2.0
COMPASS = f"""\
setup = "{sys.executable} -c 'import time; time.sleep({SETUP_SECONDS})'"
[mutator]
kind = "params"
search = "compass"
scale = 0.7
prefer = {{ X = "up" }}
"""


def test_two_explores_leased_at_once_step_different_constants(tmp_path, start_coordinator, start_worker):
    study = write_study(tmp_path / "study", timeout=20, acceptance='compare = "absolute"\nquorum = 1',
                        extra_toml=COMPASS)
    coordinator = start_coordinator(*FAST_COORDINATOR)
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=12)
    channel, stub = coordinator.worker_stub()
    scripted = stub.Register(worker_pb2.RegisterRequest(
        name="scripted", slots=1, mutators=["params"],
        hardware=common_pb2.Hardware(cpu_model="Scripted", cpu_cores=2)), timeout=10).worker_id
    first = stub.Lease(worker_pb2.LeaseRequest(worker_id=scripted, wait_seconds=5), timeout=10)
    assert first.has_task and first.task.kind == common_pb2.TASK_KIND_BASELINE
    workers = [start_worker(coordinator.address, name, "--sandbox", "none") for name in ("a", "b")]
    wait_for(lambda: sorted(w.name for w in coordinator.status().workers if w.state == "idle") == ["a", "b"],
             60, what="both workers waiting for work")
    stub.Report(worker_pb2.ReportRequest(worker_id=scripted, lease_id=first.task.lease_id, result=worker_pb2.Result(
        status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=-36.25)), timeout=10)

    initial = first.task.candidate.hash
    query = ("SELECT r.worker_name, r.description, l.issued FROM results r JOIN leases l ON l.id = r.id "
             "WHERE r.kind = 'explore' AND r.parent = ? ORDER BY l.issued")
    explores = wait_for(lambda: (rows := db_rows(coordinator.db, query, initial)) and
                        len({name for name, *_ in rows}) == 2 and rows, 90, what="an explore from each worker")
    for worker in workers:
        worker.stop()
    channel.close()
    firsts = {name: (description, issued) for name, description, issued in reversed(explores)}
    (a_edit, a_issued), (b_edit, b_issued) = firsts["a"], firsts["b"]
    # Leased together: each was leased before the other could have made (and announced) its edit.
    assert abs(a_issued - b_issued) < SETUP_SECONDS, explores
    assert a_edit.split(" ")[0] != b_edit.split(" ")[0], \
        f"two explores leased at once stepped the same constant: {a_edit!r} and {b_edit!r}"
    assert {a_edit.split(" ")[0], b_edit.split(" ")[0]} == {"X", "Y"}
