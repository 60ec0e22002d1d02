"""The workers' census for what reads every worker: the Prometheus scrape and the credit standings.

At 100,000 connected workers a census (one summary per worker) is about half a second of
CPU. Built on the event loop at every scrape and every credit rebuild, it stalled every call
in flight for that long, and a monitored coordinator's p99 Lease was seconds. So a swarm that
big is counted in slices, yielding to the loop between them, every `interval` seconds, and
scrapes and rebuilds read the last count. A small swarm is counted fresh on each read, as
before: it costs little, and what an operator or a test just did shows at once.

What a census keeps between counts is sums and bytes (each slice's rows pickled as it is
counted), not a summary per worker: 100,000 summaries rebuilt every 10 s were 300,000 objects
that the collector visited until they died, and with them the coordinator ran full
collections over its heap 30 times a minute.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from autoswarm.coordinator.summaries import CensusLine, StudySummary, WorkerRowTuple, WorkerSummary
from autoswarm.slot_time import ACTIVITIES, SlotTime

log = logging.getLogger(__name__)

CENSUS_SECONDS = 10.0      # how often a big swarm is counted again (Prometheus scrapes every 15 s by default)
SLICE = 1_000              # workers summarised between two turns of the event loop (~5 ms of CPU)
FRESH_UP_TO = 5_000        # swarms up to this size are counted fresh on every read (~25 ms)
MAX_SLICE_PAUSE = 0.05     # seconds: the longest pause between two slices (see `slice_pause`)


@dataclass
class WorkerTally:
    """The workers' gauges, summed by hardware class and state (raw values; metrics.py caps labels)."""

    workers: dict[tuple[str, str], int] = field(default_factory=dict)    # (state, hardware class)
    slots: dict[str, int] = field(default_factory=dict)                  # of workers not offline
    running: dict[str, int] = field(default_factory=dict)                # tasks on workers not offline
    quarantined: dict[str, int] = field(default_factory=dict)
    slot_seconds: dict[tuple[str, str], float] = field(default_factory=dict)   # (hardware class, activity)
    # (state, hardware class): [slots, tasks running] of those workers, offline ones included
    loads: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    mutators: dict[str, int] = field(default_factory=dict)     # connected workers (not offline, not stopped)

    def add(self, hw: str, state: str, quarantined: bool, slots: int, running: int,
            slot_times: tuple[SlotTime, ...], mutators: tuple[str, ...] = ()) -> None:
        """Counts one worker of hardware class `hw`, shown in `state`."""
        self.workers[(state, hw)] = self.workers.get((state, hw), 0) + 1
        self.quarantined[hw] = self.quarantined.get(hw, 0) + (1 if quarantined else 0)
        load = self.loads.get((state, hw))
        if load is None:
            self.loads[(state, hw)] = [slots, running]
        else:
            load[0] += slots
            load[1] += running
        if state == "offline":
            return
        if state != "stopped":
            for kind in mutators:
                self.mutators[kind] = self.mutators.get(kind, 0) + 1
        self.slots[hw] = self.slots.get(hw, 0) + slots
        self.running[hw] = self.running.get(hw, 0) + running
        for t in slot_times:
            for activity in ACTIVITIES:
                key = (hw, activity)
                self.slot_seconds[key] = self.slot_seconds.get(key, 0.0) + getattr(t, activity)

    def add_line(self, line: CensusLine) -> None:
        row, slots, running, slot_times, mutators = line
        self.add(row[4], row[5], row[6], slots, running, slot_times, mutators)

    @classmethod
    def of(cls, workers: Iterable[WorkerSummary]) -> WorkerTally:
        tally = cls()
        for w in workers:
            tally.add(w.record.hardware_class, w.state, w.trust.quarantined, w.record.slots, w.running, w.slot_times,
                      tuple(w.record.mutators))
        return tally


@dataclass(frozen=True)
class Census:
    rows: list[bytes]              # what the credit standings read of each worker: a pickled list of rows per slice
    tally: WorkerTally
    taken: float                   # monotonic time the count began
    taken_unix: float = 0.0        # ... and its wall-clock time (what `autoswarm status` shows)
    cost: float = 0.0              # CPU seconds the count took the loop


def census_interval(base: float, cost: float, spacing: float = 20.0) -> float:
    """Seconds between two counts of a big swarm: `base`, or `spacing` times what the last count
    cost the loop in CPU, whichever is longer; so counting never takes more than 1/`spacing`
    (~5%) of the loop, however big the swarm grows. The credit rebuild follows the same rule
    (`standings.rebuild_interval`)."""
    return max(base, spacing * max(cost, 0.0))


def slice_pause(spent: float, longest: float = MAX_SLICE_PAUSE) -> float:
    """Seconds to leave the loop to others after a slice that took `spent` seconds: as long
    as the slice (at most `longest`), so a census holds at most half the loop while it runs.
    Not a bare yield: grpc.aio accepts calls one at a time, a few turns of the loop each. An
    echo server whose loop also ran back-to-back 3 ms slices answered 55-75 calls a second
    (benchmarks/README.md, "Seventh session"), and a census at 100,000 workers is ~100 such
    slices."""
    return min(max(spent, 0.0), longest)


