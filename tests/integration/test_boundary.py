"""The worker boundary, with a real coordinator and a real bubblewrapped worker on loopback:
what a study (or an agent it steers) sends can neither read the volunteer's files nor see the
worker's tokens and keys.

- agents that replace the target with a link (to /etc/passwd, into $HOME, to another study
  file), a FIFO or a directory: `tampered`, and nothing of the link's destination is stored;
- a setup and an evaluation that print their environment, while the worker was started with
  every kind of token and key set: none of them is visible;
- an agent that tries to write the volunteer's $HOME and /tmp, read ~/.ssh and the worker's
  identity file: all refused, and the worker says at start what confines agents.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FAST_COORDINATOR
from swarm import CoordinatorProcess, WorkerProcess, db_rows as rows, needs, wait_for, write_study

pytestmark = [pytest.mark.integration, needs(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")]

HOME_SECRET = "volunteer-home-secret-7f3a"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY----- volunteer-ssh-key-91c2"
# Planted in the worker's environment: tokens, keys and credentials of every naming style.
PLANTED = {
    "AUTOSWARM_JOIN_TOKEN": "asj_planted-join-token-0001",
    "AUTOSWARM_TOKEN": "planted-autoswarm-token-0002",
    "AUTOSWARM_ADMIN_TOKEN": "asa_planted-admin-token-0003",
    "OPENAI_API_KEY": "sk-planted-openai-0004",
    "ANTHROPIC_API_KEY": "sk-ant-planted-0005",
    "GITHUB_TOKEN": "ghp_planted-github-0006",
    "HF_TOKEN": "hf_planted-huggingface-0007",
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-0008",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTED0009",
    "DATABASE_URL": "postgres://admin:planted-db-password-0010@db/prod",
    "NETRC_LIKE_PASSWORD": "planted-password-0011",
    "CUDA_CACHE_TOKEN": "planted-cuda-token-0012",
}

LINKING_AGENT = """\
import os, sys
counter = os.path.join(os.environ["HOME"], "linking-agent-runs")
runs = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(runs + 1))
os.remove("target.py")
how = ["passwd", "home", "study-file", "fifo", "directory"][runs % 5]
if how == "passwd":
    os.symlink("/etc/passwd", "target.py")
elif how == "home":
    os.symlink({home_secret!r}, "target.py")
elif how == "study-file":
    os.symlink("program.md", "target.py")
elif how == "fifo":
    os.mkfifo("target.py")
else:
    os.mkdir("target.py")
print("DESCRIPTION: replaced the target by a " + how)
"""

ESCAPING_AGENT = """\
import os
home, identity, tmp_marker = {home!r}, {identity!r}, {tmp_marker!r}
planted = {planted!r}
found = []
def attempt(what, action):
    try:
        action()
        found.append(what + "=LEAK")
    except OSError:
        found.append(what + "=blocked")
attempt("home-write", lambda: open(os.path.join(home, "agent-was-here.txt"), "w").write("pwned"))
attempt("ssh-read", lambda: open(os.path.join(home, ".ssh", "id_ed25519")).read())
attempt("identity-read", lambda: open(identity).read())
open(tmp_marker, "w").write("written in the box's private /tmp")
leaked = [name for name, value in os.environ.items() if value in planted]
found.append("secrets=" + (",".join(sorted(leaked)) or "none"))
found.append("own-home=" + str(os.environ["HOME"] != home))
text = open("target.py").read()
open("target.py", "w").write(text.replace("X = 1.0", "X = 2.0"))
print("DESCRIPTION: " + " ".join(found))
"""

ENV_DUMP = """\
import os, sys
lines = sorted(f"{name}={value}" for name, value in os.environ.items())
if sys.argv[1] == "setup":
    open(os.path.join(os.environ["AUTOSWARM_CACHE_DIR"], "setup-env.txt"), "w").write("\\n".join(lines))
else:
    print("SETUP-ENV-BEGIN")
    print(open(os.path.join(os.environ["AUTOSWARM_CACHE_DIR"], "setup-env.txt")).read())
    print("EVAL-ENV-BEGIN")
    print("\\n".join(lines))
    print("ENV-END")
    print("score: 1")
