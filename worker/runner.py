"""Run one command (setup, evaluation, agent CLI) with a hard timeout that kills its whole tree.

The command runs without a shell in its own session, so its process group holds it and every
descendant that does not deliberately leave (setsid). Output goes straight to a log file rather
than to pipes held in memory, so a chatty process can never block on a full pipe.
"""

from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoswarm.worker.platforms import Platform, current_platform

# Shell conventions, so a user reading a result recognises them.
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

_POLL_MAX_SECONDS = 0.1  # how often the cancel event and the deadline are checked
_REAP_TIMEOUT_SECONDS = 5.0  # after SIGKILL; a process stuck in the kernel is not waited on forever


@dataclass(frozen=True)
class CommandOutcome:
    """How a command ended.

    `returncode` is None when we stopped it (timeout or cancel); negative -N when something
    else killed it with signal N (e.g. the OOM killer: -9); otherwise its exit status.
    """

    returncode: int | None
    timed_out: bool
    cancelled: bool
    duration_seconds: float
    output_tail: str
    log_path: Path


def resolve_command(command: str, python: str = sys.executable) -> list[str]:
    """Split a study command line into argv; a leading `python`/`python3` is the worker's own.

    Raises ValueError for an empty command or unbalanced quotes.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot parse command {command!r}: {exc}") from exc
    if not argv:
        raise ValueError("empty command: expected a program and its arguments, e.g. 'python train.py'")
    if argv[0] in ("python", "python3"):
        argv[0] = python
    return argv


def run_command(
    command: str | Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_seconds: float,
    log_path: Path,
    tail_chars: int = 4000,
    cancel: threading.Event | None = None,
    kill_grace_seconds: float = 2.0,
    preexec: Callable[[], None] | None = None,
    stdin_path: Path | None = None,
    platform: Platform | None = None,
) -> CommandOutcome:
    """Run `command` to completion, timeout or cancellation; never leave a process behind.

    A string is split with `resolve_command`; a sequence is used as argv as is. stdout and
    stderr are merged into `log_path` (created, parents too; overwritten). `env` is the whole
    environment of the command. At the timeout, or when `cancel` is set, the process group gets
    SIGTERM and, `kill_grace_seconds` later, SIGKILL. When the command exits by itself, whatever
    it left running in its group is killed. A command that cannot be started returns 127 (126
    when not executable) with the reason in the log and `output_tail`. `preexec` runs in the
    child before exec (a hook for rlimits); it must be async-signal-safe in spirit: no locks.
    `stdin_path`, when given, is the command's stdin (an agent CLI's prompt); else /dev/null.
    `platform` says which of the system's ways to watch a child exist (default: this machine's).
    """
    argv = resolve_command(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("empty command: expected a program and its arguments")
    if not timeout_seconds > 0:
        raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
    log_path.parent.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    with open(log_path, "wb") as log, (open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb")) as stdin:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            code = EXIT_CANNOT_EXECUTE if isinstance(exc, PermissionError) else EXIT_NOT_FOUND
            log.write(f"[autoswarm] cannot start {argv[0]!r} in {cwd}: {exc}\n".encode())
            log.flush()
            return CommandOutcome(
                returncode=code,
                timed_out=False,
                cancelled=False,
                duration_seconds=time.monotonic() - start,
                output_tail=_read_tail(log_path, tail_chars),
                log_path=log_path,
            )

    timed_out = cancelled = False
    watch = ExitWatch(proc, platform or current_platform())
    try:
        deadline = start + timeout_seconds
        while not watch.exited():
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            watch.wait(min(_POLL_MAX_SECONDS, remaining))
        if timed_out or cancelled:
            _signal_group(proc.pid, signal.SIGTERM)
            grace_end = time.monotonic() + kill_grace_seconds
            while not watch.exited() and time.monotonic() < grace_end:
                time.sleep(0.02)
    finally:
        watch.close()
        # With waitid the main process is exited but not yet reaped here (or we are unwinding),
        # so its pid still names the group: SIGKILL reaches every straggler, and cannot hit a
        # reused pid. Without waitid (macOS before Python 3.13) it was reaped already; its group
        # id stays reserved while stragglers are in the group, which is when this matters.
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=_REAP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pass  # stuck in uninterruptible sleep; it dies when the kernel lets it
    duration = time.monotonic() - start

    if timed_out or cancelled:
        reason = f"timed out after {timeout_seconds:g} s" if timed_out else "cancelled"
        with open(log_path, "ab") as log:
            log.write(f"\n[autoswarm] {reason}: process group terminated\n".encode())
    return CommandOutcome(
        returncode=None if (timed_out or cancelled) else proc.returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        duration_seconds=duration,
        output_tail=_read_tail(log_path, tail_chars),
        log_path=log_path,
    )


class ExitWatch:
    """Notices a child's exit as soon as the platform allows, without reaping it where it can.

    Exit notice: a pidfd (Linux) or a kqueue process filter (macOS) wakes `wait` the moment the
    child exits, so a short evaluation is noticed at once; elsewhere `wait` sleeps a growing
    interval. Exit check: `waitid(WNOWAIT)` looks without reaping, which keeps the pid (and so
    the process group id) reserved until the group is killed; without it, `Popen.poll` reaps.
    """

    def __init__(self, proc: subprocess.Popen, platform: Platform) -> None:
        self._proc = proc
        self._platform = platform
        self._poller: select.poll | None = None
        self._kqueue: object | None = None
        self._fd = -1
        self._sleep = 0.005
        self._notified = False  # the kqueue reported the exit: the child is a zombie now
        if platform.pidfd:
            try:
                self._fd = os.pidfd_open(proc.pid)
                self._poller = select.poll()
                self._poller.register(self._fd, select.POLLIN)
            except (AttributeError, OSError):
                self._poller = None
        elif platform.kqueue:
            self._kqueue = _process_kqueue(proc.pid)

    @property
    def mechanism(self) -> str:
        """How exits are noticed here: "pidfd", "kqueue" or "polling" (for tests and logs)."""
        return "pidfd" if self._poller is not None else "kqueue" if self._kqueue is not None else "polling"

    def exited(self) -> bool:
        """Whether the child has exited (reaping it only where waitid is missing)."""
        if self._platform.waitid:
            return _exited(self._proc.pid)
        return self._notified or self._proc.poll() is not None

    def wait(self, timeout: float) -> None:
        """Returns when the child exits or `timeout` seconds pass."""
        if self._poller is not None:
            self._poller.poll(max(0, int(timeout * 1000)))
            return
        if self._kqueue is not None:
            try:
                if self._kqueue.control(None, 1, max(0.0, timeout)):  # type: ignore[attr-defined]
                    self._notified = True
                return
            except OSError:
                self._close_kqueue()
        time.sleep(min(self._sleep, timeout))
        self._sleep = min(self._sleep * 2, _POLL_MAX_SECONDS)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._close_kqueue()

    def _close_kqueue(self) -> None:
        if self._kqueue is not None:
            self._kqueue.close()  # type: ignore[attr-defined]
            self._kqueue = None


def _process_kqueue(pid: int) -> object | None:
    """A kqueue that becomes readable when `pid` exits (macOS, BSD); None where that fails."""
    try:
        queue = select.kqueue()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    try:
        event = select.kevent(pid, filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined]
                              flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,  # type: ignore[attr-defined]
                              fflags=select.KQ_NOTE_EXIT)  # type: ignore[attr-defined]
        queue.control([event], 0, 0)
    except (AttributeError, OSError):  # ESRCH: it exited before we looked; polling finds that
        queue.close()
        return None
    return queue


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (WNOWAIT keeps its pid reserved)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped
    return info is not None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # group already empty (PermissionError: macOS reports a zombie-only group so)


def _read_tail(path: Path, chars: int) -> str:
    """The last `chars` characters of a UTF-8 log, undecodable bytes replaced."""
    if chars <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4 * chars))  # a UTF-8 character is at most 4 bytes
            data = f.read()
    except OSError:
        return ""
    # A character cut in half by the seek decodes as U+FFFD at the very start; reading 4 bytes
    # per wanted character keeps it out of the last `chars`.
    return data.decode("utf-8", errors="replace")[-chars:]
