"""A check that only one connected worker may make is not left for a keep to supersede.

The case (`autoswarm run examples/tinylm --workers 2`, paired, quorum 1): worker A keeps an
edit; worker B's edit of the old champion, evaluated meanwhile, is merged onto the new one and
becomes a merge claim whose claimant is B. Only A may check it, and A leased its next task (an
explore) ahead while measuring the new champion's baseline, before the merge existed. The
coordinator now names that explore among the leases to hand back (`Leasing.displaced_explore`),
its place is leased with the check, measured while the class's baseline is still being made,
and judged once it is there (`Judging._check_verdict`). The acceptance rule is untouched: an
honest check of a lie refutes it.
"""

from __future__ import annotations

import re

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.leasing import TaskSpec
from autoswarm.coordinator.scheduler import VerifyNeed
from autoswarm.coordinator.store import Store
from autoswarm.coordinator.study_state import baseline_on_its_way, sole_verifier
from swarm import Clock, write_study

# Four lines between the two constants: edits of each merge cleanly (`merge3`).
CONSTANTS = "X = 1.0\n# -\n# -\n# -\nY = 3\n"
CPU = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}


def test_a_worker_is_the_sole_verifier_only_when_every_other_connected_one_is_kept_from_the_check():
    need = VerifyNeed("c-1", 1, excluded_workers=frozenset({"claimant"}))
    assert sole_verifier("a", "A", need, {"a", "claimant"}, {"A"})
    assert not sole_verifier("a", "A", need, {"a", "claimant", "b"}, {"A"}), "b may check it"
    assert not sole_verifier("a", "A", need, {"a", "claimant"}, {"A", "B"}), "another class may"
    assert not sole_verifier("claimant", "A", need, {"a", "claimant"}, {"A"}), "never the claimant"
    measured = VerifyNeed("c-1", 1, excluded_workers=frozenset({"claimant", "b"}))
    assert sole_verifier("a", "A", measured, {"a", "claimant", "b"}, {"A"})


def test_a_baseline_is_on_its_way_when_the_runs_in_flight_complete_it():
    assert baseline_on_its_way(done=0, in_flight=2, baseline_runs=2)
    assert baseline_on_its_way(done=1, in_flight=1, baseline_runs=2)
    assert not baseline_on_its_way(done=1, in_flight=0, baseline_runs=2), "a run is missing, and nobody makes it"
    assert not baseline_on_its_way(done=2, in_flight=0, baseline_runs=2), "complete: judged at once"


def _score(content: bytes) -> float:
    x, y = (float(v) for v in re.findall(rb"= ([-0-9.]+)", content)[:2])
    return -(x - 2.5) ** 2 - (y - 7) ** 2


class TwoWorkers:
    """The engine on SQLite with two pipelined workers of one class, a and b."""

    def __init__(self, tmp_path) -> None:
        self.clock = Clock()
        self.engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=self.clock)
        study = write_study(tmp_path / "study", constants=CONSTANTS, acceptance='compare = "paired"\nquorum = 1')
        self.engine.add_study(pack_directory(study).data)
        self.a, self.b = (self.engine.register("", name, CPU, 1, ["params"], owner=name)[0] for name in ("a", "b"))
        self.runs = 0

    def lease(self, worker: str) -> TaskSpec:
        task = self.engine.lease(worker, pipelined=True)
        assert task is not None
        return task

    def report(self, worker: str, task: TaskSpec, edit: tuple[bytes, bytes] = (b"", b""), lie: float = 0.0) -> str:
        """Reports what the machine measures (± 0.01), or `lie` more; an explore makes `edit`."""
        self.clock.now += 1.0
        self.runs += 1
        noise = 0.01 * (self.runs % 3 - 1)
        if task.kind == "explore":
            assert task.parent is not None
            candidate = task.parent.content.replace(*edit)
            result = ResultIn("ok", _score(candidate) + noise + lie, {}, candidate, "an edit", "", {})
        else:
            assert task.candidate is not None
            result = ResultIn("ok", _score(task.candidate.content) + noise + lie, {}, b"", "", "", {})
        outcome = self.engine.report(worker, task.lease_id, result)
        if outcome.stale:
            self.engine.release(worker, outcome.stale)   # not started: handed back
        return outcome.decision

    def a_keeps_and_b_is_merged(self, b_edit: tuple[bytes, bytes] = (b"X = 1.0", b"X = 2.0"),
                                b_lies: float = 0.0) -> tuple[TaskSpec, TaskSpec, TaskSpec]:
        """Both explore the first champion (each with a task leased ahead); a keeps its edit, b's
        is merged onto it. Returns (a's baseline, a's explore leased ahead, b's baseline)."""
        for _ in range(10):   # the first champion's baselines
            tasks = [self.lease(w) for w in (self.a, self.b)]
            if all(t.kind == "explore" for t in tasks):
                break
            for worker, task in zip((self.a, self.b), tasks):
                if task.kind == "explore":
                    self.engine.release(worker, [task.lease_id])
                else:
                    self.report(worker, task)
        a_explore, b_explore = tasks
        self.lease(self.a), self.lease(self.b)   # each leases its next task ahead
        assert self.report(self.a, a_explore, (b"Y = 3", b"Y = 4")) == "keep"
        a_baseline, a_ahead = self.lease(self.a), self.lease(self.a)
        assert self.report(self.b, b_explore, b_edit, lie=b_lies) == "stale-merged"
        b_baseline = self.lease(self.b)
        self.lease(self.b)
        assert (a_baseline.kind, a_ahead.kind, b_baseline.kind) == ("baseline", "explore", "baseline")
        return a_baseline, a_ahead, b_baseline


