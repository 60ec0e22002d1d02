"""The coordinator's core: turns worker requests into store changes and decisions.

It keeps a small in-memory picture of each study (champion, counters, active leases) that
it alone changes, always after the store has committed, so it never runs ahead of disk.
Scheduling and acceptance are delegated to their pure modules; gRPC lives in `service`.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autoswarm import words
from autoswarm.bundle import BundleError, sha256_hex, unpack_bundle
from autoswarm.hardware_class import hardware_class
from autoswarm.study import STUDY_FILE, Study, StudyError, parse_study, parse_study_text
from coordinator import acceptance, scheduler
from coordinator.events import EngineEvents, NoEvents
from coordinator.store import (
    ChampionRecord,
    LeaseRecord,
    ResultRecord,
    Store,
    StudyRecord,
    VersionRecord,
    WorkerRecord,
)

MAX_FAILED_BASELINES = 3


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


@dataclass(frozen=True)
class EngineConfig:
    lease_factor: float = 2.0         # a lease lives timeout × factor + grace past each heartbeat
    lease_grace: float = 30.0
    heartbeat_interval: float = 5.0
    limits: Limits = field(default_factory=Limits)

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
class _StudyState:
    """In-memory mirror of one study; rebuilt from the store at start."""

    record: StudyRecord
    spec: Study
    bundle_size: int
    champion: ChampionRecord
    evaluations: int
    improvements: int
    failed_baselines: int
    initial_metric: float | None
    active: dict[str, LeaseRecord] = field(default_factory=dict)

    def view(self) -> scheduler.StudyView:
        return scheduler.StudyView(
            name=self.spec.name,
            mutator_kind=self.spec.mutator.kind,
            champion_measured=self.champion.metric is not None,
            baseline_in_flight=sum(1 for lease in self.active.values() if lease.kind == "baseline"),
            in_flight=len(self.active),
            evaluations=self.evaluations,
            max_evaluations=self.record.max_evaluations,
            blocked=bool(self.record.error),
        )


@dataclass
class _Presence:
    state: str
    last_seen: float
    dirty: bool = True


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

    @property
    def done(self) -> bool:
        return bool(self.error) or (
            self.max_evaluations > 0 and self.evaluations >= self.max_evaluations and self.in_flight == 0
        )


@dataclass(frozen=True)
class WorkerSummary:
    record: WorkerRecord
    state: str
    last_seen: float
    running: int
    results: int


def _study_from_record(record: StudyRecord) -> Study:
    return parse_study(record.spec)


def study_spec_dict(study: Study) -> dict[str, Any]:
    """The study as plain data (what the store keeps), parseable again by `parse_study`."""
    data: dict[str, Any] = {
        "name": study.name, "target": study.target, "program": study.program, "evaluate": study.evaluate,
        "metric": study.metric, "direction": study.direction, "time_budget": study.time_budget,
        "timeout": study.timeout, "exclude": list(study.exclude),
        "acceptance": {"quorum": study.acceptance.quorum, "min_delta": study.acceptance.min_delta,
                       "compare": study.acceptance.compare},
        "mutator": {"kind": study.mutator.kind, **study.mutator.options},
    }
    if study.setup:
        data["setup"] = study.setup
    return data


class Engine:
    """State transitions of the swarm. Every public method is one request."""

    def __init__(self, store: Store, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.time, on_change: Callable[[], None] = lambda: None,
                 events: EngineEvents | None = None) -> None:
        self.store = store
        self.config = config or EngineConfig()
        self.events: EngineEvents = events or NoEvents()
        self._clock = clock
        self._on_change = on_change
        self._studies: dict[str, _StudyState] = {}
        self._presence: dict[str, _Presence] = {}
        self._workers: dict[str, WorkerRecord] = {w.id: w for w in store.workers()}
        self._running: dict[str, set[str]] = {}
        now = clock()
        # Time the coordinator was down must not count against leases that were running.
        store.push_active_deadlines(now + self.config.lease_grace)
        for record in store.studies():
            self._load_study(record)

    # -- studies --------------------------------------------------------------------------

    def _load_study(self, record: StudyRecord) -> _StudyState:
        spec = _study_from_record(record)
        champion = self.store.champion(record.name)
        assert champion is not None, f"study {record.name} has no champion row"
        counts = self.store.study_counts(record.name)
        chain = self.store.champions(record.name)
        bundle = self.store.bundle(record.bundle_hash) or b""
        state = _StudyState(record, spec, len(bundle), champion, counts.evaluations, counts.improvements,
                            counts.failed_baselines, chain[0].metric if chain else None)
        for lease in self.store.active_leases(record.name):
            state.active[lease.id] = lease
            self._running.setdefault(lease.worker_id, set()).add(lease.id)
        self._studies[record.name] = state
        return state

    def add_study(self, bundle: bytes, max_evaluations: int = 0) -> tuple[str, str, str, bool]:
        """Adds a study from its bundle; returns (name, bundle hash, champion hash, already present)."""
        limits = self.config.limits
        if len(bundle) > limits.max_bundle_bytes:
            raise InvalidRequest(f"bundle is {len(bundle)} bytes, over the {limits.max_bundle_bytes}-byte cap")
        if max_evaluations < 0:
            raise InvalidRequest("max_evaluations must be >= 0 (0 means unbounded)")
        try:
            files = unpack_bundle(bundle, limits.max_bundle_bytes)
        except BundleError as exc:
            raise InvalidRequest(str(exc)) from exc
        if STUDY_FILE not in files:
            raise InvalidRequest("bundle has no study.toml at its top level")
        try:
            spec = parse_study_text(files[STUDY_FILE].decode("utf-8", errors="replace"))
        except StudyError as exc:
            raise InvalidRequest(f"study.toml: {exc}") from exc
        if spec.target not in files:
            raise InvalidRequest(f"target: {spec.target!r} is not in the study directory; create it or fix the name")
        target = files[spec.target]
        if len(target) > limits.max_target_bytes:
            raise InvalidRequest(f"target {spec.target} is {len(target)} bytes, over the {limits.max_target_bytes}-byte cap")
        bundle_hash = sha256_hex(bundle)
        existing = self._studies.get(spec.name)
        if existing is not None:
            if existing.record.bundle_hash != bundle_hash:
                raise AlreadyExists(
                    f"study {spec.name!r} already exists with different files; give the new one another name"
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

    def bundle(self, bundle_hash: str) -> bytes:
        data = self.store.bundle(bundle_hash)
        if data is None:
            raise NotFound(f"no bundle {bundle_hash!r}")
        return data

    # -- workers --------------------------------------------------------------------------

    def register(self, worker_id: str, name: str, hardware: dict[str, Any], slots: int,
                 mutators: Sequence[str]) -> tuple[str, str]:
        """Registers a worker (or refreshes a known one); returns (worker id, hardware class)."""
        if not name or len(name) > 128:
            raise InvalidRequest("worker name must be 1-128 characters")
        if not 1 <= slots <= 1024:
            raise InvalidRequest(f"slots must be between 1 and 1024, got {slots}")
        if len(mutators) > 16 or any(not m or len(m) > 32 for m in mutators):
            raise InvalidRequest("mutators must be at most 16 names of 1-32 characters")
        now = self._clock()
        hw_class = hardware_class(
            str(hardware.get("cpu_model", "")), int(hardware.get("cpu_cores", 1) or 1),
            [(g.get("name", "?"), int(g.get("memory_bytes", 0))) for g in hardware.get("gpus", [])],
        )
        known = self._workers.get(worker_id) if worker_id else None
        record = WorkerRecord(
            id=known.id if known else "w-" + secrets.token_hex(8),
            name=name, hardware=hardware, hardware_class=hw_class, slots=slots,
            mutators=tuple(dict.fromkeys(mutators)), state="idle",
            registered=known.registered if known else now, last_seen=now,
        )
        self.store.upsert_worker(record)
        self._workers[record.id] = record
        self._presence[record.id] = _Presence("idle", now, dirty=False)
        return record.id, hw_class

    def _known_worker(self, worker_id: str) -> WorkerRecord:
        worker = self._workers.get(worker_id)
        if worker is None:
            raise NotFound(f"unknown worker {worker_id!r}; register again")
        return worker

    def _seen(self, worker_id: str, state: str | None = None) -> None:
        presence = self._presence.get(worker_id)
        now = self._clock()
        if presence is None:
            self._presence[worker_id] = _Presence(state or "idle", now)
        else:
            presence.last_seen = now
            presence.state = state or presence.state
            presence.dirty = True

    def flush_presence(self) -> None:
        """Writes worker liveness to the store in one commit (called periodically)."""
        dirty = [(wid, p.state, p.last_seen) for wid, p in self._presence.items() if p.dirty]
        self.store.touch_workers(dirty)
        for wid, _, _ in dirty:
            self._presence[wid].dirty = False

    # -- leases ---------------------------------------------------------------------------

    def lease(self, worker_id: str) -> TaskSpec | None:
        """Leases the next task for this worker, or None when there is none right now."""
        worker = self._known_worker(worker_id)
        self._seen(worker_id)
        running = self._running.setdefault(worker_id, set())
        choice = scheduler.choose_task(
            [s.view() for s in self._studies.values()],
            scheduler.WorkerView(frozenset(worker.mutators), len(running), worker.slots),
        )
        if choice is None:
            return None
        state = self._studies[choice.study]
        champion = self.store.version(choice.study, state.champion.version)
        assert champion is not None
        now = self._clock()
        lease = LeaseRecord(
            id="l-" + secrets.token_hex(10), study=choice.study, worker_id=worker_id, kind=choice.kind,
            parent=champion.hash if choice.kind == "explore" else champion.parent,
            candidate=champion.hash if choice.kind == "baseline" else "",
            seed=secrets.randbits(62), issued=now, deadline=now + self.config.lease_ttl(state.spec),
            state="active", closed=None,
        )
        self.store.insert_lease(lease)
        state.active[lease.id] = lease
        running.add(lease.id)
        self._presence[worker_id].state = "working"
        self.events.lease_granted(choice.study, choice.kind)
        return TaskSpec(
            lease_id=lease.id, study=choice.study, kind=choice.kind, bundle_hash=state.record.bundle_hash,
            bundle_size=state.bundle_size,
            parent=champion if choice.kind == "explore" else None,
            candidate=champion if choice.kind == "baseline" else None,
            seed=lease.seed, deadline=lease.deadline,
        )

    def heartbeat(self, worker_id: str, lease_ids: Sequence[str], state: str) -> list[str]:
        """Extends the worker's running leases; returns those it no longer holds."""
        self._known_worker(worker_id)
        self._seen(worker_id, state[:32] or None)
        now = self._clock()
        held: dict[str, float] = {}
        cancelled: list[str] = []
        for lease_id in lease_ids[:1024]:
            lease = self._active_lease(lease_id)
            if lease is None or lease.worker_id != worker_id:
                cancelled.append(lease_id)
                continue
            study = self._studies[lease.study]
            held[lease_id] = now + self.config.lease_ttl(study.spec)
        if held:
            self.store.extend_leases(worker_id, list(held), held)
            for lease_id, deadline in held.items():
                lease = self._active_lease(lease_id)
                if lease is not None:
                    self._studies[lease.study].active[lease_id] = replace(lease, deadline=max(lease.deadline, deadline))
        return cancelled

    def _active_lease(self, lease_id: str) -> LeaseRecord | None:
        for state in self._studies.values():
            lease = state.active.get(lease_id)
            if lease is not None:
                return lease
        return None

    def _forget_lease(self, lease: LeaseRecord) -> None:
        self._studies[lease.study].active.pop(lease.id, None)
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
        if lease.kind == "explore":
            outcome = self._judge_explore(state, lease, worker, result, now)
        else:
            outcome = self._judge_baseline(state, lease, worker, result, now)
        record, candidate, new_champion, champion_metric = outcome
        self.store.record_result(record, candidate=candidate, new_champion=new_champion,
                                 champion_metric=champion_metric)
        # The store has committed; now the in-memory mirror may follow.
        self._forget_lease(lease)
        state.evaluations += 1
        if champion_metric is not None and state.champion.seq == champion_metric[1]:
            state.champion = replace(state.champion, metric=champion_metric[2], result_id=record.id)
            if state.champion.seq == 0:
                state.initial_metric = champion_metric[2]
        if new_champion is not None:
            state.champion = new_champion
            state.improvements += 1
        self.events.result_recorded(state.spec.name, lease.kind, record.status, record.decision,
                                    record.hardware_class, record.timings, result.cache_hit)
        if champion_metric is not None:
            self.events.champion_changed(state.spec.name, champion_metric[2], improvement=False)
        if new_champion is not None and new_champion.metric is not None:
            self.events.champion_changed(state.spec.name, new_champion.metric, improvement=True)
        if lease.kind == "baseline" and record.status != "ok":
            state.failed_baselines += 1
            if state.failed_baselines >= MAX_FAILED_BASELINES and state.champion.metric is None:
                error = (f"the champion failed to evaluate {state.failed_baselines} times "
                         f"(last: {record.status}); fix the study and add it under a new name")
                self.store.set_study_error(state.spec.name, error)
                state.record = replace(state.record, error=error)
        self._on_change()
        return ReportOutcome(record.id, False, record.decision, new_champion is not None)

    def _base_record(self, lease: LeaseRecord, worker: WorkerRecord, result: ResultIn, now: float,
                     version: str, decision: str) -> ResultRecord:
        return ResultRecord(
            id=lease.id, study=lease.study, kind=lease.kind, worker_id=worker.id, worker_name=worker.name,
            hardware_class=worker.hardware_class, version=version, parent=lease.parent, status=result.status,
            metric=result.metric, extra=dict(result.extra), description=result.description,
            log_tail=result.log_tail, decision=decision, timings=dict(result.timings), created=now,
        )

    def _judge_baseline(self, state: _StudyState, lease: LeaseRecord, worker: WorkerRecord,
                        result: ResultIn, now: float):
        decision = words.BASELINE if result.status == "ok" else result.status
        record = self._base_record(lease, worker, result, now, lease.candidate, decision)
        champion_metric = None
        if (result.status == "ok" and state.champion.version == lease.candidate
                and state.champion.metric is None and result.metric is not None):
            champion_metric = (state.spec.name, state.champion.seq, result.metric)
        return record, None, None, champion_metric

    def _judge_explore(self, state: _StudyState, lease: LeaseRecord, worker: WorkerRecord,
                       result: ResultIn, now: float):
        candidate = None
        version = ""
        if result.candidate:
            version = sha256_hex(result.candidate)
            candidate = VersionRecord(state.spec.name, version, lease.parent, result.candidate,
                                      result.description, f"{worker.name}/{state.spec.mutator.kind}", now)
        if result.status != "ok":
            return self._base_record(lease, worker, result, now, version, result.status), candidate, None, None
        if not result.candidate:
            raise InvalidRequest("an ok explore result must carry the candidate it evaluated")
        if version == lease.parent:
            return self._base_record(lease, worker, result, now, version, words.NO_CHANGE), candidate, None, None
        champion = state.champion
        assert champion.metric is not None and result.metric is not None  # explore needs a measured champion
        verdict = acceptance.judge(state.spec.acceptance, state.spec.direction, champion.metric, result.metric)
        if not verdict.accept:
            return self._base_record(lease, worker, result, now, version, words.DISCARD), candidate, None, None
        record = self._base_record(lease, worker, result, now, version, words.KEEP)
        new_champion = ChampionRecord(state.spec.name, champion.seq + 1, version, result.metric, record.id, now)
        return record, candidate, new_champion, None

    # -- reading --------------------------------------------------------------------------

    def study_summaries(self) -> list[StudySummary]:
        return [
            StudySummary(s.spec.name, s.spec.metric, s.spec.direction, s.champion, s.initial_metric,
                         s.evaluations, s.improvements, len(s.active), s.record.max_evaluations, s.record.error)
            for s in sorted(self._studies.values(), key=lambda s: s.spec.name)
        ]

    def worker_summaries(self) -> list[WorkerSummary]:
        now = self._clock()
        counts = self.store.count_results_by_worker()
        offline_after = 3 * self.config.heartbeat_interval + 5
        out = []
        for worker in self._workers.values():
            presence = self._presence.get(worker.id)
            last_seen = presence.last_seen if presence else worker.last_seen
            state = presence.state if presence else worker.state
            if now - last_seen > offline_after:
                state = "offline"
            out.append(WorkerSummary(worker, state, last_seen, len(self._running.get(worker.id, ())),
                                     counts.get(worker.id, 0)))
        return out

    def study(self, name: str) -> Study:
        state = self._studies.get(name)
        if state is None:
            raise NotFound(f"no study named {name!r}; `autoswarm status` lists the studies")
        return state.spec

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
