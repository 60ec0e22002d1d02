"""The acceptance core alone, without SQLite: judging a report, a result waiting for its class's
baseline, a claim through its table (the arbiter path), and leases closed through theirs.

`Judging` only reads versions, so a dict stands in for the store; `Leasing` is driven with a
store that records what it is asked to write. What these show is that the code paths go
through `transitions`' tables, not only that the tables say the right thing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from autoswarm.bundle import sha256_hex
from autoswarm.study import parse_study
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.config import EngineConfig
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.judging import Judgement, Judging
from autoswarm.coordinator.leasing import Leasing
from autoswarm.coordinator.reporting import ResultIn
from autoswarm.coordinator.roster import Roster
from autoswarm.coordinator.store import ChampionRecord, LeaseRecord, StudyRecord, VersionRecord, WorkerRecord
from autoswarm.coordinator.study_state import StudyState
from autoswarm.coordinator.transitions import Action, ClaimEvent, ClaimState, LifecycleError, claim_step

SPEC = {"name": "tiny", "target": "target.py", "evaluate": "python target.py", "metric": "score",
        "direction": "maximize", "timeout": 10, "time_budget": 1,
        "acceptance": {"compare": "paired", "quorum": 2, "baseline_runs": 2}}
FIRST = b"X = 1.0\n"
CHAMPION = sha256_hex(FIRST)
EDIT = b"X = 2.0\n"


class VersionsOnly:
    """What `Judging` reads of a store: versions, by hash."""

    def __init__(self) -> None:
        self.versions = {CHAMPION: VersionRecord("tiny", CHAMPION, "", FIRST, "initial version", "study", 0.0)}

    def version(self, study: str, version_hash: str) -> VersionRecord | None:
        return self.versions.get(version_hash)

    def version_parent(self, study: str, version_hash: str) -> str | None:
        found = self.versions.get(version_hash)
        return found.parent if found is not None else None


def _state() -> StudyState:
    state = StudyState(StudyRecord("tiny", SPEC, "bundle", 0, "", 0.0), parse_study(SPEC), 10,
                       ChampionRecord("tiny", 0, CHAMPION, 10.0, "r-0", 0.0), 0, 0, 0, 10.0)
    state.scores[CHAMPION] = 10.0
    return state


def _calibrate(state: StudyState, hardware_class: str) -> None:
    """Three workers measure the champion twice each: the class has a baseline and a noise."""
    for k, (worker, value) in enumerate([(1, 10.0), (2, 10.05), (1, 10.02), (2, 9.97), (3, 10.01), (3, 10.03)]):
        state.add_baseline(CHAMPION, hardware_class, f"w-{worker}", value, f"r-b{k}")


def _fresh(state: StudyState, hardware_class: str) -> None:
    """Two more runs of the champion after a claim: what its confirmations on the class are compared with."""
    for k, value in enumerate((10.01, 10.02)):
        state.add_baseline(CHAMPION, hardware_class, f"w-{k + 1}", value, f"r-f{k}")


def _worker(i: int, hardware_class: str = "A") -> WorkerRecord:
    return WorkerRecord(f"w-{i}", f"w{i}", {}, hardware_class, 1, ("params",), "idle", 0.0, 0.0, owner=f"owner-{i}")


def _lease(i: int, kind: str = "explore", candidate: str = "", claim: str = "") -> LeaseRecord:
    return LeaseRecord(f"l-{i}", "tiny", f"w-{i}", kind, CHAMPION, candidate, 0, 0.0, 100.0, "active", None, claim)


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "X 1 -> 2", "", {})


@pytest.fixture
def core() -> tuple[Judging, StudyState, VersionsOnly]:
    store = VersionsOnly()
    return Judging(store, EngineConfig(), lambda _: acceptance.Trust(), lambda _: 0), _state(), store  # type: ignore[arg-type]


def _commit(state: StudyState, store: VersionsOnly, judgement: Judgement) -> None:
    """The part of what `Reporting` applies after a commit that these tests rely on."""
    for version in judgement.versions:
        store.versions[version.hash] = version
    for pending in judgement.opened:
        state.claims[pending.record.id] = pending
        state.claimed_versions.add(pending.record.version)
    for pending, _ in judgement.resolved:
        state.claims.pop(pending.record.id, None)


def test_a_result_waits_for_its_class_baseline_and_is_judged_when_it_arrives(core):
    judging, state, _ = core
    waiting = judging.judge_explore(state, _lease(4), _worker(4), _ok(12.0, EDIT), 1.0)
    assert (waiting.record.decision, waiting.waits, waiting.claims) == ("waiting", True, [])
    # Judged again while its class still has no baseline: it keeps waiting.
    again = judging.explore_verdict(state, _lease(4), _worker(4), 12.0, waiting.record.version,
                                    lambda decision, **judged: Judgement(replace(waiting.record, decision=decision,
                                                                                 **judged)), 2.0, waiting=True)
    assert again.waits and again.record.decision == "waiting"
    _calibrate(state, "A")
    judged = judging.explore_verdict(state, _lease(4), _worker(4), 12.0, waiting.record.version,
                                     lambda decision, **judged: Judgement(replace(waiting.record, decision=decision,
                                                                                  **judged)), 3.0, waiting=True)
    assert not judged.waits and judged.record.decision == "claim"
    claim, = judged.claims
    assert (claim.state, claim.version, claim.parent) == ("pending", sha256_hex(EDIT), CHAMPION)
    assert judged.record.improvement is not None and judged.record.improvement > 0


def test_another_class_baseline_does_not_judge_a_waiting_result(core):
    judging, state, _ = core
    _calibrate(state, "B")
    assert judging.judge_explore(state, _lease(4), _worker(4, "A"), _ok(12.0, EDIT), 1.0).waits


def _claim_on_a(judging, state, store):
    """Class A calibrated, and w-4's edit (12.0 against A's 10) claimed and committed: the pending claim."""
    _calibrate(state, "A")
    _commit(state, store, judging.judge_explore(state, _lease(4), _worker(4), _ok(12.0, EDIT), 1.0))
    pending, = state.claims.values()
    return pending


def test_the_arbiter_path_a_lying_verifier_is_outvoted_and_the_claim_promoted(core):
    judging, state, store = core
    pending = _claim_on_a(judging, state, store)
    _fresh(state, "A")
    version = pending.record.version
    lie = judging.judge_verify(state, _lease(5, "verify", version, pending.record.id), _worker(5), _ok(10.0), 2.0)
    assert lie.record.decision == "refute" and lie.accepted is None and not lie.claims, \
        "claimant and verifier disagree: no majority yet, an arbiter is wanted"
    assert pending.settlement(state.spec.acceptance).needed >= 1
    arbiter = judging.judge_verify(state, _lease(6, "verify", version, pending.record.id), _worker(6), _ok(12.02), 3.0)
    assert arbiter.accepted is pending and arbiter.credits == ["w-4"]
    assert arbiter.strikes == ["w-5"] and ("l-5", "outvoted") in arbiter.decisions
    judging.accept(state, arbiter, 3.0)
    assert arbiter.new_champion is not None and arbiter.new_champion.version == version
    assert [c.state for c in arbiter.claims] == ["accepted"] and arbiter.resolved == [(pending, "accepted")]
    assert arbiter.record.decision == "confirm" and ("l-4", "keep") in arbiter.decisions


def test_a_claim_refuted_by_an_agreeing_majority_is_rejected_through_the_table(core):
    judging, state, store = core
    pending = _claim_on_a(judging, state, store)
    _fresh(state, "A")
    checks = [judging.judge_verify(state, _lease(i, "verify", pending.record.version, pending.record.id), _worker(i),
                                   _ok(10.01), float(i)) for i in (5, 6)]
    rejected = checks[-1]
    assert [c.state for c in rejected.claims] == ["rejected"] and rejected.resolved == [(pending, "rejected")]
    assert "w-4" in rejected.strikes and not rejected.credits


def test_a_confirmation_on_the_claims_class_is_compared_with_runs_the_claim_was_not(core):
    """Independent confirmation: one low class baseline must not make a null edit look good twice.
    The claim leaves the class's newest runs to its checks, which are judged on them at once."""
    judging, state, store = core
    pending = _claim_on_a(judging, state, store)
    assert pending.measurements[0].baseline == {f"r-b{k}" for k in range(4)}, "the two newest runs are reserved"
    view = state.view("w-5", "A", frozenset({"w-1", "w-2", "w-3", "w-5"}), frozenset({"w-5"}), frozenset({"A"}))
    need, = view.verify
    assert need.needed == 1 and state.reference(CHAMPION, "A", "w-5", state.independent_of(pending, "A")) is not None
    verified = judging.judge_verify(state, _lease(5, "verify", pending.record.version, pending.record.id),
                                    _worker(5), _ok(12.01), 2.0)
    measured = pending.measurements[-1]
    assert verified.record.decision == "confirm" and measured.baseline == {"r-b4", "r-b5"}
    assert not measured.baseline & pending.measurements[0].baseline
    # Another class's check is compared with that class's own runs, all of them.
    _calibrate(state, "B")
    assert state.independent_of(pending, "B") == frozenset()


