"""The engine's state transitions, driven directly with a controllable clock."""

from __future__ import annotations

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, InvalidRequest, NotFound, ResultIn, WrongState
from autoswarm.coordinator.store import Store
from swarm import Clock, write_study


def _ok(metric: float, candidate: bytes = b"", description: str = "") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, description, "", {})


@pytest.fixture
def setup(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(lease_factor=1.0, lease_grace=5.0), clock=clock)
    bundle = pack_directory(write_study(tmp_path / "study", direction="minimize", timeout=10))
    engine.add_study(bundle.data, max_evaluations=0)
    worker, _ = engine.register("", "alpha", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 2, ["params"])
    return engine, clock, worker, tmp_path


def test_baseline_first_then_explore_keep_and_discard(setup):
    engine, clock, worker, _ = setup
    baseline = engine.lease(worker)
    assert baseline.kind == "baseline"
    assert engine.lease(worker) is None, "nothing to explore before the champion is measured"
    assert engine.report(worker, baseline.lease_id, _ok(10.0)).decision == "baseline"
    explore = engine.lease(worker)
    assert explore.kind == "explore" and explore.parent.hash == baseline.candidate.hash
    assert engine.report(worker, explore.lease_id, _ok(12.0, b"X = 9\n")).decision == "discard"
    explore = engine.lease(worker)
    outcome = engine.report(worker, explore.lease_id, _ok(8.0, b"X = 2\n", "X 1 -> 2"))
    assert outcome.decision == "keep" and outcome.new_champion
    summary, = engine.study_summaries()
    assert (summary.champion.metric, summary.initial_metric, summary.improvements, summary.evaluations) == \
        (8.0, 10.0, 1, 3)
    assert engine.version("tiny", "")[0].content == b"X = 2\n"


def test_an_unchanged_candidate_is_not_an_improvement(setup):
    engine, _, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    explore = engine.lease(worker)
    assert engine.report(worker, explore.lease_id, _ok(1.0, explore.parent.content)).decision == "no-change"
    assert engine.study_summaries()[0].champion.metric == 10.0


def test_leases_expire_without_heartbeats_and_heartbeats_keep_them(setup):
    engine, clock, worker, _ = setup
    first = engine.lease(worker)
    clock.now += 14.0
    assert engine.heartbeat(worker, [first.lease_id, "l-gone"], "working").cancelled == ["l-gone"]
    clock.now += 14.0  # 28 s after the lease, 14 s after the heartbeat: ttl is 10 × 1 + 5 = 15 s
    assert engine.expire_overdue() == []
    clock.now += 2.0
    assert [lease.id for lease in engine.expire_overdue()] == [first.lease_id]
    with pytest.raises(WrongState, match="expired"):
        engine.report(worker, first.lease_id, _ok(1.0))
    again = engine.lease(worker)
    assert again.kind == "baseline" and again.candidate.hash == first.candidate.hash


def test_restart_rebuilds_state_and_does_not_charge_downtime_to_leases(setup):
    engine, clock, worker, tmp_path = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    running = engine.lease(worker)
    engine.store.close()
    clock.now += 3600.0  # the coordinator was down for an hour
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=1.0, lease_grace=5.0), clock=clock)
    assert reborn.expire_overdue() == []
    summary, = reborn.study_summaries()
    assert (summary.champion.metric, summary.in_flight, summary.evaluations) == (10.0, 1, 1)
    assert reborn.report(worker, running.lease_id, _ok(9.0, b"X = 5\n")).decision == "keep"


def test_release_returns_work_at_once_and_unknown_things_are_refused(setup):
    engine, _, worker, _ = setup
    lease = engine.lease(worker)
    assert engine.release(worker, [lease.lease_id, "l-other"]) == 1
    assert engine.study_summaries()[0].in_flight == 0
    assert engine.lease(worker).kind == "baseline"
    with pytest.raises(NotFound):
        engine.lease("w-unknown")
    with pytest.raises(InvalidRequest, match="not a valid msgpack archive"):
        engine.add_study(b"\xc1 not msgpack")

