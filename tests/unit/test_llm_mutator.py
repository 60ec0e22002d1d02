"""The `llm` mutator against a scripted chat-completions server on loopback."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from fake_llm import Answer, FakeChatServer, Hang, Status, copy_example
from autoswarm.worker.mutators import create_mutator
from autoswarm.worker.mutators.base import MutationRequest, MutatorConfigError, MutatorError
from autoswarm.worker.mutators.config import WorkerMutatorFlags, worker_mutators
from autoswarm.worker.mutators.llm import LlmMutator

PROGRAM = "Tune the constants of target.py to maximize score. Never touch evaluate.py.\n"
TARGET = "X = 1.0\nY = 3\n\nprint(f'score: {-(X - 2.5) ** 2 - (Y - 7) ** 2}')\n"
MEMORY = "- X 1.0 -> 0.5: discard (score -36.25)\n- Y 3 -> 2: crash (exit code 1)\n"
GOOD = "DESCRIPTION: move X toward 2.5\n\n<<<<<<< SEARCH\nX = 1.0\n=======\nX = 2.0\n>>>>>>> REPLACE\n"
KEY = "sk-test-Zebra7Quokka9Marmot"  # distinctive: any trace of it in an output is a leak


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "scratch"
    work.mkdir()
    (work / "target.py").write_text(TARGET)
    (work / "program.md").write_text(PROGRAM)
    return work


def _request(work: Path, cancel: threading.Event | None = None, memory: str = MEMORY) -> MutationRequest:
    return MutationRequest(workdir=work, target="target.py", program=PROGRAM, memory=memory, seed=7,
                           timeout_seconds=10, cancel=cancel)


def _mutator(server: FakeChatServer, **options: object) -> LlmMutator:
    settings: dict[str, object] = {"model": "test-model", "base_url": server.base_url, "retries": 2,
                                   "retry_delay": 0.0, "request_timeout": 5.0, **options}
    mutator = create_mutator("llm", settings)
    assert isinstance(mutator, LlmMutator)
    return mutator


def test_a_valid_edit_is_applied_and_the_request_carries_model_program_target_and_memory(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([GOOD]) as server:
        outcome = _mutator(server, temperature=0.3, max_tokens=777).mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    assert (work / "target.py").read_text() == TARGET.replace("X = 1.0", "X = 2.0")
    (request,) = server.requests
    assert request.body["model"] == "test-model"
    assert request.body["temperature"] == 0.3 and request.body["max_tokens"] == 777
    roles = [m["role"] for m in request.body["messages"]]
    assert roles == ["system", "user"]
    shown = request.text
    assert PROGRAM.strip() in shown
    assert TARGET in shown
    for entry in MEMORY.splitlines():
        assert entry in shown, "every swarm memory entry reaches the model"
    assert "<<<<<<< SEARCH" in shown and "DESCRIPTION:" in shown, "the output contract is in the prompt"


def test_empty_memory_is_said_so_rather_than_left_blank(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([GOOD]) as server:
        _mutator(server).mutate(_request(work, memory=""))
    assert "Nothing recorded yet" in server.requests[0].text


def test_a_malformed_answer_is_retried_in_a_fresh_conversation_that_states_the_problem(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer(["I think X should be larger.", GOOD]) as server:
        outcome = _mutator(server).mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    assert "X = 2.0" in (work / "target.py").read_text()
    assert len(server.requests) == 2
    first, retry = (r.body["messages"] for r in server.requests)
    assert [m["role"] for m in retry] == ["system", "user"], "the bad answer is not replayed"
    assert "I think X should be larger." not in server.requests[1].text
    assert "no SEARCH/REPLACE block" in retry[-1]["content"]
    assert retry[-1]["content"].startswith(first[-1]["content"]), "the same prompt, the problem stated at its end"


def test_an_edit_that_does_not_apply_is_retried_then_reported_with_the_reason(tmp_path):
    work = _workdir(tmp_path)
    wrong = "DESCRIPTION: x\n<<<<<<< SEARCH\nX = 1.5\n=======\nX = 2.0\n>>>>>>> REPLACE\n"
    with FakeChatServer(fallback=wrong) as server:
        with pytest.raises(MutatorError, match=r"after 3 attempt\(s\).*SEARCH lines are not in the target"):
            _mutator(server, retries=2).mutate(_request(work))
    assert len(server.requests) == 3, "retries=2 means three attempts"
    assert (work / "target.py").read_text() == TARGET, "nothing is written when no edit applies"


def test_an_edit_that_changes_nothing_or_breaks_python_is_retried(tmp_path):
    work = _workdir(tmp_path)
    same = "DESCRIPTION: nothing\n<<<<<<< SEARCH\nX = 1.0\n=======\nX = 1.0\n>>>>>>> REPLACE\n"
    broken = "DESCRIPTION: oops\n<<<<<<< SEARCH\nX = 1.0\n=======\nX = (2.0\n>>>>>>> REPLACE\n"
    with FakeChatServer([same, broken, GOOD]) as server:
        _mutator(server).mutate(_request(work))
    assert "unchanged" in server.requests[1].text
    assert "not valid Python" in server.requests[2].text
    assert "X = 2.0" in (work / "target.py").read_text()


def test_a_whole_file_answer_replaces_the_target(tmp_path):
    work = _workdir(tmp_path)
    new = TARGET.replace("Y = 3", "Y = 6")
    with FakeChatServer([f"DESCRIPTION: raise Y\n\n```python\n{new}```\n"]) as server:
        outcome = _mutator(server, output="whole-file").mutate(_request(work))
    assert outcome.description == "raise Y"
    assert (work / "target.py").read_text() == new
    assert "complete new content of target.py" in server.requests[0].text


def test_a_server_error_is_retried_then_the_answer_is_used(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([Status(500, {"error": {"message": "overloaded"}}), GOOD]) as server:
        outcome = _mutator(server).mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    assert len(server.requests) == 2


def test_server_errors_past_the_limit_are_a_mutator_error_with_the_status(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer(fallback=Status(503, {"error": {"message": "model loading"}})) as server:
        with pytest.raises(MutatorError, match="HTTP 503.*model loading"):
            _mutator(server, retries=1).mutate(_request(work))
    assert len(server.requests) == 2


def test_a_request_that_times_out_is_retried(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([Hang(10), GOOD]) as server:
        outcome = _mutator(server, request_timeout=2.0).mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    assert len(server.requests) == 2


def test_timeouts_past_the_limit_are_a_mutator_error(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer(fallback=Hang(10)) as server:
        with pytest.raises(MutatorError, match=r"no answer within request_timeout=0.3s"):
            _mutator(server, request_timeout=0.3, retries=1).mutate(_request(work))


def test_a_refused_key_fails_at_once_with_a_hint(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer(fallback=Status(401, {"error": {"message": "invalid api key"}})) as server:
        with pytest.raises(MutatorError, match="HTTP 401.*refused the key"):
            _mutator(server, retries=3).mutate(_request(work))
    assert len(server.requests) == 1, "retrying a refused key cannot help"


def test_an_unreachable_server_is_a_mutator_error(tmp_path):
    from swarm import free_port

    work = _workdir(tmp_path)
    mutator = create_mutator("llm", {"model": "m", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                                     "retries": 1, "retry_delay": 0.0, "request_timeout": 2.0})
    with pytest.raises(MutatorError, match="cannot reach http://127.0.0.1"):
        mutator.mutate(_request(work))


def test_a_cut_off_answer_says_so_in_the_reason(tmp_path):
    work = _workdir(tmp_path)
    cut = Answer("DESCRIPTION: x\n<<<<<<< SEARCH\nX = 1.0\n=====", finish_reason="length")
    with FakeChatServer(fallback=cut) as server:
        with pytest.raises(MutatorError, match="cut off at max_tokens=50"):
            _mutator(server, retries=0, max_tokens=50).mutate(_request(work))


def test_the_key_is_sent_to_the_server_and_appears_nowhere_else(tmp_path, monkeypatch, caplog):
    """A hostile server echoes the Authorization header into its error body: still no leak."""
    work = _workdir(tmp_path)
    monkeypatch.setenv("AUTOSWARM_TEST_KEY", KEY)

    def echo(body: dict, headers: dict) -> Status:
        return Status(500, {"error": {"message": f"bad header {headers.get('authorization')}"}})

    caplog.set_level(logging.DEBUG)
    with FakeChatServer([echo, echo], fallback=f"DESCRIPTION: I saw {KEY}\n" + GOOD.split("\n", 1)[1]) as server:
        mutator = _mutator(server, api_key_env="AUTOSWARM_TEST_KEY", retries=1)
        with pytest.raises(MutatorError) as failed:
            mutator.mutate(_request(work))
        outcome = _mutator(server, api_key_env="AUTOSWARM_TEST_KEY").mutate(_request(work))
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "HTTP 500" in str(failed.value) and "***" in str(failed.value)
    assert KEY not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__context__ is None, "no unscrubbed chained error"
    assert KEY not in outcome.description and "***" in outcome.description
    assert KEY not in caplog.text
    assert KEY not in repr(mutator), "the mutator holds the variable's name, never the key"


def test_a_missing_key_variable_is_named_in_the_error(tmp_path, monkeypatch):
    work = _workdir(tmp_path)
    monkeypatch.delenv("AUTOSWARM_TEST_MISSING_KEY", raising=False)
    with FakeChatServer([GOOD]) as server:
        with pytest.raises(MutatorError, match="AUTOSWARM_TEST_MISSING_KEY .* is not set"):
            _mutator(server, api_key_env="AUTOSWARM_TEST_MISSING_KEY").mutate(_request(work))
    assert server.requests == [], "no request goes out without the key"


def test_cancel_ends_a_waiting_request(tmp_path):
    work = _workdir(tmp_path)
    cancel = threading.Event()
    with FakeChatServer(fallback=Hang(30)) as server:
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        try:
            with pytest.raises(MutatorError, match="cancelled"):
                _mutator(server, request_timeout=25.0).mutate(_request(work, cancel))
        finally:
            timer.cancel()


@pytest.mark.parametrize("options, message", [
    ({}, "mutator.model: the llm mutator needs a model"),
    ({"model": "m", "bogus": 1}, "mutator.bogus: unknown option"),
    ({"model": "m", "temperature": 5}, "mutator.temperature: expected a number >= 0 and <= 2"),
    ({"model": "m", "retries": -1}, "mutator.retries: expected a whole number >= 0"),
    ({"model": "m", "max_tokens": 1.5}, "mutator.max_tokens"),
    ({"model": "m", "request_timeout": 0}, "mutator.request_timeout: expected a number > 0"),
    ({"model": "m", "output": "diff"}, "mutator.output: expected one of 'edits', 'whole-file'"),
    ({"model": "m", "base_url": "localhost:8000"}, "mutator.base_url: expected an http"),
])
def test_bad_study_options_are_config_errors_naming_the_key(options, message):
    with pytest.raises(MutatorConfigError, match=message):
        create_mutator("llm", options)


def test_a_key_pasted_into_api_key_env_is_refused_without_echoing_it():
    with pytest.raises(MutatorConfigError) as failed:
        create_mutator("llm", {"model": "m", "api_key_env": KEY})
    assert "NAME of an environment variable" in str(failed.value) and KEY not in str(failed.value)


# -- worker flags ---------------------------------------------------------------------------

def test_worker_default_kinds_follow_what_is_configured():
    assert worker_mutators(WorkerMutatorFlags()).kinds == ("params",)
    llm = worker_mutators(WorkerMutatorFlags(llm_model="qwen", llm_base_url="http://127.0.0.1:11434/v1"))
    assert llm.kinds == ("params", "llm")
    assert llm.options == {"llm": {"model": "qwen", "base_url": "http://127.0.0.1:11434/v1", "api_key_env": ""}}
    assert worker_mutators(WorkerMutatorFlags(agent_command="claude -p")).kinds == ("params", "command")
    chosen = worker_mutators(WorkerMutatorFlags(mutators=("llm,command", "llm"), llm_temperature=0.2))
    assert chosen.kinds == ("llm", "command"), "explicit kinds replace the default, deduplicated"
    assert chosen.options == {"llm": {"temperature": 0.2}}, "no server or key given: the study's are used"


def test_worker_key_and_server_travel_together():
    only_key = worker_mutators(WorkerMutatorFlags(llm_api_key_env="OPENAI_API_KEY", llm_model="gpt-4o-mini"))
    assert only_key.options["llm"]["base_url"] == "", "a study's base_url never receives the worker's key"
    only_server = worker_mutators(WorkerMutatorFlags(llm_base_url="http://127.0.0.1:8000/v1"))
    assert only_server.options["llm"]["api_key_env"] == "", "a study cannot pick which variable the worker sends"
    assert "OPENAI_API_KEY" in only_key.describe() and "gpt-4o-mini" in only_key.describe()


@pytest.mark.parametrize("flags, message", [
    (WorkerMutatorFlags(mutators=("gpt",)), "--mutator: unknown kind 'gpt'"),
    (WorkerMutatorFlags(llm_base_url="127.0.0.1:8000"), "--llm-base-url: expected an http"),
    (WorkerMutatorFlags(llm_api_key_env="sk-abc-123"), "--llm-api-key-env: expected the NAME"),
    (WorkerMutatorFlags(agent_command="  "), "--agent-command: the command mutator needs"),
])
def test_bad_worker_flags_name_the_flag(flags, message):
    with pytest.raises(MutatorConfigError, match=message):
        worker_mutators(flags)


# -- structured answers, prompt order, streaming and usage ----------------------------------------

JSON_GOOD = '{"description": "move X toward 2.5", "edits": [{"search": "X = 1.0", "replace": "X = 2.0"}]}'


def test_the_prompt_puts_what_stays_the_same_first_and_the_memory_and_format_last(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([GOOD]) as server:
        _mutator(server).mutate(_request(work))
    user = server.requests[0].body["messages"][-1]["content"]
    assert user.index(PROGRAM.strip()) < user.index(TARGET) < user.index(MEMORY.splitlines()[0]) \
        < user.index("<<<<<<< SEARCH")


def test_requests_are_streamed_with_a_cpu_friendly_token_limit_and_stop_sequences(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([Answer(GOOD, usage=(120, 30))]) as server:
        outcome = _mutator(server, stop=["<|im_end|>"]).mutate(_request(work))
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 1024 and body["stop"] == ["<|im_end|>"]
    assert "response_format" not in body, "SEARCH/REPLACE blocks need no schema"
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (120, 30)


def test_json_output_sends_the_schema_and_applies_the_edits(tmp_path, caplog):
    work = _workdir(tmp_path)
    caplog.set_level(logging.DEBUG, logger="autoswarm.worker.llm")
    with FakeChatServer([JSON_GOOD]) as server:
        outcome = _mutator(server, output="json").mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    assert (work / "target.py").read_text() == TARGET.replace("X = 1.0", "X = 2.0")
    schema = server.requests[0].response_format
    assert schema["type"] == "json_schema"
    assert set(schema["json_schema"]["schema"]["required"]) == {"description", "edits"}
    assert '"search": "X = 1.0"' in caplog.text, "the raw answer is in the worker log at debug level"


def test_json_that_does_not_apply_is_retried_with_the_reason(tmp_path):
    work = _workdir(tmp_path)
    wrong = '{"description": "x", "edits": [{"search": "X = 7.5", "replace": "X = 2.0"}]}'
    with FakeChatServer([wrong, "not json at all", JSON_GOOD]) as server:
        _mutator(server, output="json").mutate(_request(work))
    assert "not in the target" in server.requests[1].text
    assert "no JSON object" in server.requests[2].text
    assert "X = 2.0" in (work / "target.py").read_text()


def test_a_server_that_refuses_response_format_is_asked_again_without_it(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([JSON_GOOD], rejects_response_format=True) as server:
        outcome = _mutator(server, output="json", retries=0).mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    first, second = server.requests
    assert first.response_format is not None and second.response_format is None
    assert '"edits"' in second.text, "the prompt still asks for the JSON shape"


def test_ollama_gets_the_schema_as_format(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer([JSON_GOOD]) as server:
        _mutator(server, output="json", structured="format").mutate(_request(work))
    body = server.requests[0].body
    assert "response_format" not in body and body["format"]["required"] == ["description", "edits"]


def test_constants_output_lists_the_constants_without_the_code_and_applies_new_values(tmp_path):
    work = _workdir(tmp_path)
    answer = '{"description": "move both toward their optimum", "values": {"X": 2.5, "Y": 6.6}}'
    with FakeChatServer([answer]) as server:
        outcome = _mutator(server, output="constants").mutate(_request(work))
    shown = server.requests[0].text
    assert "X = 1.0\nY = 3" in shown and "print(" not in shown, "a compact prompt: constants, not code"
    assert server.requests[0].response_format["json_schema"]["schema"]["required"] == ["description", "values"]
    assert (work / "target.py").read_text() == TARGET.replace("X = 1.0", "X = 2.5").replace("Y = 3", "Y = 7")
    assert outcome.description == "X 1.0 -> 2.5, Y 3 -> 7 — move both toward their optimum"


def test_constants_that_do_not_exist_are_retried_with_the_names_that_do(tmp_path):
    work = _workdir(tmp_path)
    good = '{"description": "raise X", "values": {"X": 2.0}}'
    with FakeChatServer(['{"description": "d", "values": {"LR": 0.1}}', good]) as server:
        _mutator(server, output="constants").mutate(_request(work))
    assert "'LR' is not one of the target's constants (X, Y)" in server.requests[1].text
    assert "X = 2.0" in (work / "target.py").read_text()


def test_tokens_of_unusable_answers_count_too(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer(fallback=Answer("no edit here", usage=(100, 10))) as server:
        with pytest.raises(MutatorError) as failed:
            _mutator(server, retries=1).mutate(_request(work))
    assert failed.value.usage.tokens == 220


def test_a_timed_out_stream_is_closed_so_the_server_stops_generating(tmp_path):
    work = _workdir(tmp_path)
    with FakeChatServer(fallback=Hang(5)) as server:
        with pytest.raises(MutatorError, match="request_timeout=0.5s"):
            _mutator(server, retries=0, request_timeout=0.5).mutate(_request(work))


def test_worker_flags_set_the_answer_format_schema_and_stop_sequences():
    chosen = worker_mutators(WorkerMutatorFlags(llm_model="m", llm_output="constants", llm_structured="format",
                                                llm_stop=("<|im_end|>",)))
    assert chosen.options["llm"] == {"model": "m", "output": "constants", "structured": "format",
                                     "stop": ["<|im_end|>"]}
    mutator = create_mutator("llm", chosen.options["llm"])
    assert mutator.stop == ("<|im_end|>",) and mutator.output == "constants"
    with pytest.raises(MutatorConfigError, match="--llm-structured: expected one of"):
        worker_mutators(WorkerMutatorFlags(llm_model="m", llm_structured="grammar"))


# -- a small model's habits (seen with Gemma 3 270M on llama-cpp-python's server) --------------

TRAIN = ("import math\n\nNUM_FEATURES = 128       # width\nFEATURE_SCALE = 1.5\nLEARNING_RATE = 0.05     # step\n"
         "MOMENTUM = 0.5\nBATCH_SIZE = 32\nEPOCHS = 40\nLR_DECAY = 0.3\nINIT_SCALE = 0.1\n\n"
         "print('score:', -abs(LEARNING_RATE - 0.1) - abs(EPOCHS - 80) / 100)\n")


def _train_request(tmp_path: Path, seed: int, memory: str = "") -> MutationRequest:
    work = tmp_path / f"train-{seed}"
    work.mkdir(exist_ok=True)
    (work / "train.py").write_text(TRAIN)
    return MutationRequest(workdir=work, target="train.py", program=PROGRAM, memory=memory, seed=seed,
                           timeout_seconds=10)


def test_a_model_that_copies_the_json_sample_still_makes_an_edit_that_applies(tmp_path):
    # The sample used to be `LEARNING_RATE = 0.01`, a line of no target: every copy failed.
    work = _workdir(tmp_path)
    with FakeChatServer(fallback=copy_example) as server:
        outcome = _mutator(server, output="json", retries=0).mutate(_request(work))
    sample = copy_example(server.requests[0].body, {})
    assert '"search": "X = 1.0"' in sample or '"search": "Y = 3"' in sample, "the sample is a real line"
    assert (work / "target.py").read_text() != TARGET and outcome.description


def test_json_samples_differ_from_task_to_task(tmp_path):
    searches = set()
    with FakeChatServer(fallback=copy_example) as server:
        for seed in range(8):
            _mutator(server, output="json", retries=0).mutate(_train_request(tmp_path, seed))
    for recorded in server.requests:
        searches.add(copy_example(recorded.body, {}).split('"search": ')[1].split(" ")[0])
    assert len(searches) >= 3, f"the sample's constant is drawn per task, got {searches}"


def test_a_search_text_not_in_the_target_is_named_in_the_retry_with_real_lines(tmp_path):
    work = _workdir(tmp_path)
    invented = '{"description": "d", "edits": [{"search": "LEARNING_RATE = 0.01", "replace": "LEARNING_RATE = 0.02"}]}'
    with FakeChatServer([invented, JSON_GOOD]) as server:
        _mutator(server, output="json").mutate(_request(work))
    note = server.requests[1].text.split("## Note", 1)[1]
    assert "This text is not in target.py: 'LEARNING_RATE = 0.01'" in note
    assert "copy one exactly:" in note and "X = 1.0" in note, "real lines of the target are offered"
    assert "X = 2.0" in (work / "target.py").read_text()


def test_constants_a_known_edit_is_refused_locally_and_asked_again_saying_so(tmp_path):
    work = _workdir(tmp_path)
    memory = "Tried on the current best version (newest first):\n- [discard] (-4) Y 3 -> 1 — lower Y\n"
    repeat = '{"description": "lower Y", "values": {"Y": 1}}'
    good = '{"description": "raise X", "values": {"X": 2.0}}'
    with FakeChatServer([repeat, good]) as server:
        outcome = _mutator(server, output="constants").mutate(_request(work, memory=memory))
    first, retry = (r.text for r in server.requests)
    assert "Already tried by the swarm (do not propose these again):\nY = 1" in first
    assert "Y 3 -> 1 was already tried by the swarm; choose another constant" in retry
    assert outcome.description == "X 1.0 -> 2.0 — raise X"
    assert (work / "target.py").read_text() == TARGET.replace("X = 1.0", "X = 2.0")


def test_constants_a_model_copying_its_sample_explores_without_repeating_itself(tmp_path):
    # Gemma 3 270M answered {"NUM_FEATURES": 1} in 26 of 26 tasks: the sample named the first
    # constant with a value of 0.02 (an int rounds that to 1), and it never changed.
    memory_lines: list[str] = []
    offered: list[set[str]] = []
    with FakeChatServer(fallback=copy_example) as server:
        for seed in range(8):
            memory = "Tried on the current best version (newest first):\n" + "\n".join(memory_lines)
            before = len(server.requests)
            outcome = _mutator(server, output="constants").mutate(_train_request(tmp_path, seed, memory))
            memory_lines.append(f"- [discard] (-0.01) {outcome.description}")
            listing = server.requests[before].text.split("current values:\n\n", 1)[1].split("\n\n", 1)[0]
            offered.append({line.split(" = ")[0] for line in listing.splitlines()})
    edits = [line.split(") ", 1)[1].split(" — ")[0] for line in memory_lines]
    assert len(set(edits)) == len(edits), f"no edit twice: {edits}"
    assert "NUM_FEATURES 128 -> 1" not in edits
    assert all(len(names) <= 4 for names in offered) and len({frozenset(n) for n in offered}) > 1, \
        "a few constants per task, drawn per task"
    changed = {e.split(" ")[0] for e in edits}
    assert len(changed) >= 3, f"the swarm's edits spread over the constants: {edits}"


def test_a_500_naming_response_format_falls_back_to_json_object_with_the_schema_then_the_prompt(tmp_path):
    # llama-cpp-python 0.3.x answers OpenAI's json_schema form with HTTP 500: not a passing failure.
    work = _workdir(tmp_path)
    with FakeChatServer([JSON_GOOD], rejects_json_schema=True) as server:
        outcome = _mutator(server, output="json", retries=0).mutate(_request(work))
    assert outcome.description == "move X toward 2.5"
    assert [r.response_format["type"] for r in server.requests] == ["json_schema", "json_object"]
    assert server.requests[1].response_format["schema"]["required"] == ["description", "edits"]
    # A server that refuses json_object too is asked with the prompt only.
    refusal = Status(500, {"error": {"message": "unsupported response_format: json_object"}})
    values = '{"description": "X to its optimum", "values": {"X": 2.5}}'
    with FakeChatServer([refusal, values], rejects_json_schema=True) as server:
        _mutator(server, output="constants", retries=0).mutate(_request(work))
    assert [(r.response_format or {}).get("type") for r in server.requests] == ["json_schema", "json_object", None]
    assert "X = 2.5" in (work / "target.py").read_text()
