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
    assert not speculation.worth_building_on(_C(_R("a"), [_M(0.12, 0.1)]), "champ", trusted), "beat its bar by < 1.25x"
    assert not speculation.worth_building_on(_C(_R("a"), []), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a", claimant_worker="liar")), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a", parent="old")), "champ", trusted), "a claim on an old champion"
    assert not speculation.worth_building_on(_C(_R("a"), audit=True), "champ", trusted)
    assert not speculation.worth_building_on(_C(_R("a", state="accepted")), "champ", trusted)
    # A merge is the coordinator's, of edits that each beat their bar: no measurement needed.
    assert speculation.worth_building_on(_C(_R("m", origin=MERGE, claimant_worker="liar"), []), "champ", trusted)


def test_the_oldest_claim_worth_it_is_built_on():
    claims = [_C(_R("young", created=3.0)), _C(_R("weak", created=1.0), [_M(0.1, 0.1)]), _C(_R("old", created=2.0))]
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