def test_a_stopped_worker_gives_back_every_lease_it_does_not_list(setup):
    """Its last heartbeat lists only leases whose results wait in its outbox: a task whose
    answer it never saw (a long-poll it gave up as the answer came) is scheduled again at once."""
    engine, _, worker, tmp_path = setup
    other, _ = engine.register("", "beta", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 2, ["params"])
    unseen = engine.lease(worker)
    outcome = engine.heartbeat(worker, [], "stopped")
    assert outcome.released == 1 and engine.study_summaries()[0].in_flight == 0
    again = engine.lease(other)
    assert (again.kind, again.candidate.hash) == ("baseline", unseen.candidate.hash)
    with pytest.raises(WrongState):
        engine.report(worker, unseen.lease_id, _ok(10.0))
    assert engine.report(other, again.lease_id, _ok(10.0)).decision == "baseline"
    # One it lists (its result waits in the outbox) stays its own, to be reported later.
    kept = engine.lease(worker)
    assert engine.heartbeat(worker, [kept.lease_id], "stopped").released == 0
    assert engine.report(worker, kept.lease_id, _ok(9.0, b"X = 5\n")).decision == "keep"


def test_budget_stops_new_leases_and_done_waits_for_in_flight(setup):
    engine, _, worker, tmp_path = setup
    engine.add_study(pack_directory(tmp_path / "study").data, max_evaluations=2)
    first = engine.lease(worker)
    engine.report(worker, first.lease_id, _ok(10.0))
    second = engine.lease(worker)
    assert engine.lease(worker) is None, "budget of 2 reached with one in flight"
    assert not engine.study_summaries()[0].done
    engine.report(worker, second.lease_id, _ok(11.0, b"X = 3\n"))
    assert engine.study_summaries()[0].done


def test_a_study_whose_champion_always_crashes_stops_with_an_error(setup):
    engine, _, worker, _ = setup
    for _ in range(3):
        lease = engine.lease(worker)
        engine.report(worker, lease.lease_id, ResultIn("crash", None, {}, b"", "",
                                                       "Traceback ...\nModuleNotFoundError: No module named 'torch'\n", {}))
    summary, = engine.study_summaries()
    assert "failed to evaluate 3 times" in summary.error and summary.done
    assert "(last: crash: ModuleNotFoundError: No module named 'torch')" in summary.error, \
        "the error names what the last failure said, not only its status"
    assert engine.lease(worker) is None


def test_memory_lists_outcomes_and_ideas_in_flight_and_duplicates_are_caught(setup):
    engine, clock, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    first = engine.lease(worker)
    engine.report(worker, first.lease_id, _ok(12.0, b"X = 9\n", "X 1 -> 9"))
    engine.report(worker, (crash := engine.lease(worker)).lease_id,
                  ResultIn("crash", None, {}, b"X = 0\n", "X 1 -> 0", "Traceback\nZeroDivisionError: boom", {}))
    other, _ = engine.register("", "beta", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])
    running = engine.lease(other)
    outcome = engine.heartbeat(other, [running.lease_id], "working", {running.lease_id: "LR warmup x2"},
                               {running.lease_id: "f" * 64})
    assert outcome.duplicates == []
    clock.now += 1.5  # the outcome part of the memory is refreshed at most once a second
    memory = engine.lease(worker).memory
    assert "LR warmup x2" in memory, "ideas in flight on other workers are visible"
    assert "[discard] (-2) X 1 -> 9" in memory
    assert "[crash] X 1 -> 0 — ZeroDivisionError: boom" in memory


def test_a_candidate_evaluated_for_the_same_parent_is_not_evaluated_again(setup):
    engine, _, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    first, second = engine.lease(worker), engine.lease(worker)
    candidate = b"X = 9\n"
    digest = __import__("hashlib").sha256(candidate).hexdigest()
    assert engine.heartbeat(worker, [first.lease_id], "working", {}, {first.lease_id: digest}).duplicates == []
    assert engine.heartbeat(worker, [second.lease_id], "working", {}, {second.lease_id: digest}).duplicates \
        == [second.lease_id], "in flight elsewhere"
    engine.report(worker, first.lease_id, _ok(12.0, candidate))
    assert engine.report(worker, second.lease_id, _ok(12.5, candidate)).decision == "duplicate"
    third = engine.lease(worker)
    assert engine.heartbeat(worker, [third.lease_id], "working", {}, {third.lease_id: digest}).duplicates \
        == [third.lease_id], "evaluated already"


