"""What the coordinator shows: summaries of studies and workers, lineage, history, versions.

Part of the engine (see `engine.Engine`, which composes it). Read-only: nothing here
changes the store or memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from autoswarm.slot_time import SlotTime
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.errors import NotFound
from autoswarm.coordinator.leasing import Leasing
from autoswarm.coordinator.lineage import LineageEntry, lineage
from autoswarm.coordinator.roster import Roster
from autoswarm.coordinator.studies import StudyRegistry
from autoswarm.coordinator.store import ChampionRecord, ResultRecord, VersionRecord, WorkerRecord


@dataclass(frozen=True)
class StudySummary:
    name: str
    metric: str
    direction: str
    champion: ChampionRecord
    initial_metric: float | None
    evaluations: int
    improvements: int
    in_flight: int
    max_evaluations: int
    error: str
    pending_claims: int = 0
    llm_tokens: int = 0                       # what its agents spent, and its caps (0: none)
    cost_usd: float = 0.0
    max_tokens: int = 0
    max_cost_usd: float = 0.0
    failed_edits: int = 0                     # explore tasks whose agent made no edit: in the budget, not evaluated

    @property
    def cost_per_evaluation(self) -> float | None:
        """What its agents cost per evaluation, in US dollars; None before the first."""
        return self.cost_usd / self.evaluations if self.evaluations else None

    @property
    def cost_per_improvement(self) -> float | None:
        """What its agents cost per accepted improvement, in US dollars; None before the first."""
        return self.cost_usd / self.improvements if self.improvements else None

    @property
    def spent(self) -> bool:
        """The study's agents spent what it allows: no new explore."""
        return (self.max_cost_usd > 0 and self.cost_usd >= self.max_cost_usd) or \
            (self.max_tokens > 0 and self.llm_tokens >= self.max_tokens)

    @property
    def budget_reached(self) -> bool:
        """Its evaluation budget is used up: nothing more is started (open claims stay unchecked)."""
        return self.max_evaluations > 0 and self.evaluations >= self.max_evaluations

    @property
    def done(self) -> bool:
        """Nothing more will run: an error, or the budget reached, or the agents' money spent and
        every claim checked (checks cost no agent), with nothing in flight."""
        return bool(self.error) or self.in_flight == 0 and (
            self.budget_reached or self.spent and self.pending_claims == 0)


@dataclass(frozen=True)
class WorkerSummary:
    record: WorkerRecord
    state: str
    last_seen: float
    running: int
    results: int
    trust: acceptance.Trust = acceptance.Trust()
    slot_times: tuple[SlotTime, ...] = ()


# What the credit standings need of a worker, as a plain tuple (standings.WorkerRow's fields: id,
# name, owner, registered, hardware class, state, quarantined): a tuple of strings and numbers is
# not tracked by the collector, so a census of 100,000 kept between counts costs its passes nothing.
WorkerRowTuple = tuple[str, str, str, float, str, str, bool]
# One worker in a census: its row, its slots, the tasks it runs, its slots' time as it last
# reported, the mutator kinds it can run.
CensusLine = tuple[WorkerRowTuple, int, int, tuple[SlotTime, ...], tuple[str, ...]]


class Presence(Protocol):
    """What the roster keeps in memory of a worker's last contact."""

    state: str
    last_seen: float
    silence: float


def _state(worker: WorkerRecord, presence: Presence | None, quarantined: bool, now: float,
           offline_after: float) -> str:
    """The state a worker is shown in: what it last said, or offline once silent longer than it
    was told it may be, or quarantined; a worker that said goodbye stays stopped."""
    last_seen = presence.last_seen if presence else worker.last_seen
    state = presence.state if presence else worker.state
    if state == "stopped":
        return state       # it said goodbye: stopped, not offline
    if now - last_seen > (presence.silence if presence else offline_after):   # as long as it was told
        return "offline"
    return "quarantined" if quarantined else state


