"""The coordinator's core: turns worker requests into store changes and decisions.

It keeps a small in-memory picture of each study (champion, counters, active leases) that
it alone changes, always after the store has committed, so it never runs ahead of disk.
Scheduling and acceptance are delegated to their pure modules; gRPC lives in `service`.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autoswarm import words
from autoswarm.bundle import BundleError, sha256_hex, unpack_bundle
from autoswarm.slot_time import SlotTime
from autoswarm.hardware_class import HardwareError, checked_hardware, hardware_class, is_moved, moved_class, origin_class
from autoswarm.study import STUDY_FILE, Study, StudyError, decode_study_text, parse_study, parse_study_text
from autoswarm.coordinator import acceptance, scheduler
from autoswarm.coordinator.events import EngineEvents, NoEvents
from autoswarm.coordinator.lifecycle import UpdatePlan, UpdateRefused, check_action, plan_update
from autoswarm.coordinator.lineage import LineageEntry, lineage
from autoswarm.coordinator.liveness import LivenessPolicy
from autoswarm.coordinator.judging import Judgement as _Judgement
from autoswarm.coordinator.judging import Judging
from autoswarm.coordinator.study_state import PendingClaim, StudyState
from autoswarm.coordinator.store import (
    ChampionRecord,
    LeaseRecord,
    ResultRecord,
    Store,
    StudyEvent,
    StudyRecord,
    VersionRecord,
    WorkerRecord,
)

MAX_FAILED_BASELINES = 3
CLASS_CACHE_EXACT_BELOW = 64   # classes smaller than this see a newcomer at once
SCANS_PER_SECOND = 25_000      # workers a periodic pass over the swarm may visit per second of the loop
SETUP_RETRY_SECONDS = 3600.0   # a worker whose setup failed gets that study again after this


class CoordinatorError(Exception):
    """A request the coordinator refuses; `code` names the gRPC status the servicer sends."""

    code = "INTERNAL"


class NotFound(CoordinatorError):
    code = "NOT_FOUND"


class InvalidRequest(CoordinatorError):
    code = "INVALID_ARGUMENT"


class WrongState(CoordinatorError):
    code = "FAILED_PRECONDITION"


class AlreadyExists(CoordinatorError):
    code = "ALREADY_EXISTS"


class NotYours(CoordinatorError):
    code = "PERMISSION_DENIED"


@dataclass(frozen=True)
class Limits:
    """Caps on what a worker or operator may send."""

    max_target_bytes: int = 1 << 20
    max_bundle_bytes: int = 64 << 20
    max_log_tail_chars: int = 8000
    max_description_chars: int = 500
    max_extra_metrics: int = 64
    max_slots: int = 64               # in-flight leases one worker may hold


@dataclass(frozen=True)
class EngineConfig:
    lease_factor: float = 2.0         # a lease lives timeout × factor + grace past each heartbeat
    lease_grace: float = 30.0
    heartbeat_interval: float = 5.0   # the shortest interval workers are told (liveness.min_interval)
    limits: Limits = field(default_factory=Limits)
    liveness: LivenessPolicy = field(default_factory=LivenessPolicy)

    def lease_ttl(self, study: Study) -> float:
        return study.timeout * self.lease_factor + self.lease_grace


@dataclass(frozen=True)
class TaskSpec:
    """A leased task as the servicer sends it."""

    lease_id: str
    study: str
    kind: str
    bundle_hash: str
    bundle_size: int
    parent: VersionRecord | None
    candidate: VersionRecord | None
    seed: int
    deadline: float
    claim: str = ""
    memory: str = ""


@dataclass(frozen=True)
class HeartbeatOutcome:
    cancelled: list[str]      # leases this worker no longer holds: stop them
    duplicates: list[str]     # explore leases whose candidate was evaluated already: do not evaluate
    interval: float = 0.0     # seconds until this worker's next heartbeat


@dataclass(frozen=True)
class ResultIn:
    """A worker's report, decoded from the wire but not yet trusted."""

    status: str
    metric: float | None
    extra: Mapping[str, float]
    candidate: bytes
    description: str
    log_tail: str
    timings: Mapping[str, float]
    cache_hit: bool = False


@dataclass(frozen=True)
class ReportOutcome:
    result_id: str
    duplicate: bool
    decision: str
    new_champion: bool


@dataclass
class _Presence:
    state: str
    last_seen: float
    dirty: bool = True
    slot_times: tuple[SlotTime, ...] = ()     # as the worker last reported them (memory only)
    silence: float = 20.0     # seconds it may stay silent and still count as connected


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
    def done(self) -> bool:
        return bool(self.error) or (
            (self.max_evaluations > 0 and self.evaluations >= self.max_evaluations or self.spent)
            and self.in_flight == 0 and self.pending_claims == 0
        )


@dataclass(frozen=True)
class WorkerSummary:
    record: WorkerRecord
    state: str
    last_seen: float
    running: int
    results: int
    trust: acceptance.Trust = acceptance.Trust()
    slot_times: tuple[SlotTime, ...] = ()


def _study_from_record(record: StudyRecord) -> Study:
    return parse_study(record.spec)


def study_spec_dict(study: Study) -> dict[str, Any]:
    """The study as plain data (what the store keeps), parseable again by `parse_study`."""
    data: dict[str, Any] = {
        "name": study.name, "target": study.target, "program": study.program, "evaluate": study.evaluate,
        "metric": study.metric, "direction": study.direction,
        "timeout": study.timeout, "exclude": list(study.exclude),
        "acceptance": {"quorum": study.acceptance.quorum, "min_delta": study.acceptance.min_delta,
                       "compare": study.acceptance.compare, "noise_sigmas": study.acceptance.noise_sigmas,
                       "baseline_runs": study.acceptance.baseline_runs},
        "mutator": {"kind": study.mutator.kind, **study.mutator.options},
    }
    if study.setup:
        data["setup"] = study.setup
    if study.time_budget is not None:
        data["time_budget"] = study.time_budget
    if study.max_cost_usd:
        data["max_cost_usd"] = study.max_cost_usd
    if study.max_tokens:
        data["max_tokens"] = study.max_tokens
    return data