def test_memory_is_bounded_with_many_results(setup):
    engine, clock, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    for i in range(400):
        lease = engine.lease(worker)
        engine.report(worker, lease.lease_id, _ok(11.0 + i, f"X = {i + 2}\n".encode(), f"idea number {i} " + "x" * 80))
    clock.now += 1.5
    memory = engine.lease(worker).memory
    assert len(memory) <= 6000
    assert "idea number 399" in memory, "newest first"
    assert "idea number 0 " not in memory


def test_a_worker_whose_setup_failed_is_not_offered_that_study_again_for_an_hour(setup):
    engine, clock, worker, _ = setup
    lease = engine.lease(worker)
    engine.report(worker, lease.lease_id, ResultIn("setup-failed", None, {}, b"", "", "pip: no network", {}))
    assert engine.lease(worker) is None
    other, _ = engine.register("", "beta", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])
    theirs = engine.lease(other)
    assert theirs is not None, "other workers still get the study"
    engine.report(other, theirs.lease_id, _ok(10.0))
    assert engine.lease(worker) is None
    clock.now += 3601
    assert engine.lease(worker) is not None


def test_a_duplicate_report_does_not_mark_the_original_as_a_duplicate(setup):
    engine, _, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    first, second = engine.lease(worker), engine.lease(worker)
    candidate = b"X = 9\n"
    digest = __import__("hashlib").sha256(candidate).hexdigest()
    engine.heartbeat(worker, [first.lease_id], "working", {}, {first.lease_id: digest})
    assert engine.heartbeat(worker, [second.lease_id], "working", {}, {second.lease_id: digest}).duplicates
    engine.report(worker, second.lease_id, ResultIn("duplicate", None, {}, candidate, "same idea", "", {}))
    assert engine.report(worker, first.lease_id, _ok(8.0, candidate)).decision == "keep"


def test_an_old_champion_drawn_again_is_judged_like_any_edit_but_never_claimed_twice(setup):
    engine, _, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    engine.report(worker, engine.lease(worker).lease_id, _ok(8.0, b"X = 2\n"))      # keep: claimed
    engine.report(worker, engine.lease(worker).lease_id, _ok(6.0, b"X = 3\n"))      # keep
    assert engine.report(worker, engine.lease(worker).lease_id, _ok(8.1, b"X = 2\n")).decision == "discard"
    assert engine.report(worker, engine.lease(worker).lease_id, _ok(5.0, b"X = 2\n")).decision == "duplicate"


# -- parallel edits: overtaking, folding and merges from the common ancestor --------------------

START = b"X = 1\nY = 3\nZ = 5\n"


