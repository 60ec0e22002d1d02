"""Asking for tasks: the lease a slot's preparer asks for, one call whenever it can.

A finished result rides on the call as a Report whose `next` leases the next task
(worker/carry.py); otherwise the worker long-polls `Lease` for as long as the coordinator
suggests, as a future, so that a stop request or a closing gate does not wait it out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from autoswarm.v1 import worker_pb2
from autoswarm.worker.carry import CarriedReports
from autoswarm.worker.connection import Connection, HeartbeatSchedule, Stopped

log = logging.getLogger("autoswarm.worker")


@dataclass(frozen=True)
class LeaseContext:
    """What the lease call reads of its worker at the moment of each call."""

    worker_id: Callable[[], str]
    state: Callable[[], str]              # the worker's state word, sent with the call
    gate_open: Callable[[], bool]         # the volunteer's hours / idle rules allow new work
    running: Callable[[], int]            # leases the worker holds
    reregister: Callable[[str], None]     # the coordinator forgot this worker id: register anew


class Leaser:
    """A worker's lease calls (see the module's docstring)."""

    def __init__(self, connection: Connection, heartbeats: HeartbeatSchedule, carried: CarriedReports,
                 context: LeaseContext, finish: threading.Event, pipelined: bool) -> None:
        self._connection = connection
        self._heartbeats = heartbeats
        self._carried = carried
        self._context = context
        self._finish = finish
        self._pipelined = pipelined

    def lease(self, nothing_yet: Callable[[], None] | None = None) -> worker_pb2.Task | None:
        """The next task, or None (nothing came, the worker stops, or new work is not allowed).
        `nothing_yet` is called when the quick answer (the one a carried result rides on)
        brought no task and the call goes on to long-poll: a slot stops waiting for it then."""
        ctx, heartbeats = self._context, self._heartbeats
        if self._finish.is_set() or not ctx.gate_open():
            self._carried.flush()
        else:
            # A result just finished goes with this call: one Report that also leases the next task.
            answer = self._carried.report_and_lease(worker_pb2.LeaseRequest(
                worker_id=ctx.worker_id(), pipelined=self._pipelined, state=ctx.state()))
            if answer is not None:
                heartbeats.told(answer.heartbeat_interval_seconds, answer.lease_wait_seconds)
                if answer.has_task:
                    if not ctx.running():
                        heartbeats.sent()
                    return answer.task
        if nothing_yet is not None:
            nothing_yet()
        try:
            response = self._connection.retry(self._long_poll, self._finish, "lease")
        except Stopped:
            return None
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED):
                log.warning("the coordinator does not accept this worker (%s); registering again", exc.details())
                ctx.reregister(ctx.worker_id())
                return None
            log.error("lease refused: %s %s", exc.code().name, exc.details())
            self._finish.wait(5)
            return None
        return response.task if response is not None and response.has_task else None

    def _long_poll(self) -> worker_pb2.LeaseResponse | None:
        ctx, heartbeats = self._context, self._heartbeats
        wait = heartbeats.lease_wait  # as long as the coordinator suggests: one call per idle spell
        call = self._connection.stub.Lease.future(
            worker_pb2.LeaseRequest(worker_id=ctx.worker_id(), wait_seconds=wait, pipelined=self._pipelined,
                                    state=ctx.state()),
            timeout=wait + 15)
        heartbeats.polling(+1)  # while it waits, this call is the worker's presence
        try:
            while not self._finish.is_set() and ctx.gate_open():
                try:
                    response = call.result(timeout=0.2)
                    heartbeats.told(response.heartbeat_interval_seconds, response.lease_wait_seconds)
                    if response.has_task and not ctx.running():
                        heartbeats.sent()
                    return response
                except grpc.FutureTimeoutError:
                    continue
        finally:
            heartbeats.polling(-1)
        if call.cancel():
            return None
        # It had ended already: a task it brought is handed back by the caller, not left to expire.
        try:
            return call.result(timeout=0)
        except (grpc.RpcError, grpc.FutureTimeoutError, grpc.FutureCancelledError):
            return None
