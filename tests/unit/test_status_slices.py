"""Status lists every worker, built a slice at a time between turns of the event loop."""

from __future__ import annotations

import asyncio

from autoswarm.bundle import pack_directory
from autoswarm.coordinator import service
from autoswarm.coordinator.auth import Authenticator
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.group_commit import GroupCommit
from autoswarm.coordinator.store import Store
from swarm import Clock, loop_turns_while, write_study

CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}


def test_status_lists_every_worker_as_its_summary_shows_it_and_lets_the_loop_run_between_slices(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "STATUS_SLICE", 10)
    clock = Clock()
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=300)).data)
    workers = [engine.register("", f"w{i}", CPU, 2, ["params"])[0] for i in range(45)]
    engine.lease(workers[3])
    control = service.ControlService(engine, GroupCommit(store), Authenticator(store, enabled=False))

    response, ticks = asyncio.run(loop_turns_while(control.Status(None, None)))
    assert ticks >= 45 // 10, "the loop ran between slices, not once for every worker"
    summaries = engine.worker_summaries()
    assert [(w.worker_id, w.state, w.running) for w in response.workers] == \
        [(s.record.id, s.state, s.running) for s in summaries]
    assert sum(w.running for w in response.workers) == 1 and len(response.workers) == 45