@pytest.fixture
def three_slots(tmp_path):
    """A minimizing study on three constant lines, measured; a worker with three slots, and a
    second one that checks its claims (nobody verifies their own)."""
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    study = write_study(tmp_path / "study", direction="minimize", constants=START.decode(), body="")
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    worker, checker = (engine.register("", name, {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 3, ["params"])[0]
                       for name in ("alpha", "beta"))
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    return engine, worker, checker


def _edit(content: bytes, line: str, value: str) -> bytes:
    return b"".join(value.encode() + b"\n" if old.startswith(line.encode()) else old
                    for old in content.splitlines(keepends=True))


def _champion(engine: Engine) -> bytes:
    return engine.version("tiny", "")[0].content


def test_a_stale_edit_better_than_the_champion_itself_takes_over_and_keeps_the_old_champions_edit(three_slots):
    engine, worker, checker = three_slots
    a, b = engine.lease(worker), engine.lease(worker)
    assert engine.report(worker, a.lease_id, _ok(8.0, _edit(START, "X", "X = 2"), "X 1 -> 2")).decision == "keep"
    # b's parent is no longer the champion, but b scores better than the champion does.
    outcome = engine.report(worker, b.lease_id, _ok(6.0, _edit(START, "Y", "Y = 7"), "Y 3 -> 7"))
    assert outcome.decision == "keep" and outcome.new_champion
    assert _champion(engine) == b"X = 1\nY = 7\nZ = 5\n"
    # The old champion's edit is not lost: merged from the common ancestor (not reverted).
    verify = engine.lease(checker)
    assert verify.kind == "verify" and verify.candidate.content == b"X = 2\nY = 7\nZ = 5\n"
    assert verify.candidate.description == "merge: X 1 -> 2"
    assert engine.report(checker, verify.lease_id, _ok(4.0)).decision == "keep"
    assert _champion(engine) == b"X = 2\nY = 7\nZ = 5\n"
    assert [c.metric for c in engine.store.champions("tiny")] == [10.0, 8.0, 6.0, 4.0], "only ever better"


def test_a_stale_edit_that_only_beats_its_parent_is_merged_and_later_ones_fold_into_that_merge(three_slots):
    engine, worker, checker = three_slots
    a, b, c = engine.lease(worker), engine.lease(worker), engine.lease(worker)
    assert engine.report(worker, a.lease_id, _ok(5.0, _edit(START, "X", "X = 2"), "X 1 -> 2")).decision == "keep"
    assert engine.report(worker, b.lease_id, _ok(9.0, _edit(START, "Y", "Y = 7"), "Y 3 -> 7")).decision \
        == "stale-merged"
    assert engine.report(worker, c.lease_id, _ok(9.5, _edit(START, "Z", "Z = 6"), "Z 5 -> 6")).decision \
        == "stale-merged"
    open_claims = [claim for claim in engine.store.claims("tiny") if claim.state == "pending"]
    assert len(open_claims) == 1, "one merge checks both edits"
    verify = engine.lease(checker)
    assert verify.kind == "verify" and verify.candidate.content == b"X = 2\nY = 7\nZ = 6\n"
    assert verify.candidate.description == "merge: Y 3 -> 7; Z 5 -> 6"
    assert engine.lease(checker).kind == "explore", "nothing else left to verify"
    assert engine.report(checker, verify.lease_id, _ok(3.0)).decision == "keep"
    assert _champion(engine) == b"X = 2\nY = 7\nZ = 6\n"


def test_an_edit_is_not_folded_into_a_merge_already_being_checked(three_slots):
    engine, worker, checker = three_slots
    a, b, c = engine.lease(worker), engine.lease(worker), engine.lease(worker)
    engine.report(worker, a.lease_id, _ok(5.0, _edit(START, "X", "X = 2")))
    engine.report(worker, b.lease_id, _ok(9.0, _edit(START, "Y", "Y = 7")))
    checking = engine.lease(checker)
    assert checking.kind == "verify"
    engine.report(worker, c.lease_id, _ok(9.5, _edit(START, "Z", "Z = 6")))
    assert engine.report(checker, checking.lease_id, _ok(4.0)).decision == "keep", "its check still counts"
    verify = engine.lease(checker)
    assert verify.kind == "verify" and verify.candidate.content == b"X = 2\nY = 7\nZ = 6\n"


def test_a_late_check_that_beats_the_new_champion_is_not_wasted(three_slots):
    engine, worker, checker = three_slots
    # A third worker could check the merge too, so the check is not the checker's alone and a
    # keep does not wait for it (see the next test).
    engine.register("", "gamma", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])
    a, b = engine.lease(worker), engine.lease(worker)
    engine.report(worker, a.lease_id, _ok(8.0, _edit(START, "X", "X = 2")))
    engine.report(worker, b.lease_id, _ok(9.0, _edit(START, "Y", "Y = 7")))      # merged: X = 2, Y = 7
    checking, c = engine.lease(checker), engine.lease(worker)
    assert checking.kind == "verify" and c.kind == "explore" and c.parent.content == b"X = 2\nY = 3\nZ = 5\n"
    # Meanwhile another edit of the champion lands; the merge being checked is superseded.
    assert engine.report(worker, c.lease_id, _ok(7.0, b"X = 2\nY = 3\nZ = 6\n")).decision == "keep"
    late = engine.report(checker, checking.lease_id, _ok(6.0))
    assert late.decision == "keep" and _champion(engine) == b"X = 2\nY = 7\nZ = 5\n"
    # Both lines of work end up combined in one candidate to check, none lost.
    verify = engine.lease(checker)
    assert verify.kind == "verify" and verify.candidate.content == b"X = 2\nY = 7\nZ = 6\n"
    pending, = [claim for claim in engine.store.claims("tiny") if claim.state == "pending"]
    assert pending.parent == engine.study_summaries()[0].champion.version, "judged against the new champion"
    assert engine.report(checker, verify.lease_id, _ok(5.0)).decision == "keep"
    assert [c.metric for c in engine.store.champions("tiny")] == [10.0, 8.0, 7.0, 6.0, 5.0]


