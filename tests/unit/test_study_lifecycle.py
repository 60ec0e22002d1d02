"""A study's lifecycle in the engine: pause, resume, priority, remove, update — and all of it
survives a coordinator restart on the same database."""

from __future__ import annotations

import sqlite3

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import AlreadyExists, Engine, EngineConfig, InvalidRequest, NotFound, ResultIn, \
    WrongState
from autoswarm.coordinator.store import Store
from swarm import write_study


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "an edit", "", {})


@pytest.fixture
def swarm(tmp_path):
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(lease_factor=1.0, lease_grace=5.0))
    study = write_study(tmp_path / "study", direction="minimize")
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    worker, _ = engine.register("", "alpha", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 2, ["params"])
    return engine, store, worker, study, tmp_path  # each test restarts on the file and closes the last store


def _restart(store: Store, path) -> tuple[Engine, Store]:
    store.close()
    again = Store(path / "swarm.db")
    return Engine(again, EngineConfig(lease_factor=1.0, lease_grace=5.0)), again


def test_a_paused_study_hands_its_leases_back_leases_nothing_and_stays_paused_across_a_restart(swarm):
    engine, store, worker, _, path = swarm
    lease = engine.lease(worker)
    record, released = engine.change_study("tiny", "pause")
    assert record.paused and released == 1
    assert engine.heartbeat(worker, [lease.lease_id], "working").cancelled == [lease.lease_id]
    assert engine.lease(worker) is None
    with sqlite3.connect(path / "swarm.db") as db:
        assert db.execute("SELECT state FROM leases WHERE id=?", (lease.lease_id,)).fetchone() == ("released",)
    engine, store = _restart(store, path)
    assert engine.study_record("tiny").paused and engine.lease(worker) is None
    engine.change_study("tiny", "resume")
    assert engine.lease(worker).kind == "baseline"
    assert [e.kind for e in engine.study_events("tiny")] == ["pause", "resume"]
    store.close()


def test_priority_and_budget_are_kept_and_bad_values_refused(swarm):
    engine, store, _, _, path = swarm
    engine.change_study("tiny", priority=3, max_evaluations=50)
    with pytest.raises(InvalidRequest):
        engine.change_study("tiny", "archive")
    with pytest.raises(InvalidRequest):
        engine.change_study("tiny", priority=-1)
    with pytest.raises(NotFound):
        engine.change_study("nope", "pause")
    engine, store = _restart(store, path)
    record = engine.study_record("tiny")
    assert (record.priority, record.max_evaluations) == (3, 50)
    store.close()


def test_a_removed_study_is_gone_from_the_swarm_but_its_rows_stay_and_its_name_is_not_reused(swarm):
    engine, store, worker, study, path = swarm
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    engine.change_study("tiny", "remove")
    assert engine.study_summaries() == [] and engine.lease(worker) is None
    engine, store = _restart(store, path)
    assert engine.study_summaries() == []
    assert len(store.results("tiny")) == 1 and store.study("tiny").archived
    with pytest.raises(AlreadyExists, match="was removed"):
        engine.add_study(pack_directory(study).data)
    store.close()


def test_an_update_keeps_champion_and_history_and_new_tasks_carry_the_new_bundle(swarm):
    engine, store, worker, study, path = swarm
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    explore = engine.lease(worker)
    engine.report(worker, explore.lease_id, _ok(8.0, b"X = 2.0\nY = 3\n" + explore.parent.content.split(b"\n", 2)[2]))
    champion = engine.study_summaries()[0].champion
    (study / "program.md").write_text("Minimize score; Y matters.\n")
    name, bundle_hash, kept, plan = engine.update_study(pack_directory(study).data)
    assert (name, kept, plan.changed) == ("tiny", champion.version, ("program.md",))
    assert engine.lease(worker).bundle_hash == bundle_hash
    engine, store = _restart(store, path)
    summary, = engine.study_summaries()
    assert summary.champion == champion and summary.evaluations == 2
    assert [(e.kind, e.detail) for e in engine.study_events("tiny")] == [("update", "changed: program.md")]
    (study / "study.toml").write_text((study / "study.toml").read_text().replace('"score"', '"loss"'))
    with pytest.raises(WrongState, match="metric"):
        engine.update_study(pack_directory(study).data)
    store.close()