def test_the_only_possible_verifier_hands_back_its_explore_and_checks_the_merge(tmp_path):
    swarm = TwoWorkers(tmp_path)
    a_baseline, a_ahead, b_baseline = swarm.a_keeps_and_b_is_merged()
    engine = swarm.engine
    (merge,) = engine._studies["tiny"].claims.values()
    assert (merge.record.origin, merge.record.claimant_worker) == ("merge", swarm.b)
    # a's next heartbeat names the explore it leased ahead (not started: it is measuring the
    # champion); b's names nothing (it is the claimant).
    assert engine.heartbeat(swarm.a, [a_baseline.lease_id, a_ahead.lease_id], "working").stale == [a_ahead.lease_id]
    assert engine.heartbeat(swarm.b, [], "working").stale == []
    engine.release(swarm.a, [a_ahead.lease_id])
    check = swarm.lease(swarm.a)
    assert (check.kind, check.claim) == ("verify", merge.record.id), "its place: the check, before the baseline is in"
    assert engine.heartbeat(swarm.a, [a_baseline.lease_id, check.lease_id], "working").stale == []
    assert swarm.report(swarm.a, a_baseline) == "baseline"
    # Measured before b's run of the champion is in: it waits for it, and is judged then.
    assert swarm.report(swarm.a, check) == "waiting"
    assert engine._studies["tiny"].view(swarm.a, "cpu:Test x2", frozenset({swarm.a, swarm.b}),
                                        frozenset({swarm.a, swarm.b}), frozenset({"cpu:Test x2"})).verify[0].needed == 0
    assert swarm.report(swarm.b, b_baseline) == "baseline"
    assert engine.store.result(check.lease_id).decision == "keep"
    claims = {c.id: c.state for c in engine.store.claims("tiny")}
    assert claims[merge.record.id] == "accepted", "both edits are in the champion"
    assert engine.store.version("tiny", engine._studies["tiny"].champion.version).content.startswith(
        b"X = 2.0\n# -\n# -\n# -\nY = 4\n")


def test_a_lie_merged_this_way_is_refuted_by_the_check(tmp_path):
    """b's edit of the old champion makes it worse, and b says it made it better: merged, checked
    by a (the only one who may) against the class's baseline as any check is, and rejected."""
    swarm = TwoWorkers(tmp_path)
    a_baseline, a_ahead, b_baseline = swarm.a_keeps_and_b_is_merged((b"X = 1.0", b"X = 0.5"), b_lies=5.0)
    engine = swarm.engine
    (merge,) = engine._studies["tiny"].claims.values()
    champion = engine._studies["tiny"].champion.version
    engine.release(swarm.a, engine.heartbeat(swarm.a, [a_baseline.lease_id, a_ahead.lease_id], "working").stale)
    check = swarm.lease(swarm.a)
    assert check.kind == "verify"
    assert swarm.report(swarm.b, b_baseline) == "baseline"
    assert swarm.report(swarm.a, a_baseline) == "baseline"
    assert swarm.report(swarm.a, check) == "refute"
    assert {c.id: c.state for c in engine.store.claims("tiny")}[merge.record.id] != "accepted"
    assert engine._studies["tiny"].champion.version == champion


