"""A coordinator restarted in the middle of a claim's checks carries on as if it had never
stopped: a real coordinator process on loopback, killed (SIGKILL) and started again on the same
SQLite database, with two scripted workers of one hardware class speaking gRPC to it.

The case is the two-worker swarm of `autoswarm run examples/tinylm --workers 2`: a claim's only
possible verifier checks it, and its check, compared with nothing the claim was not compared
with, is stored waiting for the class's next run of the champion (`PendingClaim.waiting`). The
coordinator is killed then. Restarted, it must still know that the check is out: the verifier's
next task is that run of the champion (after which the check is judged), not a second check of
the same claim by the same worker. Nothing acknowledged before the kill is lost.
"""

from __future__ import annotations

import random
import re

import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from swarm import CoordinatorProcess, db_rows, wait_for, write_study

pytestmark = pytest.mark.integration

EXPLORE, VERIFY, BASELINE = common_pb2.TASK_KIND_EXPLORE, common_pb2.TASK_KIND_VERIFY, common_pb2.TASK_KIND_BASELINE


def _score(content: bytes) -> float:
    """What the study's target prints for these constants (see `swarm.write_study`)."""
    x = float(re.search(rb"X = ([-0-9.]+)", content).group(1))
    y = float(re.search(rb"Y = ([-0-9.]+)", content).group(1))
    return -(x - 2.5) ** 2 - (y - 7) ** 2


class ScriptedWorker:
    """A worker that measures what the target would print (plus a little noise) and makes its
    edits itself: one step of Y towards its optimum, or a small step of X."""

    def __init__(self, stub, name: str, rng: random.Random) -> None:
        self.stub, self.rng = stub, rng
        self.id = stub.Register(worker_pb2.RegisterRequest(
            name=name, slots=1, mutators=["params"], hardware=common_pb2.Hardware(cpu_model="Test CPU", cpu_cores=2)),
            timeout=10).worker_id
        self.task: worker_pb2.Task | None = None

    def lease(self) -> worker_pb2.Task | None:
        answer = self.stub.Lease(worker_pb2.LeaseRequest(worker_id=self.id, wait_seconds=0.2, state="idle"), timeout=30)
        self.task = answer.task if answer.has_task else None
        return self.task

    def report(self) -> tuple[worker_pb2.Task, worker_pb2.ReportResponse]:
        task, self.task = self.task, None
        assert task is not None
        if task.kind == EXPLORE:
            x, y = (float(v) for v in re.findall(rb"= ([-0-9.]+)", task.parent.content)[:2])
            if self.rng.random() < 0.5:
                y += 1
            else:
                x += self.rng.choice((-0.3, 0.3))
            candidate = f"X = {x:.2f}\nY = {y:.0f}\n".encode()
        else:
            candidate = b""
        measured = _score(candidate or task.candidate.content) + self.rng.gauss(0.0, 0.02)
        answer = self.stub.Report(worker_pb2.ReportRequest(worker_id=self.id, lease_id=task.lease_id, result=worker_pb2.Result(
            status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=measured, candidate=candidate,
            description="a scripted edit")), timeout=30)
        return task, answer


def _step(workers: list[ScriptedWorker], rng: random.Random) -> tuple[ScriptedWorker, worker_pb2.Task,
                                                                      worker_pb2.ReportResponse] | None:
    """One worker, drawn at random, reports the task it holds or leases one: the two workers'
    tasks overlap, as a real swarm's do."""
    worker = rng.choice(workers)
    if worker.task is None:
        worker.lease()
        return None
    return (worker, *worker.report())


def _claim_of(db, version: str) -> tuple[str, str]:
    (found,) = db_rows(db, "SELECT id, state FROM claims WHERE version=?", version)
    return found


def test_a_check_waiting_for_a_fresh_baseline_run_is_still_out_after_a_restart(tmp_path):
    coordinator = CoordinatorProcess(db=tmp_path / "swarm.db", log=tmp_path / "coordinator.log").start()
    try:
        with coordinator.control() as control:
            control.add_study(write_study(tmp_path / "study", acceptance='compare = "paired"\nquorum = 2'))
        rng = random.Random(1)
        channel, stub = coordinator.worker_stub()
        with channel:
            workers = [ScriptedWorker(stub, f"w{i}", random.Random(i)) for i in range(2)]
            waiting = None
            for _ in range(400):
                step = _step(workers, rng)
                if step is not None and step[1].kind == VERIFY and step[2].decision == "waiting":
                    waiting = step
                    break
            assert waiting is not None, "a check waited for the class's next run of the champion"
        verifier, check, _ = waiting
        claim, state = _claim_of(coordinator.db, check.candidate.hash)
        assert state == "pending"
        results = db_rows(coordinator.db, "SELECT id, decision FROM results ORDER BY id")
        champions = db_rows(coordinator.db, "SELECT seq, version, metric FROM champions ORDER BY seq")

        coordinator.kill()          # mid-claim: its check is stored, waiting
        coordinator.start()
        stored = db_rows(coordinator.db, "SELECT id, decision FROM results ORDER BY id")
        assert stored == results, "every acknowledged result is there, as it was"
        assert db_rows(coordinator.db, "SELECT seq, version, metric FROM champions ORDER BY seq") == champions

        channel, stub = coordinator.worker_stub()
        with channel:
            for worker in workers:
                worker.stub = stub
            # The verifier asks first (it holds nothing: it has just reported its check), then
            # on as before: each worker reports or leases, until the check is judged.
            for k in range(200):
                if k == 0:
                    verifier.lease()
                else:
                    _step(workers, rng)
                assert not any(w.task and w.task.kind == VERIFY and w.task.candidate.hash == check.candidate.hash
                               for w in workers), "a second check of the same claim: the restart forgot the one waiting"
                if db_rows(coordinator.db, "SELECT decision FROM results WHERE id=?", check.lease_id) != [("waiting",)]:
                    break
        # The class's next run of the champion judged the waiting check: its row says what it
        # showed, and the claim was decided on it, with no second check.
        assert db_rows(coordinator.db, "SELECT decision FROM results WHERE id=?", check.lease_id) == [("confirm",)]
        assert _claim_of(coordinator.db, check.candidate.hash) == (claim, "accepted")
        assert db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE claim=? AND kind='verify'", claim) == [(1,)]
        after = dict(db_rows(coordinator.db, "SELECT id, decision FROM results"))
        (claimant_result,) = db_rows(coordinator.db, "SELECT claimant_result FROM claims WHERE id=?", claim)[0]
        assert {rid: after.get(rid) for rid, _ in results} == \
            {**dict(results), check.lease_id: "confirm", claimant_result: "keep"}, \
            "nothing acknowledged before the kill was lost or changed since, but the claim's verdict"
    finally:
        coordinator.kill()
