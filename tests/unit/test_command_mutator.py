"""The `command` mutator with scripted agents (small Python programs standing in for agent CLIs)."""

from __future__ import annotations

import os
import shlex
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from autoswarm import words
from autoswarm.bundle import pack_directory
from autoswarm.v1 import common_pb2, worker_pb2
from swarm import write_study
from autoswarm.worker.agent_box import AgentBox
from autoswarm.worker.bundles import BundleCache
from autoswarm.worker.execute import ExecutionContext, execute_task
from autoswarm.worker.mutators import create_mutator
from autoswarm.worker.mutators.base import MutationRequest, MutatorConfigError, MutatorError
from autoswarm.worker.mutators.command import CommandMutator

MEMORY = "- X 1.0 -> 0.5: discard\n- Y 3 -> 9: keep\n"

# Reads its prompt from a file (argv[1]) or stdin, keeps a copy outside the scratch copy for the
# test to read, sets X = 2.0 in the target and says what it did.
EDITOR = """
    import os, sys
    prompt = open(sys.argv[1]).read() if len(sys.argv) > 1 and os.path.exists(sys.argv[1]) else (
        sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    with open({seen!r}, "w") as f:
        f.write(prompt + "\\n--- TMPDIR=" + os.environ["TMPDIR"] + " TARGET=" + os.environ["AUTOSWARM_TARGET"])
    target = os.environ["AUTOSWARM_TARGET"]
    text = open(target).read()
    open(target, "w").write(text.replace("X = 1.0", "X = 2.0"))
    print("thinking about it...")
    print("DESCRIPTION: set X to 2.0, nearer the optimum")
    print("tokens used: 1234")
"""


def _agent(tmp_path: Path, body: str, name: str = "agent.py", **values: object) -> str:
    path = tmp_path / "agents" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(body.format(**values) if values else body))
    return f"python {shlex.quote(str(path))}"


def _workdir(tmp_path: Path) -> Path:
    study = write_study(tmp_path / "scratch")
    return study


def _request(work: Path, cancel: threading.Event | None = None) -> MutationRequest:
    return MutationRequest(workdir=work, target="target.py", program="Maximize score.\n", memory=MEMORY, seed=1,
                           timeout_seconds=10, cancel=cancel)


@pytest.mark.parametrize("placeholder", ["", "{prompt_file}", "{prompt}"])
def test_an_agent_edits_the_target_and_its_description_is_read_from_its_output(tmp_path, placeholder):
    seen = tmp_path / "seen.txt"
    command = _agent(tmp_path, EDITOR, seen=str(seen)) + (f" {placeholder}" if placeholder else "")
    work = _workdir(tmp_path)
    outcome = create_mutator("command", {"command": command, "timeout": 30}).mutate(_request(work))
    assert outcome.description == "set X to 2.0, nearer the optimum"
    assert (work / "target.py").read_text().startswith("X = 2.0\n")
    prompt = seen.read_text()
    assert "Maximize score." in prompt, "program.md reaches the agent"
    for entry in MEMORY.splitlines():
        assert entry in prompt, "the swarm memory reaches the agent"
    assert "editing `target.py` in place" in prompt and "DESCRIPTION:" in prompt
    tmpdir = prompt.rsplit("TMPDIR=", 1)[1].split()[0]
    assert not Path(tmpdir).is_relative_to(work), "the agent's TMPDIR is outside the scratch copy"
    assert not Path(tmpdir).exists(), "and removed afterwards"
    assert sorted(p.name for p in work.iterdir()) == ["program.md", "study.toml", "target.py"]


def test_without_a_description_line_the_change_itself_describes_the_edit(tmp_path):
    command = _agent(tmp_path, """
        text = open("target.py").read()
        open("target.py", "w").write(text.replace("Y = 3", "Y = 5"))
        print("done")
    """)
    work = _workdir(tmp_path)
    outcome = CommandMutator.from_options({"command": command}).mutate(_request(work))
    assert outcome.description == "edit without description: Y = 3 -> Y = 5"


