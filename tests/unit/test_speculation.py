"""Exploring on a claim while it is checked (`coordinator.speculation`): the pure rules, then the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from autoswarm.coordinator import speculation

MERGE, EXPLORE = "merge", "explore"


@dataclass
class _M:
    improvement: float
    threshold: float


@dataclass
class _R:
    version: str
    parent: str = "champ"
    origin: str = EXPLORE
    state: str = "pending"
    claimant_worker: str = "w1"
    created: float = 0.0
    id: str = ""


@dataclass
class _C:
    record: _R
    measurements: list[_M] = field(default_factory=lambda: [_M(0.2, 0.1)])
    in_flight: set[str] = field(default_factory=lambda: {"lease"})
    audit: bool = False


def trusted(worker_id: str) -> bool:
    return worker_id != "liar"


def test_only_untiered_swarms_with_checked_claims_speculate():
    assert speculation.may_speculate(2, tiered=False, verifying_classes=1, min_tier_classes=4)
    assert speculation.may_speculate(2, tiered=False, verifying_classes=3, min_tier_classes=4)
    assert not speculation.may_speculate(1, tiered=False, verifying_classes=1, min_tier_classes=4), "quorum 1 keeps at once"
    assert not speculation.may_speculate(2, tiered=True, verifying_classes=1, min_tier_classes=4)
    assert not speculation.may_speculate(2, tiered=False, verifying_classes=4, min_tier_classes=4), "tiers may form"


def test_a_claim_is_built_on_only_while_its_check_runs_strong_and_by_a_clean_claimant():
    assert speculation.worth_building_on(_C(_R("a")), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a"), in_flight=set()), "champ", trusted), "no check under way"
    assert not speculation.worth_building_on(_C(_R("a"), [_M(0.2, 0.1), _M(0.05, 0.1)]), "champ", trusted), \
        "a check that missed its bar: an arbiter is wanted"
    assert not speculation.worth_building_on(_C(_R("a"), []), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a", claimant_worker="liar")), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a", parent="old")), "champ", trusted), "a claim on an old champion"
    assert not speculation.worth_building_on(_C(_R("a"), audit=True), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a", state="accepted")), "champ", trusted)
    # A merge is the coordinator's, of edits that each beat their bar: no measurement needed.
    assert speculation.worth_building_on(_C(_R("m", origin=MERGE, claimant_worker="liar"), []), "champ", trusted)


def test_the_oldest_claim_worth_it_is_built_on():
    claims = [_C(_R("young", created=3.0)), _C(_R("weak", created=1.0), [_M(0.09, 0.1)]), _C(_R("old", created=2.0))]
    chosen = speculation.claim_to_build_on(claims, "champ", trusted)
    assert chosen is not None and chosen.record.version == "old"
    assert speculation.claim_to_build_on([claims[1]], "champ", trusted) is None


def test_a_class_measures_the_claim_ahead_less_a_merges_checks():
    assert speculation.runs_ahead(EXPLORE, 4) == 4, "an explore claim's runs are not baselines"
    assert speculation.runs_ahead(MERGE, 4) == 2, "a merge's two checks are (`checks_as_baselines`)"
    assert speculation.runs_ahead(MERGE, 2) == 0
    assert speculation.measure_ahead(2, done=1, in_flight=0, measured_it=False, claimant=False)
    assert not speculation.measure_ahead(2, done=1, in_flight=1, measured_it=False, claimant=False)
    assert not speculation.measure_ahead(2, done=0, in_flight=0, measured_it=True, claimant=False), "distinct workers"
    assert not speculation.measure_ahead(2, done=0, in_flight=0, measured_it=False, claimant=True), "never the claimant"


def test_a_claimant_whose_claims_built_on_were_lost_is_built_on_again_only_once_it_earns_it():
    assert speculation.earned(accepted=0, lost=0)
    assert speculation.earned(accepted=0, lost=1), "one loss is forgiven as noise"
    assert not speculation.earned(accepted=0, lost=2)
    assert speculation.earned(accepted=1, lost=2), "each claim that became the champion forgives one more"
    record = speculation.TrackRecord()
    record.note("spoofer", accepted=False)
    assert record.allows("spoofer")
    record.note("spoofer", accepted=False)
    assert not record.allows("spoofer") and record.allows("honest"), "per claimant"
    record.note("spoofer", accepted=True)
    assert record.allows("spoofer")


@dataclass
class _Acceptance:
    quorum: int = 2
    baseline_runs: int = 2


@dataclass
class _Samples:
    def baseline(self, version: str, hardware_class: str) -> None:
        return None

    def measured_by(self, version: str, hardware_class: str) -> set[str]:
        return set()


@dataclass
class _Active:
    def baselines_of(self, version: str) -> list[object]:
        return []


@dataclass
class _Spec:
    acceptance: _Acceptance = field(default_factory=_Acceptance)


@dataclass
class _Champion:
    version: str = "champ"


@dataclass
class _State:
    claims: dict[str, _C]
    champion: _Champion = field(default_factory=_Champion)
    spec: _Spec = field(default_factory=_Spec)
    samples: _Samples = field(default_factory=_Samples)
    active: _Active = field(default_factory=_Active)
    track: speculation.TrackRecord = field(default_factory=speculation.TrackRecord)
    tiered: bool = False
    paired: bool = True

    def runs_for_class_of(self, members: int) -> int:
        return self.spec.acceptance.baseline_runs


def _next(state: _State, worker: str = "w2") -> speculation.BuiltOn | None:
    return speculation.next_task(state, worker, "c", frozenset({"w1", "w2"}), 1, trusted, 4)


def test_a_lease_measures_the_claim_ahead_names_the_claim_and_heeds_the_track_record():
    state = _State({"claim-a": _C(_R("a", id="claim-a"))})
    assert _next(state) == speculation.BuiltOn("baseline", "a", "claim-a")
    assert _next(state, "w1") == speculation.BuiltOn("explore", "a", "claim-a"), "the claimant edits it"
    state.track.note("w1", accepted=False)
    state.track.note("w1", accepted=False)
    assert _next(state) is None, "two of its claims built on were lost: explore the champion"
    state.spec.acceptance.quorum = 1
    state.track = speculation.TrackRecord()
    assert _next(state) is None, "quorum 1: no speculation"


# -- in the engine ----------------------------------------------------------------------------

from autoswarm.bundle import pack_directory  # noqa: E402
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn, TaskSpec  # noqa: E402
from autoswarm.coordinator.store import Store  # noqa: E402
from swarm import Clock, write_study  # noqa: E402


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "", "", {})


def _swarm(tmp_path) -> tuple[Engine, list[str]]:
    """One class of three workers of three owners, paired, quorum 2, calibrated: each holds an explore."""
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=Clock())
    study = write_study(tmp_path / "study", acceptance='compare = "paired"\nquorum = 2\nbaseline_runs = 2')
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    ids = [engine.register("", f"w{i}", {"cpu_model": "Alpha", "cpu_cores": 2, "gpus": []}, 1, ["params"],
                           owner=f"o{i}")[0] for i in range(3)]
    for n in range(60):
        held = 0
        for w in ids:
            task = engine.lease(w)
            if task is None:
                continue
            if task.kind == "explore":
                engine.release(w, [task.lease_id])
                held += 1
                continue
            engine.report(w, task.lease_id, _ok(10.0 + 0.01 * (n % 3)))
        if held == len(ids):
            return engine, ids
    raise AssertionError("the class never started exploring")


def _lease(engine: Engine, worker: str) -> TaskSpec:
    task = engine.lease(worker)
    assert task is not None
    return task


def test_edits_of_a_strong_claim_are_made_while_it_is_checked_and_judged_once_it_is_accepted(tmp_path):
    engine, (a, b, c) = _swarm(tmp_path)
    champion = engine.study_summaries()[0].champion.version
    explore = _lease(engine, a)
    claimed = engine.report(a, explore.lease_id, _ok(20.0, b"X = 2.0\nY = 3\n"))
    assert claimed.decision == "claim"
    check = _lease(engine, b)
    assert check.kind == "verify"
    claim = check.candidate.hash
    # The third worker measures the claim's baseline ahead, then edits the claim, not the champion.
    ahead = _lease(engine, c)
    assert (ahead.kind, ahead.candidate.hash) == ("baseline", claim)
    engine.report(c, ahead.lease_id, _ok(20.0))
    on_claim = _lease(engine, c)
    assert on_claim.kind == "explore" and on_claim.parent.hash == claim
    assert engine.heartbeat(c, [on_claim.lease_id], "working").stale == [], "a lease on the claim is not stale"
    waited = engine.report(c, on_claim.lease_id, _ok(30.0, b"X = 2.5\nY = 3\n"))
    assert waited.decision == "waiting", "judged only once the claim is decided"
    assert engine.study_summaries()[0].champion.version == champion
    assert engine.report(b, check.lease_id, _ok(20.002)).new_champion
    assert engine.study_summaries()[0].champion.version == claim
    # The claim's class has one run of it (measured ahead); one more and the edit is judged against it.
    for w in (a, b, c):
        task = _lease(engine, w)
        if task.kind == "baseline":
            assert task.candidate.hash == claim
            engine.report(w, task.lease_id, _ok(20.05))
            break
        engine.release(w, [task.lease_id])
    judged = engine.store.result(waited.result_id)
    assert judged.decision == "claim" and judged.parent == claim, judged
    track = engine.ctx.studies["tiny"].track
    assert (track.accepted, track.lost) == ({a: 1}, {}), "built on and accepted: in its claimant's track record"


def test_edits_of_a_refuted_claim_never_become_the_champion_through_it(tmp_path):
    engine, (a, b, c) = _swarm(tmp_path)
    champion = engine.study_summaries()[0].champion.version
    explore = _lease(engine, a)
    assert engine.report(a, explore.lease_id, _ok(20.0, b"X = 2.0\nY = 3\n")).decision == "claim"
    check = _lease(engine, b)
    ahead = _lease(engine, c)
    engine.report(c, ahead.lease_id, _ok(10.0))
    on_claim = _lease(engine, c)
    assert on_claim.kind == "explore" and on_claim.parent.hash == check.candidate.hash
    waited = engine.report(c, on_claim.lease_id, _ok(10.02, b"X = 2.5\nY = 3\n"))
    assert waited.decision == "waiting"
    engine.report(b, check.lease_id, _ok(10.01))           # disagrees with the claim: an arbiter
    arbiter = _lease(engine, c)
    assert arbiter.kind == "verify" and arbiter.candidate.hash == check.candidate.hash
    engine.report(c, arbiter.lease_id, _ok(10.012))
    claim = next(cl for cl in engine.store.claims("tiny") if cl.version == check.candidate.hash)
    assert claim.state == "rejected"
    assert engine.study_summaries()[0].champion.version == champion
    assert engine.store.result(waited.result_id).decision == "waiting", "never judged against the refuted claim"
    track = engine.ctx.studies["tiny"].track
    assert (track.accepted, track.lost) == ({}, {a: 1}), "built on and lost: in its claimant's track record"
    # No claim is open any more: explores go back to the champion.
    task = _lease(engine, a)
    assert task.kind != "explore" or task.parent.hash == champion
