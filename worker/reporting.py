"""Sending results: every result waits in the durable outbox until the coordinator has it.

A slot hands its result over and goes on to its next evaluation; the outbox thread sends it,
and resends what the coordinator missed (outage, restart) until it is acknowledged. A report
the coordinator refuses for good is set aside in `rejected/` for the volunteer, not resent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.connection import Connection
from autoswarm.worker.outbox import Outbox, OutboxEntry

log = logging.getLogger("autoswarm.worker")

# Answers that mean a report can never be accepted: keep it aside for the volunteer, stop resending.
FINAL_REFUSALS = frozenset({
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
})


class Reporter:
    """The outbox and the thread that empties it."""

    def __init__(self, outbox: Outbox, rejected: Path, connection: Connection,
                 worker_id: Callable[[], str]) -> None:
        """`worker_id` says who we are now (an entry saved before a restart may not know it)."""
        self.outbox = outbox
        self._rejected = rejected
        self._connection = connection
        self._worker_id = worker_id
        self._now = threading.Event()  # a result waits in the outbox

    def put(self, lease_id: str, result: worker_pb2.Result) -> None:
        """Keeps the result in the outbox and wakes the outbox thread to send it."""
        request = worker_pb2.ReportRequest(worker_id=self._worker_id(), lease_id=lease_id, result=result)
        self.outbox.put(OutboxEntry(lease_id, request.SerializeToString(), time.time()))
        self._now.set()

    def run(self, halt: threading.Event) -> None:
        """The outbox thread: sends what waits, until `halt`."""
        while not halt.is_set():
            self._now.wait(2.0)  # a new result, or a retry of those the coordinator missed
            self._now.clear()
            if len(self.outbox):
                self.flush()

    def flush(self, final: bool = False) -> None:
        """Sends the waiting results, oldest first, until one cannot be sent."""
        for entry in self.outbox.pending():
            request = worker_pb2.ReportRequest.FromString(entry.request)
            if not request.worker_id:
                request.worker_id = self._worker_id()
            if not self._send(entry.lease_id, request):
                if final:
                    log.warning("coordinator unreachable: %d result(s) stay in the outbox for the next start",
                                len(self.outbox))
                return

    def _send(self, lease_id: str, request: worker_pb2.ReportRequest) -> bool:
        try:
            response = self._connection.stub.Report(request, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() in FINAL_REFUSALS:
                log.warning("report for %s refused for good: %s %s", lease_id, exc.code().name, exc.details())
                self._set_aside(lease_id, f"{exc.code().name}: {exc.details()}")
                return True
            return False
        self.outbox.remove(lease_id)
        status = request.result.status
        metric = f" {request.result.metric:.6g}" if request.result.has_metric else ""
        log.info("reported %s: %s%s -> %s%s", lease_id, common_pb2.ResultStatus.Name(status).removeprefix(
            "RESULT_STATUS_").lower(), metric, response.decision, " (new champion)" if response.new_champion else "")
        return True

    def _set_aside(self, lease_id: str, reason: str) -> None:
        self._rejected.mkdir(parents=True, exist_ok=True)
        for entry in self.outbox.pending():
            if entry.lease_id == lease_id:
                (self._rejected / f"{lease_id}.reason").write_text(reason)
                (self._rejected / f"{lease_id}.report").write_bytes(entry.request)
        self.outbox.remove(lease_id)
