"""The worker's own secrets (worker/process_guard.py): the token file, and what a started worker
process hides of its tokens. A real process is started for each case: what /proc shows of it is
read from outside, as another process would."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autoswarm.worker.platforms import current_platform
from autoswarm.worker.process_guard import Guard, TokenFileError, guard_process, read_token_file

JOIN = "asj_join-token-for-the-guard-test-0001"
ADMIN = "asa_admin-token-for-the-guard-test-0002"
linux_proc = pytest.mark.skipif(not (current_platform().proc and current_platform().prctl),
                                reason="/proc and prctl are Linux's")


def test_a_token_file_is_read_stripped_from_a_file_or_standard_input(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {JOIN}\n")
    path.chmod(0o600)
    assert read_token_file(path) == JOIN
    assert read_token_file("-", stdin=io.StringIO(JOIN + "\n")) == JOIN


@pytest.mark.parametrize(("content", "mode", "message"), [
    (JOIN, 0o644, r"may be read by other users \(mode 0644\): `chmod 600"),
    ("\n\n", 0o600, "is empty"),
    (f"{JOIN} {ADMIN}", 0o600, "more than one word"),
    (b"\xff\xfe token", 0o600, "not UTF-8"),
    ("x" * 5000, 0o600, "over 4096 bytes"),
])
def test_a_token_file_that_cannot_be_used_is_refused_with_the_reason(tmp_path, content, mode, message):
    path = tmp_path / "token"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(mode)
    with pytest.raises(TokenFileError, match=message):
        read_token_file(path)


def test_a_missing_token_file_names_the_path(tmp_path):
    with pytest.raises(TokenFileError, match=f"--token-file {tmp_path / 'nope'}: No such file"):
        read_token_file(tmp_path / "nope")


GUARDED = textwrap.dedent("""\
    import json, os, subprocess, sys
    from autoswarm.worker.process_guard import guard_process
    guard = guard_process([sys.argv[2]])
    names = "import os; print(sorted(k for k in os.environ if 'AUTOSWARM' in k))"
    child = subprocess.run([sys.executable, "-c", names], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"dumpable": guard.dumpable, "hidden": guard.hidden, "scrubbed": guard.scrubbed,
                      "argv": sys.argv, "orig_argv": sys.orig_argv, "child": child,
                      "describe": guard.describe()}), flush=True)
    sys.stdin.read()  # stays alive until the test has looked at it from outside
    """)


@linux_proc
def test_a_guarded_process_hides_its_tokens_from_its_command_line_environment_and_children():
    env = {**os.environ, "AUTOSWARM_JOIN_TOKEN": JOIN, "AUTOSWARM_TOKEN": ADMIN, "KEEP_ME": "visible-value"}
    proc = subprocess.Popen([sys.executable, "-c", GUARDED, "--token", JOIN, f"--admin={ADMIN}"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        seen = json.loads(proc.stdout.readline())
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        # Root may read a non-dumpable process's environment: what it finds there is starred out.
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes() if os.geteuid() == 0 else b""
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert seen["dumpable"] is False and seen["describe"].startswith("worker process: not dumpable")
    assert set(seen["scrubbed"]) == {"AUTOSWARM_JOIN_TOKEN", "AUTOSWARM_TOKEN"}
    assert seen["child"] == "[]", "children of the worker inherit no token variable"
    for secret in (JOIN, ADMIN):
        assert secret.encode() not in cmdline and secret.encode() not in environ
        assert all(secret not in arg for arg in seen["argv"] + seen["orig_argv"])
    assert b"--token\0" + b"*" * len(JOIN) + b"\0" in cmdline and b"--admin=" + b"*" * len(ADMIN) in cmdline
    if os.geteuid() == 0:
        assert b"KEEP_ME=visible-value" in environ, "nothing else of the environment is touched"
        assert b"AUTOSWARM_JOIN_TOKEN=" + b"*" * len(JOIN) in environ
        assert seen["hidden"] == 4  # two on the command line, two in the environment


@linux_proc
def test_another_process_of_the_same_user_cannot_read_a_guarded_workers_environment(tmp_path):
    """As root, both processes run as uid 65534: root itself is let in by the kernel."""
    drop = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    python = "/usr/bin/python3" if os.geteuid() == 0 and Path("/usr/bin/python3").exists() else sys.executable
    guarded = ("import ctypes, sys; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) if sys.argv[1] == 'guard' else None; "
               "print('ready', flush=True); sys.stdin.read()")
    reader = ("import sys\ntry:\n    open(f'/proc/{sys.argv[1]}/environ', 'rb').read(); print('read')\n"
              "except PermissionError:\n    print('refused')")
    outcomes = {}
    for mode in ("guard", "plain"):
        try:
            target = subprocess.Popen([python, "-c", guarded, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, env={"PATH": "/usr/bin:/bin"}, cwd="/", **drop)
        except PermissionError:
            if os.environ.get("CI"):   # CI's interpreter is open to others: a refusal there is a broken install
                raise
            pytest.skip(f"{python} cannot be run as uid 65534 here (a Python under a private home)")
        try:
            assert target.stdout.readline().strip() == "ready"
            outcomes[mode] = subprocess.run([python, "-c", reader, str(target.pid)], capture_output=True, text=True,
                                            cwd="/", **drop).stdout.strip()
        finally:
            target.stdin.close()
            target.wait(10)
    assert outcomes == {"guard": "refused", "plain": "read"}, "the test itself can tell a readable process"


def test_without_prctl_or_proc_the_banner_says_what_is_not_protected():
    environ = {"AUTOSWARM_JOIN_TOKEN": JOIN, "OTHER": "x"}
    argv = ["autoswarm", "worker", "--token", JOIN]
    guard = guard_process([], current_platform().without("prctl", "proc"), environ=environ, argv=[argv])
    assert guard == Guard(system=current_platform().system, dumpable=None, hidden=0,
                          scrubbed=("AUTOSWARM_JOIN_TOKEN",), proc=False)
    assert environ == {"OTHER": "x"} and argv[-1] == "*" * len(JOIN)
    assert "cannot make the worker non-dumpable" in guard.describe() and "--token-file" in guard.describe()


def test_short_values_are_not_taken_for_tokens():
    argv = ["autoswarm", "worker", "--slots", "2", "--token", "abc"]
    guard_process(["2", "abc"], current_platform().without("prctl", "proc"), environ={}, argv=[argv])
    assert argv == ["autoswarm", "worker", "--slots", "2", "--token", "abc"]


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSWARM_")}
    return subprocess.run([sys.executable, "-m", "autoswarm", "worker", "--coordinator", "127.0.0.1:1", *args],
                          input=stdin, capture_output=True, text=True, env={**env, "COLUMNS": "250"}, timeout=60)


def test_the_worker_takes_the_token_once_and_refuses_a_token_file_others_may_read(tmp_path):
    path = tmp_path / "token"
    path.write_text(JOIN)
    path.chmod(0o600)
    both = _cli("--token", JOIN, "--token-file", str(path))
    assert both.returncode == 2 and "give the join token once" in both.stderr, both.stderr
    path.chmod(0o640)
    loose = _cli("--token-file", str(path))
    assert loose.returncode == 2 and f"chmod 600 {path}" in loose.stderr, loose.stderr
    empty = _cli("--token-file", "-")
    assert empty.returncode == 2 and "--token-file standard input is empty" in empty.stderr, empty.stderr
    assert JOIN not in both.stderr + loose.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_at_a_terminal_the_token_is_asked_for_without_echo():
    import pty
    pid, fd = pty.fork()
    if pid == 0:  # the child: standard input is the terminal
        os.execv(sys.executable, [sys.executable, "-c", "from autoswarm.worker.process_guard import read_token_file; "
                                  "print('got', read_token_file('-'))"])
    out = b""
    while b"join token: " not in out:
        out += os.read(fd, 1000)
    os.write(fd, JOIN.encode() + b"\n")
    while b"got" not in out or not out.endswith(b"\n"):
        try:
            out += os.read(fd, 1000)
        except OSError:  # the child exited and closed the terminal
            break
    os.waitpid(pid, 0)
    _, answer = out.split(b"join token: ", 1)
    assert answer.strip().splitlines() == [b"got " + JOIN.encode()], "the token typed is not echoed"


@linux_proc
def test_the_worker_says_when_evaluations_could_read_its_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(JOIN)
    path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSWARM_")}
    proc = subprocess.Popen([sys.executable, "-m", "autoswarm", "worker", "--coordinator", "127.0.0.1:1",
                             "--state-dir", str(tmp_path / "state"), "--sandbox", "none", "--token-file", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "COLUMNS": "250"})
    seen = []
    try:
        for line in proc.stdout:  # the banner comes before the first call to the coordinator
            seen.append(line)
            if "registered" in line or "unreachable" in line or "delete the file" in line:
                break
    finally:
        proc.kill()
        proc.wait(10)
    banner = "".join(seen)
    assert f"evaluations can read --token-file {path} (they run as this user without bubblewrap)" in banner, banner
    assert "worker process: not dumpable" in banner and JOIN not in banner
