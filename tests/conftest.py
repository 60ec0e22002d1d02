"""Shared fixtures: real coordinator and worker processes, stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from swarm import CoordinatorProcess, WorkerProcess

# Hypothesis's per-example deadline is a limit on wall-clock time: on a loaded 2-core machine it
# failed property tests for being slow (258 ms against 200 ms), and no test here asserts on speed.
settings.register_profile("autoswarm", deadline=None)
settings.load_profile("autoswarm")

# Short leases and heartbeats so that expiry and reconnection happen within a test's time.
FAST_COORDINATOR = ("--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5")


@pytest.fixture
def start_coordinator(tmp_path: Path) -> Iterator[Callable[..., CoordinatorProcess]]:
    started: list[CoordinatorProcess] = []

    def start(*args: str, db: Path | None = None) -> CoordinatorProcess:
        proc = CoordinatorProcess(db=db or tmp_path / "swarm.db", log=tmp_path / "coordinator.log",
                                  args=args or FAST_COORDINATOR)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(coordinator: str, name: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        proc = WorkerProcess(coordinator, tmp_path / "workers" / name, name, args, env=env)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()