"""


@dataclass
class Boundary:
    coordinator: CoordinatorProcess
    worker: WorkerProcess
    home: Path
    tmp_marker: Path


KINDS = ("symbolic link", "FIFO", "directory")


def _every_kind_refused(db: Path) -> bool:
    tails = " ".join(t for (t,) in rows(db, "SELECT log_tail FROM results WHERE study='links' AND kind='explore'"))
    return len(rows(db, "SELECT 1 FROM results WHERE study='links' AND kind='explore'")) >= 5 \
        and all(f"left the target as a {kind} target.py" in tails for kind in KINDS)


def _command_study(directory: Path, name: str, agent: str) -> Path:
    study = write_study(directory, name=name, extra_toml=(
        '[mutator]\nkind = "command"\ncommand = "python agent.py"\ntimeout = 60\n'))
    (study / "agent.py").write_text(agent)
    return study


@pytest.fixture(scope="module")
def boundary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boundary]:
    root = tmp_path_factory.mktemp("boundary")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SSH_KEY)
    (home / "secret.txt").write_text(HOME_SECRET)
    tmp_marker = Path("/tmp") / f"autoswarm-agent-escape-{uuid.uuid4().hex}"
    coordinator = CoordinatorProcess(db=root / "swarm.db", log=root / "coordinator.log", args=FAST_COORDINATOR)
    state = root / "worker"
    worker = WorkerProcess(coordinator.address, state, "boundary",
                           ("--sandbox", "bwrap", "--mutator", "params,command"),
                           env={**os.environ, **PLANTED, "HOME": str(home)})
    try:
        coordinator.start()
        with coordinator.control() as control:
            control.add_study(_command_study(root / "links", "links", LINKING_AGENT.format(
                home_secret=str(home / "secret.txt"))))
            control.add_study(_command_study(root / "escape", "escape", ESCAPING_AGENT.format(
                home=str(home), identity=str(state.resolve() / "identity.json"), tmp_marker=str(tmp_marker),
                planted=sorted(PLANTED.values()))))
            env_study = write_study(root / "envdump", name="envdump", extra_toml=(
                'setup = "python dump_env.py setup"\nevaluate = "python dump_env.py eval"'))
            text = (env_study / "study.toml").read_text().replace('evaluate = "python target.py"\n', "")
            (env_study / "study.toml").write_text(text)
            (env_study / "dump_env.py").write_text(ENV_DUMP)
            control.add_study(env_study, max_evaluations=1)
        worker.start()
        wait_for(lambda: _every_kind_refused(coordinator.db)
                 and rows(coordinator.db, "SELECT 1 FROM results WHERE study='escape' AND kind='explore' "
                                          "AND status='ok'")
                 and rows(coordinator.db, "SELECT 1 FROM results WHERE study='envdump'"), 180,
                 what="five linking agents, the escaping agent and the environment dump")
        yield Boundary(coordinator, worker, home, tmp_marker)
    finally:
        worker.kill()
        coordinator.kill()
        tmp_marker.unlink(missing_ok=True)


def test_targets_replaced_by_links_fifos_or_directories_are_tampered_and_nothing_they_point_to_is_stored(boundary):
    db = boundary.coordinator.db
    results = rows(db, "SELECT status, description, log_tail FROM results WHERE study='links' AND kind='explore' "
                       "ORDER BY created")
    assert len(results) >= 5
    assert {status for status, _, _ in results} == {"tampered"}, results
    reasons = " | ".join(tail for _, _, tail in results)
    for kind in KINDS:
        assert f"left the target as a {kind} target.py" in reasons, reasons
    # Only the study's own target was ever stored as a version.
    versions = rows(db, "SELECT content FROM versions WHERE study='links'")
    assert [bytes(c) for (c,) in versions] == [(Path(boundary.home).parent / "links" / "target.py").read_bytes()]
    program = (Path(boundary.home).parent / "links" / "program.md").read_bytes()
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    for secret in (HOME_SECRET.encode(), b"root:x:0:0", Path("/etc/passwd").read_bytes()[:64]):
        assert secret not in stored, "no byte of a link's destination reaches the coordinator"
    assert all(program not in bytes(c) for (c,) in versions)
    assert boundary.worker.proc.poll() is None, "a FIFO target did not hang or kill the worker"


def test_setup_and_evaluation_see_no_token_key_or_credential(boundary):
    ((tail,),) = rows(boundary.coordinator.db, "SELECT log_tail FROM results WHERE study='envdump'")
    assert "SETUP-ENV-BEGIN" in tail and "EVAL-ENV-BEGIN" in tail and "ENV-END" in tail, tail
    assert "AUTOSWARM_TIME_BUDGET=1" in tail and "AUTOSWARM_CACHE_DIR=" in tail, "the worker's own variables arrive"
    for name, value in PLANTED.items():
        assert value not in tail and f"{name}=" not in tail, f"{name} reached a study command"
    assert f"HOME={boundary.home}" not in tail, "study commands get a home of their own"


def test_an_agent_cannot_write_home_or_tmp_nor_read_ssh_or_the_workers_identity(boundary):
    (description,) = rows(boundary.coordinator.db, "SELECT description FROM results WHERE study='escape' "
                                                   "AND kind='explore' AND status='ok' ORDER BY created")[0]
    assert description == ("home-write=blocked ssh-read=blocked identity-read=blocked secrets=none own-home=True"), \
        description
    assert not (boundary.home / "agent-was-here.txt").exists()
    assert not boundary.tmp_marker.exists(), "the agent's /tmp is private"
    log = boundary.worker.log
    assert "agents: bubblewrap with the network" in log, log[-3000:]

