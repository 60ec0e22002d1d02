"""The worker's main loop: register, lease, run, report — on every slot, until told to stop.

The same loop serves a volunteer's laptop, a GPU box and a Ray actor. Threads, not asyncio:
each slot spends its life waiting on a subprocess, and `grpc` sync stubs are thread-safe.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from autoswarm import __version__
from autoswarm.v1 import common_pb2, worker_pb2
from worker.bundles import BundleCache
from worker.connection import Connection, Stopped
from worker.execute import ExecutionContext, execute_task
from worker.hardware import HardwareInfo, detect_hardware, slot_environments
from worker.outbox import Outbox, OutboxEntry

log = logging.getLogger("autoswarm.worker")

# Answers that mean a report can never be accepted: keep it aside for the volunteer, stop resending.
FINAL_REFUSALS = frozenset({
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
})


@dataclass(frozen=True)
class WorkerOptions:
    coordinator: str
    state_dir: Path
    name: str = field(default_factory=socket.gethostname)
    slots: int | None = None              # None: one per GPU, or 1 on a CPU-only machine
    mutators: tuple[str, ...] = ("params",)
    lease_wait_seconds: float = 20.0
    cache_bytes: int = 5 << 30
    keep_scratch: bool = False


def hardware_message(hw: HardwareInfo) -> common_pb2.Hardware:
    return common_pb2.Hardware(
        cpu_model=hw.cpu_model, cpu_cores=hw.cpu_cores, memory_bytes=hw.memory_bytes,
        gpus=[common_pb2.Gpu(index=g.index, name=g.name, memory_bytes=g.memory_bytes, driver=g.driver)
              for g in hw.gpus],
        platform=hw.platform, python_version=hw.python_version,
    )


class Worker:
    """One worker process: N slots sharing a connection, a bundle cache and an outbox."""

    def __init__(self, options: WorkerOptions, hardware: HardwareInfo | None = None) -> None:
        self.options = options
        self.hardware = hardware or detect_hardware()
        state = Path(options.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self._identity_path = state / "identity.json"
        self.outbox = Outbox(state / "outbox")
        self._rejected = state / "rejected"
        self.cache = BundleCache(state / "cache", options.cache_bytes)
        self._scratch = state / "scratch"
        self._data = state / "data"
        self.connection = Connection(options.coordinator, on_state=self._connection_state)
        self.worker_id = ""
        self.hardware_class = ""
        self.heartbeat_interval = 5.0
        self._finish = threading.Event()      # first stop request: take no new work
        self._halt = threading.Event()        # second: abandon running work now
        self._running: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._register_lock = threading.RLock()
        self._state = "starting"
        self.completed = 0

    # -- identity -------------------------------------------------------------------------

    def _saved_id(self) -> str:
        try:
            saved = json.loads(self._identity_path.read_text())
            return saved["worker_id"] if saved.get("coordinator") == self.options.coordinator else ""
        except (OSError, ValueError, KeyError):
            return ""

    def register(self, forget_id: bool = False) -> None:
        """Registers (or re-registers after the coordinator forgot us), retrying while it is away."""
        with self._register_lock:
            slots = len(self.slot_envs())
            request = worker_pb2.RegisterRequest(
                worker_id="" if forget_id else self._saved_id(), name=self.options.name,
                hardware=hardware_message(self.hardware), slots=slots, mutators=list(self.options.mutators),
                client_version=__version__,
            )
            response = self.connection.retry(lambda: self.connection.stub.Register(request, timeout=15),
                                             self._halt, "register")
            self.worker_id = response.worker_id
            self.hardware_class = response.hardware_class
            self.heartbeat_interval = response.heartbeat_interval_seconds or 5.0
            tmp = self._identity_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"worker_id": self.worker_id, "coordinator": self.options.coordinator}))
            tmp.replace(self._identity_path)
            log.info("registered as %s (%s), %d slot(s), hardware class %s", self.worker_id, self.options.name,
                     slots, self.hardware_class)

    def _reregister(self, failed_id: str) -> None:
        """Registers anew, once, however many slots noticed that the coordinator forgot us."""
        with self._register_lock:
            if self.worker_id == failed_id:
                try:
                    self.register(forget_id=True)
                except Stopped:
                    pass

    def slot_envs(self) -> list[dict[str, str]]:
        if self.options.slots is not None and not self.hardware.gpus:
            return slot_environments((), self.options.slots)
        envs = slot_environments(self.hardware.gpus, self.options.slots or 1)
        return envs[: self.options.slots] if self.options.slots else envs

    def _connection_state(self, state: str) -> None:
        if state.startswith("reconnecting"):
            log.warning("coordinator %s unreachable: %s", self.options.coordinator, state)
        else:
            log.info("coordinator %s reachable again", self.options.coordinator)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            log.info("worker state: %s", state)

    # -- stopping -------------------------------------------------------------------------

    def request_stop(self, immediate: bool = False) -> None:
        """First call: finish running work, take no more. `immediate`: abandon it and release leases."""
        if immediate:
            log.warning("stopping now: running work is abandoned and its leases released")
            self._finish.set()
            self._halt.set()
            with self._lock:
                running = dict(self._running)
            for cancel in running.values():
                cancel.set()
            self._release(list(running))
        else:
            log.info("finishing running work, then stopping (signal again to stop now)")
            self._finish.set()

    def _release(self, lease_ids: list[str]) -> None:
        if not lease_ids or not self.worker_id:
            return
        try:
            self.connection.stub.Release(worker_pb2.ReleaseRequest(worker_id=self.worker_id, lease_ids=lease_ids),
                                         timeout=5)
        except grpc.RpcError as exc:
            log.warning("could not release leases %s: %s (they will expire)", lease_ids, exc.code().name)

    # -- main -----------------------------------------------------------------------------

    def run(self) -> int:
        """Runs until stopped; returns the number of tasks this process completed."""
        try:
            self.register()
        except Stopped:
            return 0
        threads = [threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
                   threading.Thread(target=self._outbox_loop, name="outbox", daemon=True)]
        slots = [threading.Thread(target=self._slot_loop, args=(i, env), name=f"slot-{i}", daemon=True)
                 for i, env in enumerate(self.slot_envs())]
        for t in threads + slots:
            t.start()
        for t in slots:
            while t.is_alive():
                t.join(0.5)
        self._halt.set()
        self._flush_outbox(final=True)
        self.connection.close()
        log.info("worker stopped after %d task(s); %d result(s) wait in the outbox", self.completed, len(self.outbox))
        return self.completed

    def _slot_loop(self, index: int, env: dict[str, str]) -> None:
        context = ExecutionContext(
            cache=self.cache, scratch_root=self._scratch / f"slot-{index}", data_root=self._data,
            slot_env=env, keep_scratch=self.options.keep_scratch,
        )
        context.scratch_root.mkdir(parents=True, exist_ok=True)
        while not self._finish.is_set():
            task = self._lease()
            if task is None:
                continue
            if self._finish.is_set():  # stop was requested while the lease call was waiting
                self._release([task.lease_id])
                break
            cancel = threading.Event()
            with self._lock:
                self._running[task.lease_id] = cancel
            self._set_state("working")
            try:
                result = execute_task(context, task, self.connection.fetch_bundle, cancel, self.options.mutators)
            except Exception as exc:  # a bug in our own code must not kill the slot
                log.exception("task %s failed inside the worker", task.lease_id)
                result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_CRASH,
                                           log_tail=f"worker error: {type(exc).__name__}: {exc}")
            with self._lock:
                self._running.pop(task.lease_id, None)
                if not self._running:
                    self._set_state("idle")
            if cancel.is_set():
                log.info("task %s was cancelled; its result is not reported", task.lease_id)
                continue
            self.completed += 1
            self._deliver(task.lease_id, result)

    def _lease(self) -> worker_pb2.Task | None:
        wait = self.options.lease_wait_seconds

        def long_poll() -> worker_pb2.LeaseResponse | None:
            # A future, so that a stop request does not wait out the coordinator's long-poll.
            call = self.connection.stub.Lease.future(
                worker_pb2.LeaseRequest(worker_id=self.worker_id, wait_seconds=wait), timeout=wait + 15)
            while not self._finish.is_set():
                try:
                    return call.result(timeout=0.2)
                except grpc.FutureTimeoutError:
                    continue
            call.cancel()
            return None

        try:
            response = self.connection.retry(long_poll, self._finish, "lease")
        except Stopped:
            return None
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                log.warning("the coordinator does not know this worker (%s); registering again", exc.details())
                self._reregister(failed_id=self.worker_id)
                return None
            log.error("lease refused: %s %s", exc.code().name, exc.details())
            self._finish.wait(5)
            return None
        return response.task if response is not None and response.has_task else None

    # -- reporting ------------------------------------------------------------------------

    def _deliver(self, lease_id: str, result: worker_pb2.Result) -> None:
        """Stores the result in the outbox first, then tries to send it once."""
        request = worker_pb2.ReportRequest(worker_id=self.worker_id, lease_id=lease_id, result=result)
        self.outbox.put(OutboxEntry(lease_id, request.SerializeToString(), time.time()))
        self._send(lease_id, request)

    def _send(self, lease_id: str, request: worker_pb2.ReportRequest) -> bool:
        try:
            response = self.connection.stub.Report(request, timeout=30)
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

    def _flush_outbox(self, final: bool = False) -> None:
        for entry in self.outbox.pending():
            request = worker_pb2.ReportRequest.FromString(entry.request)
            if not request.worker_id:
                request.worker_id = self.worker_id
            if not self._send(entry.lease_id, request):
                if final:
                    log.warning("coordinator unreachable: %d result(s) stay in the outbox for the next start",
                                len(self.outbox))
                return

    def _outbox_loop(self) -> None:
        while not self._halt.wait(2.0):
            if len(self.outbox):
                self._flush_outbox()

    def _heartbeat_loop(self) -> None:
        while not self._halt.wait(self.heartbeat_interval):
            with self._lock:
                lease_ids = list(self._running)
            state = "stopping" if self._finish.is_set() else ("working" if lease_ids else "idle")
            try:
                response = self.connection.stub.Heartbeat(worker_pb2.HeartbeatRequest(
                    worker_id=self.worker_id, lease_ids=lease_ids, state=state), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    self._reregister(failed_id=self.worker_id)
                continue
            with self._lock:
                for lease_id in response.cancelled_lease_ids:
                    cancel = self._running.get(lease_id)
                    if cancel is not None:
                        log.warning("coordinator no longer holds lease %s; abandoning it", lease_id)
                        cancel.set()


def default_state_dir() -> Path:
    """Where a worker keeps its identity, outbox and caches: $XDG_CACHE_HOME/autoswarm/worker."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autoswarm" / "worker"


def describe_machine(hw: HardwareInfo) -> str:
    gpus = ", ".join(f"{g.index}: {g.name}" for g in hw.gpus) or "no GPU"
    return f"{hw.cpu_model} ({hw.cpu_cores} cores, {hw.memory_bytes / 2**30:.1f} GiB), {gpus}, {platform.system()}"
