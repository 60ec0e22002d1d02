"""The coordinator's core: turns worker requests into store changes and decisions.

`Engine` is a facade that composes the parts, each its own module named for its job:

- `studies.StudyRegistry`: adding, updating, pausing, removing studies; loading them back;
- `roster.Roster`: the workers, their presence, trust and hardware classes;
- `leasing.Leasing`: leases handed out, extended, released and expired (`transitions.LEASE_TABLE`);
- `judging.Judging` (with `merging.Merging`): what a report means, as a `Judgement`, writing nothing;
- `reporting.Reporting`: records a report, commits its judgement, then applies it to memory;
- `summaries.Summaries`: read-only views (study and worker summaries, lineage, history).

They share the map of live studies (`StudyState`, the small in-memory picture of each
study that only the engine changes, always after the store has committed, so it never runs
ahead of disk). Scheduling and acceptance are delegated to their pure modules; gRPC lives
in `service`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from autoswarm.slot_time import SlotTime
from autoswarm.study import Study
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.census import WorkerTally
from autoswarm.coordinator.config import EngineConfig, Limits
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.errors import AlreadyExists, CoordinatorError, InvalidRequest, NotFound, NotYours, WrongState
from autoswarm.coordinator.events import EngineEvents, NoEvents
from autoswarm.coordinator.judging import Judging
from autoswarm.coordinator.leasing import HeartbeatOutcome, Leasing, TaskSpec
from autoswarm.coordinator.lifecycle import UpdatePlan
from autoswarm.coordinator.lineage import LineageEntry
from autoswarm.coordinator.liveness import LivenessPolicy
from autoswarm.coordinator.reporting import ReportOutcome, Reporting, ResultIn
from autoswarm.coordinator.roster import Roster
from autoswarm.coordinator.studies import StudyRegistry, study_spec_dict
from autoswarm.coordinator.study_state import StudyState
from autoswarm.coordinator.summaries import StudySummary, Summaries, WorkerSummary
from autoswarm.coordinator.store import LeaseRecord, ResultRecord, Store, StudyEvent, StudyRecord, VersionRecord

__all__ = [
    "AlreadyExists", "CoordinatorError", "Engine", "EngineConfig", "HeartbeatOutcome", "InvalidRequest", "Limits",
    "NotFound", "NotYours", "ReportOutcome", "ResultIn", "StudySummary", "TaskSpec", "WorkerSummary", "WrongState",
    "study_spec_dict",
]


class Engine:
    """State transitions of the swarm. Every public method is one request, handed to the part
    that does it (see the module's docstring)."""

    def __init__(self, store: Store, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.time, on_change: Callable[[], None] = lambda: None,
                 events: EngineEvents | None = None) -> None:
        self.ctx = EngineContext(store, config or EngineConfig(), clock, events or NoEvents(), {}, on_change)
        self.store = store
        self.config = self.ctx.config
        self.events: EngineEvents = self.ctx.events
        self.roster = Roster(self.ctx)
        self.leasing = Leasing(self.ctx, self.roster)
        self.registry = StudyRegistry(self.ctx, self.roster, self.leasing)
        self.judging = Judging(store, self.config, self.roster.trust, self.registry.open_claims,
                               self.roster.owner_of, self.roster.classes)
        self.reporting = Reporting(self.ctx, self.roster, self.leasing, self.judging)
        self.summaries = Summaries(self.ctx, self.registry, self.roster, self.leasing)
        self.registry.load_all()

    @property
    def _studies(self) -> dict[str, StudyState]:
        return self.ctx.studies

    @property
    def liveness(self) -> LivenessPolicy:
        return self.roster.liveness

    # -- studies --------------------------------------------------------------------------

    def add_study(self, bundle: bytes, max_evaluations: int = 0) -> tuple[str, str, str, bool]:
        """Adds a study from its bundle; returns (name, bundle hash, champion hash, already present)."""
        return self.registry.add_study(bundle, max_evaluations)

    def study_record(self, name: str) -> StudyRecord:
        """The stored record of a live study (paused, priority, budget, bundle)."""
        return self.registry.study_record(name)

    def change_study(self, name: str, action: str = "", priority: int = 0,
                     max_evaluations: int | None = None) -> tuple[StudyRecord, int]:
        """Pause, resume or remove a study, or set its priority or budget; returns (record, leases released)."""
        return self.registry.change_study(name, action, priority, max_evaluations)

    def update_study(self, bundle: bytes) -> tuple[str, str, str, UpdatePlan]:
        """A new bundle of an existing study; returns (name, bundle hash, champion hash, what changed)."""
        return self.registry.update_study(bundle)

    def study_events(self, name: str) -> list[StudyEvent]:
        """What operators did to a study (updates, pauses...), oldest first."""
        return self.registry.study_events(name)

    def study(self, name: str) -> Study:
        return self.registry.study(name)

    def bundle(self, bundle_hash: str) -> bytes:
        return self.registry.bundle(bundle_hash)

    # -- workers --------------------------------------------------------------------------

    def register(self, worker_id: str, name: str, hardware: dict[str, Any], slots: int,
                 mutators: Sequence[str], owner: str = "") -> tuple[str, str]:
        """Registers a worker (or refreshes a known one); returns (worker id, hardware class)."""
        return self.roster.register(worker_id, name, hardware, slots, mutators, owner)

    def owner_of(self, worker_id: str) -> str | None:
        """The owner a worker registered with, or None for an unknown worker."""
        return self.roster.owner_of(worker_id)

    def trust(self, worker_id: str) -> acceptance.Trust:
        return self.roster.trust(worker_id)

    def flush_presence(self, max_rows: int | None = None) -> int:
        """Writes worker liveness to the store in bounded rounds; returns how many still wait."""
        return self.roster.flush_presence(max_rows)

    def connected(self) -> int:
        """Workers heard from within the silence they were allowed."""
        return self.roster.connected()

    def poll_seconds(self) -> float:
        """How long an idle worker's next long-poll should last."""
        return self.roster.poll_seconds()

    def next_contact(self, worker_id: str, polling: float = 0.0, state: str = "") -> float:
        """Seconds until this worker should heartbeat (see `Leasing.next_contact`)."""
        return self.leasing.next_contact(worker_id, polling, state)

    # -- leases and results ---------------------------------------------------------------

    def lease(self, worker_id: str, pipelined: bool = False) -> TaskSpec | None:
        """Leases the next task for this worker, or None when there is none right now."""
        return self.leasing.lease(worker_id, pipelined)

    def heartbeat(self, worker_id: str, lease_ids: Sequence[str], state: str,
                  descriptions: Mapping[str, str] | None = None,
                  candidate_hashes: Mapping[str, str] | None = None,
                  slot_times: Sequence[SlotTime] = ()) -> HeartbeatOutcome:
        """Extends the worker's running leases and takes note of the ideas it is evaluating; a
        worker that says it stopped gives back every lease it does not list."""
        outcome = self.leasing.heartbeat(worker_id, lease_ids, state, descriptions, candidate_hashes, slot_times)
        if outcome.released:
            self._judge_held()
        return outcome

    def release(self, worker_id: str, lease_ids: Sequence[str]) -> int:
        """Gives unfinished leases back so their work is scheduled again at once."""
        released = self.leasing.release(worker_id, lease_ids)
        if released:
            self._judge_held()
        return released

    def expire_overdue(self) -> list[LeaseRecord]:
        """Expires leases past their deadline so their work is scheduled again; keeps held back
        for a check that ended so, or that waited a lease's time, are judged again."""
        expired = self.leasing.expire_overdue()
        self._judge_held()
        return expired

    def _judge_held(self) -> None:
        now = self.ctx.clock()
        judged = [self.reporting.judge_held(state, now) for state in self.ctx.studies.values() if state.held]
        if any(judged):
            self.ctx.on_change()   # a keep may have made a new champion: waiting long-polls hear it

    def report(self, worker_id: str, lease_id: str, result: ResultIn) -> ReportOutcome:
        """Stores a result durably, then decides what it means. Idempotent per lease."""
        return self.reporting.report(worker_id, lease_id, result)

    # -- reading --------------------------------------------------------------------------

    def study_summaries(self) -> list[StudySummary]:
        return self.summaries.study_summaries()

    def worker_summaries(self) -> list[WorkerSummary]:
        return self.summaries.worker_summaries()

    def worker_summaries_in_slices(self, size: int) -> Iterator[list[WorkerSummary]]:
        return self.summaries.worker_summaries_in_slices(size)

    def worker_count(self) -> int:
        return self.summaries.worker_count()

    def worker_tally(self) -> WorkerTally:
        """The workers' gauges as of now (a big swarm's scrape reads `census.WorkerCensus` instead)."""
        return WorkerTally.of(self.worker_summaries())

    def lineage(self, name: str) -> list[LineageEntry]:
        """The champion chain with who claimed and who verified each step."""
        return self.summaries.lineage(name)

    def history(self, name: str) -> list[ResultRecord]:
        return self.summaries.history(name)

    def version(self, study: str, version_hash: str) -> tuple[VersionRecord, float | None]:
        """A version of a study's target (the champion when `version_hash` is empty) and its metric."""
        return self.summaries.version(study, version_hash)

    def result(self, result_id: str) -> ResultRecord:
        """One stored result, whatever its study."""
        return self.summaries.result(result_id)

    # -- for tests that look inside -------------------------------------------------------

    def _classes(self, hardware_class: str, now: float) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        return self.roster.classes(hardware_class, now)

    def _seen(self, worker_id: str, state: str | None = None) -> None:
        self.roster.seen(worker_id, state)

    def _trust_change(self, worker_id: str, confirmed: int = 0, strikes: int = 0) -> None:
        self.roster.trust_change(worker_id, confirmed, strikes)
