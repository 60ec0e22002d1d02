"""Granted credit, recent average credit, badges and discovery credit (the pure module)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from autoswarm.coordinator import credit
from autoswarm.coordinator.credit import Claim, Member, Step, Work

DAY = 86400.0


def work(rid: str, worker: str, cls: str = "A", version: str = "v0", seconds: float = 2.0, *, kind: str = "baseline",
         status: str = "ok", decision: str = "baseline", claim: str = "", created: float = 0.0,
         study: str = "s", improvement: float | None = None) -> Work:
    return Work(rid, study, kind, worker, cls, version, status, decision, claim, seconds, created, improvement)


def claim(cid: str, version: str, state: str, *, origin: str = "explore", claimant: str = "", result: str = "",
          reason: str = "", created: float = 0.0, decided: float | None = 1.0, study: str = "s") -> Claim:
    return Claim(cid, study, version, origin, claimant, result, state, reason, created, decided)


def test_alike_work_earns_alike_on_a_slow_and_a_fast_class():
    # Class B takes three times as long for the same versions: its seconds count a third.
    rows = [work(f"a{i}", "fast", "A", f"v{i}", 2.0) for i in range(4)] + \
           [work(f"b{i}", "slow", "B", f"v{i}", 6.0) for i in range(3)]
    speeds = credit.class_speeds(rows)
    assert speeds[("s", "A")] == 1.0 and speeds[("s", "B")] == pytest.approx(1 / 3)
    granted = credit.grants(rows, [], frozenset(), {"s": 60.0})
    per_worker = {w: [g.credit for g in granted if g.worker_id == w] for w in ("fast", "slow")}
    assert per_worker["fast"] == pytest.approx([2.0] * 4)
    assert per_worker["slow"] == pytest.approx([2.0] * 3)


def test_classes_with_no_version_in_common_compare_their_median_seconds():
    rows = [work("a", "x", "A", "v1", 4.0), work("a2", "x", "A", "v2", 4.0), work("b", "y", "B", "v3", 8.0)]
    assert credit.class_speeds(rows)[("s", "B")] == pytest.approx(0.5)


def test_reported_seconds_count_at_most_the_timeout():
    rows = [work("a", "x", "A", "v1", 2.0), work("a2", "x", "A", "v1", 2.0), work("b", "braggart", "A", "v1", 1e9)]
    granted = {g.result_id: g.credit for g in credit.grants(rows, [], frozenset(), {"s": 30.0})}
    assert granted["b"] == pytest.approx(30.0)


def test_failed_duplicate_and_quarantined_results_earn_nothing():
    rows = [work("ok", "x"), work("crash", "x", status="crash", decision="crash"),
            work("dup", "x", kind="explore", decision="duplicate"), work("liar-base", "liar")]
    granted = credit.grants(rows, [], frozenset({"liar"}), {})
    assert [g.result_id for g in granted] == ["ok"]


def test_claims_earn_only_once_their_replicas_agreed():
    claims = [claim("c1", "v1", "accepted", claimant="x", result="e1", decided=50.0),
              claim("c2", "v2", "rejected", claimant="x", result="e2"),
              claim("c3", "v3", "pending", claimant="x", result="e3")]
    rows = [work("e1", "x", version="v1", kind="explore", decision="keep", claim="c1", created=10.0),
            work("k1", "y", version="v1", kind="verify", decision="confirm", claim="c1"),
            work("e2", "x", version="v2", kind="explore", decision="rejected", claim="c2"),
            work("r2", "y", version="v2", kind="verify", decision="refute", claim="c2"),
            work("e3", "x", version="v3", kind="explore", decision="claim", claim="c3"),
            work("k3", "y", version="v3", kind="verify", decision="confirm", claim="c3")]
    granted = {g.result_id: g for g in credit.grants(rows, claims, frozenset(), {})}
    assert set(granted) == {"e1", "k1", "r2"}, "pending claims wait; a refuted claimant earns nothing"
    assert granted["e1"].when == 50.0, "granted when the claim was decided"


def test_an_outvoted_measurement_earns_nothing_whatever_the_claim_became():
    claims = [claim("c1", "v1", "accepted", claimant="x", result="e1"),
              claim("c2", "v2", "rejected", claimant="x", result="e2")]
    rows = [work("e1", "x", version="v1", kind="explore", decision="keep", claim="c1"),
            work("o1", "odd", version="v1", kind="verify", decision="outvoted", claim="c1"),
            work("o2", "odd", version="v2", kind="verify", decision="outvoted", claim="c2"),
            work("b", "odd", decision="outvoted")]
    assert [g.result_id for g in credit.grants(rows, claims, frozenset(), {})] == ["e1"]


def test_recent_average_is_credit_per_day_with_a_one_week_half_life():
    steady = [credit.Grant("w", "s", str(i), 10.0, i * DAY) for i in range(400)]
    assert credit.recent_average(steady, 400 * DAY) == pytest.approx(10.0, rel=0.05)
    one = [credit.Grant("w", "s", "r", 100.0, 0.0)]
    assert credit.recent_average(one, 7 * DAY) == pytest.approx(credit.recent_average(one, 0.0) / 2)


@given(st.lists(st.floats(0, 1e4), min_size=1, max_size=30), st.floats(0, 1e7))
def test_recent_average_never_exceeds_what_was_granted_per_half_life(credits, age):
    grants = [credit.Grant("w", "s", str(i), c, 0.0) for i, c in enumerate(credits)]
    rac = credit.recent_average(grants, age)
    assert 0 <= rac <= sum(credits) * math.log(2) / 7 + 1e-6


def test_badges_go_to_the_top_1_5_and_25_percent_of_owners_by_recent_average():
    members = [Member(f"w{i}", f"o{i}", "") for i in range(100)]
    grants = [credit.Grant(f"w{i}", "s", str(i), float(100 - i), 0.0) for i in range(100)]
    table = credit.standings(members, grants, [], now=0.0).owners
    assert table["o0"].badge == "top 1%"
    assert [table[f"o{i}"].badge for i in (1, 4)] == ["top 5%", "top 5%"]
    assert [table[f"o{i}"].badge for i in (5, 24)] == ["top 25%", "top 25%"]
    assert table["o25"].badge == "" and table["o99"].badge == ""


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 7.5]) | st.floats(0.0, 10.0), max_size=250))
def test_badges_rank_ties_together_as_counting_everyone_ahead_does(averages):
    """Ranked by bisecting the sorted averages (counting every other owner was quadratic: minutes
    of a core at 100,000 volunteers), with the same ranks: 1 + how many have more, ties alike."""
    tallies = {str(i): credit.Tally(str(i), recent_average=a) for i, a in enumerate(averages)}
    credit._badges(tallies)
    ranked = [t for t in tallies.values() if t.recent_average > 0]
    for t in tallies.values():
        rank = 1 + sum(o.recent_average > t.recent_average for o in ranked)
        expected = next((name for name, fraction in credit.BADGES if rank <= fraction * len(ranked)), "")
        assert t.badge == (expected if t.recent_average > 0 else "")


def test_totals_per_owner_and_team():
    members = [Member("w1", "alice", "red"), Member("w2", "alice", "red"), Member("w3", "bob", "red"),
               Member("w4", "carol", "")]
    grants = [credit.Grant(w, "s", w, c, 0.0) for w, c in (("w1", 1.0), ("w2", 2.0), ("w3", 4.0), ("w4", 8.0))]
    result = credit.standings(members, grants, [], now=0.0)
    assert result.owners["alice"].credit == 3.0 and result.owners["alice"].members == {"w1", "w2"}
    assert result.teams["red"].credit == 7.0 and result.teams["red"].members == {"alice", "bob"}
    assert set(result.teams) == {"red"}, "an owner in no team is in no team's total"


def _chain(*metrics: float) -> list[Step]:
    return [Step("s", i, f"c{i}", m, float(10 * i)) for i, m in enumerate(metrics)]


def test_discovery_credit_follows_a_merge_to_both_contributors():
    # alice's edit c1 became champion; bob's edit on c0 was replayed onto c1 as the merge c2.
    steps = _chain(1.0, 1.5, 1.8)
    claims = [claim("ca", "c1", "accepted", claimant="alice-w", result="ea"),
              claim("cm", "c2", "accepted", origin="merge", claimant="bob-w")]
    rows = [work("ea", "alice-w", version="c1", kind="explore", decision="keep", claim="ca", improvement=0.5),
            work("eb", "bob-w", version="bob-edit", kind="explore", decision="stale-merged", improvement=0.3),
            work("vm", "carol-w", version="c2", kind="verify", decision="keep", claim="cm", improvement=0.3)]
    found = credit.discoveries("maximize", steps, claims, rows)
    by_worker = {d.worker_id: d for d in found}
    assert set(by_worker) == {"alice-w", "bob-w"}
    assert by_worker["alice-w"].improvement == pytest.approx(0.5)
    assert by_worker["bob-w"].improvement == pytest.approx(0.3)
    assert sum(d.share for d in found) == pytest.approx(1.0)


def test_folded_merges_share_and_a_replayed_champion_credits_its_finder():
    steps = _chain(0.0, 1.0, 3.0, 4.0)
    claims = [claim("ca", "c1", "accepted", claimant="a"),
              # b's and c's edits were folded into one merge, c2
              claim("cb", "mb", "superseded", origin="merge", claimant="b", reason="folded into the merge c2"),
              claim("cc", "c2", "accepted", origin="merge", claimant="c"),
              # c2 took over from c1 (opened at c2's acceptance, no claimant): c1's edits replayed onto it
              claim("cr", "c3", "accepted", origin="merge", created=20.0)]
    found = credit.discoveries("maximize", steps, claims, [])
    gains = {(d.worker_id, d.seq): d.improvement for d in found}
    assert gains == {("a", 1): 1.0, ("b", 2): 1.0, ("c", 2): 1.0, ("a", 3): 1.0}, \
        "b and c share the folded merge's step; replaying c1 onto c2 credits c1's finder a again"


def test_a_merge_overtaken_by_a_new_champion_and_replayed_keeps_all_its_contributors():
    steps = _chain(0.0, 1.0, 2.0)
    claims = [claim("ca", "c1", "accepted", claimant="a", decided=10.0),
              # b's merge had c's edit folded into it, then c1 came first: it was replayed onto c1 as c2
              claim("cc", "mc", "superseded", origin="merge", claimant="c", reason="folded into the merge mb"),
              claim("cb", "mb", "superseded", origin="merge", claimant="b", reason="the champion moved to c1 first",
                    decided=10.0),
              claim("cm", "c2", "accepted", origin="merge", claimant="b", created=10.0)]
    found = credit.discoveries("maximize", steps, claims, [])
    assert sorted((d.worker_id, d.seq) for d in found) == [("a", 1), ("b", 2), ("c", 2)]


def test_a_quarantined_contributor_loses_its_discovery_credit():
    steps = _chain(1.0, 2.0)
    claims = [claim("ca", "c1", "accepted", claimant="liar")]
    assert credit.discoveries("maximize", steps, claims, [], quarantined=frozenset({"liar"})) == []


def test_minimize_steps_count_as_improvements():
    steps = _chain(5.0, 4.0)
    found = credit.discoveries("minimize", steps, [claim("c", "c1", "accepted", claimant="w")], [])
    assert found[0].improvement == pytest.approx(1.0)
