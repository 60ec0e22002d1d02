"""Paired acceptance in the engine: no barrier after a champion, results that wait for their
class's baseline, a new class judging after at most three evaluations, quarantine without work."""

from __future__ import annotations

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.store import Store
from swarm import Clock, write_study


def _ok(metric: float, candidate: bytes = b"") -> ResultIn:
    return ResultIn("ok", metric, {}, candidate, "", "", {})


def _engine(tmp_path, quorum: int = 1, baseline_runs: int = 2, acceptance: str = "") -> Engine:
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=Clock())
    study = write_study(tmp_path / "study", acceptance=f'compare = "paired"\nquorum = {quorum}\n'
                                                      f'baseline_runs = {baseline_runs}\n{acceptance}')
    engine.add_study(pack_directory(study).data, max_evaluations=0)
    return engine


def _worker(engine: Engine, name: str, cpu: str) -> str:
    return engine.register("", name, {"cpu_model": cpu, "cpu_cores": 2, "gpus": []}, 1, ["params"])[0]


def _calibrate(engine: Engine, worker: str, value: float = 10.0) -> None:
    """The study's first class measures baselines until it explores (the noise model's start)."""
    for i in range(40):
        task = engine.lease(worker)
        assert task is not None
        if task.kind == "explore":
            engine.release(worker, [task.lease_id])
            return
        engine.report(worker, task.lease_id, _ok(value + 0.01 * (i % 3)))
    raise AssertionError("the first class never started exploring")


def test_a_new_class_judges_its_first_candidate_after_at_most_three_evaluations(tmp_path):
    engine = _engine(tmp_path)
    for name in ("Alpha", "Beta", "Gamma", "Delta", "Epsilon"):   # a swarm whose noise is known
        _calibrate(engine, _worker(engine, name, name))
    newcomer = _worker(engine, "b", "Zeta")
    kinds, decision = [], ""
    while decision in ("", "baseline"):
        task = engine.lease(newcomer)
        assert task is not None
        kinds.append(task.kind)
        candidate = b"X = 1.5\nY = 3\n" if task.kind == "explore" else b""
        decision = engine.report(newcomer, task.lease_id, _ok(20.0, candidate)).decision
    assert len(kinds) <= 3, kinds
    assert decision not in ("waiting", "unjudged"), "judged against its own class's baseline"


def test_the_studys_very_first_class_judges_its_first_candidate_after_at_most_three_evaluations(tmp_path):
    """No swarm to learn noise from: two baselines give one difference, and the candidate is
    judged on it at once, against a bar as wide as one difference of evidence is thin."""
    for workers in (1, 2):
        (tmp_path / f"w{workers}").mkdir()
        engine = _engine(tmp_path / f"w{workers}")
        ids = [_worker(engine, f"a{i}", "Alpha") for i in range(workers)]
        evaluations, judged = 0, None
        while judged is None and evaluations < 10:
            for w in ids:
                task = engine.lease(w)
                assert task is not None
                candidate = b"X = 1.5\nY = 3\n" if task.kind == "explore" else b""
                reported = engine.report(w, task.lease_id, _ok(10.0 + 0.01 * evaluations, candidate))
                evaluations += 1
                if task.kind == "explore":
                    judged = engine.store.result(reported.result_id)
                    break
        assert judged is not None and evaluations <= 3, (workers, evaluations)
        assert judged.decision not in ("waiting", "unjudged"), judged.decision
        # One difference of 0.01 between the baselines: the bar's σ is the chi-square bound of
        # one difference (17× its estimate), not the estimate itself.
        assert judged.threshold is not None and judged.threshold > 10 * 2 * 0.01, judged.threshold
        engine.store.close()


def _first_edit(where, baselines: tuple[float, float], value: float, acceptance: str = ""):
    """A one-worker study's first class: its two baselines, then its first edit, reported as
    `value`. Returns (engine, worker, the edit's report)."""
    where.mkdir()
    engine = _engine(where, acceptance=acceptance)
    worker = _worker(engine, "a", "Alpha")
    for baseline in baselines:
        task = engine.lease(worker)
        assert task.kind == "baseline"
        engine.report(worker, task.lease_id, _ok(baseline))
    edit = engine.lease(worker)
    assert edit.kind == "explore", "judged after at most three evaluations"
    return engine, worker, engine.report(worker, edit.lease_id, _ok(value, b"X = 1.5\nY = 3\n"))


