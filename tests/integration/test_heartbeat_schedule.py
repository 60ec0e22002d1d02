"""Heartbeats that follow the work and the swarm's size, between real processes on loopback."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from swarm import wait_for, write_study

pytestmark = pytest.mark.integration

# A lease lives timeout (6 s) × 1 + 1 s past each heartbeat: 7 s. The swarm may send one
# heartbeat a second, so every worker that joins stretches everyone's interval.
TTL = 7.0
COORDINATOR = ("--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5",
               "--heartbeat-budget", "1", "--worker-rate", "0")
INTERVAL = re.compile(r"heartbeat every ([0-9.]+) s")


def intervals(log: str) -> list[float]:
    """The heartbeat intervals a worker was told, in order (it logs each change)."""
    return [float(x) for x in INTERVAL.findall(log)]


def _rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def test_a_worker_told_a_longer_interval_that_vanishes_still_loses_its_lease_in_time(
        tmp_path, start_coordinator, start_worker):
    study = write_study(tmp_path / "study", sleep=5.0, timeout=6)
    coordinator = start_coordinator(*COORDINATOR)
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=1)
    doomed = start_worker(coordinator.address, "doomed")
    wait_for(lambda: coordinator.study("tiny").in_flight == 1, 30, what="the first lease")
    # A 7 s lease in a swarm of one: a few seconds, neither the shortest (0.5 s) nor an idle worker's.
    first = wait_for(lambda: (told := intervals(doomed.log)) and 0.5 < told[-1] <= TTL / 2 and told[-1], 30,
                     what="the interval that came with the lease")

    # The swarm grows mid-run: ten more workers join, so the coordinator spreads heartbeats out.
    channel, stub = coordinator.worker_stub()
    with channel:
        for i in range(10):
            stub.Register(worker_pb2.RegisterRequest(name=f"bystander-{i}", slots=1, mutators=["none"],
                                                     hardware=common_pb2.Hardware(cpu_model="Idle", cpu_cores=1)),
                          timeout=10)
    raised = wait_for(lambda: (told := intervals(doomed.log)) and told[-1] > first * 1.2 and told[-1], 30,
                      what="a longer interval in a heartbeat's answer")
    assert raised <= TTL / 2, "never so long that the lease could lapse between two heartbeats"

    doomed.kill()
    killed = time.time()
    (lost_lease, candidate, deadline), = _rows(coordinator.db, "SELECT id, candidate, deadline FROM leases "
                                                               "WHERE state='active'")
    assert deadline <= killed + TTL + 0.5, "the lease ends one lifetime after the last heartbeat at most"

    start_worker(coordinator.address, "rescuer")
    wait_for(lambda: (s := coordinator.study("tiny")).done and s, 60, what="the study to finish")
    (state, closed), = _rows(coordinator.db, "SELECT state, closed FROM leases WHERE id=?", lost_lease)
    assert state == "expired" and closed <= deadline + 3.0, "expired once its deadline passed"
    reissued = _rows(coordinator.db, "SELECT state FROM leases WHERE kind='baseline' AND candidate=? AND id != ?",
                     candidate, lost_lease)
    assert reissued == [("reported",)], "the lost task was handed out again and completed"
    assert _rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE id=?", lost_lease) == [(0,)]