class Engine(Judging):
    """State transitions of the swarm. Every public method is one request.

    Judging a report (`judging.Judging`) and replaying edits onto the champion
    (`merging.Merging`) live in their own modules; this class leases, records and applies."""

    def __init__(self, store: Store, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.time, on_change: Callable[[], None] = lambda: None,
                 events: EngineEvents | None = None) -> None:
        self.store = store
        self.config = config or EngineConfig()
        self.events: EngineEvents = events or NoEvents()
        self._clock = clock
        self._on_change = on_change
        self._studies: dict[str, StudyState] = {}
        self._presence: dict[str, _Presence] = {}
        self._workers: dict[str, WorkerRecord] = {w.id: w for w in store.workers()}
        self._running: dict[str, set[str]] = {}
        self._trust: dict[str, acceptance.Trust] = {}
        self._class_cache: dict[str, tuple[float, frozenset[str], frozenset[str], frozenset[str]]] = {}
        self._results_by_worker: dict[str, int] = store.count_results_by_worker()
        self._setup_failed: dict[tuple[str, str], float] = {}
        self.liveness = replace(self.config.liveness, min_interval=self.config.heartbeat_interval)
        self._connected = (-math.inf, 0)   # (valid until, workers connected): recounted periodically
        self._dirty: set[str] = set()      # workers whose presence the store has not seen yet
        now = clock()
        # Time the coordinator was down must not count against leases that were running, and
        # their workers may have been told to heartbeat up to half a lease's lifetime later.
        rooms = [self.liveness.restart_room(self.config.lease_ttl(_study_from_record(r)), self.config.lease_grace)
                 for r in store.studies()]
        store.push_active_deadlines(now + max(rooms, default=self.config.lease_grace))
        for record in store.studies():
            if not record.archived:  # a removed study keeps its rows but takes no part
                self._load_study(record)

    # -- studies --------------------------------------------------------------------------

    def _load_study(self, record: StudyRecord) -> StudyState:
        """Rebuilds a study's in-memory state from the store."""
        spec = _study_from_record(record)
        chain = self.store.champions(record.name)
        assert chain, f"study {record.name} has no champion row"
        counts = self.store.study_counts(record.name)
        bundle = self.store.bundle(record.bundle_hash) or b""
        state = StudyState(record, spec, len(bundle), chain[-1], counts.evaluations, counts.improvements,
                           counts.failed_baselines, chain[0].metric)
        state.scores = {c.version: c.metric for c in chain if c.metric is not None}
        state.llm_tokens, state.cost_usd = self.store.study_spend(record.name)
        state.failed_edits = counts.failed_edits
        for lease in self.store.active_leases(record.name):
            state.active[lease.id] = lease
            self._running.setdefault(lease.worker_id, set()).add(lease.id)
        owner_of = {w.id: w.owner for w in self._workers.values()}
        claims = self.store.claims(record.name)
        state.claimed_versions = {c.version for c in claims}
        for claim in claims:
            if claim.state == "pending":
                state.claims[claim.id] = PendingClaim(claim)
        outvoted: set[str] = set()
        champion_claim = next((c.id for c in claims if c.state == "accepted" and c.version == chain[-1].version), None)
        for result in self.store.results(record.name):
            if result.kind == "explore":
                state.remember(result)
            if result.decision == words.OUTVOTED:
                outvoted.add(result.id)
                self._trust_change(result.worker_id, strikes=1)
            if result.status == "ok" and result.kind == "baseline" and result.metric is not None \
                    and not self.trust(result.worker_id).quarantined and result.decision != words.OUTVOTED \
                    and not self._moved_out(result.worker_id, result.hardware_class):
                state.add_baseline(result.version, result.hardware_class, result.worker_id, result.metric, result.id)
            if result.decision == words.WAITING:
                state.waiting.add(result.hardware_class, result.id)
            if result.claim == champion_claim and result.improvement is not None and result.metric is not None \
                    and result.decision != words.OUTVOTED:
                state.evidence.append((result.hardware_class, result.worker_id, result.metric))
            pending = state.claims.get(result.claim)
            if pending is not None and result.improvement is not None and result.metric is not None:
                pending.measurements.append(acceptance.Measurement(
                    result.worker_id, owner_of.get(result.worker_id, ""), result.hardware_class, result.metric,
                    result.improvement, result.threshold or 0.0, result.decision in ("claim", "confirm", "keep"),
                    result_id=result.id))
            elif pending is not None and result.kind == "verify" and result.status != "ok":
                pending.failures += 1
        for claim in claims:
            if claim.state == "accepted" and claim.origin == "explore" and claim.claimant_result not in outvoted:
                self._trust_change(claim.claimant_worker, confirmed=1)
        for pending in state.claims.values():
            # The noise each measurement was judged with, as the class shows it now.
            pending.measurements = [replace(m, noise=state.noise_of(pending.record.parent, m.hardware_class))
                                    for m in pending.measurements]
        for lease in state.active.values():
            if lease.claim in state.claims:
                state.claims[lease.claim].in_flight.add(lease.id)
        self._studies[record.name] = state
        return state

    def _trust_change(self, worker_id: str, confirmed: int = 0, strikes: int = 0) -> None:
        if worker_id:
            trust = self._trust.get(worker_id, acceptance.Trust())
            self._trust[worker_id] = replace(trust, confirmed=trust.confirmed + confirmed,
                                             refuted=trust.refuted + strikes)
            if strikes:
                self._class_cache.clear()  # whether its class can verify may have changed

    def _moved_out(self, worker_id: str, hardware_class_key: str) -> bool:
        """Whether this worker has been moved out of the class a result of it was measured in."""
        worker = self._workers.get(worker_id)
        return worker is not None and is_moved(worker.hardware_class) and worker.hardware_class != hardware_class_key

    def _open_claims(self, worker_id: str) -> int:
        """Claims of this worker's own edits that wait for verification, in every study."""
        return sum(1 for s in self._studies.values() for p in s.claims.values()
                   if p.record.claimant_worker == worker_id and p.record.origin == "explore")

    def _move_out_of_class(self, worker_id: str) -> None:
        """Moves a worker that measures unlike its reported class to a class of its own.

        Its runs leave the class's baselines and noise in every study; it keeps the new class
        when it registers again (see `register`), and `status` shows it.
        """
        worker = self._workers.get(worker_id)
        if worker is None or is_moved(worker.hardware_class):
            return
        moved = replace(worker, hardware_class=moved_class(worker.hardware_class, worker.id))
        self.store.upsert_worker(moved)
        self._workers[worker_id] = moved
        self._class_cache.clear()
        for state in self._studies.values():
            state.samples.remove_worker(worker.hardware_class, worker_id)

    def trust(self, worker_id: str) -> acceptance.Trust:
        trust = self._trust.get(worker_id, acceptance.Trust())
        worker = self._workers.get(worker_id)
        return replace(trust, moved=True) if worker is not None and is_moved(worker.hardware_class) else trust

    def add_study(self, bundle: bytes, max_evaluations: int = 0) -> tuple[str, str, str, bool]:
        """Adds a study from its bundle; returns (name, bundle hash, champion hash, already present)."""
        if max_evaluations < 0:
            raise InvalidRequest("max_evaluations must be >= 0 (0 means unbounded)")
        spec, files, target = self._unpack_study(bundle)
        bundle_hash = sha256_hex(bundle)
        existing = self._studies.get(spec.name)
        archived = self.store.study(spec.name) if existing is None else None
        if archived is not None and archived.archived:
            raise AlreadyExists(f"study {spec.name!r} was removed (its results are kept); "
                                "give the new one another name")
        if existing is not None:
            if existing.record.bundle_hash != bundle_hash:
                raise AlreadyExists(
                    f"study {spec.name!r} already exists with different files; `autoswarm study update` replaces "
                    "its program, data or mutator settings, another name starts a new study"
                )
            if max_evaluations and max_evaluations != existing.record.max_evaluations:
                self.store.set_study_limit(spec.name, max_evaluations)
                existing.record = replace(existing.record, max_evaluations=max_evaluations)
                self._on_change()
            return spec.name, bundle_hash, existing.champion.version, True
        initial = VersionRecord(spec.name, sha256_hex(target), "", target, "initial version", "study", self._clock())
        self.store.add_study(spec.name, study_spec_dict(spec), bundle_hash, bundle, max_evaluations, initial)
        record = self.store.study(spec.name)
        assert record is not None
        self._load_study(record)
        self._on_change()
        return spec.name, bundle_hash, initial.hash, False

    def _unpack_study(self, bundle: bytes) -> tuple[Study, dict[str, bytes], bytes]:
        """(study, files, target content) of a bundle an operator sent, checked against the limits."""
        limits = self.config.limits
        if len(bundle) > limits.max_bundle_bytes:
            raise InvalidRequest(f"bundle is {len(bundle)} bytes, over the {limits.max_bundle_bytes}-byte cap")
        try:
            files = unpack_bundle(bundle, limits.max_bundle_bytes)
        except BundleError as exc:
            raise InvalidRequest(str(exc)) from exc
        if STUDY_FILE not in files:
            raise InvalidRequest("bundle has no study.toml at its top level")
        try:
            spec = parse_study_text(decode_study_text(files[STUDY_FILE]))
        except StudyError as exc:
            raise InvalidRequest(f"study.toml: {exc}") from exc
        if spec.target not in files:
            raise InvalidRequest(f"target: {spec.target!r} is not in the study directory; create it or fix the name")
        target = files[spec.target]
        if len(target) > limits.max_target_bytes:
            raise InvalidRequest(f"target {spec.target} is {len(target)} bytes, over the {limits.max_target_bytes}-byte cap")
        return spec, files, target

    # -- study lifecycle (operator) -------------------------------------------------------

    def study_record(self, name: str) -> StudyRecord:
        """The stored record of a live study (paused, priority, budget, bundle)."""
        state = self._studies.get(name)
        if state is None:
            raise NotFound(f"no study named {name!r}; `autoswarm study list` lists the studies")
        return state.record

    def change_study(self, name: str, action: str = "", priority: int = 0,
                     max_evaluations: int | None = None) -> tuple[StudyRecord, int]:
        """Pause, resume or remove a study, or set its priority or budget; returns (record, leases released).

        Pausing and removing hand the study's running leases back at once: their workers hear
        it on their next heartbeat and drop the task, and no new task of it is leased.
        """
        state = self._studies.get(name)
        if state is None:
            raise NotFound(f"no study named {name!r}; `autoswarm study list` lists the studies")
        try:
            check_action(action)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        if priority < 0 or priority > 1000:
            raise InvalidRequest("priority must be between 1 and 1000 (0 leaves it unchanged)")
        if max_evaluations is not None and max_evaluations < 0:
            raise InvalidRequest("max_evaluations must be >= 0 (0 means unbounded)")
        record = state.record
        changes = {"paused": {"pause": True, "resume": False}.get(action), "archived": True if action == "remove" else None,
                   "priority": priority or None, "max_evaluations": max_evaluations}
        details = [action] if action else []
        details += [f"priority {priority}"] if priority else []
        details += [f"budget {max_evaluations or 'unbounded'}"] if max_evaluations is not None else []
        leases = [lease for lease in state.active.values()] if action in ("pause", "remove") else []
        now = self._clock()
        released = self.store.change_study(name, StudyEvent(name, now, action or "settings", ", ".join(details)),
                                           release_leases=[lease.id for lease in leases], **changes)
        for lease in leases:
            self._forget_lease(lease)
            self.events.leases_closed(lease.study, lease.kind, "released")
        state.record = replace(record, **{key: value for key, value in changes.items() if value is not None})
        if action == "remove":
            del self._studies[name]
        self._on_change()
        return state.record, released

    def update_study(self, bundle: bytes) -> tuple[str, str, str, UpdatePlan]:
        """A new bundle of an existing study; returns (name, bundle hash, champion hash, what changed).

        Allowed when only the program, the evaluation's data or the mutator settings change
        (see `lifecycle.plan_update`); champion and history stay, and the change is recorded
        as an event in the study's lineage. New tasks use the new bundle.
        """
        spec, files, _ = self._unpack_study(bundle)
        state = self._studies.get(spec.name)
        if state is None:
            raise NotFound(f"no study named {spec.name!r} to update; `autoswarm study add` adds it")
        bundle_hash = sha256_hex(bundle)
        if bundle_hash == state.record.bundle_hash:
            return spec.name, bundle_hash, state.champion.version, UpdatePlan(())
        old_files = unpack_bundle(self.store.bundle(state.record.bundle_hash) or b"", self.config.limits.max_bundle_bytes)
        try:
            plan = plan_update(state.spec, spec, old_files, files)
        except UpdateRefused as exc:
            raise WrongState(str(exc)) from exc
        self.store.update_study_bundle(spec.name, study_spec_dict(spec), bundle_hash, bundle,
                                       StudyEvent(spec.name, self._clock(), "update", plan.detail))
        state.record = replace(state.record, bundle_hash=bundle_hash, spec=study_spec_dict(spec))
        state.spec = spec
        state.bundle_size = len(bundle)
        self._on_change()
        return spec.name, bundle_hash, state.champion.version, plan

    def study_events(self, name: str) -> list[StudyEvent]:
        """What operators did to a study (updates, pauses...), oldest first."""
        self.study(name)
        return self.store.study_events(name)

    def result(self, result_id: str) -> ResultRecord:
        """One stored result, whatever its study."""
        found = self.store.result(result_id)
        if found is None:
            raise NotFound(f"no result {result_id!r}; `autoswarm history` lists result ids")
        return found

    def bundle(self, bundle_hash: str) -> bytes:
        data = self.store.bundle(bundle_hash)
        if data is None:
            raise NotFound(f"no bundle {bundle_hash!r}")
        return data

    # -- workers --------------------------------------------------------------------------

    def register(self, worker_id: str, name: str, hardware: dict[str, Any], slots: int,
                 mutators: Sequence[str], owner: str = "") -> tuple[str, str]:
        """Registers a worker (or refreshes a known one); returns (worker id, hardware class)."""
        if not name or len(name) > 128 or not name.isprintable():
            raise InvalidRequest("worker name must be 1-128 printable characters (no control characters)")
        try:
            hardware = checked_hardware(hardware)
        except HardwareError as exc:
            raise InvalidRequest(str(exc)) from exc
        if not 1 <= slots <= self.config.limits.max_slots:
            raise InvalidRequest(f"slots must be between 1 and {self.config.limits.max_slots}, got {slots}")
        if len(mutators) > 16 or any(not m or len(m) > 32 for m in mutators):
            raise InvalidRequest("mutators must be at most 16 names of 1-32 characters")
        now = self._clock()
        hw_class = hardware_class(
            str(hardware.get("cpu_model", "")), int(hardware.get("cpu_cores", 1) or 1),
            [(g.get("name", "?"), int(g.get("memory_bytes", 0))) for g in hardware.get("gpus", [])],
        )
        known = self._workers.get(worker_id) if worker_id else None
        if known is not None and is_moved(known.hardware_class) and origin_class(known.hardware_class) == hw_class:
            hw_class = known.hardware_class  # moved out of its class for measuring unlike it: it stays out
        record = WorkerRecord(
            id=known.id if known else "w-" + secrets.token_hex(8),
            name=name, hardware=hardware, hardware_class=hw_class, slots=slots,
            mutators=tuple(dict.fromkeys(mutators)), state="idle",
            registered=known.registered if known else now, last_seen=now, owner=owner,
        )
        self.store.upsert_worker(record)
        self._workers[record.id] = record
        cached = self._class_cache.get(hw_class)
        if cached is None or len(cached[1]) < CLASS_CACHE_EXACT_BELOW or (known and known.hardware_class != hw_class):
            self._class_cache.clear()  # a new member or a changed class
        # else: a newcomer to a big class joins its cached sets at the next refresh (within a
        # second); clearing them for each of thousands of newcomers would rescan the swarm each time.
        self._presence[record.id] = _Presence("idle", now, dirty=False,
                                              silence=self.liveness.allowed_silence(self.liveness.min_interval))
        return record.id, hw_class

    def owner_of(self, worker_id: str) -> str | None:
        """The owner a worker registered with, or None for an unknown worker."""
        worker = self._workers.get(worker_id)
        return worker.owner if worker is not None else None

    def _known_worker(self, worker_id: str) -> WorkerRecord:
        worker = self._workers.get(worker_id)
        if worker is None:
            raise NotFound(f"unknown worker {worker_id!r}; register again")
        return worker

    def _seen(self, worker_id: str, state: str | None = None) -> None:
        presence = self._presence.get(worker_id)
        now = self._clock()
        if presence is None:
            self._presence[worker_id] = _Presence(state or "idle", now,
                                                  silence=self.liveness.allowed_silence(self.liveness.min_interval))
        else:
            presence.last_seen = now
            presence.state = state or presence.state
            presence.dirty = True
        self._dirty.add(worker_id)

    def flush_presence(self, max_rows: int | None = None) -> int:
        """Writes worker liveness to the store in one commit (called periodically).

        `max_rows` bounds what one call writes, so that thousands of workers seen since the
        last call are written over several calls instead of stalling every request at once.
        Returns how many workers are still waiting to be written.
        """
        # A set of the workers seen since, not a scan of every presence: with 100,000 workers
        # connected, a scan per tick would cost more than the rows written.
        batch = list(self._dirty) if max_rows is None else list(itertools.islice(self._dirty, max_rows))
        rows = [(wid, p.state, p.last_seen) for wid in batch if (p := self._presence.get(wid)) is not None]
        self.store.touch_workers(rows)
        self._dirty.difference_update(batch)
        for wid, _, _ in rows:
            self._presence[wid].dirty = False
        return len(self._dirty)

    def _scan_period(self) -> float:
        """How long a pass over every worker stays valid: a second, longer for a big swarm,
        so that such passes take a bounded share of the loop (liveness changes on the scale
        of heartbeat intervals, which grow with the swarm too)."""
        return max(1.0, len(self._presence) / SCANS_PER_SECOND)

    # -- leases ---------------------------------------------------------------------------

    def _champion_version(self, state: StudyState) -> VersionRecord:
        """The champion's version record, read from the store once per champion."""
        if state.champion_version is None or state.champion_version.hash != state.champion.version:
            state.champion_version = self.store.version(state.spec.name, state.champion.version)
        assert state.champion_version is not None
        return state.champion_version

    def _classes(self, hardware_class: str, now: float) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        """(workers of the class, those connected, classes with a connected trusted worker).

        Recomputed at most once a second (`_scan_period`): a scan of every worker on every
        lease would make leasing O(workers), and liveness only changes on the scale of heartbeats.
        """
        cached = self._class_cache.get(hardware_class)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2], cached[3]
        # Every class in one pass: a pass per class would cost classes × workers each second,
        # which in a volunteer swarm of many kinds of machine is a long stall of the loop.
        members: dict[str, set[str]] = {}
        live: dict[str, set[str]] = {}
        live_classes: set[str] = set()
        presences = self._presence
        for worker in self._workers.values():
            cls = worker.hardware_class
            members.setdefault(cls, set()).add(worker.id)
            presence = presences.get(worker.id)   # _live, inlined: this loop visits every worker
            if presence is not None and now - presence.last_seen <= presence.silence:
                live.setdefault(cls, set()).add(worker.id)
                # Classes that could verify: a worker outvoted once (or quarantined) does not, and
                # preferring its class would leave claims waiting for nobody.
                if cls not in live_classes and self.trust(worker.id).may_verify:
                    live_classes.add(cls)
        frozen_live_classes = frozenset(live_classes)
        self._class_cache.clear()
        until = now + self._scan_period()
        for cls in members.keys() | {hardware_class}:
            self._class_cache[cls] = (until, frozenset(members.get(cls, ())), frozenset(live.get(cls, ())),
                                      frozen_live_classes)
        entry = self._class_cache[hardware_class]
        return entry[1], entry[2], entry[3]

    def _live(self, worker_id: str, now: float) -> bool:
        presence = self._presence.get(worker_id)
        return presence is not None and now - presence.last_seen <= presence.silence

    def connected(self) -> int:
        """Workers heard from within the silence they were allowed (recounted every `_scan_period`)."""
        now = self._clock()
        until, count = self._connected
        if now >= until:
            count = sum(1 for p in self._presence.values() if now - p.last_seen <= p.silence)
            self._connected = (now + self._scan_period(), count)
        return count

    def next_contact(self, worker_id: str, polling: float = 0.0, state: str = "") -> float:
        """Seconds until this worker should heartbeat, from its leases' deadlines and the swarm's size.

        `polling` is the length of the idle long-poll it was just told, which is its next
        contact when it holds no lease. Its presence is trusted for as long as that allows.
        `state`, when given, is the state the worker sent with the call (an idle long-poll).
        """
        now = self._clock()
        deadlines = [lease.deadline for lease_id in self._running.get(worker_id, ())
                     if (lease := self._active_lease(lease_id)) is not None]
        interval = self.liveness.heartbeat_interval(now, deadlines, self.connected())
        presence = self._presence.get(worker_id)
        if presence is not None:
            presence.silence = self.liveness.allowed_silence(interval if deadlines or not polling else polling)
            if state and state[:32] != presence.state:
                presence.state = state[:32]
                presence.dirty = True
                self._dirty.add(worker_id)
        return interval

    def poll_seconds(self) -> float:
        """How long an idle worker's next long-poll should last."""
        return self.liveness.poll_seconds(self.connected())

    def lease(self, worker_id: str, pipelined: bool = False) -> TaskSpec | None:
        """Leases the next task for this worker, or None when there is none right now.

        `pipelined`: the worker prepares the next task while it evaluates, so it may hold up to
        twice its slots."""
        worker = self._known_worker(worker_id)
        self._seen(worker_id)
        now = self._clock()
        running = self._running.setdefault(worker_id, set())
        cls = worker.hardware_class
        members, live, live_classes = self._classes(cls, now)
        trust = self.trust(worker_id)
        # A study whose setup failed on this worker is not offered to it again for a while.
        skip = {study for (wid, study), when in self._setup_failed.items() if wid == worker_id
                and now - when < SETUP_RETRY_SECONDS}
        choice = scheduler.choose_task(
            [replace(s.view(worker_id, cls, members, live, live_classes), priority=s.record.priority)
             for s in self._studies.values() if s.spec.name not in skip and not s.record.paused],
            scheduler.WorkerView(worker_id, frozenset(worker.mutators), len(running), worker.slots,
                                 worker.owner, trust.quarantined, trust.may_verify, cls, pipelined),
        )
        if choice is None:
            return None
        state = self._studies[choice.study]
        champion = self._champion_version(state)
        parent, candidate, claim_id = champion, champion, ""
        if choice.kind == scheduler.VERIFY:
            pending = state.claims[choice.claim_id]
            candidate = self.store.version(choice.study, pending.record.version)
            parent = self.store.version(choice.study, pending.record.parent) or champion
            assert candidate is not None
            claim_id = pending.record.id
        lease = LeaseRecord(
            id=self.store.new_lease_id(now), study=choice.study, worker_id=worker_id, kind=choice.kind,
            parent=parent.hash if choice.kind != scheduler.BASELINE else champion.parent,
            candidate="" if choice.kind == scheduler.EXPLORE else candidate.hash,
            seed=secrets.randbits(62), issued=now, deadline=now + self.config.lease_ttl(state.spec),
            state="active", closed=None, claim=claim_id,
        )
        self.store.insert_lease(lease)
        state.active[lease.id] = lease
        if claim_id:
            state.claims[claim_id].in_flight.add(lease.id)
        running.add(lease.id)
        self._presence[worker_id].state = "working"
        self.events.lease_granted(choice.study, choice.kind)
        return TaskSpec(
            lease_id=lease.id, study=choice.study, kind=choice.kind, bundle_hash=state.record.bundle_hash,
            bundle_size=state.bundle_size,
            parent=parent if choice.kind == scheduler.EXPLORE else None,
            candidate=None if choice.kind == scheduler.EXPLORE else candidate,
            seed=lease.seed, deadline=lease.deadline, claim=claim_id,
            memory=state.memory(lease.id, now) if choice.kind == scheduler.EXPLORE else "",
        )

    def heartbeat(self, worker_id: str, lease_ids: Sequence[str], state: str,
                  descriptions: Mapping[str, str] | None = None,
                  candidate_hashes: Mapping[str, str] | None = None,
                  slot_times: Sequence[SlotTime] = ()) -> HeartbeatOutcome:
        """Extends the worker's running leases and takes note of the ideas it is evaluating.

        Returns the leases it no longer holds and the explore leases whose candidate was
        evaluated (or is being evaluated) already for the same parent.
        """
        self._known_worker(worker_id)
        self._seen(worker_id, state[:32] or None)
        if slot_times:
            self._presence[worker_id].slot_times = tuple(slot_times[: self.config.limits.max_slots])
        now = self._clock()
        held: dict[str, float] = {}
        cancelled: list[str] = []
        duplicates: list[str] = []
        for lease_id in lease_ids[:1024]:
            lease = self._active_lease(lease_id)
            if lease is None or lease.worker_id != worker_id:
                cancelled.append(lease_id)
                continue
            study = self._studies[lease.study]
            held[lease_id] = now + self.config.lease_ttl(study.spec)
            if descriptions and lease_id in descriptions:
                study.ideas[lease_id] = " ".join(descriptions[lease_id].split())[: self.config.limits.max_description_chars]
            candidate = (candidate_hashes or {}).get(lease_id, "")
            if candidate and lease.kind == scheduler.EXPLORE:
                if study.known_candidate(lease.parent, candidate, lease_id):
                    duplicates.append(lease_id)
                else:
                    study.candidates[lease_id] = (lease.parent, candidate)
        if held:
            self.store.extend_leases(worker_id, list(held), held)
            for lease_id, deadline in held.items():
                lease = self._active_lease(lease_id)
                if lease is not None:
                    self._studies[lease.study].active[lease_id] = replace(lease, deadline=max(lease.deadline, deadline))
        return HeartbeatOutcome(cancelled, duplicates, self.next_contact(worker_id))

    def _active_lease(self, lease_id: str) -> LeaseRecord | None:
        for state in self._studies.values():
            lease = state.active.get(lease_id)
            if lease is not None:
                return lease
        return None

    def _forget_lease(self, lease: LeaseRecord) -> None:
        state = self._studies[lease.study]
        state.active.pop(lease.id, None)
        state.ideas.pop(lease.id, None)
        state.candidates.pop(lease.id, None)
        if lease.claim in state.claims:
            state.claims[lease.claim].in_flight.discard(lease.id)
        self._running.get(lease.worker_id, set()).discard(lease.id)

    def release(self, worker_id: str, lease_ids: Sequence[str]) -> int:
        """Gives unfinished leases back so their work is scheduled again at once."""
        self._known_worker(worker_id)
        mine = [lid for lid in lease_ids if (lease := self._active_lease(lid)) is not None and lease.worker_id == worker_id]
        released = self.store.close_leases(mine, "released", self._clock()) if mine else 0
        for lease_id in mine:
            lease = self._active_lease(lease_id)
            if lease is not None:
                self._forget_lease(lease)
                self.events.leases_closed(lease.study, lease.kind, "released")
        if released:
            self._on_change()
        return released

    def expire_overdue(self) -> list[LeaseRecord]:
        """Expires leases past their deadline so their work is scheduled again."""
        now = self._clock()
        overdue = [lease for s in self._studies.values() for lease in s.active.values() if lease.deadline < now]
        if overdue:
            self.store.close_leases([lease.id for lease in overdue], "expired", now)
            for lease in overdue:
                self._forget_lease(lease)
                self.events.leases_closed(lease.study, lease.kind, "expired")
            self._on_change()
        return overdue

    # -- results --------------------------------------------------------------------------

    def _validate(self, result: ResultIn) -> ResultIn:
        limits = self.config.limits
        if result.status not in words.STATUS_CODES:
            raise InvalidRequest(f"unknown result status {result.status!r}")
        if result.metric is not None and not math.isfinite(result.metric):
            raise InvalidRequest("metric must be finite; report a NaN or infinite metric as status invalid-metric")
        if result.status == "ok" and result.metric is None:
            raise InvalidRequest("status ok needs a metric")
        if len(result.candidate) > limits.max_target_bytes:
            raise InvalidRequest(f"candidate is {len(result.candidate)} bytes, over the {limits.max_target_bytes}-byte cap")
        if len(result.extra) > limits.max_extra_metrics:
            raise InvalidRequest(f"at most {limits.max_extra_metrics} extra metrics")
        for key, value in list(result.extra.items()) + list(result.timings.items()):
            if len(key) > 64 or not math.isfinite(value):
                raise InvalidRequest(f"extra metric or timing {key[:64]!r} must have a short name and a finite value")
        return replace(
            result,
            description=" ".join(result.description.split())[: limits.max_description_chars],
            log_tail=result.log_tail[-limits.max_log_tail_chars:],
        )

    def report(self, worker_id: str, lease_id: str, result: ResultIn) -> ReportOutcome:
        """Stores a result durably, then decides what it means. Idempotent per lease."""
        worker = self._known_worker(worker_id)
        self._seen(worker_id)
        # A lease active in memory has no result yet (a result closes its lease in the same
        # commit): the common case needs neither of the two reads below.
        lease = self._active_lease(lease_id)
        if lease is None:
            stored = self.store.result(lease_id)
            if stored is not None:
                if stored.worker_id != worker_id:
                    raise NotYours(f"lease {lease_id} belongs to another worker")
                champion = self._studies[stored.study].champion
                return ReportOutcome(stored.id, True, stored.decision, champion.result_id == stored.id)
            lease = self.store.lease(lease_id)
        if lease is None:
            raise NotFound(f"unknown lease {lease_id!r}")
        if lease.worker_id != worker_id:
            raise NotYours(f"lease {lease_id} belongs to another worker")
        if lease.state != "active":
            raise WrongState(
                f"lease {lease_id} was {lease.state} at {time.strftime('%H:%M:%S', time.localtime(lease.closed or 0))}; "
                "its task has been handed out again, so this result is not recorded"
            )
        result = self._validate(result)
        state = self._studies[lease.study]
        now = self._clock()
        if lease.kind == scheduler.EXPLORE:
            judgement = self._judge_explore(state, lease, worker, result, now)
        elif lease.kind == scheduler.VERIFY:
            judgement = self._judge_verify(state, lease, worker, result, now)
        else:
            judgement = self._judge_baseline(state, lease, worker, result, now)
        if judgement.accepted is not None:
            self._accept(state, judgement, now)
        record = judgement.record
        self.store.record_result(record, versions=judgement.versions, claims=judgement.claims,
                                 decisions=judgement.decisions, new_champion=judgement.new_champion,
                                 champion_metric=judgement.champion_metric)
        self._apply(state, lease, judgement, result)
        return ReportOutcome(record.id, False, record.decision, judgement.new_champion is not None)

    def _apply(self, state: StudyState, lease: LeaseRecord, judgement: _Judgement, result: ResultIn) -> None:
        """Brings memory in line with what the store has just committed."""
        record = judgement.record
        self._forget_lease(lease)
        if record.status not in words.FREE_STATUSES:
            state.evaluations += 1
        state.llm_tokens += int(result.timings.get("llm_tokens", 0))
        if record.status == "mutator-error" and lease.kind == scheduler.EXPLORE:
            state.failed_edits += 1
        state.cost_usd += float(result.timings.get("cost_usd", 0.0))
        self._results_by_worker[record.worker_id] = self._results_by_worker.get(record.worker_id, 0) + 1
        if record.status == "setup-failed":
            self._setup_failed[(record.worker_id, record.study)] = record.created
        if lease.kind == scheduler.EXPLORE:
            state.remember(record)
        if judgement.waits:
            state.waiting.add(record.hardware_class, record.id)
        self._apply_consequences(state, judgement)
        if lease.kind == scheduler.BASELINE and record.status != "ok":
            state.failed_baselines += 1
            if state.failed_baselines >= MAX_FAILED_BASELINES and state.champion.version not in state.scores:
                error = (f"the champion failed to evaluate {state.failed_baselines} times "
                         f"(last: {record.status}); fix the study and add it under a new name")
                self.store.set_study_error(state.spec.name, error)
                state.record = replace(state.record, error=error)
        self.events.result_recorded(state.spec.name, lease.kind, record.status, record.decision,
                                    record.hardware_class, record.timings, result.cache_hit)
        self._announce(state, judgement)
        if judgement.sample is not None and judgement.sample[0] == state.champion.version:
            # A baseline of the champion: that class's waiting results can be judged, and every
            # class's when it came from the tier's reference (their predictions now exist).
            cls = judgement.sample[1]
            for waiting in sorted(state.waiting.classes()) if state.tiers.reference() == cls else [cls]:
                self._judge_waiting(state, waiting, record.created)
        self._on_change()

    def _announce(self, state: StudyState, judgement: _Judgement) -> None:
        for outcome in judgement.funnel:
            self.events.claim(state.spec.name, outcome)
        if judgement.champion_metric is not None:
            self.events.champion_changed(state.spec.name, judgement.champion_metric[2], improvement=False)
        if judgement.new_champion is not None and judgement.new_champion.metric is not None:
            self.events.champion_changed(state.spec.name, judgement.new_champion.metric, improvement=True)

    def _judge_waiting(self, state: StudyState, hardware_class: str, now: float) -> None:
        """A class's baseline arrived: its waiting results are judged now, oldest first.

        Each is decided as it would have been had the baseline been there when it arrived, and
        committed as a rewrite of its own row, with the claim, merge or champion it causes.
        """
        for result_id in state.waiting.take(hardware_class):
            stored = self.store.result(result_id)
            worker = self._workers.get(stored.worker_id) if stored is not None else None
            if stored is None or worker is None or stored.decision != words.WAITING or stored.metric is None:
                continue
            lease = LeaseRecord(id=stored.id, study=stored.study, worker_id=stored.worker_id, kind=stored.kind,
                                parent=stored.parent, candidate="", seed=0, issued=stored.created,
                                deadline=stored.created, state="reported", closed=stored.created, claim=stored.claim)

            def done(decision: str, _stored: ResultRecord = stored, **judged: Any) -> _Judgement:
                return _Judgement(replace(_stored, decision=decision, **judged))

            judgement = self._explore_verdict(state, lease, worker, stored.metric, stored.version, done, now)
            if judgement.waits:
                state.waiting.add(hardware_class, result_id)
                continue
            if judgement.accepted is not None:
                self._accept(state, judgement, now)
            self.store.record_result(judgement.record, versions=judgement.versions, claims=judgement.claims,
                                     decisions=judgement.decisions, new_champion=judgement.new_champion,
                                     champion_metric=judgement.champion_metric, rewrite=True)
            state.redecide(result_id, judgement.record.decision)
            self._apply_consequences(state, judgement)
            self._announce(state, judgement)

    def _apply_consequences(self, state: StudyState, judgement: _Judgement) -> None:
        """Samples, trust, claims and champion after a judgement was committed."""
        record = judgement.record
        for result_id, decision in judgement.decisions:
            state.redecide(result_id, decision)
        if judgement.sample is not None:
            state.add_baseline(judgement.sample[0], judgement.sample[1], record.worker_id, judgement.sample[2], record.id)
        if judgement.noise_run is not None:
            state.samples.note_run(judgement.noise_run[0], judgement.noise_run[1], record.worker_id,
                                   judgement.noise_run[2])
        for outlier in judgement.outliers:
            self._move_out_of_class(outlier.worker_id)
        for worker_id in judgement.strikes:
            self._trust_change(worker_id, strikes=1)
        for worker_id in judgement.credits:
            self._trust_change(worker_id, confirmed=1)
        if judgement.champion_metric is not None and state.champion.seq == judgement.champion_metric[1]:
            metric = judgement.champion_metric[2]
            state.champion = replace(state.champion, metric=metric, result_id=record.id)
            state.scores[state.champion.version] = metric
            if state.champion.seq == 0:
                state.initial_metric = metric
        for pending in judgement.opened:
            state.claims[pending.record.id] = pending
            state.claimed_versions.add(pending.record.version)
        for pending, _ in judgement.resolved:
            state.claims.pop(pending.record.id, None)
        for pending in judgement.audits:
            pending.audit = True
        if judgement.new_champion is not None:
            state.champion = judgement.new_champion
            state.improvements += 1
            state.evidence = [(m.hardware_class, m.worker_id, m.value) for m in judgement.settled.agreeing] \
                if judgement.settled is not None else []
            if judgement.new_champion.metric is not None:
                state.scores[judgement.new_champion.version] = judgement.new_champion.metric

    # -- reading --------------------------------------------------------------------------

    def study_summaries(self) -> list[StudySummary]:
        return [
            StudySummary(s.spec.name, s.spec.metric, s.spec.direction, s.champion, s.initial_metric,
                         s.evaluations, s.improvements, len(s.active), s.record.max_evaluations, s.record.error,
                         len(s.claims), s.llm_tokens, s.cost_usd, s.spec.max_tokens, s.spec.max_cost_usd,
                         s.failed_edits)
            for s in sorted(self._studies.values(), key=lambda s: s.spec.name)
        ]

    def worker_summaries(self) -> list[WorkerSummary]:
        now = self._clock()
        counts = self._results_by_worker
        offline_after = self.liveness.allowed_silence(self.liveness.min_interval)
        out = []
        for worker in self._workers.values():
            presence = self._presence.get(worker.id)
            last_seen = presence.last_seen if presence else worker.last_seen
            state = presence.state if presence else worker.state
            trust = self.trust(worker.id)
            if state == "stopped":
                pass  # it said goodbye: stopped, not offline
            elif now - last_seen > (presence.silence if presence else offline_after):  # as long as it was told
                state = "offline"
            elif trust.quarantined:
                state = "quarantined"
            presence = self._presence.get(worker.id)
            out.append(WorkerSummary(worker, state, last_seen, len(self._running.get(worker.id, ())),
                                     counts.get(worker.id, 0), trust,
                                     presence.slot_times if presence is not None else ()))
        return out

    def study(self, name: str) -> Study:
        state = self._studies.get(name)
        if state is None:
            raise NotFound(f"no study named {name!r}; `autoswarm status` lists the studies")
        return state.spec

    def lineage(self, name: str) -> list[LineageEntry]:
        """The champion chain with who claimed and who verified each step."""
        self.study(name)
        return lineage(self.store, name)

    def history(self, name: str) -> list[ResultRecord]:
        self.study(name)
        return self.store.results(name)

    def version(self, study: str, version_hash: str) -> tuple[VersionRecord, float | None]:
        """A version of a study's target (the champion when `version_hash` is empty) and its metric."""
        state = self._studies.get(study)
        if state is None:
            raise NotFound(f"no study named {study!r}; `autoswarm status` lists the studies")
        wanted = version_hash or state.champion.version
        found = self.store.version(study, wanted)
        if found is None:
            raise NotFound(f"study {study!r} has no version {wanted!r}")
        metric = next((c.metric for c in reversed(self.store.champions(study)) if c.version == wanted), None)
        return found, metric
