"""Reliability under faults and load: coordinator SIGKILLs mid-study, and a soak of many workers."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from autoswarm.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from swarm import wait_for, write_study

pytestmark = pytest.mark.integration

# benchmarks/chaos.py runs the same test with many more kills.
CHAOS_KILLS = int(os.environ.get("AUTOSWARM_CHAOS_KILLS", "10"))


def _rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def test_chaos_coordinator_killed_ten_times_loses_nothing_acknowledged(tmp_path, start_coordinator, start_worker):
    """SIGKILL the coordinator at random moments of a running study and restart it on the same db."""
    study = write_study(tmp_path / "study", sleep=0.2)
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=max(60, 6 * CHAOS_KILLS))
    workers = [start_worker(coordinator.address, name) for name in ("alpha", "beta")]
    rng = random.Random(20261129)
    metrics_seen: list[float] = []
    for _ in range(CHAOS_KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        coordinator.kill()
        metrics_seen.extend(m for (m,) in _rows(coordinator.db, "SELECT metric FROM champions WHERE metric IS NOT NULL "
                                                                "ORDER BY seq"))
        coordinator.start()
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 120 + CHAOS_KILLS,
                      what="study to finish after the chaos")
    for w in workers:
        w.stop()

    acknowledged = Counter(lease for w in workers for lease in re.findall(r"reported (l-[0-9a-f]+):", w.log))
    stored = Counter(lease for (lease,) in _rows(coordinator.db, "SELECT id FROM results"))
    assert acknowledged, "workers reported results"
    assert all(n == 1 for n in acknowledged.values()), "a worker is told 'recorded' once per result"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"acknowledged but not in the db: {sorted(missing)}"
    assert all(n == 1 for n in stored.values())
    chain = [m for (m,) in _rows(coordinator.db, "SELECT metric FROM champions ORDER BY seq")]
    assert all(b > a for a, b in zip(chain, chain[1:])), f"the champion chain only improves: {chain}"
    assert set(metrics_seen) <= set(chain), "no champion seen before a kill was lost"
    assert _rows(coordinator.db, "SELECT COUNT(*) FROM leases WHERE state='active'") == [(0,)], \
        "every lease is resolved or expired"
    assert status.evaluations >= max(60, 6 * CHAOS_KILLS)
    assert all("registered as" in w.log for w in workers)
    assert all(w.proc.returncode == 0 for w in workers), "workers carried on by themselves and stopped cleanly"


async def _soak(address: str, workers: int, seconds: float) -> tuple[int, list[str]]:
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    stubs = [worker_pb2_grpc.WorkerServiceStub(c) for c in channels]
    errors: list[str] = []
    cycles = 0
    stop = time.monotonic() + seconds

    async def one(i: int) -> None:
        nonlocal cycles
        stub, rng = stubs[i % len(stubs)], random.Random(i)
        worker_id = (await stub.Register(worker_pb2.RegisterRequest(
            name=f"soak-{i}", slots=1, mutators=["params"],
            hardware=common_pb2.Hardware(cpu_model=f"Soak {i % 3}", cpu_cores=2)))).worker_id
        while time.monotonic() < stop:
            try:
                response = await stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=0.5))
                if not response.has_task:
                    continue
                task = response.task
                await stub.Heartbeat(worker_pb2.HeartbeatRequest(worker_id=worker_id, lease_ids=[task.lease_id],
                                                                 state="working"))
                content = (task.parent.content or task.candidate.content) + f"# {rng.random()}\n".encode()
                await stub.Report(worker_pb2.ReportRequest(worker_id=worker_id, lease_id=task.lease_id,
                                                           result=worker_pb2.Result(
                                                               status=common_pb2.RESULT_STATUS_OK, has_metric=True,
                                                               metric=rng.random(), description="soak",
                                                               candidate=content if task.kind == 1 else b"")))
                cycles += 1
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
            await asyncio.sleep(rng.uniform(0, 0.05))

    await asyncio.gather(*(one(i) for i in range(workers)))
    for c in channels:
        await c.close()
    return cycles, errors


def _rss_mib(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


SOAK_WORKERS = 300
SOAK_MEMORY_LIMIT_MIB = 60   # growth allowed between the warm-up and the end of the soak


def test_soak_hundreds_of_workers_no_errors_and_bounded_memory(tmp_path, start_coordinator):
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", acceptance='compare = "absolute"'))
    cycles, errors = asyncio.run(_soak(coordinator.address, SOAK_WORKERS, seconds=5))  # warm-up
    warm = _rss_mib(coordinator.proc.pid)
    more, more_errors = asyncio.run(_soak(coordinator.address, SOAK_WORKERS, seconds=15))
    grown = _rss_mib(coordinator.proc.pid) - warm
    assert not errors + more_errors, (errors + more_errors)[:5]
    assert cycles + more > SOAK_WORKERS, "the soak really ran cycles"
    assert grown < SOAK_MEMORY_LIMIT_MIB, f"coordinator memory grew {grown:.0f} MiB during the soak"
    assert coordinator.proc.poll() is None
