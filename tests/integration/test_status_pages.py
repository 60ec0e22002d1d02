"""`autoswarm status` against a real coordinator: every worker counted, one page of them listed.

At 100,000 workers a Status call that lists every worker costs the coordinator ~1 s of its
loop; an operator's screen needs the counts and a page. Older clients, which ask for no page,
still get every worker.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autoswarm.v1 import common_pb2, worker_pb2
from conftest import FAST_COORDINATOR

pytestmark = pytest.mark.integration


def _register(stub, count: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + count):
        ids.append(stub.Register(worker_pb2.RegisterRequest(
            name=f"box{i:04d}", slots=2, mutators=["params", "llm"] if i % 2 else ["params"],
            hardware=common_pb2.Hardware(cpu_model=f"Sim CPU {i % 2}", cpu_cores=4)), timeout=30).worker_id)
    return ids


def test_status_lists_a_page_and_counts_every_worker(start_coordinator):
    coordinator = start_coordinator()
    channel, stub = coordinator.worker_stub()
    with channel:
        ids = _register(stub, 7)
    result = subprocess.run([sys.executable, "-m", "autoswarm", "status", "--coordinator", coordinator.address,
                             "--workers", "2", "--from", "3"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "workers: 7 idle" in out, "every worker counted"
    assert "workers 4–5 of 7" in out and "box0003" in out and "box0004" in out
    assert "box0002" not in out and "box0005" not in out, "only the page asked for is listed"
    assert "2 more: autoswarm status --workers N --from 5" in out
    with coordinator.control() as control:
        counts_only = control.status(workers=0)
        every = control.status()
    assert not counts_only.workers and counts_only.workers_total == 7
    assert {m.mutator: m.workers for m in counts_only.mutator_counts} == {"params": 7, "llm": 3}
    assert [w.worker_id for w in every.workers] == ids, "no page asked (an older client): every worker"


def test_a_client_asking_for_more_than_a_page_gets_them_a_page_at_a_time(start_coordinator):
    from autoswarm.coordinator.service import MAX_STATUS_PAGE

    # More workers than a page, registered at once by one raw client that does not wait as
    # admission tells it (tests/integration/test_join_admission.py covers that): no join limit.
    coordinator = start_coordinator(*FAST_COORDINATOR, "--join-rate", "0")
    channel, stub = coordinator.worker_stub()
    with channel:
        ids = _register(stub, MAX_STATUS_PAGE + 30)
    with coordinator.control() as control:
        response = control.status(workers=MAX_STATUS_PAGE + 20, offset=5)
    assert [w.worker_id for w in response.workers] == ids[5:MAX_STATUS_PAGE + 25]
    assert sum(c.workers for c in response.worker_counts) == MAX_STATUS_PAGE + 30
