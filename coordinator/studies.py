"""The studies the coordinator runs: adding, updating, pausing and removing them, and
rebuilding each one's in-memory picture (`StudyState`) from the store.

Part of the engine (see `engine.Engine`, which composes it). An operator's request is
checked here, written to the store, and only then applied to memory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autoswarm import words
from autoswarm.bundle import BundleError, sha256_hex, unpack_bundle
from autoswarm.hardware_class import is_moved
from autoswarm.study import STUDY_FILE, Study, StudyError, decode_study_text, parse_study, parse_study_text
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.errors import AlreadyExists, InvalidRequest, NotFound, WrongState
from autoswarm.coordinator.judging import AUDIT_CLOSED, AUDIT_NOTE
from autoswarm.coordinator.leasing import Leasing
from autoswarm.coordinator.lifecycle import UpdatePlan, UpdateRefused, check_action, plan_update
from autoswarm.coordinator.merging import MERGE_ORIGIN, checks_as_baselines
from autoswarm.coordinator.roster import Roster
from autoswarm.coordinator.study_state import PendingClaim, StudyState
from autoswarm.coordinator.store import StudyEvent, StudyRecord, VersionRecord


def study_from_record(record: StudyRecord) -> Study:
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
    if study.acceptance.noise_prior:
        data["acceptance"]["noise_prior"] = study.acceptance.noise_prior
    if study.setup:
        data["setup"] = study.setup
    if study.time_budget is not None:
        data["time_budget"] = study.time_budget
    if study.max_cost_usd:
        data["max_cost_usd"] = study.max_cost_usd
    if study.max_tokens:
        data["max_tokens"] = study.max_tokens
    return data


class StudyRegistry:
    """The live studies, by name (see the module's docstring): the one part of the engine
    that adds a study to `EngineContext.studies` or drops one."""

    def __init__(self, ctx: EngineContext, roster: Roster, leasing: Leasing) -> None:
        self.ctx = ctx
        self._roster = roster
        self._leasing = leasing

    @property
    def studies(self) -> dict[str, StudyState]:
        return self.ctx.studies

    def load_all(self) -> None:
        """Loads every live study at startup, giving running leases back the time the coordinator was down."""
        liveness, grace = self._roster.liveness, self.ctx.config.lease_grace
        # Time the coordinator was down must not count against leases that were running, and
        # their workers may have been told to heartbeat up to half a lease's lifetime later.
        rooms = [liveness.restart_room(self.ctx.config.lease_ttl(study_from_record(r)), grace) for r in self.ctx.store.studies()]
        self.ctx.store.push_active_deadlines(self.ctx.clock() + max(rooms, default=grace))
        for record in self.ctx.store.studies():
            if not record.archived:  # a removed study keeps its rows but takes no part
                self.load_study(record)

    def load_study(self, record: StudyRecord) -> StudyState:
        """Rebuilds a study's in-memory state from the store."""
        roster = self._roster
        spec = study_from_record(record)
        chain = self.ctx.store.champions(record.name)
        assert chain, f"study {record.name} has no champion row"
        counts = self.ctx.store.study_counts(record.name)
        bundle = self.ctx.store.bundle(record.bundle_hash) or b""
        state = StudyState(record, spec, len(bundle), chain[-1], counts.evaluations, counts.improvements,
                           counts.failed_baselines, chain[0].metric)
        state.scores = {c.version: c.metric for c in chain if c.metric is not None}
        state.llm_tokens, state.cost_usd = self.ctx.store.study_spend(record.name)
        state.failed_edits = counts.failed_edits
        for lease in self.ctx.store.active_leases(record.name):
            self._leasing.track(state, lease)
        owner_of = {w.id: w.owner for w in roster.workers.values()}
        claims = self.ctx.store.claims(record.name)
        state.claimed_versions = {c.version for c in claims}
        for claim in claims:
            if claim.state == "pending":
                state.claims[claim.id] = PendingClaim(claim)
            elif claim.state == "superseded" and AUDIT_NOTE in claim.reason and AUDIT_CLOSED not in claim.reason:
                # Superseded, and still checked to the end for trust (`Judging._close_audit`): a
                # restart must not let its claimant off the strikes its checks may earn.
                state.claims[claim.id] = PendingClaim(claim, audit=True)
        outvoted: set[str] = set()
        champion_claim = next((c.id for c in claims if c.state == "accepted" and c.version == chain[-1].version), None)
        # Which runs each open claim's first measurement was compared with is not stored: it is
        # worked out again from the runs there were when it was judged (`_compared_with`), an
        # explore claim's when the claim was opened (its result may have waited), a merge's
        # first check's when it was reported, or, if its class had no baseline then (it waited),
        # at the run that made one. Its checks are compared with the others.
        compared: dict[str, frozenset[str]] = {}
        deferred: set[str] = set()
        opened = sorted((p.record.created, p.record.id) for p in state.claims.values() if p.record.origin != "merge")
        merges = {c.id: c.version for c in claims if c.origin == MERGE_ORIGIN and c.state == "accepted"}
        merge_checks: dict[str, list[acceptance.Measurement]] = {}   # accepted merge -> its agreeing checks
        for result in self.ctx.store.results(record.name):
            while opened and opened[0][0] < result.created:
                self._compared_with(state, state.claims[opened.pop(0)[1]], compared)
            if result.kind == "explore":
                state.remember(result)
            if result.decision == words.OUTVOTED:
                outvoted.add(result.id)
                roster.trust_change(result.worker_id, strikes=1, moved_strikes=int(is_moved(result.hardware_class)))
            if result.status == "ok" and result.kind in ("baseline", "verify") and result.metric is not None \
                    and not roster.trust(result.worker_id).quarantined and result.decision != words.OUTVOTED:
                # A worker moved out of its class took its runs with it (`Roster.move_out_of_class`).
                measured_in = roster.workers[result.worker_id].hardware_class \
                    if roster.moved_out(result.worker_id, result.hardware_class) else result.hardware_class
                added = result.kind == "baseline"
                if added:
                    state.add_baseline(result.version, measured_in, result.worker_id, result.metric, result.id)
                elif result.claim in merges and result.decision in (words.CONFIRM, words.KEEP):
                    # An accepted merge's checks are its classes' first runs of it, as when it was
                    # accepted (nothing was compared with its runs before then).
                    checks = merge_checks.setdefault(result.claim, [])
                    checks.append(acceptance.Measurement(
                        result.worker_id, owner_of.get(result.worker_id, ""), measured_in, result.metric,
                        result.improvement or 0.0, result.threshold or 0.0, True, result_id=result.id))
                    run, noise = checks_as_baselines(MERGE_ORIGIN, acceptance.Settlement("accepted", tuple(checks)))[-1]
                    state.add_baseline(merges[result.claim], run.hardware_class, run.worker_id, run.value,
                                       run.result_id, noise=noise)
                    added = True
                for claim_id in [c for c in deferred if c in state.claims] if added else ():
                    if self._compared_with(state, state.claims[claim_id], compared, wait=True):
                        deferred.discard(claim_id)
            if result.decision == words.WAITING:
                state.waiting.add(result.hardware_class, result.id)
                if result.kind == "explore" and state.claim_open_on(result.parent):
                    # An edit of a claim explored on while it is checked (`speculation`): it waits for the verdict.
                    state.built_on.setdefault(result.parent, {})[result.id] = result.hardware_class
            if result.claim == champion_claim and result.improvement is not None and result.metric is not None \
                    and result.decision != words.OUTVOTED:
                state.evidence.append((result.hardware_class, result.worker_id, result.metric))
            pending = state.claims.get(result.claim)
            if pending is not None and result.improvement is not None and result.metric is not None:
                pending.measurements.append(acceptance.Measurement(
                    result.worker_id, owner_of.get(result.worker_id, ""), result.hardware_class, result.metric,
                    result.improvement, result.threshold or 0.0, result.decision in ("claim", "confirm", "keep"),
                    result_id=result.id))
                if pending.record.origin == "merge" and len(pending.measurements) == 1 \
                        and not self._compared_with(state, pending, compared, wait=True):
                    deferred.add(pending.record.id)   # it waited for its class's baseline: judged at a later run
            elif pending is not None and result.kind == "verify" and result.decision == words.WAITING:
                # A check measured and stored unjudged until its class's next baseline run: it is
                # out, as it was before the restart (no second check is handed out in its place).
                pending.waiting[result.id] = (result.worker_id, result.hardware_class)
            elif pending is not None and result.kind == "verify" and result.status != "ok":
                pending.failures += 1
        for claim_id in [*(c for _, c in opened), *deferred]:
            self._compared_with(state, state.claims[claim_id], compared)
        for claim in claims:
            if claim.state == "accepted" and claim.origin == "explore" and claim.claimant_result not in outvoted:
                roster.trust_change(claim.claimant_worker, confirmed=1)
        for worker in list(roster.workers.values()):
            if roster.trust(worker.id).quarantined:   # as when it was quarantined: its baselines judge nothing
                state.samples.remove_worker(worker.hardware_class, worker.id)
        for pending in state.claims.values():
            # The noise each measurement was judged with, as the class shows it now; the runs the
            # first was compared with as worked out above, those of a later one (never read) all
            # of its class's.
            # Whether one was judged on the tier's reference (predicted from it) is not stored: each
            # rested, as far as the runs now tell, on all of the reference's runs (a check judged on
            # the reference then waits for its next run rather than share one).
            parent = pending.record.parent
            reference = state.tiers.reference() if state.paired and state.tiered else None
            pending.measurements = [replace(m, noise=state.noise_of(parent, m.hardware_class),
                                            baseline=compared[pending.record.id] if not k and pending.record.id in compared
                                            else state.samples.run_ids(parent, m.hardware_class),
                                            reference_runs=state.samples.run_ids(parent, reference)
                                            if reference is not None else frozenset())
                                    for k, m in enumerate(pending.measurements)]
        for lease in state.active.values():
            if lease.claim in state.claims:
                state.claims[lease.claim].in_flight.add(lease.id)
                if lease.worker_id in roster.workers:   # as when it was leased, as far as the runs now tell
                    state.note_check(state.claims[lease.claim], lease.id,
                                     roster.workers[lease.worker_id].hardware_class, lease.worker_id)
        self.ctx.studies[record.name] = state
        return state

    @staticmethod
    def _compared_with(state: StudyState, pending: PendingClaim, compared: dict[str, frozenset[str]],
                       wait: bool = False) -> bool:
        """Records in `compared` the runs an open claim's first measurement was compared with, read
        from the runs loaded so far: the class's direct runs of the parent it would be compared
        with now (`Judging._measure`: a first measurement leaves the reserved runs to its checks).
        `wait`: none yet is no answer (records nothing). Returns whether it recorded them."""
        if not pending.measurements or pending.record.id in compared or not state.paired:
            return True
        first = pending.measurements[0]
        runs = state.direct_run_ids(pending.record.parent, first.hardware_class, first.worker_id, reserve=True)
        if wait and not runs:
            return False
        compared[pending.record.id] = runs
        return True

    def open_claims(self, worker_id: str) -> int:
        """Claims of this worker's own edits that wait for verification, in every study."""
        return sum(1 for s in self.ctx.studies.values() for p in s.claims.values()
                   if p.record.claimant_worker == worker_id and p.record.origin == "explore")

    def add_study(self, bundle: bytes, max_evaluations: int = 0) -> tuple[str, str, str, bool]:
        """Adds a study from its bundle; returns (name, bundle hash, champion hash, already present)."""
        if max_evaluations < 0:
            raise InvalidRequest("max_evaluations must be >= 0 (0 means unbounded)")
        spec, files, target = self._unpack_study(bundle)
        bundle_hash = sha256_hex(bundle)
        existing = self.ctx.studies.get(spec.name)
        archived = self.ctx.store.study(spec.name) if existing is None else None
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
                self.ctx.store.set_study_limit(spec.name, max_evaluations)
                existing.record = replace(existing.record, max_evaluations=max_evaluations)
                self.ctx.on_change()
            return spec.name, bundle_hash, existing.champion.version, True
        initial = VersionRecord(spec.name, sha256_hex(target), "", target, "initial version", "study", self.ctx.clock())
        self.ctx.store.add_study(spec.name, study_spec_dict(spec), bundle_hash, bundle, max_evaluations, initial)
        record = self.ctx.store.study(spec.name)
        assert record is not None
        self.load_study(record)
        self.ctx.on_change()
        return spec.name, bundle_hash, initial.hash, False

    def _unpack_study(self, bundle: bytes) -> tuple[Study, dict[str, bytes], bytes]:
        """(study, files, target content) of a bundle an operator sent, checked against the limits."""
        limits = self.ctx.config.limits
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

    def study(self, name: str) -> Study:
        state = self.ctx.studies.get(name)
        if state is None:
            raise NotFound(f"no study named {name!r}; `autoswarm status` lists the studies")
        return state.spec

    def study_record(self, name: str) -> StudyRecord:
        """The stored record of a live study (paused, priority, budget, bundle)."""
        state = self.ctx.studies.get(name)
        if state is None:
            raise NotFound(f"no study named {name!r}; `autoswarm study list` lists the studies")
        return state.record

    def change_study(self, name: str, action: str = "", priority: int = 0,
                     max_evaluations: int | None = None) -> tuple[StudyRecord, int]:
        """Pause, resume or remove a study, or set its priority or budget; returns (record, leases released).

        Pausing and removing hand the study's running leases back at once: their workers hear
        it on their next heartbeat and drop the task, and no new task of it is leased.
        """
        state = self.ctx.studies.get(name)
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
        now = self.ctx.clock()
        released = self.ctx.store.change_study(name, StudyEvent(name, now, action or "settings", ", ".join(details)),
                                           release_leases=[lease.id for lease in leases], **changes)
        for lease in leases:
            self._leasing.forget_lease(lease)
            self.ctx.events.leases_closed(lease.study, lease.kind, "released")
        state.record = replace(record, **{key: value for key, value in changes.items() if value is not None})
        if action == "remove":
            del self.ctx.studies[name]
        self.ctx.on_change()
        return state.record, released

    def update_study(self, bundle: bytes) -> tuple[str, str, str, UpdatePlan]:
        """A new bundle of an existing study; returns (name, bundle hash, champion hash, what changed).

        Allowed when only the program, the evaluation's data or the mutator settings change
        (see `lifecycle.plan_update`); champion and history stay, and the change is recorded
        as an event in the study's lineage. New tasks use the new bundle.
        """
        spec, files, _ = self._unpack_study(bundle)
        state = self.ctx.studies.get(spec.name)
        if state is None:
            raise NotFound(f"no study named {spec.name!r} to update; `autoswarm study add` adds it")
        bundle_hash = sha256_hex(bundle)
        if bundle_hash == state.record.bundle_hash:
            return spec.name, bundle_hash, state.champion.version, UpdatePlan(())
        old_files = unpack_bundle(self.ctx.store.bundle(state.record.bundle_hash) or b"", self.ctx.config.limits.max_bundle_bytes)
        try:
            plan = plan_update(state.spec, spec, old_files, files)
        except UpdateRefused as exc:
            raise WrongState(str(exc)) from exc
        self.ctx.store.update_study_bundle(spec.name, study_spec_dict(spec), bundle_hash, bundle,
                                       StudyEvent(spec.name, self.ctx.clock(), "update", plan.detail))
        state.record = replace(state.record, bundle_hash=bundle_hash, spec=study_spec_dict(spec))
        state.spec = spec
        state.bundle_size = len(bundle)
        self.ctx.on_change()
        return spec.name, bundle_hash, state.champion.version, plan

    def study_events(self, name: str) -> list[StudyEvent]:
        """What operators did to a study (updates, pauses...), oldest first."""
        self.study(name)
        return self.ctx.store.study_events(name)

    def bundle(self, bundle_hash: str) -> bytes:
        data = self.ctx.store.bundle(bundle_hash)
        if data is None:
            raise NotFound(f"no bundle {bundle_hash!r}")
        return data