def _execute(tmp_path: Path, agent_command: str) -> worker_pb2.Result:
    """Runs a whole explore task through execute_task, with the agent given as a worker override."""
    study = write_study(tmp_path / "study", extra_toml='[mutator]\nkind = "command"\ncommand = "false"\n')
    bundle = pack_directory(study)
    context = ExecutionContext(cache=BundleCache(tmp_path / "cache"), scratch_root=tmp_path / "work",
                               data_root=tmp_path / "data",
                               mutator_options={"command": {"command": agent_command, "timeout": 30}})
    task = worker_pb2.Task(lease_id="lease-1", study="tiny", kind=common_pb2.TASK_KIND_EXPLORE,
                           bundle_hash=bundle.hash, seed=3, memory=MEMORY,
                           parent=common_pb2.Version(hash="p", content=(study / "target.py").read_bytes()))
    return execute_task(context, task, lambda _hash, download: download.write(bundle.data), threading.Event(),
                        mutators=("command",))


def test_through_execute_task_the_worker_override_runs_the_agent_and_the_candidate_is_evaluated(tmp_path):
    result = _execute(tmp_path, _agent(tmp_path, EDITOR, seen=str(tmp_path / "seen.txt")))
    assert words.STATUS_WORDS[result.status] == "ok", result.log_tail
    assert result.description == "set X to 2.0, nearer the optimum"
    assert result.candidate.startswith(b"X = 2.0\n")
    assert result.has_metric and result.metric == pytest.approx(-(2.0 - 2.5) ** 2 - (3 - 7) ** 2)


def test_an_agent_that_also_edits_another_file_is_tampered_and_nothing_is_evaluated(tmp_path):
    command = _agent(tmp_path, """
        text = open("target.py").read()
        open("target.py", "w").write(text.replace("X = 1.0", "X = 2.5"))
        with open("study.toml", "a") as f:
            f.write("# the agent was here\\n")
        print("DESCRIPTION: perfect score, trust me")
    """)
    result = _execute(tmp_path, command)
    assert words.STATUS_WORDS[result.status] == "tampered"
    assert "study.toml" in result.log_tail
    assert not result.has_metric and not result.candidate
    assert not (tmp_path / "work" / "lease-1").exists(), "the scratch copy is discarded"