def test_a_keep_waits_for_the_only_possible_checkers_check_of_the_claim_it_would_supersede(three_slots):
    """The same two lines of work with nobody else connected: the checker is the only worker
    that may check the merge, so the worker's keep of the champion waits for that check
    (`StudyState.keep_waits`) instead of superseding it; the merge is accepted, and the held
    edit is merged onto it: one candidate with both, to check, and no check wasted."""
    engine, worker, checker = three_slots
    a, b = engine.lease(worker), engine.lease(worker)
    engine.report(worker, a.lease_id, _ok(8.0, _edit(START, "X", "X = 2")))
    engine.report(worker, b.lease_id, _ok(9.0, _edit(START, "Y", "Y = 7")))      # merged: X = 2, Y = 7
    checking, c = engine.lease(checker), engine.lease(worker)
    assert engine.report(worker, c.lease_id, _ok(7.0, b"X = 2\nY = 3\nZ = 6\n")).decision == "waiting"
    assert _champion(engine) == b"X = 2\nY = 3\nZ = 5\n", "not kept while the check is out"
    assert engine.report(checker, checking.lease_id, _ok(6.0)).decision == "keep"
    assert engine.store.result(c.lease_id).decision == "stale-merged"
    verify = engine.lease(checker)
    assert verify.kind == "verify" and verify.candidate.content == b"X = 2\nY = 7\nZ = 6\n"
    pending, = [claim for claim in engine.store.claims("tiny") if claim.state == "pending"]
    assert pending.parent == engine.study_summaries()[0].champion.version, "judged against the new champion"
    assert engine.report(checker, verify.lease_id, _ok(5.0)).decision == "keep"
    assert [c.metric for c in engine.store.champions("tiny")] == [10.0, 8.0, 6.0, 5.0], "the held 7.0 went in the merge"


def test_a_late_check_that_does_not_beat_the_new_champion_stays_late(three_slots):
    engine, worker, checker = three_slots
    engine.register("", "gamma", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])  # may check too
    a, b = engine.lease(worker), engine.lease(worker)
    engine.report(worker, a.lease_id, _ok(8.0, _edit(START, "X", "X = 2")))
    engine.report(worker, b.lease_id, _ok(9.0, _edit(START, "Y", "Y = 7")))
    checking, c = engine.lease(checker), engine.lease(worker)
    engine.report(worker, c.lease_id, _ok(5.0, b"X = 2\nY = 3\nZ = 6\n"))
    assert engine.report(checker, checking.lease_id, _ok(6.0)).decision == "verify-late"
    assert _champion(engine) == b"X = 2\nY = 3\nZ = 6\n"


# -- trust under attack: replica agreement, outvoted workers, classes checked (issue 14) ---------

TEST_CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}


def _engine(tmp_path, acceptance: str, workers: int, clock: Clock | None = None) -> tuple[Engine, list[str]]:
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock or Clock())
    study = write_study(tmp_path / "study", direction="minimize", acceptance=acceptance)
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    return engine, [engine.register("", f"w{i}", TEST_CPU, 1, ["params"])[0] for i in range(workers)]