# -- a keep waits for the only possible checker's check --------------------------------------------


def _held_leases(swarm: TwoWorkers, worker: str) -> list[str]:
    return sorted(swarm.engine.leasing.running.get(worker, ()))


def _a_checks_the_merge(swarm: TwoWorkers) -> tuple[TaskSpec, TaskSpec, TaskSpec, TaskSpec]:
    """a keeps, b's stale edit is merged, a's explore leased ahead gives way to the check.
    Returns (a's baseline, a's check, b's baseline, b's explore leased ahead on the new champion)."""
    a_baseline, a_ahead, b_baseline = swarm.a_keeps_and_b_is_merged()
    engine = swarm.engine
    engine.release(swarm.a, engine.heartbeat(swarm.a, [a_baseline.lease_id, a_ahead.lease_id], "working").stale)
    check = swarm.lease(swarm.a)
    assert check.kind == "verify"
    (b_ahead_id,) = [lid for lid in _held_leases(swarm, swarm.b) if lid != b_baseline.lease_id]
    lease = engine.store.lease(b_ahead_id)
    champion = engine.store.version("tiny", engine._studies["tiny"].champion.version)
    assert lease is not None and lease.kind == "explore" and lease.parent == champion.hash
    b_ahead = TaskSpec(lease.id, "tiny", "explore", "", 0, champion, None, lease.seed, lease.deadline)
    return a_baseline, check, b_baseline, b_ahead


def test_the_claimants_keep_waits_for_the_check_of_its_merge_and_is_merged_after_it(tmp_path):
    """b's next edit (of the new champion, on another line) would be kept at once (quorum 1) and
    supersede the merge a is checking: it waits for that check instead, and once the merge is
    accepted it is merged onto it, so both of b's improvements are kept and every one is checked."""
    swarm = TwoWorkers(tmp_path)
    a_baseline, check, b_baseline, b_ahead = _a_checks_the_merge(swarm)
    engine, state = swarm.engine, swarm.engine._studies["tiny"]
    (merge,) = state.claims.values()
    assert merge.sole == {check.lease_id}, "leased to the only worker that could check it"
    assert swarm.report(swarm.b, b_baseline) == "baseline"
    champion = state.champion.version
    # It waits for the class's baseline of the champion (a's run is not in), and then, judged
    # on it, for the check: kept at once (quorum 1), it would supersede the merge.
    assert swarm.report(swarm.b, b_ahead, (b"Y = 4", b"Y = 5")) == "waiting"
    assert swarm.report(swarm.a, a_baseline) == "baseline"
    assert state.champion.version == champion and b_ahead.lease_id in state.held, "held while the check is out"
    assert engine.store.result(b_ahead.lease_id).decision == "waiting"
    assert swarm.report(swarm.a, check) == "keep"
    assert {c.id: c.state for c in engine.store.claims("tiny")}[merge.record.id] == "accepted"
    assert engine.store.result(b_ahead.lease_id).decision == "stale-merged", "judged again: merged onto the merge"
    (again,) = state.claims.values()
    assert (again.record.origin, again.record.claimant_worker) == ("merge", swarm.b) and not state.held
    assert engine.store.version("tiny", again.record.version).content.startswith(b"X = 2.0\n# -\n# -\n# -\nY = 5\n")


def _b_keep_held(swarm: TwoWorkers) -> tuple[TaskSpec, TaskSpec]:
    """Both classes' baselines in, b's keep of the new champion held for a's check of the merge.
    Returns (a's check, b's held explore)."""
    a_baseline, check, b_baseline, b_ahead = _a_checks_the_merge(swarm)
    assert swarm.report(swarm.b, b_baseline) == "baseline"
    assert swarm.report(swarm.a, a_baseline) == "baseline"
    assert swarm.report(swarm.b, b_ahead, (b"Y = 4", b"Y = 5")) == "waiting"
    assert b_ahead.lease_id in swarm.engine._studies["tiny"].held
    return check, b_ahead


