"""The engine's side of liveness: intervals from a worker's real leases, presence, restarts."""

from __future__ import annotations

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.liveness import LivenessPolicy
from autoswarm.coordinator.store import Store
from swarm import Clock, write_study

HARDWARE = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}


def _engine(tmp_path, clock, budget=500.0):
    config = EngineConfig(lease_factor=2.0, lease_grace=30.0, heartbeat_interval=5.0,
                          liveness=LivenessPolicy(heartbeat_budget=budget))
    return Engine(Store(tmp_path / "swarm.db"), config, clock=clock)


def test_a_worker_running_a_five_minute_evaluation_is_told_minutes_and_its_lease_stays_safe(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=300)).data)
    worker, _ = engine.register("", "alpha", HARDWARE, 1, ["params"])
    task = engine.lease(worker)
    told = engine.next_contact(worker)
    assert told == (300 * 2 + 30) / 3, "a third of the lease's lifetime: two heartbeats may be lost"
    clock.now += told
    outcome = engine.heartbeat(worker, [task.lease_id], "working")
    assert outcome.interval == told and not outcome.cancelled
    # The worker heartbeats late, at 1.9 intervals: the lease is still there, and the next
    # interval is counted from its fresh deadline.
    clock.now += 1.9 * told
    assert engine.expire_overdue() == []
    assert engine.heartbeat(worker, [task.lease_id], "working").interval == told


def test_idle_workers_are_presence_for_a_long_poll_and_a_big_swarm_stretches_intervals(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock, budget=10.0)
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=3000)).data)
    workers = [engine.register("", f"w{i}", HARDWARE, 1, ["params"])[0] for i in range(50)]
    assert engine.connected() == 50
    engine.lease(workers[0])
    # 50 workers within 10 heartbeats a second: 5 s at least; the lease (6,030 s) allows 300.
    assert engine.next_contact(workers[0]) == 300.0
    engine.next_contact(workers[1], polling=120.0, state="idle")
    clock.now += 200  # longer than a registered worker may stay silent, within three polls
    states = {s.record.id: s.state for s in engine.worker_summaries()}
    assert states[workers[2]] == "offline"
    assert states[workers[1]] == "idle", "a worker told to poll for 120 s is not offline after 200 s"


def test_after_a_restart_running_leases_outlast_the_longest_interval_a_worker_was_told(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=300)).data)
    worker, _ = engine.register("", "alpha", HARDWARE, 1, ["params"])
    task = engine.lease(worker)
    told = engine.next_contact(worker)
    clock.now += 600  # the coordinator was down for ten minutes, 30 s before the lease's deadline
    reborn = _engine(tmp_path, clock)
    lease = reborn.store.lease(task.lease_id)
    assert lease.state == "active" and lease.deadline >= clock.now + told