def test_a_first_edit_short_only_of_a_bar_widened_by_thin_evidence_waits_for_one_more_baseline(tmp_path):
    """Two baselines 0.05 apart: the bar is 17 times the noise they show. An edit 0.5 better
    (ten times that noise) is not discarded on it: it waits for the class's next baseline run
    and is judged then. An edit worse than its parent is discarded at once."""
    engine, _, worse = _first_edit(tmp_path / "worse", (10.0, 10.05), 9.9)
    assert worse.decision == "discard", "worse than its parent: nothing to wait for"
    engine.store.close()
    engine, worker, waiting = _first_edit(tmp_path / "better", (10.0, 10.05), 10.525)
    assert waiting.decision == "waiting", "not discarded on a bar one difference made wide"
    repeat = engine.lease(worker)
    assert repeat.kind == "baseline", "the thin class measures its champion once more"
    engine.report(worker, repeat.lease_id, _ok(10.02))
    judged = engine.store.result(waiting.result_id)
    assert judged.decision == "keep", (judged.decision, judged.improvement, judged.threshold)
    assert judged.threshold < judged.improvement < 0.51
    engine.store.close()


def test_a_study_that_states_its_noise_keeps_a_first_edit_far_beyond_it_at_once(tmp_path):
    """tinylm's first two baselines 0.21 apart: one difference alone sets a bar of 7.6, and an
    edit 0.7 better waits (it is more than the bar over its 17-fold widening); with the study's
    stated σ of 0.12 the bar is about 0.5 and the edit is kept at once, on the class's first two
    baselines. A run 0.3 better, within the stated noise, is not kept on that bar either way."""
    def decided(where: str, gain: float, stated: str) -> tuple[str, float | None]:
        engine, _, reported = _first_edit(tmp_path / where, (10.0, 10.21), 10.105 + gain, stated)
        threshold = engine.store.result(reported.result_id).threshold
        engine.store.close()
        return reported.decision, threshold

    assert decided("alone", 0.7, "")[0] == "waiting"
    decision, threshold = decided("stated", 0.7, "noise_prior = 0.12")
    assert decision == "keep" and threshold is not None and 0.4 < threshold < 0.6, (decision, threshold)
    assert decided("null", 0.3, "noise_prior = 0.12")[0] == "discard"


def test_no_barrier_a_result_waits_for_its_class_baseline_and_is_then_judged(tmp_path):
    engine = _engine(tmp_path, baseline_runs=1)
    for i in range(12):   # a swarm whose noise is known well enough that a new class needs no repeats
        _calibrate(engine, _worker(engine, f"c{i}", f"Class{i}"))
    b1, b2 = (_worker(engine, f"z{i}", "Zeta") for i in range(2))
    run = engine.lease(b1)
    assert run.kind == "baseline", "the first free worker of the class measures it"
    explore = engine.lease(b2)
    assert explore.kind == "explore", "the class's other worker explores at once: no barrier"
    waiting = engine.report(b2, explore.lease_id, _ok(25.0, b"X = 2\nY = 3\n"))
    assert waiting.decision == "waiting", "stored, not judged: its class has no baseline yet"
    engine.report(b1, run.lease_id, _ok(20.0))
    judged = engine.store.result(waiting.result_id)
    assert judged.decision == "keep", "judged once its class's baseline was in: 25 beats 20"
    assert judged.improvement == 5.0
    engine.store.close()
    reborn = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=Clock())
    assert reborn.store.result(waiting.result_id).decision == "keep", "the rewrite was committed"


def test_a_quarantined_worker_gets_no_task(tmp_path):
    engine = _engine(tmp_path)
    worker = _worker(engine, "a", "Alpha")
    engine._trust_change(worker, strikes=2)
    assert engine.trust(worker).quarantined
    assert engine.lease(worker) is None, "its results would be thrown away"
