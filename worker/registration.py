"""Who a worker is to its coordinator: the identity it keeps, and registering (again).

The join token registers a worker once; the coordinator then issues a credential that speaks
for that worker alone, and the worker keeps it in `identity.json` in its state directory
(mode 0600), with its id and the coordinator it belongs to. Later starts register with the
credential and keep the worker's id; when the coordinator no longer accepts it (revoked, or a
new database), the join token, if the worker still has one, registers a new worker.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from autoswarm.v1 import worker_pb2
from autoswarm.worker.connection import Connection, HeartbeatSchedule, Stopped

log = logging.getLogger("autoswarm.worker")


@dataclass(frozen=True)
class IdentityFile:
    """`identity.json`: the worker's id and credential for one coordinator."""

    path: Path
    coordinator: str

    def load(self) -> tuple[str, str]:
        """(worker id, credential) saved for this coordinator, or empty strings."""
        try:
            saved = json.loads(self.path.read_text())
            if saved.get("coordinator") != self.coordinator:
                return "", ""
            return saved["worker_id"], saved.get("credential", "")
        except (OSError, ValueError, KeyError, AttributeError):
            return "", ""

    def save(self, worker_id: str, credential: str) -> None:
        """Replaces the file at once; the credential is a secret: readable by this user only."""
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # O_CREAT keeps the mode of a file that exists: start afresh
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"worker_id": worker_id, "coordinator": self.coordinator, "credential": credential}, f)
        tmp.replace(self.path)


class Registration:
    """Registers the worker and keeps its id, class and credential on the connection."""

    def __init__(self, identity: IdentityFile, join_token: str, connection: Connection, halt: threading.Event,
                 heartbeats: HeartbeatSchedule, request: Callable[[], worker_pb2.RegisterRequest],
                 refused: Callable[[], None]) -> None:
        """`request` builds the registration (name, hardware, slots, mutators) at each call;
        `refused` is called when the coordinator turns the worker away for good."""
        self.identity = identity
        self._join_token = join_token
        self._connection = connection
        self._halt = halt
        self._heartbeats = heartbeats
        self._request = request
        self._refused = refused
        self._lock = threading.RLock()
        self.worker_id = ""
        self.hardware_class = ""

    def register(self, forget_id: bool = False, stop: threading.Event | None = None) -> None:
        """Registers (or re-registers after the coordinator forgot us), retrying while it is away
        until `stop` (default: the worker's halt) is set, which raises Stopped.

        With a saved credential the worker keeps its identity; when the coordinator no longer
        accepts it (revoked, or a new database) the join token registers a new worker.
        """
        connection = self._connection
        stop = stop or self._halt
        with self._lock:
            saved_id, credential = ("", "") if forget_id else self.identity.load()
            request = self._request()
            request.worker_id = saved_id
            connection.token = credential or self._join_token
            try:
                response = connection.retry(lambda: connection.stub.Register(request, timeout=15), stop,
                                            "register")
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAUTHENTICATED or not credential or not self._join_token:
                    raise
                log.warning("the coordinator refused this worker's credential (%s); joining again", exc.details())
                connection.token = self._join_token
                request.worker_id = ""
                response = connection.retry(lambda: connection.stub.Register(request, timeout=15), stop,
                                            "register")
            self.worker_id = response.worker_id
            self.hardware_class = response.hardware_class
            self._heartbeats.told(response.heartbeat_interval_seconds, response.lease_wait_seconds)
            credential = response.credential or (credential if connection.token == credential else "")
            connection.token = credential or self._join_token
            self.identity.save(self.worker_id, credential)
            owner = f", owner {response.owner}" if response.owner else ""
            log.info("registered as %s (%s%s), %d slot(s), hardware class %s", self.worker_id, request.name,
                     owner, request.slots, self.hardware_class)

    def reregister(self, failed_id: str, register: Callable[[bool], None] | None = None) -> None:
        """Registers anew, once, however many slots noticed that the coordinator forgot us.

        `register` is the call to make (default: `self.register`).
        """
        with self._lock:
            if self.worker_id != failed_id:
                return
            try:
                (register or self.register)(not self._join_token)
            except Stopped:
                pass
            except grpc.RpcError as exc:
                # Revoked, or never allowed: nothing to retry. Finish what runs and stop.
                log.error("the coordinator refuses this worker (%s %s); stopping", exc.code().name, exc.details())
                self._refused()
