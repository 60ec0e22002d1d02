"""Store round-trips on a real SQLite file, including reopening it."""

from __future__ import annotations

import sqlite3

import pytest

from autoswarm.coordinator.store import ChampionRecord, LeaseRecord, ResultRecord, Store, VersionRecord, WorkerRecord


def _initial(study="s"):
    return VersionRecord(study, "h0", "", b"X = 1\n", "initial version", "study", 1.0)


def test_study_version_champion_worker_lease_result_round_trip(tmp_path):
    db = tmp_path / "swarm.db"
    store = Store(db)
    store.add_study("s", {"name": "s", "metric": "m"}, "b" * 64, b"bundle-bytes", 10, _initial())
    worker = WorkerRecord("w-1", "alpha", {"cpu_model": "x", "gpus": []}, "cpu:x x2", 2, ("params",), "idle", 1.0, 2.0)
    store.upsert_worker(worker)
    lease = LeaseRecord("l-1", "s", "w-1", "explore", "h0", "", 42, 3.0, 10.0, "active", None)
    store.insert_lease(lease)
    candidate = VersionRecord("s", "h1", "h0", b"X = 2\n", "X 1 -> 2", "alpha/params", 4.0)
    result = ResultRecord("l-1", "s", "explore", "w-1", "alpha", "cpu:x x2", "h1", "h0", "ok", 0.5,
                          {"steps": 3.0}, "X 1 -> 2", "tail", "keep", {"evaluate_seconds": 1.5}, 4.0)
    store.record_result(result, versions=[candidate],
                        new_champion=ChampionRecord("s", 1, "h1", 0.5, "l-1", 4.0), champion_metric=None)
    store.close()

    reopened = Store(db)
    assert reopened.study("s").max_evaluations == 10 and reopened.bundle("b" * 64) == b"bundle-bytes"
    assert reopened.worker("w-1") == worker
    assert reopened.version("s", "h1") == candidate
    assert (reopened.version_parent("s", "h1"), reopened.version_parent("s", "h0"),
            reopened.version_parent("s", "nope")) == ("h0", "", None)
    assert reopened.result("l-1") == result
    assert reopened.lease("l-1").state == "reported"
    assert [c.version for c in reopened.champions("s")] == ["h0", "h1"]
    assert reopened.champion("s").metric == 0.5
    counts = reopened.study_counts("s")
    assert (counts.evaluations, counts.improvements, counts.in_flight) == (1, 1, 0)


def test_a_result_and_its_champion_are_one_transaction(tmp_path):
    store = Store(tmp_path / "swarm.db")
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.insert_lease(LeaseRecord("l-1", "s", "w-1", "explore", "h0", "", 1, 0.0, 9.0, "active", None))
    result = ResultRecord("l-1", "s", "explore", "w-1", "a", "c", "h1", "h0", "ok", 0.5, {}, "", "", "keep", {}, 1.0)
    # The champion row collides with champion 0: the whole transaction, result included, must roll back.
    with pytest.raises(sqlite3.IntegrityError):
        store.record_result(result, new_champion=ChampionRecord("s", 0, "h1", 0.5, "l-1", 1.0),
                            champion_metric=None)
    assert store.result("l-1") is None
    assert store.lease("l-1").state == "active"


def test_first_evaluation_sets_the_champion_metric_once(tmp_path):
    store = Store(tmp_path / "swarm.db")
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    for i, metric in enumerate((1.5, 9.9)):
        store.insert_lease(LeaseRecord(f"l-{i}", "s", "w", "baseline", "", "h0", 1, 0.0, 9.0, "active", None))
        store.record_result(ResultRecord(f"l-{i}", "s", "baseline", "w", "a", "c", "h0", "", "ok", metric, {}, "", "",
                                         "baseline", {}, 1.0), new_champion=None,
                            champion_metric=("s", 0, metric))
    assert store.champion("s").metric == 1.5, "a later baseline does not overwrite the first"


def test_leases_expire_release_and_survive_downtime(tmp_path):
    store = Store(tmp_path / "swarm.db")
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    for i in range(3):
        store.insert_lease(LeaseRecord(f"l-{i}", "s", "w", "explore", "h0", "", i, 0.0, 10.0 + i, "active", None))
    assert [lease.id for lease in store.overdue_leases(11.5)] == ["l-0", "l-1"]
    assert store.close_leases(["l-0"], "expired", 11.5) == 1
    assert store.close_leases(["l-0"], "released", 12.0) == 0, "only active leases change"
    store.push_active_deadlines(100.0)
    assert {lease.id: lease.deadline for lease in store.active_leases()} == {"l-1": 100.0, "l-2": 100.0}


def test_readonly_store_cannot_write(tmp_path):
    Store(tmp_path / "swarm.db").close()
    ro = Store(tmp_path / "swarm.db", readonly=True)
    assert ro.studies() == []
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.set_study_error("s", "x")