def test_a_keep_is_not_held_for_a_checker_that_never_reports(tmp_path):
    """A checker that leases the check and never reports (a liar stalling the study, or a crash)
    holds the keep for a lease's time at most: then it is judged, and kept."""
    swarm = TwoWorkers(tmp_path)
    check, b_ahead = _b_keep_held(swarm)
    engine, state = swarm.engine, swarm.engine._studies["tiny"]
    patience = engine.config.lease_ttl(state.spec)
    swarm.clock.now += patience / 2
    engine.heartbeat(swarm.a, [check.lease_id], "working")   # a keeps its check's lease alive
    engine.expire_overdue()
    assert engine.store.result(b_ahead.lease_id).decision == "waiting"
    swarm.clock.now += patience / 2 + 1
    engine.heartbeat(swarm.a, [check.lease_id], "working")
    engine.expire_overdue()
    assert engine.store.result(b_ahead.lease_id).decision == "keep", "held no longer than a lease's time"
    assert not state.held


def test_a_keep_held_for_a_check_handed_back_is_judged_at_once(tmp_path):
    swarm = TwoWorkers(tmp_path)
    check, b_ahead = _b_keep_held(swarm)
    engine, state = swarm.engine, swarm.engine._studies["tiny"]
    engine.release(swarm.a, [check.lease_id])
    assert engine.store.result(b_ahead.lease_id).decision == "keep"


def test_no_keep_waits_where_another_worker_could_check(tmp_path):
    """With a third worker of the class connected the merge's check is nobody's alone: a keep of
    its parent is judged at once, as in any swarm but two workers (the sims never hold one)."""
    swarm = TwoWorkers(tmp_path)
    swarm.engine.register("", "c", CPU, 1, ["params"], owner="c")
    a_baseline, a_ahead, b_baseline = swarm.a_keeps_and_b_is_merged()
    engine, state = swarm.engine, swarm.engine._studies["tiny"]
    engine.release(swarm.a, [a_ahead.lease_id])
    assert swarm.report(swarm.a, a_baseline) == "baseline"
    assert swarm.report(swarm.b, b_baseline) == "baseline"
    check = swarm.lease(swarm.a)
    assert check.kind == "verify"
    (merge,) = state.claims.values()
    assert merge.in_flight == {check.lease_id} and merge.sole == set()
    assert not state.keep_waits(state.champion.version)


def test_a_check_of_a_claim_closed_since_is_stale(tmp_path):
    """A check leased ahead whose claim was decided or superseded meanwhile would come back
    `verify-late`: it is named with the stale leases and handed back unstarted."""
    swarm = TwoWorkers(tmp_path)
    a_baseline, check, b_baseline, b_ahead = _a_checks_the_merge(swarm)
    engine, state = swarm.engine, swarm.engine._studies["tiny"]
    assert check.lease_id not in engine.heartbeat(swarm.a, [a_baseline.lease_id, check.lease_id], "working").stale
    (merge,) = state.claims.values()
    del state.claims[merge.record.id]   # closed (as a supersede or a verdict closes it)
    assert check.lease_id in engine.heartbeat(swarm.a, [a_baseline.lease_id, check.lease_id], "working").stale


def test_the_last_explore_leased_ahead_gives_way_to_the_check_when_the_budget_is_full(tmp_path):
    """The study's evaluation budget is spoken for when the merge opens (a's explore leased ahead
    among it): a's place is free once its baseline is in, but the budget has no room for the
    check, and the explore would run and supersede the merge unchecked. It is handed back, and
    the check takes its room: an improvement found within the budget is checked within it."""
    swarm = TwoWorkers(tmp_path)
    a_baseline, a_ahead, b_baseline = swarm.a_keeps_and_b_is_merged()
    engine, state = swarm.engine, swarm.engine._studies["tiny"]
    engine.change_study("tiny", max_evaluations=state.evaluations + len(state.active))
    swarm.clock.now += 1.0   # no heartbeat meanwhile: a learns of the merge with its baseline's answer
    outcome = engine.report(swarm.a, a_baseline.lease_id, ResultIn("ok", _score(a_baseline.candidate.content),
                                                                   {}, b"", "", "", {}))
    assert outcome.decision == "baseline"
    assert engine.lease(swarm.a, pipelined=True) is None, "a place is free, but no room in the budget"
    assert outcome.stale == [a_ahead.lease_id], "so the explore leased ahead gives way"
    engine.release(swarm.a, outcome.stale)
    check = swarm.lease(swarm.a)
    assert check.kind == "verify"