class Summaries:
    """Read-only views of the engine's studies and workers."""

    def __init__(self, ctx: EngineContext, registry: StudyRegistry, roster: Roster, leasing: Leasing) -> None:
        self.ctx = ctx
        self._registry = registry
        self._roster = roster
        self._leasing = leasing

    def study_summaries(self) -> list[StudySummary]:
        return [
            StudySummary(s.spec.name, s.spec.metric, s.spec.direction, s.champion, s.initial_metric,
                         s.evaluations, s.improvements, len(s.active), s.record.max_evaluations, s.record.error,
                         len(s.claims), s.llm_tokens, s.cost_usd, s.spec.max_tokens, s.spec.max_cost_usd,
                         s.failed_edits)
            for s in sorted(self.ctx.studies.values(), key=lambda s: s.spec.name)
        ]

    def worker_summaries(self) -> list[WorkerSummary]:
        """Every known worker's summary, as of now."""
        return [summary for part in self.worker_summaries_in_slices(len(self._roster.workers) or 1) for summary in part]

    def worker_count(self) -> int:
        return len(self._roster.workers)

    def worker_summaries_in_slices(self, size: int) -> Iterator[list[WorkerSummary]]:
        """The workers' summaries, `size` at a time, all as of the moment this was called.

        The workers are listed first, so a caller may yield to the event loop between slices
        while workers come and go."""
        now, counts, offline_after = self.ctx.clock(), self._roster.results_by_worker, self._offline_after()
        workers = list(self._roster.workers.values())
        for start in range(0, len(workers), size):
            yield [self._summary(worker, now, counts, offline_after) for worker in workers[start:start + size]]

    def census_in_slices(self, size: int) -> Iterator[list[CensusLine]]:
        """What the census counts of every worker (`CensusLine`), `size` workers at a time, all
        as of the moment this was called: the state a summary shows, without the summary.

        A census of 100,000 workers kept between counts as summaries was 300,000 objects that
        every pass of the collector visited, rebuilt every 10 s: full collections over a heap
        of millions of objects several times a minute (benchmarks/README.md, "Swarm size").
        Its rows are plain tuples of strings and numbers, which the collector stops tracking."""
        roster, running = self._roster, self._leasing.running
        now, offline_after = self.ctx.clock(), self._offline_after()
        workers = list(roster.workers.values())
        for start in range(0, len(workers), size):
            part: list[CensusLine] = []
            for worker in workers[start:start + size]:
                presence = roster.presence.get(worker.id)
                quarantined = roster.trust(worker.id).quarantined
                state = _state(worker, presence, quarantined, now, offline_after)
                part.append(((worker.id, worker.name, worker.owner, worker.registered, worker.hardware_class,
                              state, quarantined), worker.slots, len(running.get(worker.id, ())),
                             presence.slot_times if presence is not None else (), tuple(worker.mutators)))
            yield part

    def worker_summaries_page(self, offset: int, limit: int) -> list[WorkerSummary]:
        """At most `limit` workers' summaries from the `offset`-th, in the order they registered:
        what one screen of `autoswarm status` shows, whatever the swarm's size."""
        if limit <= 0:
            return []
        now, counts, offline_after = self.ctx.clock(), self._roster.results_by_worker, self._offline_after()
        # Past the end is an empty page: an int64 offset near its maximum plus the limit is beyond
        # what islice takes (the fuzz test's garbage request got UNKNOWN, not an answer).
        start = min(max(offset, 0), len(self._roster.workers))
        page = itertools.islice(self._roster.workers.values(), start, start + limit)
        return [self._summary(worker, now, counts, offline_after) for worker in page]

    def _offline_after(self) -> float:
        """The silence after which a worker with no presence in memory counts as offline."""
        liveness = self._roster.liveness
        return liveness.allowed_silence(liveness.min_interval)

    def _summary(self, worker: WorkerRecord, now: float, counts: dict[str, int], offline_after: float) -> WorkerSummary:
        roster = self._roster
        presence = roster.presence.get(worker.id)
        trust = roster.trust(worker.id)
        return WorkerSummary(worker, _state(worker, presence, trust.quarantined, now, offline_after),
                             presence.last_seen if presence else worker.last_seen,
                             len(self._leasing.running.get(worker.id, ())), counts.get(worker.id, 0), trust,
                             presence.slot_times if presence is not None else ())

    def lineage(self, name: str) -> list[LineageEntry]:
        """The champion chain with who claimed and who verified each step."""
        self._registry.study(name)
        return lineage(self.ctx.store, name)

    def history(self, name: str) -> list[ResultRecord]:
        self._registry.study(name)
        return self.ctx.store.results(name)

    def version(self, study: str, version_hash: str) -> tuple[VersionRecord, float | None]:
        """A version of a study's target (the champion when `version_hash` is empty) and its metric."""
        state = self.ctx.studies.get(study)
        if state is None:
            raise NotFound(f"no study named {study!r}; `autoswarm status` lists the studies")
        wanted = version_hash or state.champion.version
        found = self.ctx.store.version(study, wanted)
        if found is None:
            raise NotFound(f"study {study!r} has no version {wanted!r}")
        metric = next((c.metric for c in reversed(self.ctx.store.champions(study)) if c.version == wanted), None)
        return found, metric

    def result(self, result_id: str) -> ResultRecord:
        """One stored result, whatever its study."""
        found = self.ctx.store.result(result_id)
        if found is None:
            raise NotFound(f"no result {result_id!r}; `autoswarm history` lists result ids")
        return found
