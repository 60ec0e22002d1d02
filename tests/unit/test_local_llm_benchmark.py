"""benchmarks/local_llm.py's pure parts: the study it writes, the commands it runs, its figures.

The benchmark itself needs llama.cpp built from source (the `local-llm` extra), so it is not
run here; what it computes from a run's results.tsv is.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import local_llm  # noqa: E402

from autoswarm.report import results_tsv  # noqa: E402
from autoswarm.study import load_study  # noqa: E402
from autoswarm.v1 import control_pb2  # noqa: E402


def _study_with(tmp_path: Path, arm: str) -> Path:
    study = tmp_path / arm
    study.mkdir()
    for name in ("train.py", "prepare.py", "program.md"):
        (study / name).write_bytes((local_llm.QUICKSTART / name).read_bytes())
    kind, options = local_llm.arm_mutator(arm, "http://127.0.0.1:8123/v1", {"stop": ["<end_of_turn>"],
                                                                          "max_tokens": 512})
    text = (local_llm.QUICKSTART / "study.toml").read_text()
    (study / "study.toml").write_text(local_llm.with_mutator(text, kind, options))
    return study


@pytest.mark.parametrize("arm", ["json", "constants", "edits"])
def test_llm_arms_write_a_study_the_project_accepts(tmp_path: Path, arm: str) -> None:
    spec = load_study(_study_with(tmp_path, arm))
    assert spec.mutator.kind == "llm"
    assert spec.mutator.options["output"] == arm
    assert spec.mutator.options["base_url"] == "http://127.0.0.1:8123/v1"
    assert spec.mutator.options["model"] == local_llm.MODEL_ALIAS
    assert spec.mutator.options["stop"] == ["<end_of_turn>"]
    # Everything but the mutator is the quickstart's own.
    quickstart = load_study(local_llm.QUICKSTART)
    assert (spec.metric, spec.evaluate, spec.acceptance) == (quickstart.metric, quickstart.evaluate, quickstart.acceptance)


def test_params_arm_is_the_quickstart_unchanged(tmp_path: Path) -> None:
    spec = load_study(_study_with(tmp_path, "params"))
    assert spec == load_study(local_llm.QUICKSTART)


def test_with_mutator_refuses_a_study_without_a_mutator_table() -> None:
    with pytest.raises(ValueError, match=r"\[mutator\]"):
        local_llm.with_mutator('name = "x"\n', "params", {})


def test_toml_values_round_trip() -> None:
    values = {"s": 'a "quoted" \\ string', "i": 3, "f": 0.5, "b": True, "l": ["<end_of_turn>", "x"]}
    text = "\n".join(f"{k} = {local_llm.toml_value(v)}" for k, v in values.items())
    assert tomllib.loads(text) == values


def test_server_listens_on_loopback_only() -> None:
    command = local_llm.server_command("/py", Path("/m/model.gguf"), 8123, 2, 4096)
    assert command[:3] == ["/py", "-m", "llama_cpp.server"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--model_alias") + 1] == local_llm.MODEL_ALIAS
    assert "--chat_format" not in command
    assert local_llm.server_command("/py", Path("/m.gguf"), 1, 1, 1, "gemma")[-2:] == ["--chat_format", "gemma"]
    run = local_llm.run_command("/py", Path("/s"), Path("/o"), 7, 300.0)
    assert run[run.index("--workers") + 1] == "1" and run[run.index("--max-evals") + 1] == "7"


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434/v1/", "http://[::1]:8000/v1", "http://localhost:8080/v1"])
def test_a_running_server_on_this_machine_is_accepted(url: str) -> None:
    assert local_llm.loopback_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000/v1", "https://api.openai.com/v1", "ftp://127.0.0.1/v1",
                                 "http://127.0.0.1.example.com/v1"])
def test_a_server_elsewhere_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="on this machine"):
        local_llm.loopback_url(url)


def _row(kind: str, status: str, metric: float | None, mutate: float, reason: str = "") -> control_pb2.HistoryRow:
    return control_pb2.HistoryRow(result_id=f"r{id(reason)}", version="v", parent="p", kind=kind, status=status,
                                  has_metric=metric is not None, metric=metric or 0.0, mutate_seconds=mutate,
                                  evaluate_seconds=1.0, reason=reason, created_unix=1.7e9)


def test_figures_from_a_real_results_tsv() -> None:
    """Counted from the very file `autoswarm run` writes (report.results_tsv)."""
    tsv = results_tsv("val_loss", [
        _row("baseline", "baseline", 0.578, 0.0),
        _row("explore", "mutator-error", None, 30.0, "no SEARCH/REPLACE block found"),
        _row("explore", "mutator-error", None, 20.0, "no SEARCH/REPLACE block found"),
        _row("explore", "keep", 0.41, 6.0),
        _row("explore", "discard", 0.60, 4.0),
        _row("explore", "duplicate", 0.41, 2.0),
        _row("explore", "crash", None, 8.0, "Traceback"),
    ])
    result = local_llm.summarize("json", local_llm.read_results(tsv), "val_loss", wall_seconds=100.0)
    assert (result.tasks, result.evaluated, result.kept) == (6, 3, 1)  # the crash did reach an evaluation
    assert result.evaluated_share == pytest.approx(0.5)
    assert result.agent_seconds == pytest.approx(70.0)
    assert result.seconds_per_task == pytest.approx(70.0 / 6)
    assert result.seconds_per_edit == pytest.approx(70.0 / 3)
    assert (result.initial, result.best) == (pytest.approx(0.578), pytest.approx(0.41))
    assert result.errors["mutator-error: no SEARCH/REPLACE block found"] == 2
    assert local_llm._reason({"status": "mutator-error", "reason": "mutator-error: no JSON"}) == "mutator-error: no JSON"
    table = local_llm.markdown_table([result], "val_loss")
    assert "| json | 6 | 3 (50%) | 1 | 11.7 | 23.3 | 0.5780 → 0.4100 | 100 |" in table


def test_an_arm_without_a_usable_edit_has_no_seconds_per_edit() -> None:
    tsv = results_tsv("score", [_row("explore", "mutator-error", None, 40.0, "no JSON")])
    result = local_llm.summarize("constants", local_llm.read_results(tsv), "score", 50.0, maximize=True)
    assert (result.tasks, result.evaluated, result.seconds_per_edit, result.best) == (1, 0, None, None)
    assert "| constants | 1 | 0 (0%) | 0 | 40.0 | – | – → – | 50 |" in local_llm.markdown_table([result], "score")


SCHEMA = {"type": "object", "properties": {"values": {"type": "object"}}, "required": ["values"]}


def test_an_openai_schema_request_becomes_llama_cpp_pythons() -> None:
    body = {"model": "m", "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}}
    assert local_llm.llama_cpp_python_body(body) == {"model": "m",
                                                     "response_format": {"type": "json_object", "schema": SCHEMA}}
    plain = {"model": "m", "messages": []}
    assert local_llm.llama_cpp_python_body(plain) is plain
    already = {"response_format": {"type": "json_object", "schema": SCHEMA}}
    assert local_llm.llama_cpp_python_body(already) is already


def test_the_shim_streams_answers_through_and_rewrites_the_schema() -> None:
    """The openai client, as the llm mutator uses it, through the shim to a loopback server."""
    import openai

    sys.path.insert(0, str(ROOT / "tests"))
    from fake_llm import Answer, FakeChatServer

    with FakeChatServer([Answer('{"description": "d", "values": {"X": 2}}')]) as server:
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        with local_llm.SchemaShim(port) as shim:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{shim.port}/v1", api_key="no-key", max_retries=0,
                                   timeout=30)
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}})
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == '{"description": "d", "values": {"X": 2}}'
        assert server.requests[0].response_format == {"type": "json_object", "schema": SCHEMA}
        assert shim.rewritten == 1
