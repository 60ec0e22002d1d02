"""Global acceptance over loopback: a real coordinator, scripted workers whose scores we control.

Scripted workers speak the real WorkerService but compute their score from the target's
content, so a test can make one lie, add noise, or sit on a slower hardware class.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from scripted import (
    SLOT_RE, ScriptedWorker, connect, run_round_robin, slots_score, slots_target, switch_a_slot, touch_the_note,
)
from swarm import wait_for, write_study

pytestmark = pytest.mark.integration

# Scripted workers call far faster than real ones would: no per-worker rate limit here.
SCRIPTED = ("--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5", "--worker-rate", "0")


def slots_study(directory: Path, acceptance: str, name: str = "slots") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study.toml").write_text(textwrap.dedent(f"""\
        name = "{name}"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "maximize"
        time_budget = 60
        timeout = 120
        [acceptance]
        """) + acceptance + "\n")
    (directory / "target.py").write_text(slots_target())
    return directory


def _rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def _champion_contents(coordinator, study: str) -> list[str]:
    return [content.decode() for (content,) in _rows(
        coordinator.db, "SELECT v.content FROM champions c JOIN versions v ON v.study=c.study AND v.hash=c.version "
        "WHERE c.study=? ORDER BY c.seq", study)]


def test_a_liar_never_makes_a_champion_at_quorum_2_and_ends_quarantined(tmp_path, start_coordinator):
    coordinator = start_coordinator(*SCRIPTED)
    with coordinator.control() as control:
        control.add_study(slots_study(tmp_path / "study", 'compare = "paired"\nquorum = 2'))
    channel, stub = connect(coordinator.address)
    score = slots_score(0.1)
    honest = [ScriptedWorker(stub, f"honest-{i}", "Alpha CPU", score, switch_a_slot, sigma=0.01, seed=i).register()
              for i in range(3)]
    liar = ScriptedWorker(stub, "liar", "Alpha CPU", score, touch_the_note, sigma=0.01, lie=5.0, seed=99).register()

    run_round_robin(honest + [liar], steps=260, rng=random.Random(1))

    claimants = _rows(coordinator.db, "SELECT claimant_worker FROM claims WHERE state='accepted'")
    assert claimants and liar.worker_id not in {c for (c,) in claimants}, "no champion came from the liar"
    # Its lies were outvoted by agreeing honest measurements, as claimant or as verifier.
    outvoted = _rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE worker_id=? AND decision='outvoted'",
                     liar.worker_id)[0][0]
    assert outvoted >= 1, "and once quarantined it gets no task, so it is outvoted no more"
    contents = _champion_contents(coordinator, "slots")
    assert score(contents[-1]) >= 0.3, "honest workers kept improving the champion"
    states = {w.name: w.state for w in coordinator.status().workers}
    assert states["liar"] == "quarantined"
    assert all(states[w.name] != "quarantined" for w in honest)
    assert liar.step() is None, "once quarantined, the liar gets no task: its results would be thrown away"
    channel.close()


def test_noise_true_4_sigma_improvements_land_and_null_edits_do_not(tmp_path, start_coordinator):
    """Seeded: 2 classes × 2 workers, σ = 0.05, a true improvement is 4σ = 0.2.

    Observed with this seed (900 tasks): 490 null-edit trials with no false acceptance, and
    all 94 true 4σ improvements landed in the champion (every slot on before the end; later
    picks become null edits).
    """
    coordinator = start_coordinator(*SCRIPTED)
    with coordinator.control() as control:
        control.add_study(slots_study(tmp_path / "study", 'compare = "paired"\nquorum = 2'))
    channel, stub = connect(coordinator.address)
    sigma = 0.05
    score = slots_score(4 * sigma)

    def mostly_null(content: str, rng: random.Random) -> tuple[str, str]:
        return switch_a_slot(content, rng) if rng.random() < 0.2 else touch_the_note(content, rng)

    workers = [ScriptedWorker(stub, f"{cls}-{i}", f"{cls} CPU", score, mostly_null, sigma=sigma,
                              offset=offset, seed=10 * i + offset)
               for cls, offset in (("Alpha", 0), ("Beta", 3)) for i in range(2)]
    for w in workers:
        w.register()
    run_round_robin(workers, steps=900, rng=random.Random(2))

    contents = _champion_contents(coordinator, "slots")
    scores = [score(c) for c in contents]
    false_acceptances = sum(b <= a for a, b in zip(scores, scores[1:]))
    null_trials = sum(1 for w in workers for k, _, d in w.log if k == "explore" and d.startswith("note"))
    true_trials = [d for w in workers for k, _, d in w.log if k == "explore" and d.startswith("switch")]
    final = dict(SLOT_RE.findall(contents[-1]))
    landed = sum(final[d.split()[1]] == "1" for d in true_trials)
    assert null_trials >= 300, f"only {null_trials} null trials ran"
    rate = false_acceptances / null_trials
    assert rate < 0.01, f"false acceptances {false_acceptances} over {null_trials} null trials = {rate:.2%}"
    assert landed / len(true_trials) >= 0.6, f"only {landed} of {len(true_trials)} true 4σ improvements landed"
    channel.close()


def test_two_classes_are_never_compared_with_each_others_baseline(tmp_path, start_coordinator):
    coordinator = start_coordinator(*SCRIPTED)
    with coordinator.control() as control:
        control.add_study(slots_study(tmp_path / "study", 'compare = "paired"\nquorum = 2'))
    channel, stub = connect(coordinator.address)
    score = slots_score(0.1)
    fast = [ScriptedWorker(stub, f"fast-{i}", "Fast CPU", score, touch_the_note, sigma=0.01, offset=10.0, seed=i)
            for i in range(2)]
    slow = ScriptedWorker(stub, "slow", "Slow CPU", score, switch_a_slot, sigma=0.01, seed=7)
    slow_liar = ScriptedWorker(stub, "slow-liar", "Slow CPU", score, touch_the_note, sigma=0.01, lie=0.5, seed=8)
    for w in (*fast, slow, slow_liar):
        w.register()
    run_round_robin([*fast, slow, slow_liar], steps=200, rng=random.Random(3))

    accepted = {c for (c,) in _rows(coordinator.db, "SELECT claimant_worker FROM claims WHERE state='accepted'")}
    assert slow.worker_id in accepted, "a true improvement found on the slow class was accepted"
    assert slow_liar.worker_id not in accepted, "a fake one was not"
    # Every judged result was compared with its parent's baseline on its own class: the mean of
    # that class's first baselines of it (judged once enough were in; later repeats refine it),
    # without those of a worker quarantined by then (a quarantined worker's runs judge nothing),
    # or, while its workers' runs differ and no machine's own noise is known yet, the worker's
    # own first baselines of it (`StudyState.reference`).
    quarantined = {w.worker_id for w in (*fast, slow, slow_liar)
                   if {x.name: x.state for x in coordinator.status().workers}[w.name] == "quarantined"}
    baselines: dict[tuple[str, str], list[float]] = {}
    kept: dict[tuple[str, str], list[float]] = {}
    own: dict[tuple[str, str, str], list[float]] = {}
    for version, cls, metric, worker in _rows(coordinator.db, "SELECT version, hardware_class, metric, worker_id "
                                              "FROM results WHERE kind='baseline' AND status='ok' ORDER BY created, rowid"):
        baselines.setdefault((version, cls), []).append(metric)
        own.setdefault((version, cls, worker), []).append(metric)
        if worker not in quarantined:
            kept.setdefault((version, cls), []).append(metric)
    claims = dict(_rows(coordinator.db, "SELECT id, parent FROM claims"))
    judged = _rows(coordinator.db, "SELECT kind, parent, claim, hardware_class, metric, improvement, worker_id "
                   "FROM results WHERE improvement IS NOT NULL")
    assert len(judged) > 20
    for kind, parent, claim, cls, metric, gain, worker in judged:
        reference = claims[claim] if kind == "verify" else parent
        runs, honest = baselines[(reference, cls)], kept.get((reference, cls), [])
        mine = own.get((reference, cls, worker), [])
        assert any(gain == pytest.approx(metric - statistics.fmean(r[:n]), abs=1e-9)
                   for r in (runs, honest, mine) for n in range(1, len(r) + 1)), (gain, metric, runs)
        assert abs(gain) < 5, "a 10-point class offset never leaks into an improvement"
    channel.close()


def _lease(stub, worker_id):
    response = stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=5), timeout=10)
    assert response.has_task
    return response.task


def _report(stub, worker_id, task, metric, candidate=b""):
    return stub.Report(worker_pb2.ReportRequest(worker_id=worker_id, lease_id=task.lease_id, result=worker_pb2.Result(
        status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=metric, candidate=candidate)), timeout=10)


def _set(content: bytes, slot: str, value: int) -> bytes:
    return content.replace(f"{slot} = 0\n".encode(), f"{slot} = {value}\n".encode())


@pytest.mark.parametrize("first_value, second_slot, second_value, expected", [
    (1, "SLOT_9", 1, "stale-merged"),      # another line: both land
    (2, "SLOT_3", 1, "stale-conflict"),    # the same line, smaller gain: a conflict, the champion stays whole
    (1, "SLOT_3", 2, "keep"),              # the same line, beating the champion itself: it takes over
])
def test_concurrent_improvements_merge_or_conflict(tmp_path, start_coordinator, first_value, second_slot,
                                                   second_value, expected):
    coordinator = start_coordinator(*SCRIPTED)
    with coordinator.control() as control:
        control.add_study(slots_study(tmp_path / "study", 'compare = "absolute"\nquorum = 1'))
    channel, stub = connect(coordinator.address)
    score = slots_score(1.0)
    a, b = (stub.Register(worker_pb2.RegisterRequest(name=n, slots=1, mutators=["params"],
                                                     hardware=common_pb2.Hardware(cpu_model="X", cpu_cores=2)),
                          timeout=10).worker_id for n in ("a", "b"))
    baseline = _lease(stub, a)
    _report(stub, a, baseline, score(baseline.candidate.content.decode()))
    task_a, task_b = _lease(stub, a), _lease(stub, b)
    assert task_a.parent.hash == task_b.parent.hash, "both explore the same champion"
    edit_a = _set(task_a.parent.content, "SLOT_3", first_value)
    edit_b = _set(task_b.parent.content, second_slot, second_value)
    assert _report(stub, a, task_a, score(edit_a.decode()), edit_a).decision == "keep"
    assert _report(stub, b, task_b, score(edit_b.decode()), edit_b).decision == expected

    if expected == "stale-merged":
        verify = _lease(stub, a)
        assert verify.kind == common_pb2.TASK_KIND_VERIFY
        merged = verify.candidate.content.decode()
        assert "SLOT_3 = 1" in merged and "SLOT_9 = 1" in merged
        assert _report(stub, a, verify, score(merged)).decision == "keep"
    lineage = subprocess.run([sys.executable, "-m", "autoswarm", "history", "--lineage", "--study", "slots",
                              "--coordinator", coordinator.address], capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in lineage.splitlines()]
    assert rows[0][:6] == ["seq", "version", "score", "description", "claimed_by", "verified_by"]
    assert [r[4] for r in rows[1:]] == {"stale-merged": ["-", "a", "merge of b's edit"], "stale-conflict": ["-", "a"],
                                        "keep": ["-", "a", "b"]}[expected]
    if expected == "stale-merged":
        assert rows[3][5] == "a" and rows[3][3].startswith("merge:")
    final = _champion_contents(coordinator, "slots")[-1]
    values = dict(SLOT_RE.findall(final))
    assert values["SLOT_3"] == str(max(first_value, second_value) if second_slot == "SLOT_3" else first_value)
    assert values["SLOT_9"] == ("1" if expected == "stale-merged" else "0")
    compile(final, "champion", "exec")  # never a broken champion
    channel.close()


def test_quorum_1_absolute_with_one_worker_is_autoresearchs_keep_discard_loop(tmp_path, start_coordinator,
                                                                              start_worker):
    study = write_study(tmp_path / "study", direction="minimize", acceptance='compare = "absolute"\nquorum = 1',
                        body='print(f"loss: {(X - 2.5) ** 2 + (Y - 7) ** 2}")\n')
    (study / "study.toml").write_text((study / "study.toml").read_text().replace('"score"', '"loss"'))
    coordinator = start_coordinator(*SCRIPTED)
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=14)
    # Not pipelined: a pipelined slot prepares its next edit while it evaluates, on the champion it
    # had then, which autoresearch's loop never does.
    start_worker(coordinator.address, "solo", "--no-pipeline")
    wait_for(lambda: coordinator.study("tiny").done, 60, what="study to finish")
    with coordinator.control() as control:
        rows = list(control.history("tiny").rows)

    assert [r.kind for r in rows] == ["baseline"] + ["explore"] * (len(rows) - 1), "one baseline, then only explores"
    assert sum(r.status != "duplicate" for r in rows) == 14, "the budget counts evaluations; a duplicate is free"
    best, champion = rows[0].metric, rows[0].version
    for r in rows[1:]:
        assert r.parent == champion, "every edit starts from the current best"
        if r.status == "duplicate":  # the mutator drew an edit already evaluated on this parent: not re-run
            assert not r.has_metric
            continue
        # autoresearch: keep if the metric strictly improved on the current best, else discard.
        expected = "keep" if r.metric < best else "discard"
        assert r.status == expected, (r.description, r.metric, best)
        if expected == "keep":
            best, champion = r.metric, r.version
    assert coordinator.study("tiny").champion_metric == best
