"""Sending results: every result waits in the durable outbox until the coordinator has it.

A slot hands its result over and goes on to its next evaluation; the outbox thread sends it,
and resends what the coordinator missed (outage, restart) until it is acknowledged. A report
the coordinator refuses for good is set aside in `rejected/` for the volunteer, not resent.

Every attempt's outcome goes to `on_answer` (the answer, or None when there was none): a slot
about to start a task leased ahead waits for it (`Answers`), since the answer may say that
the task was made on a champion this very result replaced.
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
AnswerHook = Callable[[str, "worker_pb2.ReportResponse | None"], None]


class Answers:
    """Which delivered results have had their first report attempt: answered, refused or failed.

    `expect` when a result is delivered; `answered` when an attempt is over; `wait` blocks
    until then (bounded). A lease never expected, or answered already, does not wait.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}

    def expect(self, lease_id: str) -> None:
        with self._lock:
            self._pending.setdefault(lease_id, threading.Event())

    def answered(self, lease_id: str) -> None:
        with self._lock:
            event = self._pending.pop(lease_id, None)
        if event is not None:
            event.set()

    def wait(self, lease_id: str, timeout: float) -> bool:
        """True once the result's report was attempted; False when `timeout` passed first."""
        with self._lock:
            event = self._pending.get(lease_id)
        if event is None:
            return True
        done = event.wait(timeout)
        with self._lock:
            self._pending.pop(lease_id, None)
        return done


class Reporter:
    """The outbox and the thread that empties it."""

    def __init__(self, outbox: Outbox, rejected: Path, connection: Connection,
                 worker_id: Callable[[], str], on_answer: AnswerHook | None = None) -> None:
        """`worker_id` says who we are now (an entry saved before a restart may not know it)."""
        self.outbox = outbox
        self._rejected = rejected
        self._connection = connection
        self._worker_id = worker_id
        self._on_answer = on_answer
        self._now = threading.Event()  # a result waits in the outbox

    def answered(self, lease_id: str, response: worker_pb2.ReportResponse | None) -> None:
        """One attempt to report `lease_id` is over: `response` is the answer, None when none came."""
        if self._on_answer is not None:
            self._on_answer(lease_id, response)

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
        pending = self.outbox.pending()
        for i, entry in enumerate(pending):
            request = worker_pb2.ReportRequest.FromString(entry.request)
            if not request.worker_id:
                request.worker_id = self._worker_id()
            if not self._send(entry.lease_id, request):
                for unsent in pending[i:]:   # none of them can be answered now: nobody waits for them
                    self.answered(unsent.lease_id, None)
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
                self.answered(lease_id, None)
                return True
            return False
        self.outbox.remove(lease_id)
        self.answered(lease_id, response)
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
