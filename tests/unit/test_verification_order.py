"""Which open claims are verified first: strongest first, a cap per champion, one merge at a time."""

from __future__ import annotations

from autoswarm.coordinator.acceptance import Measurement
from autoswarm.coordinator.store import ClaimRecord
from autoswarm.coordinator.study_state import MAX_VERIFYING, PendingClaim, verification_order


def _claim(cid: str, parent: str, origin: str = "explore", gain: float | None = 0.1,
           in_flight: bool = False) -> PendingClaim:
    record = ClaimRecord(cid, "s", f"v-{cid}", parent, origin, "w", "", "pending", "", 0.0)
    measurements = [Measurement("w", "o", "cpu:a", 1.0, gain, 0.05, True)] if gain is not None else []
    return PendingClaim(record, measurements, in_flight={f"l-{cid}"} if in_flight else set())


def test_strongest_claims_first_and_at_most_max_verifying_per_champion():
    claims = [_claim(f"c{i}", "champ", gain=0.06 + 0.01 * i) for i in range(MAX_VERIFYING + 3)]
    claims.append(_claim("other", "old-champ", gain=0.06))
    chosen = verification_order(claims)
    on_champ = [c.record.id for c in chosen if c.record.parent == "champ"]
    assert len(on_champ) == MAX_VERIFYING
    assert on_champ[0] == f"c{MAX_VERIFYING + 2}", "the largest gain over its bar goes first"
    assert "other" in {c.record.id for c in chosen}, "the cap is per champion"


def test_one_merge_per_champion_is_checked_at_a_time_the_next_waits_to_fold():
    checked = _claim("m1", "champ", origin="merge", gain=None, in_flight=True)
    waiting = _claim("m2", "champ", origin="merge", gain=None)
    elsewhere = _claim("m3", "newer", origin="merge", gain=None)
    edit = _claim("e1", "champ")
    chosen = [c.record.id for c in verification_order([waiting, edit, checked, elsewhere])]
    assert chosen[0] == "m1", "a merge being checked stays first"
    assert "m2" not in chosen, "a second merge onto the same champion waits (stale edits fold into it)"
    assert "m3" in chosen and "e1" in chosen
    # Once the first is settled, the waiting merge is next.
    assert [c.record.id for c in verification_order([waiting, edit])][0] == "m2"


def test_an_audit_of_a_merge_is_not_held_back():
    first = _claim("m1", "champ", origin="merge", gain=None, in_flight=True)
    audit = _claim("m2", "champ", origin="merge", gain=None)
    audit.audit = True
    assert {c.record.id for c in verification_order([first, audit])} == {"m1", "m2"}


def test_an_overtaken_claim_is_audited_only_when_its_claimant_is_new_suspect_or_a_check_is_running():
    from autoswarm.coordinator.acceptance import Trust
    from autoswarm.coordinator.judging import audited_when_superseded

    newcomer, clean = Trust(), Trust(confirmed=1)
    struck, moved = Trust(confirmed=1, refuted=1), Trust(confirmed=1, moved=True)
    trusted = Trust(confirmed=10)
    idle, checking = _claim("a", "champ"), _claim("b", "champ", in_flight=True)
    assert not audited_when_superseded(idle, clean), "its edit is replayed at once instead"
    assert audited_when_superseded(idle, newcomer), "no confirmed claim yet: a liar can't escape by being overtaken"
    assert audited_when_superseded(idle, struck) and audited_when_superseded(idle, moved)
    assert audited_when_superseded(checking, clean), "the check in flight settles it"
    assert not audited_when_superseded(checking, trusted), "a trusted worker's claims are not audited"
    assert not audited_when_superseded(_claim("m", "champ", origin="merge", gain=None), struck)
