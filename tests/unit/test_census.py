"""The workers' census: a big swarm is counted in slices of the event loop, a small one at once."""

from __future__ import annotations

import asyncio
import gc

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.census import (
    MAX_SLICE_PAUSE, WorkerCensus, WorkerTally, census_interval, slice_pause, unpickled_rows,
)
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.metrics import CoordinatorMetrics
from autoswarm.coordinator.store import Store
from swarm import Clock, loop_turns_while, write_study

CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
GPU = {"cpu_model": "Test", "cpu_cores": 8, "gpus": [{"name": "Big GPU", "memory_mb": 81920}]}


def _swarm(tmp_path, clock, cpus=30, gpus=12):
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", timeout=300)).data)
    workers = [engine.register("", f"c{i}", CPU, 2, ["params"])[0] for i in range(cpus)]
    workers += [engine.register("", f"g{i}", GPU, 1, ["params"])[0] for i in range(gpus)]
    return engine, workers


def _gauge(metrics: CoordinatorMetrics, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for family in metrics.registry.collect()
            for s in family.samples if s.name == name}


def test_a_census_in_slices_lets_the_loop_run_and_counts_what_a_fresh_one_counts(tmp_path):
    clock = Clock()
    engine, workers = _swarm(tmp_path, clock)
    leased = sum(1 for worker in workers[:5] if engine.lease(worker) is not None)
    assert leased >= 1
    census = WorkerCensus(engine.summaries, slice_size=4, fresh_up_to=0)

    _, ticks = asyncio.run(loop_turns_while(census.count()))
    assert ticks >= len(workers) // 4 - 1, "the loop ran between slices, not once for the whole census"
    fresh = engine.worker_summaries()
    assert [row[0] for row in unpickled_rows(census.worker_rows())] == [s.record.id for s in fresh]
    assert [row[5] for row in unpickled_rows(census.worker_rows())] == [s.state for s in fresh], "each worker as its summary shows it"
    assert census.worker_tally() == WorkerTally.of(fresh)
    tally = census.worker_tally()
    assert sum(tally.workers.values()) == 42 and sum(tally.running.values()) == leased
    assert sorted(tally.slots.values()) == [12, 60]


def test_a_big_swarm_is_read_from_its_last_census_and_a_small_one_fresh(tmp_path):
    clock = Clock()
    engine, workers = _swarm(tmp_path, clock, cpus=6, gpus=0)
    big = WorkerCensus(engine.summaries, fresh_up_to=5)        # 6 workers: "big"
    small = WorkerCensus(engine.summaries, fresh_up_to=100)
    assert len(unpickled_rows(big.worker_rows())) == 6, "the first read counts at once: nothing was counted before"
    engine.register("", "late", CPU, 2, ["params"])
    assert len(unpickled_rows(big.worker_rows())) == 6, "a big swarm is not counted again on every read"
    assert len(unpickled_rows(small.worker_rows())) == 7, "a small swarm is counted on every read"
    asyncio.run(big.count())
    assert len(unpickled_rows(big.worker_rows())) == 7, "the next census counts the newcomer"


def test_the_scrape_reads_the_census_with_its_labels_capped(tmp_path):
    clock = Clock()
    engine, workers = _swarm(tmp_path, clock, cpus=3, gpus=2)
    engine.lease(workers[0])
    metrics = CoordinatorMetrics(process_metrics=False)
    census = WorkerCensus(engine.summaries, fresh_up_to=0)
    metrics.watch(census)
    by_state = _gauge(metrics, "autoswarm_workers")
    assert sum(by_state.values()) == 5 and len({hw for _, hw in by_state}) == 2
    running = _gauge(metrics, "autoswarm_worker_tasks_running")
    assert sorted(running.values()) == [0, 1]
    # Workers name their own hardware class: past the label cap they are counted as "other".
    metrics.hardware_class.limit = 2
    for i in range(3):
        engine.register("", f"odd{i}", {**CPU, "cpu_model": f"Odd {i}"}, 1, ["params"])
    asyncio.run(census.count())
    by_state = _gauge(metrics, "autoswarm_workers")
    assert sum(by_state.values()) == 8
    assert sum(n for (_, hw), n in by_state.items() if hw == "other") == 3


def test_what_a_census_keeps_between_counts_is_nothing_the_collector_visits(tmp_path):
    """At 100,000 workers a census kept as summaries was 300,000 objects the collector visited
    until the next count replaced them: full collections several times a minute. Its rows are
    plain tuples of strings and numbers, which the collector stops tracking."""
    clock = Clock()
    engine, workers = _swarm(tmp_path, clock)
    engine.lease(workers[0])
    census = WorkerCensus(engine.summaries, slice_size=7, fresh_up_to=0)
    asyncio.run(census.count())
    gc.collect()
    kept = census.worker_rows()
    assert len(kept) == 6 and not any(gc.is_tracked(chunk) for chunk in kept), "one bytes object per slice of 7"
    rows = unpickled_rows(kept)
    assert len(rows) == len(workers)
    assert {row[4] for row in rows} == {engine.summaries.worker_summaries()[0].record.hardware_class,
                                         engine.summaries.worker_summaries()[-1].record.hardware_class}


def test_the_census_interval_grows_to_twenty_times_what_a_count_costs():
    assert census_interval(10.0, 0.1) == 10.0, "100,000 workers, ~0.4 s a count: every 10 s"
    assert census_interval(10.0, 1.5) == 30.0, "a slower machine or a bigger swarm: at most ~5% of the loop"
    assert census_interval(10.0, -0.1) == 10.0
    assert census_interval(10.0, 2.0, spacing=10.0) == 20.0


def test_readers_at_the_same_time_share_one_count_and_a_stale_census_is_counted_again(tmp_path):
    clock = Clock()
    engine, _ = _swarm(tmp_path, clock, cpus=6, gpus=0)
    now = [100.0]
    census = WorkerCensus(engine.summaries, slice_size=2, fresh_up_to=0, interval=10.0, clock=lambda: now[0])
    counts = []
    real = engine.summaries.census_in_slices

    def counting(size):
        counts.append(size)
        return real(size)
    engine.summaries.census_in_slices = counting

    async def together():
        return await asyncio.gather(census.current(), census.current(), census.count())

    first, second, third = asyncio.run(together())
    assert len(counts) == 1 and first is second is third, "one count for three readers"
    assert first.cost >= 0 and first.taken_unix > 0
    now[0] += 15.0
    assert asyncio.run(census.current()) is first, "within two intervals: the last census"
    engine.register("", "late", CPU, 2, ["params"])
    now[0] += 10.0
    fresh = asyncio.run(census.current())
    assert len(counts) == 2 and sum(fresh.tally.workers.values()) == 7, "older than that: counted again"


def test_a_slice_is_followed_by_a_pause_as_long_as_it_took_within_a_bound():
    """Between two slices the loop is left to the calls as long as the slice held it (half the
    loop at most while a census runs), not for one bare turn; never longer than the bound."""
    assert slice_pause(0.004) == 0.004
    assert slice_pause(0.0) == 0.0 and slice_pause(-1.0) == 0.0, "a clock step back is no reason to wait"
    assert slice_pause(3.0) == MAX_SLICE_PAUSE and slice_pause(0.2, longest=0.1) == 0.1