def pickled_rows(rows: list[WorkerRowTuple]) -> bytes:
    return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)


def unpickled_rows(chunks: Iterable[bytes]) -> list[WorkerRowTuple]:
    """The rows of `Census.rows`, in order (what the credit rebuild's process reads)."""
    return [row for chunk in chunks for row in pickle.loads(chunk)]


class CountedSwarm(Protocol):
    """What the census reads (`summaries.Summaries`)."""

    def study_summaries(self) -> list[StudySummary]: ...

    def worker_count(self) -> int: ...

    def census_in_slices(self, size: int) -> Iterator[list[CensusLine]]: ...


class WorkerCensus:
    """The engine's study summaries, and its workers' rows and tally from the last census.

    Implements `metrics.EngineView`, so a scrape reads it as it would the engine."""

    def __init__(self, swarm: CountedSwarm, *, interval: float = CENSUS_SECONDS, slice_size: int = SLICE,
                 fresh_up_to: int = FRESH_UP_TO, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._swarm = swarm
        self._interval = interval
        self._slice = slice_size
        self._fresh_up_to = fresh_up_to
        self._clock = clock
        self._wall_clock = wall_clock
        self._last: Census | None = None
        self._counting: asyncio.Future[Census] | None = None     # a count under way, which readers share

    @property
    def interval(self) -> float:
        """Seconds between two counts now (`census_interval` of the last count's cost)."""
        return census_interval(self._interval, self._last.cost if self._last is not None else 0.0)

    def study_summaries(self) -> list[StudySummary]:
        return self._swarm.study_summaries()     # one per study: cheap

    def worker_rows(self) -> list[bytes]:
        """The workers' rows for the credit standings, pickled a slice at a time as they were
        counted (`unpickled_rows` reads them): the rebuild's process is sent a few bytes objects,
        where a list of 100,000 tuples held the GIL against the loop for 0.1 s while the
        executor's thread pickled it."""
        return self._census().rows

    def worker_tally(self) -> WorkerTally:
        return self._census().tally

    def _census(self) -> Census:
        if self._last is None or self._swarm.worker_count() <= self._fresh_up_to:
            # Nothing counted yet (the first read, before the first slice), or small enough to count now.
            self._last = self._count_at_once()
        return self._last

    def _count_at_once(self) -> Census:
        taken, taken_unix, cpu = self._clock(), self._wall_clock(), time.thread_time()
        rows: list[bytes] = []
        tally = WorkerTally()
        for part in self._swarm.census_in_slices(max(self._slice, 1)):
            self._take(part, rows, tally)
        return Census(rows, tally, taken, taken_unix, time.thread_time() - cpu)

    @staticmethod
    def _take(part: list[CensusLine], rows: list[bytes], tally: WorkerTally) -> None:
        for line in part:
            tally.add_line(line)
        rows.append(pickled_rows([line[0] for line in part]))

    async def count(self) -> Census:
        """Counts every worker, yielding to the event loop after each slice; the new census is kept.
        Callers at the same time share one count."""
        if self._counting is None or self._counting.done():
            self._counting = asyncio.ensure_future(self._count_in_slices())
        return await asyncio.shield(self._counting)

    async def _count_in_slices(self) -> Census:
        taken, taken_unix, cost = self._clock(), self._wall_clock(), 0.0
        rows: list[bytes] = []
        tally = WorkerTally()
        slices = self._swarm.census_in_slices(max(self._slice, 1))
        while True:
            cpu, began = time.thread_time(), time.perf_counter()
            part = next(slices, None)
            if part is not None:
                self._take(part, rows, tally)
            cost += time.thread_time() - cpu
            if part is None:
                break
            await asyncio.sleep(slice_pause(time.perf_counter() - began))
        self._last = Census(rows, tally, taken, taken_unix, cost)
        return self._last

    async def current(self) -> Census:
        """A census no older than about two census intervals: the last one, or a count made now
        (in slices) when none is that recent, as for an operator's `autoswarm status` on a
        coordinator that counts for nobody else (no metrics, no web page). A small swarm is
        counted at once, as on every read."""
        last = self._last
        if self._swarm.worker_count() <= self._fresh_up_to:
            return self._census()
        if last is not None and self._clock() - last.taken < 2 * self.interval:
            return last
        return await self.count()

    async def keep_counting(self) -> None:
        """Counts a big swarm every `interval` seconds (longer while counts are costly), forever;
        a small one is counted on read."""
        while True:
            try:
                if self._swarm.worker_count() > self._fresh_up_to:
                    await self.count()
            except Exception:  # noqa: BLE001 - a failed census is retried next round; scrapes serve the last one
                log.exception("worker census failed")
            await asyncio.sleep(self.interval)
