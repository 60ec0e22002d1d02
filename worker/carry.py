"""One call per task: a finished result rides on the slot's next lease call.

A slot that finishes a task and wants the next one would otherwise make two calls, Report
(from the outbox thread) and Lease. Here the result is kept in the durable outbox as always,
but the outbox thread is not woken for it: the slot's lease call sends it as a Report whose
`next` asks for the next task, and the coordinator answers both in one reply. Nothing is
risked by the shortcut: the entry is on disk before anything is sent, the outbox thread still
sends whatever is left on its next round (a stopping worker, a slot that leases no more), and
reports are idempotent per lease, so a result sent both ways is recorded once.

An older coordinator ignores `next` and answers only the report; then the worker goes back to
Report + Lease for good. Any failure of the combined call hands the result to the outbox
thread (which retries, or sets aside a result refused for good) and leases as before.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import grpc

from autoswarm.v1 import worker_pb2
from autoswarm.worker.connection import Connection
from autoswarm.worker.outbox import OutboxEntry
from autoswarm.worker.reporting import Reporter

log = logging.getLogger("autoswarm.worker")
REPORT_TIMEOUT = 30.0   # seconds: the combined call is never held waiting for work


class CarriedReports:
    """Results waiting to go out with the next lease call (see the module's docstring)."""

    def __init__(self, connection: Connection, reporter: Reporter, worker_id: Callable[[], str]) -> None:
        self._connection = connection
        self._reporter = reporter
        self._worker_id = worker_id
        self._lock = threading.Lock()
        self._waiting: collections.deque[tuple[str, worker_pb2.Result]] = collections.deque()
        self.supported = True   # False once an older coordinator ignored `next`

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def keep(self, lease_id: str, result: worker_pb2.Result, lease_follows: bool) -> bool:
        """A finished result: on disk first; then carried by the next lease call when one
        follows at once (`lease_follows`), else sent by the outbox thread right away. Returns
        whether it is carried."""
        if not (lease_follows and self.supported):
            self._reporter.put(lease_id, result)
            return False
        request = worker_pb2.ReportRequest(worker_id=self._worker_id(), lease_id=lease_id, result=result)
        self._reporter.outbox.put(OutboxEntry(lease_id, request.SerializeToString(), time.time()))
        with self._lock:
            self._waiting.append((lease_id, result))
        return True

    def report_and_lease(self, lease: worker_pb2.LeaseRequest) -> worker_pb2.LeaseResponse | None:
        """Sends the oldest carried result with `lease` as its `next`; returns the lease answer,
        or None when nothing was carried or the coordinator did not answer `next` (then lease
        the usual way)."""
        with self._lock:
            if not self._waiting:
                return None
            lease_id, result = self._waiting.popleft()
        if all(entry.lease_id != lease_id for entry in self._reporter.outbox.pending()):
            return None   # the outbox thread sent it meanwhile (its round came first)
        request = worker_pb2.ReportRequest(worker_id=self._worker_id(), lease_id=lease_id, result=result, next=lease)
        try:
            response = self._connection.stub.Report(request, timeout=REPORT_TIMEOUT)
        except grpc.RpcError as exc:
            log.debug("report with the next lease failed (%s); the outbox sends %s", exc.code().name, lease_id)
            self._reporter.put(lease_id, result)   # retried, or set aside when refused for good
            return None
        self._reporter.outbox.remove(lease_id)
        self._reporter.answered(lease_id, response)
        log.info("reported %s -> %s%s", lease_id, response.decision, " (new champion)" if response.new_champion else "")
        if not response.HasField("next"):
            log.info("the coordinator does not lease with reports; reporting and leasing separately")
            self.supported = False
            return None
        return response.next

    def flush(self) -> None:
        """Hands every carried result to the outbox thread (the worker stops leasing)."""
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for lease_id, result in waiting:
            self._reporter.put(lease_id, result)
