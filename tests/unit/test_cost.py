"""Cost, counted and capped: tokens from the server's usage, a study's cap, a worker's own cap."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.store import Store
from autoswarm.study import StudyError, parse_study_text
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.bundles import BundleCache
from autoswarm.worker.execute import ExecutionContext, execute_task
from autoswarm.worker.hardware import HardwareInfo
from autoswarm.worker.loop import Worker, WorkerOptions
from autoswarm.worker.mutators.config import Budget
from autoswarm.worker.sandbox import configure
from fake_llm import Answer, FakeChatServer
from swarm import write_study


def _spent(metric: float, content: bytes, tokens: int, usd: float = 0.0) -> ResultIn:
    return ResultIn("ok", metric, {}, content, "an edit", "", {"llm_tokens": tokens, "cost_usd": usd})


def _engine(tmp_path: Path, caps: str) -> tuple[Engine, str]:
    ticks = itertools.count(1000.0, 0.5)
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=100.0), clock=lambda: next(ticks))
    engine.add_study(pack_directory(write_study(tmp_path / "study", direction="minimize", extra_toml=caps)).data)
    worker, _ = engine.register("", "alpha", {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}, 1, ["params"])
    engine.report(worker, engine.lease(worker).lease_id, ResultIn("ok", 10.0, {}, b"", "", "", {}))
    return engine, worker


@pytest.mark.parametrize("caps, spend", [("max_tokens = 30", (10, 0.0)), ("max_cost_usd = 0.03", (5, 0.01))])
def test_a_study_budget_stops_new_explores_exactly_at_the_cap(tmp_path, caps, spend):
    engine, worker = _engine(tmp_path, caps)
    for n in range(3):
        explore = engine.lease(worker)
        assert explore is not None and explore.kind == "explore", f"explore {n + 1} is within the budget"
        engine.report(worker, explore.lease_id, _spent(11.0 + n, f"X = {n}\n".encode(), *spend))
    assert engine.lease(worker) is None, "the budget is spent: no new explore"
    summary, = engine.study_summaries()
    assert summary.llm_tokens == 3 * spend[0] and summary.cost_usd == pytest.approx(3 * spend[1])
    assert summary.done, "nothing in flight and the budget spent: the study is done"
    again = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=lambda: 5000.0)
    assert again.study_summaries()[0].llm_tokens == 3 * spend[0], "what was spent survives a restart"


@pytest.mark.parametrize("line, message", [("max_cost_usd = -1", "max_cost_usd: expected a number of US dollars"),
                                           ("max_tokens = 1.5", "max_tokens: expected a whole number of tokens")])
def test_bad_caps_are_named(line, message):
    text = f'name = "s"\ntarget = "t.py"\nevaluate = "python t.py"\nmetric = "m"\ndirection = "maximize"\n' \
           f"timeout = 10\n{line}\n"
    with pytest.raises(StudyError, match=message):
        parse_study_text(text)


def test_tokens_of_an_llm_edit_reach_the_result(tmp_path):
    study = write_study(tmp_path / "study", extra_toml='[mutator]\nkind = "llm"\nmodel = "m"\n')
    bundle = pack_directory(study)
    answer = "DESCRIPTION: raise X\n<<<<<<< SEARCH\nX = 1.0\n=======\nX = 2.0\n>>>>>>> REPLACE\n"
    with FakeChatServer([Answer(answer, usage=(900, 100))]) as server:
        context = ExecutionContext(cache=BundleCache(tmp_path / "cache"), scratch_root=tmp_path / "work",
                                   data_root=tmp_path / "data", mutator_options={"llm": {
                                       "base_url": server.base_url, "price": [1.0, 10.0], "retry_delay": 0}})
        task = worker_pb2.Task(lease_id="lease-1", study="tiny", kind=common_pb2.TASK_KIND_EXPLORE,
                               bundle_hash=bundle.hash, seed=3,
                               parent=common_pb2.Version(hash="p", content=(study / "target.py").read_bytes()))
        result = execute_task(context, task, lambda _hash, download: download.write(bundle.data), threading.Event(),
                              mutators=("llm",))
    assert result.status == common_pb2.RESULT_STATUS_OK, result.log_tail
    assert result.llm_tokens == 1000
    assert result.cost_usd == pytest.approx((900 * 1.0 + 100 * 10.0) / 1e6)


def test_a_workers_own_cap_stops_its_llm_tasks_only(tmp_path, monkeypatch):
    machine = HardwareInfo(cpu_model="Test", cpu_cores=2, memory_bytes=8 << 30, gpus=(), platform="linux",
                           python_version="3")
    worker = Worker(WorkerOptions("127.0.0.1:1", tmp_path / "state", slots=1, mutators=("params", "llm"),
                                  agent_budget=Budget(tokens=5)), machine, sandbox=configure("none"))
    told: list[tuple[str, ...]] = []
    monkeypatch.setattr(worker, "register", lambda forget_id=False: told.append(worker.mutators()))
    worker.deliver("l-1", worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, llm_tokens=3))
    assert worker.mutators() == ("params", "llm") and told == []
    worker.deliver("l-2", worker_pb2.Result(status=common_pb2.RESULT_STATUS_MUTATOR_ERROR, llm_tokens=3))
    assert worker.mutators() == ("params",), "past its cap the worker runs no more llm tasks"
    assert told == [("params",)], "and tells the coordinator, which then leases it params tasks only"
    worker.deliver("l-3", worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, llm_tokens=3))
    assert len(told) == 1


def test_cost_is_shown_per_evaluation_and_per_kept_improvement_in_status_and_results(tmp_path):
    from autoswarm.coordinator.service import history_row
    from autoswarm.report import results_tsv
    from autoswarm.status_view import spend_line
    from autoswarm.v1 import control_pb2

    engine, worker = _engine(tmp_path, "max_cost_usd = 1.0")
    engine.report(worker, engine.lease(worker).lease_id, _spent(5.0, b"X = 2\n", 1000, 0.25))   # kept
    engine.report(worker, engine.lease(worker).lease_id, _spent(9.0, b"X = 3\n", 1000, 0.25))   # discarded
    summary, = engine.study_summaries()
    status = control_pb2.StudyStatus(name="tiny", evaluations=summary.evaluations, improvements=summary.improvements,
                                     llm_tokens=summary.llm_tokens, cost_usd=summary.cost_usd,
                                     max_cost_usd=summary.max_cost_usd)
    line = spend_line(status)
    assert "agents spent $0.5000 (2,000 tokens)" in line
    assert "$0.1667 per evaluation" in line and "$0.5000 per kept improvement" in line and "cap $1" in line
    rows = [history_row(r) for r in engine.history("tiny")]
    header, *lines = results_tsv("score", rows).splitlines()
    assert header.split("\t")[-2:] == ["llm_tokens", "cost_usd"]
    assert lines[-1].split("\t")[-2:] == ["1000", "0.250000"]
