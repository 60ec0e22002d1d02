"""The agent box: what an agent CLI may touch, see and keep, under bubblewrap and without it."""

from __future__ import annotations

import shutil
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from autoswarm.worker.agent_box import UNSAFE_FLAG, AgentBox, AgentBoxError, AgentSettings, agent_settings
from autoswarm.worker.mutators import create_mutator
from autoswarm.worker.mutators.base import MutationRequest
from autoswarm.worker.sandbox import configure
from swarm import needs, write_study

bwrap = needs(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")

# Reads its login, tries to change it, keeps a note in its home, edits the target, reports.
LOGIN_AGENT = """
    import os
    login = os.path.join(os.environ["HOME"], ".agent", "credentials.json")
    seen = open(login).read().strip()
    try:
        open(login, "w").write("overwritten")
        wrote = "login-writable"
    except OSError:
        wrote = "login-read-only"
    notes = os.path.join(os.environ["HOME"], "notes.txt")
    runs = len(open(notes).read().splitlines()) if os.path.exists(notes) else 0
    open(notes, "a").write("run\\n")
    open("target.py", "w").write(open("target.py").read().replace("X = 1.0", "X = 1.5"))
    print(f"DESCRIPTION: {seen} {wrote} earlier-runs={runs}")
"""


def _agent_study(tmp_path: Path, name: str, body: str) -> Path:
    work = write_study(tmp_path / name)
    (work / "agent.py").write_text(textwrap.dedent(body))
    return work


def _mutate(work: Path, box: AgentBox) -> str:
    mutator = replace(create_mutator("command", {"command": "python agent.py", "timeout": 60}), box=box)
    return mutator.mutate(MutationRequest(workdir=work, target="target.py", program="", memory="", seed=1,
                                          timeout_seconds=60, cancel=threading.Event())).description


@bwrap
def test_a_login_is_bound_read_only_into_the_agents_own_home_which_persists(tmp_path, monkeypatch):
    real_home = tmp_path / "volunteer"
    (real_home / ".agent").mkdir(parents=True)
    (real_home / ".agent" / "credentials.json").write_text("logged-in-as-alice")
    monkeypatch.setenv("HOME", str(real_home))
    settings = agent_settings(None, [real_home / ".agent"], [], False)
    box = settings.box(configure("bwrap"), tmp_path / "state")
    assert box.isolated and box.home == (tmp_path / "state" / "agent-home").resolve()
    first = _mutate(_agent_study(tmp_path, "one", LOGIN_AGENT), box)
    second = _mutate(_agent_study(tmp_path, "two", LOGIN_AGENT), box)
    assert first == "logged-in-as-alice login-read-only earlier-runs=0"
    assert second == "logged-in-as-alice login-read-only earlier-runs=1", "the agent's home persists between edits"
    assert (real_home / ".agent" / "credentials.json").read_text() == "logged-in-as-alice"
    assert not (real_home / "notes.txt").exists(), "the agent wrote its own home, not the volunteer's"


def test_flags_are_checked_and_named():
    with pytest.raises(AgentBoxError, match="--agent-login: /nonexistent/.claude does not exist"):
        agent_settings(None, [Path("/nonexistent/.claude")], [], False)
    with pytest.raises(AgentBoxError, match="--agent-env: 'sk-ant-123' is not a variable name"):
        agent_settings(None, [], ["sk-ant-123"], False)
    assert agent_settings(None, [], ["ANTHROPIC_API_KEY"], False).env_names == ("ANTHROPIC_API_KEY",)


def test_the_banner_says_what_confines_agents(tmp_path):
    unboxed = AgentSettings(env_names=("ANTHROPIC_API_KEY",)).box(configure("none"), tmp_path)
    assert unboxed.describe().startswith("agents: NOT isolated (--sandbox none)")
    assert "ANTHROPIC_API_KEY (--agent-env)" in unboxed.describe()
    unsafe = AgentSettings(unsafe=True).box(configure("none"), tmp_path).describe()
    assert unsafe.startswith(f"agents: UNSAFE ({UNSAFE_FLAG})") and "whole environment" in unsafe


@bwrap
def test_the_bubblewrap_banner_names_the_writable_places(tmp_path):
    line = AgentSettings().box(configure("bwrap"), tmp_path).describe()
    assert line.startswith("agents: bubblewrap with the network") and "(no --agent-env)" in line
    assert str((tmp_path / "agent-home").resolve()) in line


def test_without_bubblewrap_the_login_is_linked_into_the_agents_home(tmp_path, monkeypatch):
    real_home = tmp_path / "volunteer"
    (real_home / ".agent").mkdir(parents=True)
    (real_home / ".agent" / "credentials.json").write_text("logged-in-as-bob")
    monkeypatch.setenv("HOME", str(real_home))
    box = agent_settings(None, [real_home / ".agent"], [], False).box(configure("none"), tmp_path / "state")
    assert not box.isolated
    description = _mutate(_agent_study(tmp_path, "one", LOGIN_AGENT), box)
    assert description.startswith("logged-in-as-bob "), "the CLI finds its login under its own $HOME"
    assert (box.home / ".agent").is_symlink()
