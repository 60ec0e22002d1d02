"""Presence: the heartbeats that keep a worker's leases alive and carry what it is doing.

Each heartbeat extends the running leases and brings back the coordinator's word on them:
leases it no longer holds (stop them), and leases made on a champion replaced since (hand back
those not started: worker/slot.py). The same call shares the idea a slot is about to evaluate
(`announce`), and says `stopped` when the worker ends cleanly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from autoswarm.slot_time import SlotTime
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.connection import TRANSIENT, Connection, HeartbeatSchedule

log = logging.getLogger("autoswarm.worker")


def slot_time_message(t: SlotTime) -> common_pb2.SlotTime:
    return common_pb2.SlotTime(slot=t.slot, evaluating_seconds=t.evaluating, mutating_seconds=t.mutating,
                               waiting_seconds=t.waiting)


@dataclass(frozen=True)
class PresenceContext:
    """What the heartbeats read of their worker, and what they tell it."""

    worker_id: Callable[[], str]
    state: Callable[[], str]
    running: Callable[[], dict[str, threading.Event]]   # a copy: lease id -> its cancel event
    slot_times: Callable[[], list[SlotTime]]
    connected: Callable[[], bool]
    connection_state: Callable[[str], None]             # "reconnecting (...)" or "connected"
    reregister: Callable[[str], None]
    stale: Callable[[Sequence[str]], None]              # leases made on a replaced champion


class Presence:
    """A worker's heartbeats (see the module's docstring)."""

    def __init__(self, connection: Connection, heartbeats: HeartbeatSchedule, context: PresenceContext) -> None:
        self._connection = connection
        self._heartbeats = heartbeats
        self._context = context

    def run(self, halt: threading.Event) -> None:
        """The heartbeat thread: one heartbeat whenever the schedule says, until `halt`."""
        ctx = self._context
        while self._heartbeats.wait(lambda: len(ctx.running()), halt):
            running = ctx.running()
            self._heartbeats.sent()
            try:
                response = self._connection.stub.Heartbeat(worker_pb2.HeartbeatRequest(
                    worker_id=ctx.worker_id(), lease_ids=list(running), state=ctx.state(),
                    slot_times=[slot_time_message(t) for t in ctx.slot_times()]), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED):
                    ctx.reregister(ctx.worker_id())
                elif exc.code() in TRANSIENT and ctx.connected():
                    ctx.connection_state(f"reconnecting (heartbeat: {exc.code().name})")
                continue
            self._heartbeats.told(response.heartbeat_interval_seconds)
            if not ctx.connected():
                ctx.connection_state("connected")
            running = ctx.running()
            for lease_id in response.cancelled_lease_ids:
                cancel = running.get(lease_id)
                if cancel is not None:
                    log.warning("coordinator no longer holds lease %s; abandoning it", lease_id)
                    cancel.set()
            if response.stale_lease_ids:
                ctx.stale(list(response.stale_lease_ids))

    def announce(self, lease_id: str, description: str, candidate_hash: str) -> bool:
        """Shares the idea about to be evaluated; True when the coordinator says it is a duplicate.

        Best effort: when the coordinator cannot be reached the evaluation just goes ahead.
        """
        ctx = self._context
        try:
            response = self._connection.stub.Heartbeat(worker_pb2.HeartbeatRequest(
                worker_id=ctx.worker_id(), lease_ids=[lease_id], state=ctx.state(),
                descriptions={lease_id: description}, candidate_hashes={lease_id: candidate_hash}), timeout=10)
        except grpc.RpcError:
            return False
        if response.stale_lease_ids:
            ctx.stale(list(response.stale_lease_ids))
        return lease_id in response.duplicate_lease_ids

    def say_stopped(self, kept: Sequence[str] = ()) -> None:
        """A last heartbeat with the state `stopped`: status shows a clean stop, not `offline`,
        and the coordinator takes back every lease but `kept` (those whose results wait in the
        outbox), among them one whose task this worker never heard of."""
        worker_id = self._context.worker_id()
        if not worker_id:
            return
        try:
            self._connection.stub.Heartbeat(worker_pb2.HeartbeatRequest(
                worker_id=worker_id, lease_ids=list(kept), state="stopped"), timeout=5)
        except grpc.RpcError as exc:  # the coordinator will see it offline instead
            log.debug("could not report the stop: %s", exc.code().name)
