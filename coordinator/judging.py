"""Judging one report: what a baseline, an edit or a verification means, gathered as a `Judgement`.

The decisions themselves are pure and live elsewhere: `acceptance` (does a run beat its
reference, does a claim's set of measurements settle it), `baselines`/`noise`/`tiers` (what a
run is judged against), `transitions` (the lease, result and claim lifecycles). This part
of the engine turns one report into a `Judgement` — the result row, versions, claims,
decisions, strikes and champion it implies — without writing anything: `reporting.Reporting`
commits a judgement in one transaction and only then applies it to memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from autoswarm import words
from autoswarm.bundle import sha256_hex
from autoswarm.hardware_class import is_moved
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.config import EngineConfig
from autoswarm.coordinator.errors import InvalidRequest
from autoswarm.coordinator.merging import Merging
from autoswarm.coordinator.store import ChampionRecord, ClaimRecord, LeaseRecord, ResultRecord, Store, VersionRecord, \
    WorkerRecord
from autoswarm.coordinator.class_checks import Outlier
from autoswarm.coordinator.study_state import PendingClaim, StudyState
from autoswarm.coordinator.transitions import Action, ClaimEvent, ClaimState, ResultEvent, ResultState, claim_event, \
    claim_step, result_event, result_step

if TYPE_CHECKING:
    from autoswarm.coordinator.reporting import ResultIn


@dataclass
class Judgement:
    """What one report changes, gathered before the single commit that applies it."""

    record: ResultRecord
    versions: list[VersionRecord] = field(default_factory=list)
    claims: list[ClaimRecord] = field(default_factory=list)
    decisions: list[tuple[str, str]] = field(default_factory=list)
    new_champion: ChampionRecord | None = None
    champion_metric: tuple[str, int, float] | None = None
    sample: tuple[str, str, float] | None = None          # (version, class, value) for the noise model
    accepted: PendingClaim | None = None
    resolved: list[tuple[PendingClaim, str]] = field(default_factory=list)  # (claim, "accepted"/"rejected"/...)
    opened: list[PendingClaim] = field(default_factory=list)
    funnel: list[str] = field(default_factory=list)
    settled: acceptance.Settlement | None = None          # the accepted claim's settlement
    strikes: list[str] = field(default_factory=list)      # workers an agreeing majority outvoted
    moved_strikes: list[str] = field(default_factory=list)  # ... of them, on a run measured after a move out
    credits: list[str] = field(default_factory=list)      # claimants whose claim was confirmed
    outliers: list[Outlier] = field(default_factory=list)  # workers measuring unlike their class
    audits: list[PendingClaim] = field(default_factory=list)  # superseded claims still checked, for trust only
    waits: bool = False                                   # stored unjudged until its class has a baseline
    built_on: str = ""                                    # ... or until this open claim is decided (`speculation`)
    held: bool = False                                    # ... or until a sole check ends (`StudyState.keep_waits`)
    noise_run: tuple[str, str, float] | None = None       # (version, class, value): evidence of noise only


def _settled_reason(settled: acceptance.Settlement, pending: PendingClaim) -> str:
    """Why a claim was decided as it was, with the numbers, for `history` and the web page."""
    def listed(ms: Sequence[acceptance.Measurement]) -> str:
        return ", ".join(f"{m.hardware_class}: {m.value:.6g} ({'+' if m.improvement >= 0 else ''}{m.improvement:.3g}, "
                         f"needed > {m.threshold:.3g})" for m in ms)
    if not settled.agreeing:
        if pending.failures >= acceptance.MAX_VERIFY_FAILURES:
            return f"unconfirmed: failed to evaluate {pending.failures} times on other workers"
        return f"unconfirmed: no agreeing majority among {listed(pending.measurements)}"
    words_for = {"accepted": "confirmed by", "rejected": "refuted by", "unconfirmed": "not above the bar for"}
    reason = f"{words_for[settled.outcome]} {len(settled.agreeing)} agreeing measurement(s): {listed(settled.agreeing)}"
    return reason + (f"; outvoted: {listed(settled.outvoted)}" if settled.outvoted else "")


# The reason of a superseded claim still checked for trust (an audit), until "; checked: " ends it.
AUDIT_NOTE = "still checked, for trust only"
AUDIT_CLOSED = "; checked: "


def audited_when_superseded(pending: PendingClaim, claimant: acceptance.Trust) -> bool:
    """Whether a claim overtaken by another champion is still checked to the end, for trust only
    (its edit replayed once confirmed; while it waits it holds its worker's one open claim).

    An untrusted claimant's explore claim is, when the claimant has no confirmed claim yet or
    is under suspicion already (a strike, or moved out of its class), or a check of it is in
    flight (that check costs nothing more): a liar cannot escape its strikes, which quarantine
    it, by being overtaken — without the first condition a liar's overtaken claims went
    unchecked and it made 4 fake claims before quarantine, beyond the stated bound of 2. A
    claimant with a confirmed claim and no strike whose claim nobody is checking is not: its
    edit is replayed onto the new champion straight away. Checking every overtaken claim was
    about 3% of all evaluations with 64 workers on 32 classes.
    """
    return pending.record.origin == "explore" and bool(pending.measurements) \
        and claimant.open_claims_allowed == 1 \
        and (claimant.confirmed == 0 or claimant.refuted > 0 or claimant.moved or bool(pending.in_flight))


class Judging(Merging):
    """How reports are judged (see the module's docstring).

    `trust` says how far a worker is trusted; `open_claims` how many claims of its own
    edits wait for verification, in every study; `owner_of` whose a worker is; `members` the
    workers of a hardware class and those of them connected (as `Roster.classes` gives them). Only reads: versions from the store."""

    def __init__(self, store: Store, config: EngineConfig, trust: Callable[[str], acceptance.Trust],
                 open_claims: Callable[[str], int], owner_of: Callable[[str], str | None] = lambda w: None,
                 members: Callable[[str, float], tuple[AbstractSet[str], ...]] = lambda c, t: (frozenset(), frozenset())) -> None:
        self.store = store
        self.config = config
        self.trust = trust
        self._open_claims = open_claims
        self._owner_of = owner_of
        self._members = members

    def _base_record(self, lease: LeaseRecord, worker: WorkerRecord, result: ResultIn, now: float,
                     version: str, decision: str, **judged: Any) -> ResultRecord:
        return ResultRecord(
            id=lease.id, study=lease.study, kind=lease.kind, worker_id=worker.id, worker_name=worker.name,
            hardware_class=worker.hardware_class, version=version, parent=lease.parent, status=result.status,
            metric=result.metric, extra=dict(result.extra), description=result.description,
            log_tail=result.log_tail, decision=decision, timings=dict(result.timings), created=now, **judged,
        )

    def judge_baseline(self, state: StudyState, lease: LeaseRecord, worker: WorkerRecord,
                       result: ResultIn, now: float) -> Judgement:
        decision = words.BASELINE if result.status == "ok" else result.status
        judgement = Judgement(self._base_record(lease, worker, result, now, lease.candidate, decision))
        if result.status != "ok" or result.metric is None:
            return judgement
        if self.trust(worker.id).quarantined:
            return judgement
        judgement.sample = (lease.candidate, worker.hardware_class, result.metric)
        if state.paired:
            # Moved out, not struck: an honest machine may just differ from what its name says. Being
            # moved makes its next strike quarantine it (`Trust.moved`).
            members = frozenset(w for w in self._members(worker.hardware_class, now)[1]   # those that may
                                if not self.trust(w).quarantined)                          # still measure it
            judgement.outliers = state.class_outliers(lease.candidate, worker.hardware_class, worker.id, result.metric,
                                                      self._owner_of, members)
        if state.champion.version == lease.candidate and lease.candidate not in state.scores \
                and worker.id not in {o.worker_id for o in judgement.outliers}:
            score = state.initial_score(lease.candidate, result.metric, worker.hardware_class, worker.id)
            if score is not None:
                judgement.champion_metric = (state.spec.name, state.champion.seq, score)
        return judgement

    @staticmethod
    def _mark(judgement: Judgement, result_id: str, decision: str) -> None:
        """Sets the decision of a result row: this report's, or one stored before."""
        if result_id == judgement.record.id:
            judgement.record = replace(judgement.record, decision=decision)
        elif result_id:
            judgement.decisions.append((result_id, decision))

    def _measure(self, state: StudyState, parent: str, worker: WorkerRecord, value: float,
                 result_id: str = "", exclude: frozenset[str] = frozenset(), reserve: bool = True,
                 ) -> tuple[acceptance.Verdict, acceptance.Measurement] | None:
        """Judges one run of a candidate against its parent's score on this worker's class
        (against runs not in `exclude`: those an earlier measurement of its claim was compared
        with; `reserve`: a claim's first measurement, which leaves the newest runs to its checks:
        `StudyState.direct_runs`)."""
        cls = worker.hardware_class
        reference = state.reference(parent, cls, worker.id, exclude, reserve)
        if reference is None:
            return None
        score, sigma, runs = reference
        verdict = acceptance.judge(state.spec.acceptance, state.spec.direction, score, value, sigma, runs)
        used = state.direct_run_ids(parent, cls, worker.id, exclude, reserve) if state.paired else frozenset()
        on_reference = state.reference_run_ids(parent, cls, worker.id, exclude, reserve)
        noise = state.noise_of(parent, cls, worker.id, exclude, reserve)
        return verdict, acceptance.Measurement(worker.id, worker.owner, cls, value,
                                               verdict.improvement, verdict.threshold, verdict.accept,
                                               noise, result_id, used, on_reference)

    def judge_explore(self, state: StudyState, lease: LeaseRecord, worker: WorkerRecord,
                      result: ResultIn, now: float) -> Judgement:
        version = sha256_hex(result.candidate) if result.candidate else ""
        versions = [VersionRecord(state.spec.name, version, lease.parent, result.candidate, result.description,
                                  f"{worker.name}/{state.spec.mutator.kind}", now)] if version else []

        def done(decision: str, **judged: Any) -> Judgement:
            return Judgement(self._base_record(lease, worker, result, now, version, decision, **judged),
                              versions=versions)

        if result.status != "ok":
            return done(result.status)
        if not result.candidate:
            raise InvalidRequest("an ok explore result must carry the candidate it evaluated")
        if state.seen_candidate(lease.parent, version, lease.id):
            return done(words.DUPLICATE)
        if version == lease.parent:
            return done(words.NO_CHANGE)
        assert result.metric is not None
        return self.explore_verdict(state, lease, worker, result.metric, version, done, now)

    def explore_verdict(self, state: StudyState, lease: LeaseRecord, worker: WorkerRecord, metric: float,
                        version: str, done: Callable[..., Judgement], now: float, waiting: bool = False,
                        hold: bool = True) -> Judgement:
        """The decision on an evaluated edit: discard, claim, merge onto the champion, or wait.

        `waiting`: the result was stored waiting for its class's baseline and is judged again.
        `hold`: a keep may wait for a sole check of a claim it would supersede (`keep_waits`)."""
        if lease.parent != state.champion.version and state.claim_open_on(lease.parent):
            # An edit of a claim explored on while it is checked: it waits for the claim's verdict.
            step = result_step(ResultState.WAITING if waiting else ResultState.ARRIVED, ResultEvent.PARENT_CHECKED)
            assert Action.WAIT in step.actions
            judgement = done(words.WAITING)
            judgement.waits, judgement.built_on = True, lease.parent
            return judgement
        measured = self._measure(state, lease.parent, worker, metric, lease.id)
        if measured is None and state.paired and lease.parent != state.champion.version:
            # Its parent's baseline on this class never came: it can still beat the champion.
            measured = self._measure(state, state.champion.version, worker, metric, lease.id)
            if measured is not None and not measured[0].accept:
                return done(words.UNJUDGED)
        if state.paired:
            # Judged now, or stored to wait for its class's baseline (`transitions.RESULT_TABLE`).
            step = result_step(ResultState.WAITING if waiting else ResultState.ARRIVED,
                               result_event(baseline_known=measured is not None, waiting=waiting))
            if Action.WAIT in step.actions:
                judgement = done(words.WAITING)
                judgement.waits = True
                return judgement
        if measured is None:
            return done(words.UNJUDGED)   # not paired: nothing to wait for
        verdict, measurement = measured
        judged = {"improvement": verdict.improvement, "threshold": verdict.threshold}
        if not verdict.accept:
            if not waiting and self._short_of_thin_bar(state, lease, worker, verdict):
                step = result_step(ResultState.ARRIVED, ResultEvent.SHORT_OF_THIN_BAR)
                assert Action.WAIT in step.actions
                judgement = done(words.WAITING)
                judgement.waits = True
                return judgement
            return done(words.DISCARD, **judged)
        if version in state.claimed_versions:
            # Claimed before (found twice, or an old champion drawn again): never a second claim.
            return done(words.DUPLICATE, **judged)
        if self.trust(worker.id).quarantined:
            return done(words.IGNORED, **judged)
        against = lease.parent
        if lease.parent != state.champion.version:
            # Beat its parent, but the champion moved on. If it beats the champion too, it is a
            # claim against the champion (whose own edits are merged onto it once accepted):
            # progress does not wait for a merge to be evaluated. Otherwise its edit is
            # replayed onto the champion.
            overtaking = self._measure(state, state.champion.version, worker, metric, lease.id)
            if overtaking is None or not overtaking[0].accept:
                judgement = done(words.STALE_MERGED, **judged)
                edited = self._version(state, judgement, version)
                assert edited is not None
                judgement.record = replace(judgement.record, decision=self._merge_onto_champion(
                    state, judgement, edited, worker.id, now))
                return judgement
            verdict, measurement = overtaking
            judged = {"improvement": verdict.improvement, "threshold": verdict.threshold}
            against = state.champion.version
        if hold and state.spec.acceptance.quorum <= 1 and state.keep_waits(against):
            # Kept at once (quorum 1), it would supersede a claim its only possible checker is
            # checking: it waits for that check (`Reporting.judge_held`), then is judged again.
            judgement = done(words.WAITING, **judged)
            judgement.waits = judgement.held = True
            return judgement
        if self._open_claims(worker.id) >= self.trust(worker.id).open_claims_allowed:
            # Its earlier claim is still being checked: a liar's claims are checked one at a time.
            return done(words.CLAIM_LIMIT, **judged)
        claim = ClaimRecord(f"c-{lease.id[2:]}", state.spec.name, version, against, "explore", worker.id,
                            lease.id, "pending", "", now)
        judgement = done(words.CLAIM, claim=claim.id, **judged)
        self._open_claim(state, judgement, PendingClaim(claim, [measurement]), now)
        return judgement

    @staticmethod
    def _short_of_thin_bar(state: StudyState, lease: LeaseRecord, worker: WorkerRecord,
                           verdict: acceptance.Verdict) -> bool:
        """Whether an edit of the champion that missed its bar would have passed one set at the
        class's noise estimate, the bar being wide only for want of evidence (`StudyState.thin`).

        One difference of noise makes the first bar anywhere from the estimate to 17 times it
        (`noise.thin_factor`): tinylm's first four edits, each 0.65-0.99 bits per byte better
        than their parent, were discarded against a bar of 2.05 set by two baselines 0.05 apart.
        Such an edit waits for the class's next baseline run instead, and is judged then.
        """
        if not state.paired or lease.parent != state.champion.version or not state.thin(worker.hardware_class):
            return False
        inflation = state.samples.noise(worker.hardware_class).inflation
        floor = state.spec.acceptance.min_delta
        return verdict.threshold > floor and verdict.improvement > max(floor, verdict.threshold / inflation)

    def _open_claim(self, state: StudyState, judgement: Judgement, pending: PendingClaim, now: float) -> None:
        """Records a new claim with its first measurement and settles it (quorum 1 accepts it now)."""
        judgement.claims.append(pending.record)
        judgement.funnel.append("claimed")
        self._settle(state, pending, judgement, now)
        if pending.record.state == "pending":
            judgement.opened.append(pending)

    def judge_verify(self, state: StudyState, lease: LeaseRecord, worker: WorkerRecord,
                     result: ResultIn, now: float) -> Judgement:
        pending = state.claims.get(lease.claim)
        judgement = Judgement(self._base_record(lease, worker, result, now, lease.candidate, result.status,
                                                 claim=lease.claim))
        if not judgement.record.description and (candidate := self.store.version(state.spec.name, lease.candidate)):
            # A verifier runs someone else's edit: its row says what that edit was.
            judgement.record = replace(judgement.record, description=candidate.description)
        if pending is None:
            judgement.record = replace(judgement.record, decision=words.VERIFY_LATE)
            self._overtake_late(state, lease, worker, result, judgement, now)
            return judgement
        if result.status != "ok" or result.metric is None:
            pending.failures += 1
            self._settle(state, pending, judgement, now)
            return judgement
        return self._check_verdict(state, pending, judgement, worker, result.metric, now)

    def _check_verdict(self, state: StudyState, pending: PendingClaim, judgement: Judgement, worker: WorkerRecord,
                       metric: float, now: float, waiting: bool = False) -> Judgement:
        """Judges a check of an open claim against runs its claim was not compared with
        (`StudyState.independent_of`), or keeps it waiting for such a run.

        A check on the claimant's class measured before the class has a baseline run of the
        champion that the claim did not use is stored unjudged and judged at the class's next
        one (`waiting`: it is judged again now): the check and that run are measured side by
        side, on two workers, instead of one after the other. So is a check measured while its
        class's baseline of the champion was still being made (`References.baseline_under_way`)."""
        record = judgement.record
        cls = worker.hardware_class
        parent = pending.record.parent
        used = state.independent_of(pending, cls)
        measured = self._measure(state, parent, worker, metric, record.id, used,
                                 reserve=not used and not pending.measurements)
        pending.waiting.pop(record.id, None)
        early = record.id in pending.early
        pending.early.discard(record.id)
        if measured is None:
            step = result_step(ResultState.WAITING if waiting else ResultState.ARRIVED, ResultEvent.BASELINE_MISSING)
            # It waits for a run the claim was not compared with, or, leased before its class had
            # a baseline of the champion (a check only its worker could make: `StudyState.view`),
            # for the rest of that baseline.
            known = state.reference(parent, cls, worker.id) is not None
            if (known if used else early and state.baseline_under_way(parent, cls)) \
                    and parent == state.champion.version \
                    and not self.trust(worker.id).quarantined and Action.WAIT in step.actions:
                pending.waiting[record.id] = (worker.id, cls)
                judgement.record = replace(record, decision=words.WAITING)
                judgement.waits = True
                return judgement
            judgement.record = replace(record, decision=words.UNJUDGED)
            if pending.audit:  # its old parent has no baseline on this class: one try fewer
                pending.failures += 1
                self._settle(state, pending, judgement, now)
            return judgement
        verdict, measurement = measured
        if not self.trust(worker.id).quarantined:
            judgement.noise_run = (record.version, cls, metric)
        pending.measurements.append(measurement)
        judgement.record = replace(record, decision=words.CONFIRM if verdict.accept else words.REFUTE,
                                   improvement=verdict.improvement, threshold=verdict.threshold)
        judgement.funnel.append("verified" if verdict.accept else "refuted")
        self._settle(state, pending, judgement, now)
        return judgement

    def judge_waiting_check(self, state: StudyState, stored: ResultRecord, worker: WorkerRecord,
                            now: float) -> Judgement:
        """A check that waited for a fresh baseline run (`_check_verdict`), judged again now that
        its class measured the champion once more; late once its claim was decided meanwhile."""
        judgement = Judgement(stored)
        pending = state.claims.get(stored.claim)
        if pending is None or stored.metric is None:
            judgement.record = replace(stored, decision=words.VERIFY_LATE)
            return judgement
        return self._check_verdict(state, pending, judgement, worker, stored.metric, now, waiting=True)

    def _overtake_late(self, state: StudyState, lease: LeaseRecord, worker: WorkerRecord, result: ResultIn,
                       judgement: Judgement, now: float) -> None:
        """A verification that came back after its claim was superseded still measured a real
        version: if that version beats the current champion, it becomes a claim against the
        champion instead of a wasted evaluation."""
        if result.status != "ok" or result.metric is None or self.trust(worker.id).quarantined \
                or lease.candidate == state.champion.version \
                or any(p.record.version == lease.candidate for p in state.claims.values()):
            return
        measured = self._measure(state, state.champion.version, worker, result.metric, lease.id)
        if measured is None or not measured[0].accept:
            return
        verdict, measurement = measured
        claim = ClaimRecord(f"c-{lease.id[2:]}", state.spec.name, lease.candidate, state.champion.version, "merge",
                            "", "", "pending", "", now)
        judgement.record = replace(judgement.record, decision=words.CONFIRM, claim=claim.id,
                                   improvement=verdict.improvement, threshold=verdict.threshold)
        self._open_claim(state, judgement, PendingClaim(claim, [measurement]), now)

    def _settle(self, state: StudyState, pending: PendingClaim, judgement: Judgement, now: float) -> None:
        """Applies the acceptance rule to a claim after a new measurement or failure."""
        policy = state.spec.acceptance
        settled = pending.settlement(policy, state.spec.direction)
        if pending.audit:
            # A superseded claim checked for trust only: its lifecycle ended (superseded), what
            # is left is the strikes and credit its checks earn (`_close_audit`).
            if settled.outcome != "pending":
                self._strike_outvoted(judgement, settled)
                self._close_audit(state, pending, settled, judgement, now)
            return
        # Quorum reached without an agreeing majority: an arbiter is wanted, not just the next check.
        step = claim_step(ClaimState(pending.record.state),
                          claim_event(settled.outcome, disagreement=len(pending.measurements) >= policy.quorum))
        if step.state is ClaimState.PENDING:
            return  # the scheduler hands out the verification or arbiter it still needs
        claimant = pending.record.claimant_worker
        outvoted = {m.worker_id for m in settled.outvoted}
        if Action.STRIKE_OUTVOTED in step.actions:
            self._strike_outvoted(judgement, settled)
        if Action.CREDIT_CLAIMANT in step.actions and pending.record.origin == "explore" and claimant not in outvoted:
            judgement.credits.append(claimant)
        if Action.PROMOTE in step.actions:
            judgement.accepted, judgement.settled = pending, settled   # `accept` promotes it
            return
        claim = replace(pending.record, state=step.state.value, reason=_settled_reason(settled, pending), decided=now)
        pending.record = claim
        judgement.claims.append(claim)
        judgement.resolved.append((pending, claim.state))
        if claim.claimant_result and claimant not in outvoted:
            judgement.decisions.append((claim.claimant_result, words.REJECTED))

    def _strike_outvoted(self, judgement: Judgement, settled: acceptance.Settlement) -> None:
        """Outvoted by the agreeing majority: a strike, claimant or verifier alike."""
        for m in settled.outvoted:
            judgement.strikes.append(m.worker_id)
            if is_moved(m.hardware_class):
                judgement.moved_strikes.append(m.worker_id)
            self._mark(judgement, m.result_id, words.OUTVOTED)

    def _close_audit(self, state: StudyState, pending: PendingClaim, settled: acceptance.Settlement,
                     judgement: Judgement, now: float) -> None:
        """A superseded claim checked to the end: trust is settled (its strikes are already
        counted); a confirmed edit is replayed onto the champion, a refuted one is dropped."""
        claimant = pending.record.claimant_worker
        confirmed = settled.outcome == "accepted" and claimant not in {m.worker_id for m in settled.outvoted}
        if confirmed:
            judgement.credits.append(claimant)
        pending.record = replace(pending.record, reason=f"{pending.record.reason}{AUDIT_CLOSED}{_settled_reason(settled, pending)}")
        judgement.claims.append(pending.record)
        judgement.resolved.append((pending, pending.record.state))
        edited = self.store.version(state.spec.name, pending.record.version)
        if confirmed and edited is not None:
            self._merge_onto_champion(state, judgement, edited, claimant, now)

    def accept(self, state: StudyState, judgement: Judgement, now: float) -> None:
        """Makes an accepted claim the champion; open claims on the old champion are replayed onto it."""
        pending, settled = judgement.accepted, judgement.settled
        assert pending is not None and settled is not None and settled.score is not None
        promoted = claim_step(ClaimState(pending.record.state), ClaimEvent.ACCEPTED)
        claim = replace(pending.record, state=promoted.state.value, decided=now, reason=_settled_reason(settled, pending))
        outvoted = {m.result_id for m in settled.outvoted}
        pending.record = claim
        judgement.claims.append(claim)
        judgement.resolved.append((pending, claim.state))
        judgement.funnel.append("accepted")
        if claim.claimant_result in (judgement.record.id, "") and judgement.record.id not in outvoted:
            # The row that made the champion reads "keep" (a merge has no claimant row: its last check does).
            judgement.record = replace(judgement.record, decision=words.KEEP)
        elif claim.claimant_result and claim.claimant_result not in outvoted:
            judgement.decisions.append((claim.claimant_result, words.KEEP))
        # The score is the agreeing majority's median: no single number, the claimant's included, sets it.
        judgement.new_champion = ChampionRecord(
            state.spec.name, state.champion.seq + 1, claim.version, settled.score, judgement.record.id, now)
        # The new champion may be this very report's candidate, not committed yet.
        champion = self._version(state, judgement, claim.version)
        previous = self._version(state, judgement, state.champion.version)
        assert champion is not None and previous is not None
        for other in list(state.claims.values()):
            if other.record.id == claim.id or other.audit:
                continue
            edited = self.store.version(state.spec.name, other.record.version)
            if edited is not None and not other.measurements \
                    and self._merged_content(state, judgement, champion, edited) == edited.content:
                # It holds the new champion's edits already (a merge made for it, or folded into
                # it): it stays open, now judged against the new champion; checks in flight count.
                rebased = claim_step(ClaimState(other.record.state), ClaimEvent.CHAMPION_INCLUDED)
                other.record = replace(other.record, state=rebased.state.value, parent=champion.hash)
                judgement.claims.append(other.record)
                continue
            moved = claim_step(ClaimState(other.record.state), ClaimEvent.CHAMPION_MOVED)
            superseded = replace(other.record, state=moved.state.value, decided=now,
                                 reason=f"the champion moved to {claim.version[:12]} first")
            audited = audited_when_superseded(other, self.trust(other.record.claimant_worker))
            if audited:   # said in its reason, so that a restarted coordinator checks it on (`StudyRegistry`)
                superseded = replace(superseded, reason=f"{superseded.reason}; {AUDIT_NOTE}")
            other.record = superseded
            judgement.claims.append(superseded)
            if audited:
                judgement.audits.append(other)
                continue
            judgement.resolved.append((other, superseded.state))
            if edited is not None and Action.MERGE_ONTO_CHAMPION in moved.actions:
                self._merge_onto_champion(state, judgement, edited, other.record.claimant_worker, now,
                                          champion=champion)
        if self._merge_base(state, judgement, champion, previous) != previous.hash:
            # The new champion overtook the old one from an earlier version: keep the old one's edits too.
            self._merge_onto_champion(state, judgement, previous, "", now, champion=champion)