def test_an_agent_leaving_its_own_files_in_the_scratch_copy_is_tampered_too(tmp_path):
    command = _agent(tmp_path, """
        open("target.py", "a").write("# tuned\\n")
        open(".agent-history.md", "w").write("chat log")
        print("DESCRIPTION: comment")
    """)
    result = _execute(tmp_path, command)
    assert words.STATUS_WORDS[result.status] == "tampered"
    assert ".agent-history.md" in result.log_tail


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_hanging_agent_is_killed_at_its_limit_with_its_children(tmp_path):
    pids = tmp_path / "pids"
    command = _agent(tmp_path, """
        import os, subprocess, time
        child = subprocess.Popen(["sleep", "60"])
        with open({pids!r} + ".tmp", "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        os.rename({pids!r} + ".tmp", {pids!r})
        print("working very hard", flush=True)
        time.sleep(60)
    """, pids=str(pids))
    work = _workdir(tmp_path)
    with pytest.raises(MutatorError, match=r"did not finish within its 1s timeout.*\n.*working very hard"):
        create_mutator("command", {"command": command, "timeout": 1}).mutate(_request(work))
    agent_pid, child_pid = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5  # reaping by init may lag a moment behind the kill
    while (_alive(agent_pid) or _alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(agent_pid), "the agent was killed"
    assert not _alive(child_pid), "and so was the process it started"


def test_a_cancelled_task_stops_the_agent(tmp_path):
    command = _agent(tmp_path, "import time\ntime.sleep(60)\n")
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        with pytest.raises(MutatorError, match="cancelled while the agent"):
            create_mutator("command", {"command": command, "timeout": 30}).mutate(_request(_workdir(tmp_path), cancel))
    finally:
        timer.cancel()


def test_tmpdir_placeholder_gives_the_agent_a_place_for_its_history_outside_the_scratch_copy(tmp_path):
    command = _agent(tmp_path, """
        import sys
        open(sys.argv[1], "w").write("chat history")
        open("target.py", "a").write("# tuned\\n")
        print("DESCRIPTION: comment")
    """) + " {tmpdir}/history.md"
    work = _workdir(tmp_path)
    outcome = create_mutator("command", {"command": command}).mutate(_request(work))
    assert outcome.description == "comment"
    assert sorted(p.name for p in work.iterdir()) == ["program.md", "study.toml", "target.py"]


def test_an_agent_that_fails_is_a_mutator_error_with_its_output(tmp_path):
    command = _agent(tmp_path, "import sys\nprint('rate limited, try later')\nsys.exit(3)\n")
    with pytest.raises(MutatorError, match=r"exited with status 3\n.*rate limited"):
        create_mutator("command", {"command": command}).mutate(_request(_workdir(tmp_path)))


def test_a_missing_agent_program_says_to_install_it(tmp_path):
    with pytest.raises(MutatorError, match="status 127 .*installed and on the worker's PATH"):
        create_mutator("command", {"command": "autoswarm-no-such-agent -p"}).mutate(_request(_workdir(tmp_path)))


def test_a_command_given_as_a_list_runs_as_is(tmp_path):
    seen = tmp_path / "seen.txt"
    path = Path(_agent(tmp_path, EDITOR, seen=str(seen)).split(" ", 1)[1].strip("'"))
    outcome = create_mutator("command", {"command": [sys.executable, str(path), "{prompt_file}"]}) \
        .mutate(_request(_workdir(tmp_path)))
    assert outcome.description.startswith("set X to 2.0")


@pytest.mark.parametrize("options, message", [
    ({}, "mutator.command: the command mutator needs the agent command line"),
    ({"command": ""}, "mutator.command: the command mutator needs"),
    ({"command": "agent 'unbalanced"}, "mutator.command: cannot parse"),
    ({"command": 42}, "mutator.command: expected a command line string or a list"),
    ({"command": "agent {prompt} {prompt_file}"}, "use either {prompt_file} or {prompt}"),
    ({"command": "agent", "timeout": 0}, "mutator.timeout: expected a positive number"),
    ({"command": "agent", "model": "x"}, "mutator.model: unknown option for the command mutator"),
])
def test_bad_options_are_config_errors_naming_the_key(options, message):
    with pytest.raises(MutatorConfigError, match=message):
        create_mutator("command", options)


def test_the_agent_gets_only_the_variables_the_volunteer_names_unless_unsafe(tmp_path, monkeypatch):
    """Agent CLIs need their own API key: the volunteer passes it by name; nothing else leaks."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "agent-credential")
    monkeypatch.setenv("AUTOSWARM_JOIN_TOKEN", "asj_secret")
    command = _agent(tmp_path, """
        import os
        seen = [os.environ.get(n, "-") for n in ("ANTHROPIC_API_KEY", "AUTOSWARM_JOIN_TOKEN")]
        open("target.py", "a").write("# " + " ".join(seen) + " " + os.environ["HOME"] + "\\n")
        print("DESCRIPTION: ok")
    """)
    for box, expected in ((AgentBox(), "- -"), (AgentBox(env_names=("ANTHROPIC_API_KEY",)), "agent-credential -"),
                          (AgentBox(unsafe=True), "agent-credential asj_secret")):
        work = _workdir(tmp_path / expected.replace(" ", "_"))
        replace(create_mutator("command", {"command": command}), box=box).mutate(_request(work))
        line = (work / "target.py").read_text().splitlines()[-1]
        assert line.startswith(f"# {expected} "), line
        assert (line.endswith(os.environ["HOME"])) == box.unsafe, "only the unsafe box sees the real $HOME"


def test_an_agent_that_reports_its_cost_as_json_has_it_counted(tmp_path):
    """Claude Code with --output-format json ends with a result object holding its cost."""
    command = _agent(tmp_path, """
        import json, os
        target = os.environ["AUTOSWARM_TARGET"]
        open(target, "w").write(open(target).read().replace("X = 1.0", "X = 2.0"))
        print(json.dumps({"type": "result", "result": "Done.\\nDESCRIPTION: X to 2.0", "total_cost_usd": 0.0421,
                          "usage": {"input_tokens": 1200, "cache_read_input_tokens": 300, "output_tokens": 250}}))
    """)
    outcome = CommandMutator.from_options({"command": command}).mutate(_request(_workdir(tmp_path)))
    assert outcome.description == "X to 2.0"
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (1500, 250)
    assert outcome.usage.cost_usd == pytest.approx(0.0421)
