"""Retrying as volunteers do: exponential backoff with full jitter, from the start after a
success, in the worker (`Connection.retry`) and in the swarm-size benchmark's simulated workers."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from pathlib import Path

import grpc
import pytest

from autoswarm.v1 import worker_pb2
from autoswarm.worker.connection import Attempts, Backoff, Connection

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import swarm_size  # noqa: E402


def test_the_wait_grows_with_each_failure_in_a_row_up_to_its_cap_and_starts_over_after_a_success():
    rng = random.Random(7)
    attempts = Attempts(Backoff(initial=0.5, maximum=8.0))
    bounds = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    waits = [attempts.failed(rng) for _ in bounds]
    assert all(0.0 <= w <= bound for w, bound in zip(waits, bounds))
    assert max(waits) > 2.0, "later failures wait longer (full jitter: anywhere up to the bound)"
    attempts.succeeded()
    assert all(Attempts(Backoff(initial=0.5)).failed(rng) <= 0.5 for _ in range(50))
    assert attempts.failed(rng) <= 0.5, "after a success the first retry is quick again"


class _Unavailable(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _RecordedStop(threading.Event):
    """A stop event that never stops and records the waits asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return False


def test_the_worker_retries_a_transient_failure_with_growing_waits_and_not_a_refusal():
    connection = Connection("127.0.0.1:1")
    try:
        stop = _RecordedStop()
        failures = iter([_Unavailable()] * 4)

        def call() -> str:
            for failure in failures:
                raise failure
            return "answer"

        assert connection.retry(call, stop, "lease") == "answer"
        assert len(stop.waits) == 4 and all(w <= 0.5 * 2 ** k for k, w in enumerate(stop.waits))
        with pytest.raises(_Unavailable):
            connection.retry(lambda: (_ for _ in ()).throw(_Unavailable(grpc.StatusCode.NOT_FOUND)), stop, "lease")
        assert len(stop.waits) == 4, "a refusal is not retried"
    finally:
        connection.close()


def test_a_simulated_worker_keeps_what_register_told_it():
    told = worker_pb2.RegisterResponse(worker_id="w", heartbeat_interval_seconds=7.0, lease_wait_seconds=120.0)
    worker = swarm_size.SimulatedWorker(None, "w", random.Random(1), swarm_size.Tally(), 1.0, registered=told)
    assert (worker.interval, worker.wait) == (7.0, 120.0)
    plain = swarm_size.SimulatedWorker(None, "w", random.Random(1), swarm_size.Tally(), 1.0)
    assert (plain.interval, plain.wait) == (5.0, 20.0), "the real worker's defaults when nothing was told"


class _Done(Exception):
    pass


class _FailingStub:
    """Lease fails `failures` times, then ends the test."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def Lease(self, request, timeout):
        self.calls += 1
        failing = self.calls <= self.failures

        async def answer():
            if failing:
                raise grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                           details="deadline passed")
            raise _Done
        return answer()


def test_a_simulated_worker_backs_off_its_failed_lease_calls_as_the_real_worker_does(monkeypatch):
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    stub = _FailingStub(failures=6)
    worker = swarm_size.SimulatedWorker(stub, "w", random.Random(3), swarm_size.Tally(), 1.0)
    with pytest.raises(_Done):
        asyncio.run(worker.run(start_after=0.0))
    backoffs = slept[1:]   # the first is the worker's start
    assert stub.calls == 7 and len(backoffs) == 6
    assert all(w <= 0.5 * 2 ** k for k, w in enumerate(backoffs)), "exponential, with full jitter"
    assert max(backoffs[3:]) > 2.0, "failures in a row spread out, past the old fixed 0.5-2 s each"
