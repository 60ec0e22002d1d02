"""The core swarm with real processes on loopback: a coordinator and worker processes."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from swarm import wait_for, write_study

pytestmark = pytest.mark.integration


def _db_rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def test_two_workers_improve_the_champion_and_history_lists_each_evaluation_once(
        tmp_path, start_coordinator, start_worker):
    study = write_study(tmp_path / "study")
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=16)
    for name in ("alpha", "beta"):
        start_worker(coordinator.address, name)

    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 60, what="study to finish")

    assert status.evaluations == 16, "the budget is a ceiling (checks of claims included), and all of it is used"
    assert status.has_initial_metric and status.has_champion_metric
    assert status.champion_metric > status.initial_metric, "maximize: the champion must have improved"
    assert status.improvements >= 1
    with coordinator.control() as control:
        history = control.history("tiny")
        best = control.version("tiny")
    free = [row for row in history.rows if row.status == "duplicate" and not row.has_metric]
    assert len(history.rows) - len(free) == 16, "a duplicate caught before evaluating costs none of the budget"
    assert len({row.result_id for row in history.rows}) == len(history.rows), "every result appears exactly once"
    assert {row.worker for row in history.rows} == {"alpha", "beta"}, "both workers contributed"
    assert [row.status for row in history.rows].count("baseline") == 1
    kept = [row for row in history.rows if row.status == "keep"]
    assert len(kept) == status.improvements
    assert kept[-1].version == best.hash and kept[-1].metric == pytest.approx(status.champion_metric)
    # The champion's content really is the file that scored that metric.
    scope: dict[str, float] = {}
    exec(compile(best.content.decode().split("import time")[0], "champion", "exec"), scope)
    assert -(scope["X"] - 2.5) ** 2 - (scope["Y"] - 7) ** 2 == pytest.approx(status.champion_metric)


def test_worker_killed_mid_task_loses_its_lease_which_is_reissued(tmp_path, start_coordinator, start_worker):
    # The timeout leaves a loaded machine room to start each evaluation (a timed-out baseline
    # would be measured again); leases last timeout × 1 + 1 s, so the lost one expires in 11 s.
    study = write_study(tmp_path / "study", sleep=2.0, timeout=10)
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=4)
    doomed = start_worker(coordinator.address, "doomed")
    wait_for(lambda: coordinator.study("tiny").in_flight == 1, 30, what="the first lease")
    doomed.kill()
    (lost_lease, candidate), = _db_rows(coordinator.db, "SELECT id, candidate FROM leases WHERE state='active'")

    start_worker(coordinator.address, "rescuer")
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 60, what="study to finish")

    (state,), = _db_rows(coordinator.db, "SELECT state FROM leases WHERE id=?", lost_lease)
    assert state == "expired"
    reissued = _db_rows(coordinator.db, "SELECT worker_id, state FROM leases WHERE kind='baseline' AND candidate=? "
                        "AND id != ?", candidate, lost_lease)
    assert [s for _, s in reissued] == ["reported"], "the lost baseline was handed out again and completed"
    assert status.evaluations == 4
    assert _db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE id=?", lost_lease) == [(0,)]


def test_coordinator_killed_and_restarted_keeps_champion_and_history_and_workers_reconnect(
        tmp_path, start_coordinator, start_worker):
    study = write_study(tmp_path / "study", sleep=0.3)
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=30)
    workers = [start_worker(coordinator.address, name) for name in ("alpha", "beta")]
    wait_for(lambda: coordinator.study("tiny").improvements >= 1, 60, what="a first improvement")

    coordinator.kill()
    champions_before = _db_rows(coordinator.db, "SELECT seq, version, metric FROM champions ORDER BY seq")
    results_before = _db_rows(coordinator.db, "SELECT id, decision, metric FROM results")
    assert len(champions_before) >= 2

    coordinator.start()  # same db, same port
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 90, what="study to finish after restart")

    champions_after = _db_rows(coordinator.db, "SELECT seq, version, metric FROM champions ORDER BY seq")
    results_after = _db_rows(coordinator.db, "SELECT id, decision, metric FROM results")
    assert champions_after[: len(champions_before)] == champions_before, "no champion was lost"
    assert set(results_before) <= set(results_after), "no acknowledged result was lost"
    # A duplicate caught before its evaluation is recorded but costs none of the budget.
    evaluated = _db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE status != 'duplicate'")
    assert status.evaluations == 30 and evaluated == [(30,)]
    assert all(n == 1 for n in Counter(r[0] for r in results_after).values())
    metrics = [m for _, _, m in champions_after]
    assert all(b > a for a, b in zip(metrics, metrics[1:])), "the champion chain only improves"
    for w in workers:
        assert w.proc.poll() is None, "workers carried on by themselves"
        assert "reachable again" in w.log or "registered" in w.log