def test_a_check_with_no_independent_run_waits_for_one_that_the_claimant_did_not_measure(core):
    """A class whose every run judged the claim: its check is measured at once and waits, stored,
    for the next run of the champion there; the claimant's own run never judges its claim."""
    judging, state, store = core
    state.champion = replace(state.champion, seq=1)   # past the first champion's class check
    for k, (worker, value) in enumerate([(1, 10.0), (2, 10.05)]):
        state.add_baseline(CHAMPION, "A", f"w-{worker}", value, f"r-b{k}")
    state.samples.add("other", "A", "w-1", 5.0)   # a repeat elsewhere: the machines' own noise is known
    state.samples.add("other", "A", "w-1", 5.02)
    state.samples.add("other", "A", "w-2", 5.01)
    state.samples.add("other", "A", "w-2", 5.0)
    _commit(state, store, judging.judge_explore(state, _lease(4), _worker(4), _ok(12.0, EDIT), 1.0))
    pending, = state.claims.values()
    assert pending.measurements[0].baseline == {"r-b0", "r-b1"}
    members = frozenset({"w-4", "w-5", "w-6"})   # too few to reserve runs for checks
    view = state.view("w-5", "A", members, members, frozenset({"A"}))
    assert view.verify[0].needed == 1, "handed out now, judged once a fresh run is there"
    assert view.class_baseline.target > view.class_baseline.done, "and the class measures the champion again"
    assert state.view("w-4", "A", members, members, frozenset({"A"})).class_baseline.target == \
        view.class_baseline.done, "not by the claimant: its run would not count"
    lease = _lease(5, "verify", pending.record.version, pending.record.id)
    waiting = judging.judge_verify(state, lease, _worker(5), _ok(12.01), 2.0)
    assert (waiting.record.decision, waiting.waits) == ("waiting", True) and pending.waiting == {"l-5": ("w-5", "A")}
    assert pending.checks_out == 1 and state.checks_owed() == 0
    assert "w-5" in state.view("w-6", "A", members, members, frozenset({"A"})).verify[0].excluded_workers
    state.add_baseline(CHAMPION, "A", "w-4", 9.98, "r-claimant")   # lowish: it would help the edit
    still = judging.judge_waiting_check(state, waiting.record, _worker(5), 3.0)
    assert still.waits and still.record.decision == "waiting"
    state.add_baseline(CHAMPION, "A", "w-1", 10.02, "r-fresh")
    judged = judging.judge_waiting_check(state, still.record, _worker(5), 4.0)
    assert not judged.waits and judged.record.decision == "confirm" and not pending.waiting
    assert pending.measurements[-1].baseline == {"r-fresh"}
    assert pending.measurements[-1].improvement == pytest.approx(12.01 - 10.02)
    # Decided meanwhile, a check that waited is late.
    state.claims.clear()
    assert judging.judge_waiting_check(state, still.record, _worker(5), 5.0).record.decision == "verify-late"


