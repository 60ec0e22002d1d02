"""Test helpers: real coordinator and worker processes on loopback, and tiny studies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from autoswarm.control import ControlClient
from autoswarm.v1 import control_pb2, worker_pb2_grpc

T = TypeVar("T")


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """Skips a test whose system part (bubblewrap, prometheus, torch, ray) is missing on a
    developer's machine. In CI (CI set) it never skips: the test runs and fails, because
    scripts/test installs every such part and a skip there would hide a broken install."""
    return pytest.mark.skipif(not available and not os.environ.get("CI"), reason=reason)


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> T:
    """Polls until `predicate()` is truthy; fails the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def db_rows(db: Path, sql: str, *args: object) -> list[tuple]:
    """Rows of a query on a coordinator's database, opened read-only beside the running coordinator."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


async def loop_turns_while(awaitable: Awaitable[T]) -> tuple[T, int]:
    """Awaits `awaitable` while a task counts the event loop's turns: returns its result and the
    turns it let other tasks have (0 for work that never yields the loop)."""
    turns = 0

    async def count() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)
    counter = asyncio.create_task(count())
    await asyncio.sleep(0)
    before = turns
    try:
        result = await awaitable
    finally:
        counter.cancel()
    return result, turns - before


@dataclass
class Clock:
    """A clock the test moves by hand (`clock.now += 5`): what the engine and slots are given as `clock`."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_study(directory: Path, *, name: str = "tiny", direction: str = "maximize", sleep: float = 0.0,
                timeout: float = 10.0, body: str | None = None, constants: str = "X = 1.0\nY = 3\n",
                acceptance: str = 'compare = "absolute"', extra_toml: str = "") -> Path:
    """A study whose score peaks at X=2.5, Y=7; each evaluation sleeps `sleep` seconds first.

    `acceptance` is the body of the [acceptance] table; `extra_toml` goes at the top level.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study.toml").write_text(textwrap.dedent(f"""\
        name = "{name}"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "{direction}"
        time_budget = 1
        timeout = {timeout}
        {extra_toml}
        [acceptance]
        {acceptance}
        """))
    (directory / "program.md").write_text("Maximize score by tuning the constants.\n")
    default_body = (
        "import time\n"
        f"time.sleep({sleep})\n"
        "print(f\"score: {-(X - 2.5) ** 2 - (Y - 7) ** 2}\")\n"
    )
    (directory / "target.py").write_text(constants + (body if body is not None else default_body))
    return directory


@dataclass
class CoordinatorProcess:
    """A coordinator subprocess on a fixed loopback port, restartable on the same db."""

    db: Path
    log: Path
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    metrics_port: int = 0  # 0: no metrics endpoint, so parallel coordinators never fight over a port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> CoordinatorProcess:
        ready = self.db.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autoswarm", "coordinator", "--db", str(self.db), "--listen", self.address,
                 "--ready-file", str(ready), "--metrics-port", str(self.metrics_port),
                 *(() if "--auth" in self.args else ("--auth", "none")), *self.args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: ready.exists() or self.proc.poll() is not None, 30, what="coordinator start")
        if self.proc.poll() is not None:
            raise AssertionError(f"coordinator exited:\n{self.log.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a crash or a power cut of the process."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc, 10)

    def control(self) -> ControlClient:
        return ControlClient(self.address, timeout=10)

    def worker_stub(self) -> tuple[grpc.Channel, worker_pb2_grpc.WorkerServiceStub]:
        channel = grpc.insecure_channel(self.address)
        return channel, worker_pb2_grpc.WorkerServiceStub(channel)

    def status(self) -> control_pb2.StatusResponse:
        with self.control() as c:
            return c.status()

    def study(self, name: str) -> control_pb2.StudyStatus:
        return next(s for s in self.status().studies if s.name == name)


@dataclass
class WorkerProcess:
    coordinator: str
    state_dir: Path
    name: str
    args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    env: dict[str, str] | None = None  # None: this process's environment

    def start(self) -> WorkerProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "worker.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autoswarm", "worker", "--coordinator", self.coordinator,
                 "--name", self.name, "--state-dir", str(self.state_dir), *self.args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        return self

    @property
    def log(self) -> str:
        return (self.state_dir / "worker.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (its evaluations run in their own groups)."""
        if self.proc and self.proc.poll() is None:
            children = _descendants(self.proc.pid)
            os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()

    def crash(self) -> None:
        """SIGKILL the worker process alone: what it started must clean up after itself."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def stop_process(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL to its whole process group (started with start_new_session) after `timeout`."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def ready_port(path: Path) -> int:
    return int(json.loads(path.read_text())["port"])


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class Listener:
    """A loopback TCP listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
