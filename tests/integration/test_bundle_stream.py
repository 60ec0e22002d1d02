"""A hostile coordinator streams a bundle far larger than it advertised: a real worker process
stops reading at the advertised size, stays within a stated memory bound, and reports
`setup-failed` with the reason.

The coordinator is a fake (a small real grpc server speaking the worker protocol), because a
real coordinator never sends more than it advertises.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from autoswarm import words
from autoswarm.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from swarm import WorkerProcess, free_port, wait_for

pytestmark = pytest.mark.integration

ADVERTISED = 1_000
OFFERED_CHUNKS = 200            # 200 MiB offered, 1 MiB per chunk
CHUNK = b"\x00" * (1 << 20)
# The worker's stated bound (docs/security.md): its peak resident memory while 200 MiB are
# offered. Measured at 67 MiB (Linux x86-64, Python 3.11); the old code reached 463 MiB.
PEAK_RSS_BOUND = 128 << 20


class FloodingCoordinator(worker_pb2_grpc.WorkerServiceServicer):
    """Hands out one explore task whose bundle is advertised at 1,000 bytes, then streams 200 MiB."""

    def __init__(self) -> None:
        self.leased = False
        self.sent_chunks = 0
        self.reports: list[worker_pb2.ReportRequest] = []
        self.reported = threading.Event()
        self._lock = threading.Lock()

    def Register(self, request, context):
        return worker_pb2.RegisterResponse(worker_id="w-1", heartbeat_interval_seconds=0.5, hardware_class="cpu")

    def Lease(self, request, context):
        with self._lock:
            first, self.leased = not self.leased, True
        if not first:
            self.reported.wait(min(request.wait_seconds, 2))
            return worker_pb2.LeaseResponse(has_task=False)
        return worker_pb2.LeaseResponse(has_task=True, task=worker_pb2.Task(
            lease_id="lease-flood", study="flood", kind=common_pb2.TASK_KIND_EXPLORE, bundle_hash="ab" * 32,
            bundle_size=ADVERTISED, parent=common_pb2.Version(hash="p", content=b"X = 1\n"), seed=1))

    def Heartbeat(self, request, context):
        return worker_pb2.HeartbeatResponse()

    def Release(self, request, context):
        return worker_pb2.ReleaseResponse(released=len(request.lease_ids))

    def Report(self, request, context):
        self.reports.append(request)
        self.reported.set()
        return worker_pb2.ReportResponse(result_id=request.lease_id, decision="setup-failed")

    def FetchBundle(self, request, context):
        for offset in range(OFFERED_CHUNKS):
            if not context.is_active():
                return
            self.sent_chunks += 1
            yield worker_pb2.BundleChunk(data=CHUNK, offset=offset * len(CHUNK), total_size=ADVERTISED)


def _peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has had, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_bundle_streamed_past_its_advertised_size_is_cut_off_within_the_memory_bound(tmp_path):
    fake = FloodingCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_send_message_length", 64 << 20)])
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(fake, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    worker = WorkerProcess(f"127.0.0.1:{port}", tmp_path / "worker", "flooded", ("--sandbox", "none"),
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        worker.start()
        wait_for(fake.reported.is_set, 60, what="the worker's report")
        peak = _peak_rss(worker.proc.pid)
        assert worker.proc.poll() is None, "the worker survives"
    finally:
        worker.kill()
        server.stop(0)
    result = fake.reports[0].result
    assert words.STATUS_WORDS[result.status] == "setup-failed"
    assert "more than the advertised size (1000 bytes)" in result.log_tail, result.log_tail
    assert fake.sent_chunks < OFFERED_CHUNKS, "the worker stopped the stream instead of reading it all"
    print(f"peak RSS {peak / 2**20:.0f} MiB with {OFFERED_CHUNKS} MiB offered, {fake.sent_chunks} chunks sent",
          file=sys.stderr)
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / 2**20:.0f} MiB is over the stated bound"
    leftovers = [p for p in (tmp_path / "worker" / "cache" / "bundles").rglob("*") if p.is_file()]
    assert leftovers == [], "nothing of the refused download stays in the cache"
