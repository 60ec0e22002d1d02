"""Running a command with a hard timeout that leaves no process behind."""

from __future__ import annotations

import os
import resource
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoswarm.worker.runner import resolve_command, run_command

PY = sys.executable


def _script(tmp_path: Path, body: str, name: str = "job.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [PY, str(path)]


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, unreaped by its new parent) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone_within(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


# A child that starts a grandchild (`sleep`), records its pid, then does `then`.
SPAWN_GRANDCHILD = """
    import os, subprocess, sys, time
    grandchild = subprocess.Popen(["sleep", "60"])
    with open("pids.tmp", "w") as f:
        f.write(f"{{os.getpid()}} {{grandchild.pid}}")
    os.rename("pids.tmp", "pids")
    print("spawned", flush=True)
    {then}
"""


def _pids(tmp_path: Path) -> tuple[int, int]:
    main, grandchild = (tmp_path / "pids").read_text().split()
    return int(main), int(grandchild)


def test_resolve_command_uses_the_workers_python() -> None:
    assert resolve_command("python train.py --lr 0.1") == [sys.executable, "train.py", "--lr", "0.1"]
    assert resolve_command("python3 -c 'print(1)'", python="/opt/py") == ["/opt/py", "-c", "print(1)"]
    # Only a bare `python`/`python3` is replaced.
    assert resolve_command("/usr/bin/python x.py") == ["/usr/bin/python", "x.py"]
    assert resolve_command("pythonista run") == ["pythonista", "run"]
    assert resolve_command("bash -c 'python x.py'") == ["bash", "-c", "python x.py"]


@pytest.mark.parametrize("command", ["", "   ", "python 'unclosed"])
def test_resolve_command_rejects_empty_or_unparsable(command: str) -> None:
    with pytest.raises(ValueError):
        resolve_command(command)


def test_merged_output_goes_to_log_and_tail(tmp_path: Path) -> None:
    argv = _script(tmp_path, """
        import sys
        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        sys.exit(3)
    """)
    log = tmp_path / "logs" / "eval.log"
    outcome = run_command(argv, cwd=tmp_path, env=os.environ, timeout_seconds=30, log_path=log)
    assert outcome.returncode == 3
    assert not outcome.timed_out and not outcome.cancelled
    assert outcome.log_path == log
    assert "to stdout" in log.read_text() and "to stderr" in log.read_text()
    assert "to stdout" in outcome.output_tail and "to stderr" in outcome.output_tail
    assert outcome.duration_seconds > 0


def test_string_command_with_python_runs_in_cwd_with_given_env(tmp_path: Path) -> None:
    (tmp_path / "show.py").write_text(
        "import os, sys\nprint(os.getcwd()); print(os.environ.get('AUTOSWARM_TIME_BUDGET'));"
        "print(os.environ.get('HOME')); print(sys.executable)\n"
    )
    outcome = run_command(
        "python show.py",
        cwd=tmp_path,
        env={"AUTOSWARM_TIME_BUDGET": "5", "PATH": os.environ.get("PATH", "")},
        timeout_seconds=30,
        log_path=tmp_path / "log",
    )
    assert outcome.returncode == 0
    lines = outcome.output_tail.splitlines()
    assert Path(lines[0]).resolve() == tmp_path.resolve()
    assert lines[1] == "5"
    assert lines[2] == "None"  # the environment is exactly what was given
    assert lines[3] == sys.executable


def test_chatty_process_does_not_block_and_tail_is_the_end(tmp_path: Path) -> None:
    argv = _script(tmp_path, """
        import sys
        chunk = "x" * 1023 + "\\n"
        for _ in range(20 * 1024):
            sys.stdout.write(chunk)
        sys.stdout.write("THE END")
    """)
    log = tmp_path / "log"
    outcome = run_command(argv, cwd=tmp_path, env=os.environ, timeout_seconds=60, log_path=log, tail_chars=100)
    assert outcome.returncode == 0
    assert log.stat().st_size == 20 * 1024 * 1024 + len("THE END")
    assert len(outcome.output_tail) == 100
    assert outcome.output_tail.endswith("THE END")


def test_tail_is_decoded_utf8_with_replacement(tmp_path: Path) -> None:
    argv = _script(tmp_path, """
        import sys
        sys.stdout.buffer.write(b"bad \\xff byte\\n" + "€".encode() * 5000)
    """)
    env = os.environ
    outcome = run_command(argv, cwd=tmp_path, env=env, timeout_seconds=30, log_path=tmp_path / "log", tail_chars=7)
    # The seek lands inside a 3-byte "€"; that half character must not show up.
    assert outcome.output_tail == "€" * 7
    whole = run_command(argv, cwd=tmp_path, env=env, timeout_seconds=30, log_path=tmp_path / "l2", tail_chars=100_000)
    assert "bad \ufffd byte" in whole.output_tail


def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    argv = _script(tmp_path, SPAWN_GRANDCHILD.format(then="time.sleep(60)"))
    outcome = run_command(argv, cwd=tmp_path, env=os.environ, timeout_seconds=1.5, log_path=tmp_path / "log")
    assert outcome.timed_out
    assert not outcome.cancelled
    assert outcome.returncode is None
    assert outcome.duration_seconds < 30  # upper bound: it did not wait for the sleep
    assert "spawned" in outcome.output_tail
    assert "timed out" in outcome.output_tail
    main, grandchild = _pids(tmp_path)
    assert _gone_within(main)
    assert _gone_within(grandchild), "the grandchild survived the timeout"


def test_process_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    argv = _script(tmp_path, """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(60)
    """)
    outcome = run_command(
        argv, cwd=tmp_path, env=os.environ, timeout_seconds=1.0, log_path=tmp_path / "log", kill_grace_seconds=0.5
    )
    assert outcome.timed_out
    assert outcome.returncode is None
    assert outcome.duration_seconds < 30


def test_sigterm_gives_the_command_a_chance_to_clean_up(tmp_path: Path) -> None:
    argv = _script(tmp_path, """
        import signal, sys, time
        def stop(signum, frame):
            print("cleaned up", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
    """)
    outcome = run_command(argv, cwd=tmp_path, env=os.environ, timeout_seconds=1.0, log_path=tmp_path / "log")
    assert outcome.timed_out
    assert "cleaned up" in outcome.output_tail


def test_cancel_event_stops_the_command(tmp_path: Path) -> None:
    argv = _script(tmp_path, SPAWN_GRANDCHILD.format(then="time.sleep(60)"))
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        outcome = run_command(
            argv, cwd=tmp_path, env=os.environ, timeout_seconds=60, log_path=tmp_path / "log", cancel=cancel
        )
    finally:
        timer.cancel()
    assert outcome.cancelled
    assert not outcome.timed_out
    assert outcome.returncode is None
    assert outcome.duration_seconds < 30
    assert "cancelled" in outcome.output_tail
    if (tmp_path / "pids").exists():  # cancel may land before the child got that far
        main, grandchild = _pids(tmp_path)
        assert _gone_within(main) and _gone_within(grandchild)


def test_cancel_set_before_start_stops_at_once(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    outcome = run_command(
        [PY, "-c", "import time; time.sleep(60)"],
        cwd=tmp_path, env=os.environ, timeout_seconds=60, log_path=tmp_path / "log", cancel=cancel,
    )
    assert outcome.cancelled and outcome.returncode is None
    assert outcome.duration_seconds < 30


def test_background_grandchild_is_killed_when_the_command_exits(tmp_path: Path) -> None:
    argv = _script(tmp_path, SPAWN_GRANDCHILD.format(then="sys.exit(0)"))
    outcome = run_command(argv, cwd=tmp_path, env=os.environ, timeout_seconds=30, log_path=tmp_path / "log")
    assert outcome.returncode == 0
    assert not outcome.timed_out
    _, grandchild = _pids(tmp_path)
    assert _gone_within(grandchild), "a backgrounded grandchild leaked"


def test_signal_from_elsewhere_shows_as_negative_returncode(tmp_path: Path) -> None:
    outcome = run_command(
        [PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        cwd=tmp_path, env=os.environ, timeout_seconds=30, log_path=tmp_path / "log",
    )
    assert outcome.returncode == -signal.SIGKILL
    assert not outcome.timed_out and not outcome.cancelled


def test_missing_program_is_127_not_an_exception(tmp_path: Path) -> None:
    outcome = run_command(
        "definitely-not-a-program-xyz --flag",
        cwd=tmp_path, env=os.environ, timeout_seconds=5, log_path=tmp_path / "log",
    )
    assert outcome.returncode == 127
    assert "definitely-not-a-program-xyz" in outcome.output_tail
    assert "definitely-not-a-program-xyz" in (tmp_path / "log").read_text()


def test_missing_working_directory_is_127(tmp_path: Path) -> None:
    outcome = run_command(
        [PY, "-c", "pass"], cwd=tmp_path / "nowhere", env=os.environ, timeout_seconds=5, log_path=tmp_path / "log"
    )
    assert outcome.returncode == 127
    assert "nowhere" in outcome.output_tail


def test_non_executable_file_is_126(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    # Linux refuses to exec a file with no x bit at all, even for root (CI runs as root).
    outcome = run_command([str(script)], cwd=tmp_path, env=os.environ, timeout_seconds=5, log_path=tmp_path / "log")
    assert outcome.returncode == 126
    assert "run.sh" in outcome.output_tail


def test_preexec_hook_runs_in_the_child(tmp_path: Path) -> None:
    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    outcome = run_command(
        [PY, "-c", "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"],
        cwd=tmp_path, env=os.environ, timeout_seconds=30, log_path=tmp_path / "log", preexec=limit_open_files,
    )
    assert outcome.returncode == 0
    assert outcome.output_tail.strip() == "64"
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before  # the worker itself is untouched


def test_non_positive_timeout_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        run_command([PY, "-c", "pass"], cwd=tmp_path, env=os.environ, timeout_seconds=0, log_path=tmp_path / "log")