def test_the_first_score_is_the_median_of_baselines_from_distinct_workers_so_no_single_one_sets_it(tmp_path):
    engine, (liar, a, b) = _engine(tmp_path, 'compare = "absolute"\nquorum = 2', 3)
    first = engine.lease(liar)
    assert first.kind == "baseline"
    engine.report(liar, first.lease_id, _ok(0.001))      # far too good: a study frozen on it would keep nothing
    assert engine.study_summaries()[0].champion.metric is None
    assert engine.lease(liar) is None, "another worker measures it next"
    for worker, value in ((a, 10.0), (b, 10.2)):
        task = engine.lease(worker)
        assert task.kind == "baseline"
        engine.report(worker, task.lease_id, _ok(value))
    assert engine.study_summaries()[0].champion.metric == 10.0
    explore = engine.lease(a)
    assert explore.kind == "explore"
    assert engine.report(a, explore.lease_id, _ok(8.0, b"X = 2\n")).decision == "claim", "progress is not frozen"


def test_a_lying_verifier_is_outvoted_by_an_arbiter_and_never_sets_the_champions_score(tmp_path):
    engine, (claimant, liar, arbiter) = _engine(tmp_path, 'compare = "absolute"\nquorum = 2', 3)
    for worker, value in ((claimant, 10.0), (liar, 10.0), (arbiter, 10.0)):
        engine.report(worker, engine.lease(worker).lease_id, _ok(value))
    explore = engine.lease(claimant)
    assert engine.report(claimant, explore.lease_id, _ok(8.0, b"X = 2\n")).decision == "claim"
    check = engine.lease(liar)
    assert check.kind == "verify"
    assert engine.report(liar, check.lease_id, _ok(0.001)).decision == "confirm", "it beat the bar..."
    assert engine.study_summaries()[0].champion.metric == 10.0, "...but a disagreeing number decides nothing"
    arbitration = engine.lease(arbiter)
    assert arbitration.kind == "verify" and arbitration.claim == check.claim
    assert engine.report(arbiter, arbitration.lease_id, _ok(8.2)).new_champion
    assert engine.store.result(explore.lease_id).decision == "keep"
    assert engine.study_summaries()[0].champion.metric == pytest.approx(8.1), "median of the agreeing two"
    assert engine.store.result(check.lease_id).decision == "outvoted"
    assert engine.trust(liar).refuted == 1 and not engine.trust(liar).quarantined, "one strike: noise, perhaps"
    assert engine.trust(claimant).confirmed == 1
    engine.store.close()
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=Clock())
    assert (reborn.trust(liar).refuted, reborn.trust(claimant).confirmed) == (1, 1), "trust is rebuilt from the store"
    assert reborn.study_summaries()[0].champion.metric == pytest.approx(8.1)


def test_a_liar_holds_one_open_claim_at_a_time(tmp_path):
    engine, (liar, honest) = _engine(tmp_path, 'compare = "absolute"\nquorum = 2', 2)
    engine.store.close()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=Clock())
    liar = engine.register(liar, "w0", TEST_CPU, 4, ["params"])[0]
    engine.report(liar, engine.lease(liar).lease_id, _ok(10.0))
    engine.report(honest, engine.lease(honest).lease_id, _ok(10.0))
    engine.report(liar, engine.lease(liar).lease_id, _ok(10.0))
    leases = [engine.lease(liar) for _ in range(3)]
    decisions = [engine.report(liar, t.lease_id, _ok(1.0, f"X = {i + 7}\n".encode())).decision
                 for i, t in enumerate(leases)]
    assert decisions == ["claim", "claim-limit", "claim-limit"]