def test_a_decided_claim_that_memory_still_holds_is_refused_not_decided_twice(core):
    judging, state, store = core
    pending = _claim_on_a(judging, state, store)
    _fresh(state, "A")
    pending.record = replace(pending.record, state="rejected")
    with pytest.raises(LifecycleError, match="claim that is rejected cannot take 'accepted'"):
        judging.judge_verify(state, _lease(5, "verify", pending.record.version, pending.record.id), _worker(5),
                             _ok(12.01), 2.0)


def test_an_unchecked_merge_folded_into_a_newer_one_is_superseded():
    step = claim_step(ClaimState.PENDING, ClaimEvent.FOLDED)
    assert (step.state, step.actions) == (ClaimState.SUPERSEDED, ())
    with pytest.raises(LifecycleError):
        claim_step(ClaimState.SUPERSEDED, ClaimEvent.FOLDED)
    assert Action.MERGE_ONTO_CHAMPION in claim_step(ClaimState.PENDING, ClaimEvent.CHAMPION_MOVED).actions


# -- leases -------------------------------------------------------------------------------


@dataclass
class LeaseWrites:
    """What `Leasing` writes, recorded instead of committed."""

    closed: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)

    def workers(self) -> list[WorkerRecord]:
        return [_worker(1)]

    def count_results_by_worker(self) -> dict[str, int]:
        return {}

    def close_leases(self, lease_ids: list[str], state: str, now: float) -> int:
        self.closed.append((tuple(lease_ids), state))
        return len(lease_ids)

    def extend_leases(self, worker_id: str, lease_ids: list[str], deadlines: dict[str, float]) -> None:
        self.extended.extend(lease_ids)


class Closings:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def leases_closed(self, study: str, kind: str, reason: str) -> None:
        self.seen.append((kind, reason))


def _leasing(now: list[float]) -> tuple[Leasing, StudyState, LeaseWrites, Closings]:
    store, events = LeaseWrites(), Closings()
    ctx = EngineContext(store, EngineConfig(), lambda: now[0], events, {})  # type: ignore[arg-type]
    roster = Roster(ctx)
    leasing = Leasing(ctx, roster)
    state = _state()
    ctx.studies["tiny"] = state
    for i, deadline in ((1, 50.0), (2, 500.0)):
        leasing.track(state, replace(_lease(i), worker_id="w-1", deadline=deadline))
    return leasing, state, store, events


def test_leases_close_as_the_lease_table_says_and_a_closed_one_is_cancelled():
    now = [100.0]
    leasing, state, store, events = _leasing(now)
    expired = leasing.expire_overdue()
    assert [lease.id for lease in expired] == ["l-1"] and store.closed == [(("l-1",), "expired")]
    assert events.seen == [("explore", "expired")] and set(state.active) == {"l-2"}
    outcome = leasing.heartbeat("w-1", ["l-1", "l-2"], "working")
    assert outcome.cancelled == ["l-1"] and store.extended == ["l-2"], "the expired lease is refused, the other extended"
    assert leasing.release("w-1", ["l-2"]) == 1 and store.closed[-1] == (("l-2",), "released")
    assert events.seen[-1] == ("explore", "released") and not state.active and not leasing.running["w-1"]
