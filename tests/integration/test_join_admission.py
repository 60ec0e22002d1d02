"""Join admission with real processes on loopback: a coordinator that admits few joins a second
tells the rest of a crowd of workers when to come back; they do, and all of them work."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import FAST_COORDINATOR
from swarm import db_rows, wait_for, write_study

pytestmark = pytest.mark.integration

# Half a join a second with a burst of two: five workers starting together cannot all get in at once.
SLOW_JOINS = (*FAST_COORDINATOR, "--join-rate", "0.5")
NAMES = ("alpha", "beta", "gamma", "delta", "epsilon")
TOLD = "the coordinator asks to come back later"


def _crowd(tmp_path, start_coordinator, start_worker, sleep: float):
    """A coordinator admitting half a join a second, a study of 40 evaluations, five workers at once."""
    study = write_study(tmp_path / "study", sleep=sleep, timeout=20)
    coordinator = start_coordinator(*SLOW_JOINS)
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=40)
    return coordinator, [start_worker(coordinator.address, name) for name in NAMES]


def test_workers_past_the_join_rate_are_told_to_come_back_and_all_end_up_working(
        tmp_path, start_coordinator, start_worker):
    coordinator, workers = _crowd(tmp_path, start_coordinator, start_worker, sleep=1.0)

    wait_for(lambda: all("registered as" in w.log for w in workers), 90, what="every worker to register")
    told = [w.name for w in workers if TOLD in w.log]
    assert told, "five joins at once past half a join a second: some were told to come back"
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 120, what="study to finish")

    with coordinator.control() as control:
        history = control.history("tiny")
    assert {row.worker for row in history.rows} == set(NAMES), "every worker, admitted late or not, worked"
    assert len({row.result_id for row in history.rows}) == len(history.rows), "every result appears once"
    evaluated = db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE status != 'duplicate'")
    assert status.evaluations == 40 and evaluated == [(40,)], "the whole budget was used, nothing lost"
    assert db_rows(coordinator.db, "SELECT COUNT(*) FROM leases WHERE state='active'") == [(0,)]
    assert db_rows(coordinator.db, "SELECT COUNT(*) FROM workers") == [(len(NAMES),)], \
        "a worker told to come back registered once, not once per try"
    for w in workers:
        assert w.proc.poll() is None, "no worker gave up"


def test_after_a_restart_the_swarm_reconnects_through_admission_and_loses_nothing(
        tmp_path, start_coordinator, start_worker):
    coordinator, workers = _crowd(tmp_path, start_coordinator, start_worker, sleep=0.5)
    # The whole swarm in before the restart (on a fast machine ten evaluations came before the
    # last admission, and the study then finished before that worker was first let in).
    wait_for(lambda: all("registered as" in w.log for w in workers), 90, what="every worker to register")
    wait_for(lambda: coordinator.study("tiny").evaluations >= 10, 120, what="the swarm at work")

    coordinator.kill()
    results_before = db_rows(coordinator.db, "SELECT id, decision, metric FROM results")
    coordinator.start()  # same db, same port, same join rate: every worker comes back at once
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 150, what="study to finish after restart")

    results_after = db_rows(coordinator.db, "SELECT id, decision, metric FROM results")
    assert set(results_before) <= set(results_after), "no acknowledged result was lost"
    assert all(n == 1 for n in Counter(r[0] for r in results_after).values())
    evaluated = db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE status != 'duplicate'")
    assert status.evaluations == 40 and evaluated == [(40,)]
    assert db_rows(coordinator.db, "SELECT COUNT(*) FROM workers") == [(len(NAMES),)], "workers kept their ids"
    for w in workers:
        assert w.proc.poll() is None, "workers carried on by themselves"