def test_a_worker_measuring_unlike_its_class_is_moved_out_for_good_and_its_runs_leave_the_baseline(tmp_path):
    clock = Clock()
    engine, workers = _engine(tmp_path, 'compare = "paired"\nquorum = 2', 4, clock)
    spoofer = workers[3]
    values = {w: 10.0 + 0.01 * i for i, w in enumerate(workers[:3])} | {spoofer: 50.0}

    def moved() -> bool:
        return engine.register(spoofer, "w3", TEST_CPU, 1, ["params"])[1] != "cpu:Test x2"

    for round_ in range(10):
        for worker, value in values.items():
            task = None if moved() else engine.lease(worker)
            if task is not None:
                assert task.kind == "baseline", "nothing is judged before the class's baseline"
                engine.report(worker, task.lease_id, _ok(value + 0.001 * (round_ % 3)))
    assert moved()
    summary = next(s for s in engine.worker_summaries() if s.record.id == spoofer)
    assert summary.record.hardware_class == f"cpu:Test x2 [unlike its class: {spoofer}]"
    assert summary.trust.moved and summary.trust.refuted == 0, "moved, not struck: its next strike quarantines it"
    state = engine._studies["tiny"]
    baseline = state.samples.baseline(state.champion.version, "cpu:Test x2")
    assert baseline is not None and baseline.mean < 10.1, "its runs are out of the class's baseline"
    engine.store.close()
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    assert reborn.trust(spoofer).moved, "the move is kept in the store"
    state = reborn._studies["tiny"]
    assert state.samples.baseline(state.champion.version, "cpu:Test x2").mean < 10.1
    _, cls = reborn.register(spoofer, "w3", TEST_CPU, 1, ["params"])
    assert cls == f"cpu:Test x2 [unlike its class: {spoofer}]", "registering again does not bring it back"


@pytest.mark.parametrize("name, hardware", [
    ("ok", {"cpu_model": "Test\x00", "cpu_cores": 2, "gpus": []}),
    ("ok", {"cpu_model": "Test", "cpu_cores": 2, "gpus": [{"name": "8x H100\n", "memory_bytes": 1}]}),
    ("bad\tname", TEST_CPU),
])
def test_register_refuses_control_characters(setup, name, hardware):
    engine, _, _, _ = setup
    with pytest.raises(InvalidRequest, match="control characters"):
        engine.register("", name, hardware, 1, ["params"])


def test_a_reported_description_and_log_are_cleaned_and_a_clean_one_kept(setup):
    engine, _, worker, _ = setup
    engine.report(worker, engine.lease(worker).lease_id, _ok(10.0))
    explore = engine.lease(worker)
    messy = ResultIn("ok", 12.0, {}, b"X = 7\n", "  two\tlines\nof  text ", "x" * 100_000, {})
    result_id = engine.report(worker, explore.lease_id, messy).result_id
    stored = engine.result(result_id)
    assert stored.description == "two lines of text"
    assert len(stored.log_tail) == engine.config.limits.max_log_tail_chars
    explore = engine.lease(worker)
    result_id = engine.report(worker, explore.lease_id, _ok(11.0, b"X = 8\n", "X 1 -> 8")).result_id
    assert (engine.result(result_id).description, engine.result(result_id).log_tail) == ("X 1 -> 8", "")


def test_leasing_hands_the_scheduler_each_study_with_its_priority(setup):
    from autoswarm.coordinator import leasing, scheduler

    engine, _, _, _ = setup
    view = engine.ctx.studies["tiny"].view("w", "c", frozenset(), frozenset())
    assert leasing._with_priority(view, view.priority) is view
    assert leasing._with_priority(view, 3).priority == 3 and leasing._with_priority(view, 3) == \
        scheduler.StudyView(**{**vars(view), "priority": 3})


def test_setup_failures_are_kept_per_worker_and_forgotten_after_the_hour(setup):
    engine, clock, worker, _ = setup
    others = [engine.register("", f"w{i}", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])[0]
              for i in range(2)]   # a third failed baseline would stop the study (MAX_FAILED_BASELINES)
    for other in others:
        engine.report(other, engine.lease(other).lease_id, ResultIn("setup-failed", None, {}, b"", "", "no gpu", {}))
    mine = engine.lease(worker)
    assert mine is not None, "others' failed setups do not keep this worker off the study"
    engine.report(worker, mine.lease_id, _ok(10.0))
    assert all(engine.lease(other) is None for other in others)
    clock.now += 3601
    assert all(engine.lease(other) is not None for other in others)
    assert engine.leasing._setup_failed == {}, "failures older than the hour are forgotten"
