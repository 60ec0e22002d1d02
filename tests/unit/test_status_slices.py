"""Status: a page of workers and the census's counts of all; every worker, a slice at a time between
turns of the event loop, for a client that asks for no page."""

from __future__ import annotations

import asyncio

from autoswarm.bundle import pack_directory
from autoswarm.coordinator import service
from autoswarm.coordinator.auth import Authenticator
from autoswarm.coordinator.census import WorkerCensus
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.group_commit import GroupCommit
from autoswarm.coordinator.store import Store
from autoswarm.v1 import control_pb2
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


def _engine(tmp_path, workers: int):
    clock = Clock()
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=300)).data)
    gpu = {"cpu_model": "Test", "cpu_cores": 8, "gpus": [{"name": "Big GPU", "memory_mb": 81920}]}
    ids = [engine.register("", f"w{i}", gpu if i % 3 == 0 else CPU, 2, ["params", "llm"] if i % 2 else ["params"])[0]
           for i in range(workers)]
    return engine, store, ids


def test_a_paged_status_lists_one_page_and_counts_every_worker_from_the_census(tmp_path):
    engine, store, ids = _engine(tmp_path, 40)
    engine.lease(ids[3])
    census = WorkerCensus(engine.summaries, fresh_up_to=0)      # counted as a big swarm is
    control = service.ControlService(engine, GroupCommit(store), Authenticator(store, enabled=False), census=census)
    counts_made = []
    real_count = census._count_in_slices

    async def counted():
        counts_made.append(1)
        return await real_count()
    census._count_in_slices = counted

    async def two_pages():
        first = await control.Status(control_pb2.StatusRequest(workers=control_pb2.WorkerPage(offset=0, limit=7)), None)
        second = await control.Status(control_pb2.StatusRequest(workers=control_pb2.WorkerPage(offset=35, limit=7)), None)
        return first, second

    first, second = asyncio.run(two_pages())
    assert [w.worker_id for w in first.workers] == ids[:7] and [w.worker_id for w in second.workers] == ids[35:]
    assert first.workers_total == second.workers_total == 40
    assert len(counts_made) == 1, "the second call read the census the first one counted"
    summaries = engine.worker_summaries()
    expected: dict[tuple[str, str], list[int]] = {}
    for s in summaries:
        row = expected.setdefault((s.state, s.record.hardware_class), [0, 0, 0])
        row[0] += 1
        row[1] += s.record.slots
        row[2] += s.running
    assert {(c.state, c.hardware_class): [c.workers, c.slots, c.running] for c in first.worker_counts} == expected
    assert sum(c.running for c in first.worker_counts) == 1
    assert {m.mutator: m.workers for m in first.mutator_counts} == {"params": 40, "llm": 20}
    assert first.counted_unix > 0


def test_a_page_is_bounded_and_counts_only_lists_no_row(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "MAX_STATUS_PAGE", 5)
    engine, store, ids = _engine(tmp_path, 12)
    control = service.ControlService(engine, GroupCommit(store), Authenticator(store, enabled=False))
    big = asyncio.run(control.Status(control_pb2.StatusRequest(workers=control_pb2.WorkerPage(limit=1000)), None))
    assert len(big.workers) == 5 and big.workers_total == 12, "a page asks for at most MAX_STATUS_PAGE rows"
    none = asyncio.run(control.Status(control_pb2.StatusRequest(workers=control_pb2.WorkerPage(limit=0)), None))
    assert not none.workers and sum(c.workers for c in none.worker_counts) == 12
    past = asyncio.run(control.Status(control_pb2.StatusRequest(workers=control_pb2.WorkerPage(offset=50, limit=5)), None))
    assert not past.workers and past.workers_total == 12
    # An offset near int64's largest (the fuzz test's garbage): an empty page, not an UNKNOWN error.
    far = asyncio.run(control.Status(control_pb2.StatusRequest(workers=control_pb2.WorkerPage(
        offset=2 ** 63 - 1, limit=5)), None))
    assert not far.workers and far.workers_total == 12
    every = asyncio.run(control.Status(control_pb2.StatusRequest(), None))
    assert len(every.workers) == 12, "no page asked (an older client): every worker, as before"


def test_credit_answers_from_one_response_per_snapshot(tmp_path):
    """`autoswarm credit` lists every volunteer: built once per rebuild, not once per call."""
    from autoswarm.coordinator.standings import Snapshot, Volunteer

    engine, store, _ = _engine(tmp_path, 1)
    snaps = [Snapshot(10.0, {}, {"ann": Volunteer("ann", "", False, 3.0, 1.0, 0, 0.0, 1, 1, "", (), ())}, {})]

    class Book:
        async def snapshot(self):
            return snaps[-1]

    control = service.ControlService(engine, GroupCommit(store), Authenticator(store, enabled=False), Book())
    first = asyncio.run(control.Credit(control_pb2.CreditRequest(), None))
    assert asyncio.run(control.Credit(control_pb2.CreditRequest(), None)) is first
    assert [(v.name, v.credit) for v in first.volunteers] == [("ann", 3.0)]
    snaps.append(Snapshot(20.0, {}, {"bob": Volunteer("bob", "", False, 5.0, 2.0, 0, 0.0, 1, 1, "", (), ())}, {}))
    later = asyncio.run(control.Credit(control_pb2.CreditRequest(), None))
    assert later is not first and [v.name for v in later.volunteers] == ["bob"] and later.computed_unix == 20.0
