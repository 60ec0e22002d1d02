"""Reports: a worker's result is checked, judged (`judging.Judging`, which writes nothing),
committed in one transaction, and only then applied to memory.

Part of the engine (see `engine.Engine`, which composes it). This is where decisions meet
the store: `Judgement`s come in, rows and in-memory changes go out; a result that waits for
its class's baseline is judged here once that baseline arrives (`_judge_waiting`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autoswarm import words
from autoswarm.coordinator import reasons, scheduler, speculation
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.errors import InvalidRequest, NotFound, NotYours, WrongState
from autoswarm.coordinator.frozen import quick
from autoswarm.coordinator.judging import Judgement, Judging
from autoswarm.coordinator.leasing import Leasing
from autoswarm.coordinator.merging import checks_as_baselines
from autoswarm.coordinator.roster import Roster
from autoswarm.coordinator.study_state import StudyState
from autoswarm.coordinator.store import LeaseRecord, ResultRecord
from autoswarm.coordinator.transitions import LeaseEvent, LeaseState, LifecycleError, lease_step

MAX_FAILED_BASELINES = 3
LAST_REASON_CHARS = 200    # of the last failure's reason, in the error that stops a study


@quick
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


@quick
@dataclass(frozen=True)
class ReportOutcome:
    result_id: str
    duplicate: bool
    decision: str
    new_champion: bool
    # The worker's other leases made on a champion replaced since, as of this report (`staleness`).
    stale: list[str] = field(default_factory=list)


def may_create_work(kind: str, status: str, judgement: Judgement) -> bool:
    """Whether a report may have made work for other workers, so waiting long-polls should hear.

    A plain explore result does not: explore work is there for whoever can do it before and
    after, the study's budget counts it as it counted the lease, and the reporting worker
    takes its own next task (in the same call, with `ReportRequest.next`). Everything else
    may: a baseline or verification closed (its place can be taken), a result that does not
    count against the budget, a claim opened or settled, a champion or its metric changed, a
    result waiting for its class's baseline, trust or classes moved.
    """
    if kind != scheduler.EXPLORE or status in words.FREE_STATUSES or status == "setup-failed":
        return True
    return bool(judgement.opened or judgement.resolved or judgement.decisions or judgement.audits
                or judgement.new_champion is not None or judgement.champion_metric is not None
                or judgement.sample is not None or judgement.noise_run is not None or judgement.waits
                or judgement.strikes or judgement.credits or judgement.outliers or judgement.accepted is not None)


class Reporting:
    """Records reports and applies their judgements (see the module's docstring)."""

    def __init__(self, ctx: EngineContext, roster: Roster, leasing: Leasing, judging: Judging) -> None:
        self.ctx = ctx
        self._roster = roster
        self._leasing = leasing
        self._judging = judging

    def _validate(self, result: ResultIn) -> ResultIn:
        limits = self.ctx.config.limits
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
        description = " ".join(result.description.split())[: limits.max_description_chars]
        log_tail = result.log_tail[-limits.max_log_tail_chars:]
        if description == result.description and log_tail == result.log_tail:
            return result   # already clean (most reports): no copy
        return replace(result, description=description, log_tail=log_tail)

    def report(self, worker_id: str, lease_id: str, result: ResultIn) -> ReportOutcome:
        """Stores a result durably, then decides what it means. Idempotent per lease."""
        worker = self._roster.known_worker(worker_id)
        self._roster.seen(worker_id)
        # A lease active in memory has no result yet (a result closes its lease in the same
        # commit): the common case needs neither of the two reads below.
        lease = self._leasing.active_lease(lease_id)
        if lease is None:
            stored = self.ctx.store.result(lease_id)
            if stored is not None:
                if stored.worker_id != worker_id:
                    raise NotYours(f"lease {lease_id} belongs to another worker")
                champion = self.ctx.studies[stored.study].champion
                return ReportOutcome(stored.id, True, stored.decision, champion.result_id == stored.id,
                                     self._leasing.stale_leases(worker_id))
            lease = self.ctx.store.lease(lease_id)
        if lease is None:
            raise NotFound(f"unknown lease {lease_id!r}")
        if lease.worker_id != worker_id:
            raise NotYours(f"lease {lease_id} belongs to another worker")
        try:
            lease_step(LeaseState(lease.state), LeaseEvent.RESULT)
        except (LifecycleError, ValueError):
            raise WrongState(
                f"lease {lease_id} was {lease.state} at {time.strftime('%H:%M:%S', time.localtime(lease.closed or 0))}; "
                "its task has been handed out again, so this result is not recorded"
            ) from None
        result = self._validate(result)
        state = self.ctx.studies[lease.study]
        seq = state.champion.seq
        now = self.ctx.clock()
        judging = self._judging
        if lease.kind == scheduler.EXPLORE:
            judgement = judging.judge_explore(state, lease, worker, result, now)
        elif lease.kind == scheduler.VERIFY:
            judgement = judging.judge_verify(state, lease, worker, result, now)
        else:
            judgement = judging.judge_baseline(state, lease, worker, result, now)
        if judgement.accepted is not None:
            judging.accept(state, judgement, now)
        record = judgement.record
        self.ctx.store.record_result(record, versions=judgement.versions, claims=judgement.claims,
                                 decisions=judgement.decisions, new_champion=judgement.new_champion,
                                 champion_metric=judgement.champion_metric)
        self._apply(state, lease, judgement, result)
        # A new champion made by this report, or by a waiting result it let be judged.
        return ReportOutcome(record.id, False, record.decision, state.champion.seq != seq,
                             self._leasing.stale_leases(worker_id))

    def _apply(self, state: StudyState, lease: LeaseRecord, judgement: Judgement, result: ResultIn) -> None:
        """Brings memory in line with what the store has just committed."""
        record = judgement.record
        self._leasing.forget_lease(lease)
        if record.status not in words.FREE_STATUSES:
            state.evaluations += 1
        state.llm_tokens += int(result.timings.get("llm_tokens", 0))
        if record.status == "mutator-error" and lease.kind == scheduler.EXPLORE:
            state.failed_edits += 1
        state.cost_usd += float(result.timings.get("cost_usd", 0.0))
        self._roster.count_result(record.worker_id)
        if record.status == "setup-failed":
            self._leasing.setup_failed(record.worker_id, record.study, record.created)
        if lease.kind == scheduler.EXPLORE:
            state.remember(record)
        if judgement.waits:
            state.waiting.add(record.hardware_class, record.id)
            if judgement.held:
                state.held.setdefault(record.id, record.created)
            if judgement.built_on:
                state.built_on.setdefault(judgement.built_on, {})[record.id] = record.hardware_class
        self._apply_consequences(state, judgement)
        if judgement.new_champion is not None:
            self._judge_built_on(state, record.created)
        if lease.kind == scheduler.BASELINE and record.status != "ok":
            state.failed_baselines += 1
            if state.failed_baselines >= MAX_FAILED_BASELINES and state.champion.version not in state.scores:
                last = reasons.failure_reason(record.status, record.log_tail, LAST_REASON_CHARS)
                error = (f"the champion failed to evaluate {state.failed_baselines} times "
                         f"(last: {last}); fix the study and add it under a new name")
                self.ctx.store.set_study_error(state.spec.name, error)
                state.record = replace(state.record, error=error)
        self.ctx.events.result_recorded(state.spec.name, lease.kind, record.status, record.decision,
                                    record.hardware_class, record.timings, result.cache_hit)
        self._announce(state, judgement)
        if judgement.sample is not None and judgement.sample[0] == state.champion.version:
            # A baseline of the champion: that class's waiting results can be judged, and every
            # class's when it came from the tier's reference (their predictions now exist).
            cls = judgement.sample[1]
            for waiting in sorted(state.waiting.classes()) if state.tiers.reference() == cls else [cls]:
                self._judge_waiting(state, waiting, record.created)
        if lease.kind == scheduler.VERIFY:
            self.judge_held(state, record.created)   # a keep held back for this check goes on
        if may_create_work(lease.kind, record.status, judgement):
            self.ctx.on_change()

    def _announce(self, state: StudyState, judgement: Judgement) -> None:
        for outcome in judgement.funnel:
            self.ctx.events.claim(state.spec.name, outcome)
        if judgement.champion_metric is not None:
            self.ctx.events.champion_changed(state.spec.name, judgement.champion_metric[2], improvement=False)
        if judgement.new_champion is not None and judgement.new_champion.metric is not None:
            self.ctx.events.champion_changed(state.spec.name, judgement.new_champion.metric, improvement=True)

    def _judge_waiting(self, state: StudyState, hardware_class: str, now: float) -> None:
        """A class's baseline arrived: its waiting results are judged now, oldest first.

        Each is decided as it would have been had the baseline been there when it arrived, and
        committed as a rewrite of its own row, with the claim, merge or champion it causes.
        """
        for result_id in state.waiting.take(hardware_class):
            self._judge_again(state, self.ctx.store.result(result_id), hardware_class, now)

    def _judge_built_on(self, state: StudyState, now: float) -> None:
        """A claim explored on while it was checked became the champion: the edits of it that
        waited for its verdict are judged now, each class's once its baseline of the new champion
        exists (measured ahead, `speculation`; the others wait on for it as any result does).
        Those of claims decided otherwise wait on for their class's next baseline of the champion,
        and are judged then as stale edits are."""
        built_on = state.built_on.pop(state.champion.version, None)
        for version in [v for v in state.built_on if not state.claim_open_on(v)]:
            del state.built_on[version]
        for cls in sorted(set(built_on.values())) if built_on else ():
            self._judge_waiting(state, cls, now)

    def judge_held(self, state: StudyState, now: float) -> bool:
        """Keeps held back for a sole check (`StudyState.keep_waits`) are judged again once that
        check is over (judged, or its lease closed), or once they have waited a lease's time: a
        checker that never reports holds no keep for longer. Returns whether any was."""
        if not state.held:
            return False
        judged = False
        patience = self.ctx.config.lease_ttl(state.spec)
        for result_id, since in sorted(state.held.items(), key=lambda item: item[1]):
            if state.keep_waits(state.champion.version) and now - since < patience:
                continue
            del state.held[result_id]
            stored = self.ctx.store.result(result_id)
            if stored is None:
                continue
            state.waiting.discard(result_id)
            self._judge_again(state, stored, stored.hardware_class, now, hold=now - since < patience, since=since)
            judged = True
        return judged

    def _judge_again(self, state: StudyState, stored: ResultRecord | None, hardware_class: str, now: float,
                     hold: bool = True, since: float | None = None) -> None:
        """Judges a stored waiting result again (read once by the caller); it waits on if it
        still must (`since`: when it was first held back for a sole check, kept while it is held again)."""
        judging = self._judging
        worker = self._roster.workers.get(stored.worker_id) if stored is not None else None
        if stored is None or worker is None or stored.decision != words.WAITING or stored.metric is None:
            return
        lease = LeaseRecord(id=stored.id, study=stored.study, worker_id=stored.worker_id, kind=stored.kind,
                            parent=stored.parent, candidate="", seed=0, issued=stored.created,
                            deadline=stored.created, state=LeaseState.DONE.value, closed=stored.created,
                            claim=stored.claim)

        def done(decision: str, _stored: ResultRecord = stored, **judged: Any) -> Judgement:
            return Judgement(replace(_stored, decision=decision, **judged))

        if stored.kind == scheduler.VERIFY:   # a check that waited for a fresh baseline run
            judgement = judging.judge_waiting_check(state, stored, worker, now)
        else:
            judgement = judging.explore_verdict(state, lease, worker, stored.metric, stored.version, done, now,
                                                waiting=True, hold=hold)
        if judgement.waits:
            state.waiting.add(hardware_class, stored.id)
            if judgement.built_on:
                state.built_on.setdefault(judgement.built_on, {})[stored.id] = hardware_class
            if judgement.held:
                state.held[stored.id] = since if since is not None else state.held.get(stored.id, now)
            else:
                state.held.pop(stored.id, None)
            return
        state.held.pop(stored.id, None)
        if judgement.accepted is not None:
            judging.accept(state, judgement, now)
        self.ctx.store.record_result(judgement.record, versions=judgement.versions, claims=judgement.claims,
                                 decisions=judgement.decisions, new_champion=judgement.new_champion,
                                 champion_metric=judgement.champion_metric, rewrite=True)
        state.redecide(stored.id, judgement.record.decision)
        self._apply_consequences(state, judgement)
        self._announce(state, judgement)
        if judgement.new_champion is not None:
            self._judge_built_on(state, now)

    def _apply_consequences(self, state: StudyState, judgement: Judgement) -> None:
        """Samples, trust, claims and champion after a judgement was committed."""
        roster = self._roster
        record = judgement.record
        for result_id, decision in judgement.decisions:
            state.redecide(result_id, decision)
        if judgement.sample is not None:
            state.add_baseline(judgement.sample[0], judgement.sample[1], record.worker_id, judgement.sample[2], record.id)
        if judgement.noise_run is not None:
            state.samples.note_run(judgement.noise_run[0], judgement.noise_run[1], record.worker_id,
                                   judgement.noise_run[2])
        for outlier in judgement.outliers:
            roster.move_out_of_class(outlier.worker_id)
        for worker_id in judgement.strikes:
            roster.trust_change(worker_id, strikes=1, moved_strikes=int(worker_id in judgement.moved_strikes))
        for worker_id in judgement.credits:
            roster.trust_change(worker_id, confirmed=1)
        if judgement.champion_metric is not None and state.champion.seq == judgement.champion_metric[1]:
            metric = judgement.champion_metric[2]
            state.champion = replace(state.champion, metric=metric, result_id=record.id)
            state.scores[state.champion.version] = metric
            if state.champion.seq == 0:
                state.initial_metric = metric
        for pending in judgement.opened:
            state.claims[pending.record.id] = pending
            state.claimed_versions.add(pending.record.version)
        for pending, outcome in judgement.resolved:
            state.claims.pop(pending.record.id, None)
            if pending.speculated and pending.record.origin != speculation.MERGE_ORIGIN:
                state.track.note(pending.record.claimant_worker, outcome == "accepted")
        for pending in judgement.audits:
            pending.audit = True
        if judgement.new_champion is not None:
            state.champion = judgement.new_champion
            state.improvements += 1
            state.evidence = [(m.hardware_class, m.worker_id, m.value) for m in judgement.settled.agreeing] \
                if judgement.settled is not None else []
            if judgement.new_champion.metric is not None:
                state.scores[judgement.new_champion.version] = judgement.new_champion.metric
            if judgement.accepted is not None and judgement.settled is not None:
                # A merge's checks are its classes' first runs of the new champion (`checks_as_baselines`).
                for run, noise in checks_as_baselines(judgement.accepted.record.origin, judgement.settled):
                    if roster.trust(run.worker_id).quarantined:
                        continue   # as when the store is read again: its runs judge nothing
                    state.add_baseline(judgement.new_champion.version, run.hardware_class, run.worker_id,
                                       run.value, run.result_id, noise=noise)
