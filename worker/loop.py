"""The worker's main loop: register, lease, run, report — on every slot, until told to stop.

The same loop serves a volunteer's laptop, a GPU box and a Ray actor. Threads, not asyncio:
each slot spends its life waiting on a subprocess, and `grpc` sync stubs are thread-safe.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from autoswarm import __version__
from autoswarm.bundle import BundleError
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.agent_box import AgentSettings
from autoswarm.worker.agent_spend import AgentSpend
from autoswarm.worker.bundles import BundleCache, BundleDownload
from autoswarm.worker.carry import CarriedReports
from autoswarm.worker.connection import Connection, HeartbeatSchedule, Stopped
from autoswarm.worker.execute import ExecutionContext
from autoswarm.worker.donation import (
    IDLE,
    RECONNECTING,
    THREAD_VARIABLES,
    WORKING,
    Availability,
    DonationError,
    DonationPolicy,
    Gate,
    LoadSource,
    memory_per_slot,
    slot_cpu_sets,
    worker_state,
)
from autoswarm.worker.hardware import HardwareInfo, detect_hardware, slot_environments, slot_gpu
from autoswarm.worker.leasing import LeaseContext, Leaser
from autoswarm.worker.outbox import Outbox
from autoswarm.worker.platforms import Platform, describe_idle_gaps
from autoswarm.worker.presence import Presence, PresenceContext
from autoswarm.worker.registration import IdentityFile, Registration
from autoswarm.worker.reporting import Answers, Reporter
from autoswarm.worker.sandbox import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PROCESSES, ResourceLimits, Sandbox, configure
from autoswarm.worker.mutators.config import Budget
from autoswarm.worker.slot import PipelinedSlot
from autoswarm.slot_time import SlotTime

log = logging.getLogger("autoswarm.worker")
# Seconds a slot waits for the coordinator's answer to the result it just delivered before it
# starts the task leased ahead (the answer may call that task stale). A round trip normally; a
# coordinator that cannot be reached fails the attempt at once, so this bounds only a hung one.
ANSWER_WAIT_SECONDS = 10.0

@dataclass(frozen=True)
class WorkerOptions:
    coordinator: str
    state_dir: Path
    name: str = field(default_factory=socket.gethostname)
    slots: int | None = None              # None: one per GPU, or 1 on a CPU-only machine
    mutators: tuple[str, ...] = ("params",)
    # Per-kind overrides of the study's [mutator] options (worker/mutators/config.py).
    mutator_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    lease_wait_seconds: float = 20.0
    token: str = ""                       # join token (from `autoswarm token create`); "" without auth
    ca: Path | None = None                # the coordinator's CA certificate: TLS
    cache_bytes: int = 5 << 30
    keep_scratch: bool = False
    # What the volunteer donates (worker/donation.py) and how commands are confined (worker/sandbox.py).
    gpus: tuple[int, ...] | None = None   # nvidia-smi indices; None: every GPU
    max_cpus: int | None = None
    memory_limit: int | None = None       # bytes for all slots together; None: 3/4 of the RAM
    max_processes: int | None = DEFAULT_MAX_PROCESSES
    max_file_size: int | None = DEFAULT_MAX_FILE_BYTES
    sandbox: str = "auto"                 # auto | bwrap | none
    sandbox_read_only: tuple[Path, ...] = ()
    donation: DonationPolicy = field(default_factory=DonationPolicy)
    check_interval: float = 5.0           # seconds between looks at the clock and the machine's load
    agent: AgentSettings = field(default_factory=AgentSettings)  # how agent CLIs are boxed (worker/agent_box.py)
    # Each slot's agent prepares the next edit while its evaluation runs (worker/slot.py).
    pipeline: bool = True
    # The volunteer's cap on what its agents (llm, command) spend; None: no cap.
    agent_budget: Budget | None = None


def hardware_message(hw: HardwareInfo) -> common_pb2.Hardware:
    return common_pb2.Hardware(
        cpu_model=hw.cpu_model, cpu_cores=hw.cpu_cores, memory_bytes=hw.memory_bytes,
        gpus=[common_pb2.Gpu(index=g.index, name=g.name, memory_bytes=g.memory_bytes, driver=g.driver)
              for g in hw.gpus],
        platform=hw.platform, python_version=hw.python_version,
    )


class Worker:
    """One worker process: N slots sharing a connection, a bundle cache and an outbox."""

    def __init__(self, options: WorkerOptions, hardware: HardwareInfo | None = None, *,
                 load: LoadSource | None = None, sandbox: Sandbox | None = None,
                 platform: Platform | None = None) -> None:
        """Raises DonationError for GPUs the machine lacks, SandboxError for a sandbox it cannot run.

        `platform`: what the system offers the sandbox and the runner (default: this machine's).
        """
        self.options = options
        self.hardware = donated_hardware(hardware or detect_hardware(), options)
        # Absolute: the sandbox binds these paths into a new mount namespace, where a relative
        # path would mean nothing.
        state = private_directory(Path(options.state_dir).resolve())
        self.cache = BundleCache(state / "cache", options.cache_bytes)
        self._scratch = state / "scratch"
        self._data = state / "data"
        self.connection = Connection(options.coordinator, on_state=self._connection_state, token=options.token,
                                     ca=options.ca)
        self.heartbeats = HeartbeatSchedule(5.0, options.lease_wait_seconds)
        self._finish = threading.Event()      # first stop request: take no new work
        self._halt = threading.Event()        # second: abandon running work now
        self.registration = Registration(IdentityFile(state / "identity.json", options.coordinator), options.token,
                                         self.connection, self._halt, self.heartbeats, self._register_request,
                                         refused=self.request_stop)
        self.answers = Answers()
        self.reporter = Reporter(Outbox(state / "outbox"), state / "rejected", self.connection,
                                 lambda: self.worker_id, on_answer=self._answered)
        self.carried = CarriedReports(self.connection, self.reporter, lambda: self.worker_id)
        self.leaser = Leaser(self.connection, self.heartbeats, self.carried, LeaseContext(
            worker_id=lambda: self.worker_id, state=lambda: self._state, gate_open=lambda: self._gate.open,
            running=lambda: len(self._running), reregister=self._reregister), self._finish, options.pipeline)
        self.presence = Presence(self.connection, self.heartbeats, PresenceContext(
            worker_id=lambda: self.worker_id, state=lambda: self._state, running=self._running_copy,
            slot_times=self.slot_times, connected=lambda: self._connected, connection_state=self._connection_state,
            reregister=self._reregister, stale=self.drop_stale))
        self._running: dict[str, threading.Event] = {}
        self._slot_of: dict[str, int] = {}    # lease id -> the slot that holds it
        self._lock = threading.Lock()
        self._state = "starting"
        self._connected = True
        self.completed = 0
        self.availability = Availability(options.donation, load)
        self._gate = Gate(IDLE)
        envs = self.slot_envs()
        self._slot_cpus = slot_cpu_sets(_usable_cpus(), options.max_cpus, len(envs))
        memory = memory_per_slot(self.hardware.memory_bytes, options.memory_limit, len(envs))
        self.sandbox = sandbox or configure(options.sandbox, ResourceLimits(
            memory_bytes=memory, max_processes=options.max_processes, file_size_bytes=options.max_file_size,
        ), read_only=options.sandbox_read_only, platform=platform)
        self._slot_gpus = [slot_gpu(env) for env in envs]
        self._slot_held = [0] * len(envs)     # leases each slot holds (evaluating or being prepared)
        self._slots: dict[int, PipelinedSlot] = {}
        self.spend = AgentSpend(options.mutators, options.agent_budget)
        # GPU runtimes map far more memory than they touch, and a default cap could break them:
        # only a cap the volunteer asked for applies to GPU slots; CPU slots get a share of the RAM.
        self._slot_sandboxes = [
            self.sandbox.with_limits(cpus=cpus, memory_bytes=None if gpu is not None and not options.memory_limit
                                     else memory)
            for gpu, cpus in zip(self._slot_gpus, self._slot_cpus)
        ]

    # -- identity -------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self.registration.worker_id

    @worker_id.setter
    def worker_id(self, value: str) -> None:
        self.registration.worker_id = value

    @property
    def hardware_class(self) -> str:
        return self.registration.hardware_class

    @property
    def outbox(self) -> Outbox:
        return self.reporter.outbox

    def _register_request(self) -> worker_pb2.RegisterRequest:
        return worker_pb2.RegisterRequest(
            name=self.options.name, hardware=hardware_message(self.hardware), slots=len(self.slot_envs()),
            mutators=list(self.mutators()), client_version=__version__,
        )

    def register(self, forget_id: bool = False) -> None:
        """Registers (again), retrying while the coordinator is away (worker/registration.py)."""
        self.registration.register(forget_id)

    def _reregister(self, failed_id: str) -> None:
        """Registers anew, once, however many slots noticed that the coordinator forgot us."""
        self.registration.reregister(failed_id, self.register)

    def slot_envs(self) -> list[dict[str, str]]:
        """Each slot's own environment variables (its GPU, its share of threads)."""
        return slot_variables(self.hardware, self.options.slots, self.options.max_cpus, len(_usable_cpus()), os.environ)

    def describe_donation(self) -> list[str]:
        """What this worker uses of the machine and how it protects it, for the start-up banner."""
        gpus = ", ".join(str(g.index) for g in self.hardware.gpus) or "none"
        cpus = "all" if not self.options.max_cpus else str(min(self.options.max_cpus, len(_usable_cpus())))
        lines = [f"donating: {len(self._slot_sandboxes)} slot(s), GPUs {gpus}, CPUs {cpus}; "
                 f"{self.availability.describe()}"]
        lines += self.sandbox.describe()
        if any(slot_gpu(env) is not None for env in self.slot_envs()) and not self.options.memory_limit:
            lines.append("GPU slots have no memory cap unless --memory-limit is given")
        lines += describe_idle_gaps(self.options.donation.idle_only, self.sandbox.platform,
                                    [g.vendor for g in self.hardware.gpus])
        return lines

    def _connection_state(self, state: str) -> None:
        if state.startswith("reconnecting"):
            log.warning("coordinator %s unreachable: %s", self.options.coordinator, state)
            self._connected = False
        else:
            log.info("coordinator %s reachable again", self.options.coordinator)
            self._connected = True
        self._update_state()

    def _update_state(self) -> None:
        """Recomputes the worker's state word; prints it when it changes."""
        with self._lock:
            gate = self._gate
            state = worker_state(running=len(self._running), stopping=self._finish.is_set(),
                                 connected=self._connected, gate=gate)
            previous = self._state
            if state == previous:
                return
            self._state = state
        if not {previous, state} <= {WORKING, IDLE}:
            self.heartbeats.news()  # paused, out of hours, stopping...: the coordinator hears it now
        detail = {RECONNECTING: f" — coordinator {self.options.coordinator} unreachable, retrying with backoff",
                  gate.state: f" — {gate.reason}; no new tasks until that changes" if gate.reason else ""}
        # working <-> idle flips with every task: news only at DEBUG; every other change at INFO.
        level = logging.DEBUG if {previous, state} <= {WORKING, IDLE} else logging.INFO
        log.log(level, "worker state: %s%s", state, detail.get(state, ""))

    @property
    def state(self) -> str:
        return self._state

    # -- stopping -------------------------------------------------------------------------

    def request_stop(self, immediate: bool = False) -> None:
        """First call: finish running work, take no more. `immediate`: abandon it and release leases."""
        if immediate:
            log.warning("stopping now: running work is abandoned and its leases released")
            self._finish.set()
            self._halt.set()
            with self._lock:
                running = dict(self._running)
            # Released before the evaluations are cancelled: once they end, `run` closes the
            # connection, and this may be called from another thread (signals, a Ray drain).
            self._release(list(running))
            for cancel in running.values():
                cancel.set()
        else:
            log.info("finishing running work, then stopping (signal again to stop now)")
            self._finish.set()
            with self._lock:
                slots = list(self._slots.values())
            # Tasks leased ahead of the one a slot is evaluating go back at once, for others to take.
            self._release([lease_id for slot in slots for lease_id in slot.stop_ahead()])
        self._update_state()

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
            # Nothing runs yet: the first stop request ends the wait for the coordinator.
            self.registration.register(stop=self._finish)
        except Stopped:
            log.info("stopped before the coordinator %s could be reached", self.options.coordinator)
            return 0
        except grpc.RpcError as exc:
            hint = (" — pass the join token you were given with --token-file (or --token, AUTOSWARM_JOIN_TOKEN)"
                    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) else "")
            log.error("the coordinator refused to register this worker: %s %s%s", exc.code().name, exc.details(), hint)
            raise SystemExit(2) from None
        threads = [threading.Thread(target=self.presence.run, args=(self._halt,), name="heartbeat", daemon=True),
                   threading.Thread(target=self.reporter.run, args=(self._halt,), name="outbox", daemon=True)]
        if self.options.donation.hours is not None or self.options.donation.idle_only:
            self._check_availability(prime=True)
            threads.append(threading.Thread(target=self._availability_loop, name="availability", daemon=True))
        self._update_state()
        slots = [threading.Thread(target=self._slot_loop, args=(i, env), name=f"slot-{i}", daemon=True)
                 for i, env in enumerate(self.slot_envs())]
        for t in threads + slots:
            t.start()
        for t in slots:
            while t.is_alive():
                t.join(0.5)
        self._halt.set()
        self.reporter.flush(final=True)
        if self.worker_id:
            self._state = "stopped"
        self.presence.say_stopped(kept=[entry.lease_id for entry in self.outbox.pending()])
        self.connection.close()
        log.info("worker stopped after %d task(s); %d result(s) wait in the outbox", self.completed, len(self.outbox))
        return self.completed

    def _slot_loop(self, index: int, env: dict[str, str]) -> None:
        context = ExecutionContext(
            cache=self.cache, scratch_root=self._scratch / f"slot-{index}", data_root=self._data,
            slot_env=env, keep_scratch=self.options.keep_scratch, mutator_options=self.options.mutator_options,
            sandbox=self._slot_sandboxes[index], announce=self.presence.announce,
            agent_box=self.options.agent.box(self._slot_sandboxes[index], self.options.state_dir),
        )
        context.scratch_root.mkdir(parents=True, exist_ok=True)
        slot = PipelinedSlot(index, context, self, self._fetch_bundle, self.mutators,
                             depth=2 if self.options.pipeline else 1)
        with self._lock:
            self._slots[index] = slot
        slot.run()
        log.info("slot %d: %s", index, slot.clock.read().describe())

    def slot_times(self) -> list[SlotTime]:
        """Where each slot's time went so far."""
        with self._lock:
            slots = sorted(self._slots.items())
        return [slot.clock.read() for _, slot in slots]

    # -- what a slot asks of its worker (worker/slot.py's SlotHost) -------------------------

    @property
    def finishing(self) -> threading.Event:
        return self._finish

    def gate_open(self) -> bool:
        return self._gate.open

    def wait_for_gate(self) -> None:
        """Out of hours or the machine is busy: look again shortly."""
        self._finish.wait(min(self.options.check_interval, 0.5))

    def lease_task(self, nothing_yet: Callable[[], None] | None = None) -> worker_pb2.Task | None:
        return self.leaser.lease(nothing_yet)

    def release(self, lease_ids: list[str]) -> None:
        self._release(lease_ids)

    def track(self, slot: int, lease_id: str, cancel: threading.Event) -> None:
        with self._lock:
            self._running[lease_id] = cancel
            self._slot_of[lease_id] = slot
            self._slot_held[slot] += 1
        self._update_state()

    def untrack(self, slot: int, lease_id: str) -> None:
        with self._lock:
            self._running.pop(lease_id, None)
            self._slot_of.pop(lease_id, None)
            self._slot_held[slot] -= 1
        self._update_state()

    def mutators(self) -> tuple[str, ...]:
        """The mutator kinds this worker runs now: without agents once its own budget is spent."""
        return self.spend.kinds()

    def _count_cost(self, result: worker_pb2.Result) -> None:
        """Adds an edit's cost; at the volunteer's cap, agents stop and the coordinator is told."""
        if self.spend.add(result.cost_usd, result.llm_tokens):
            log.warning("--llm-budget reached (%.4f USD, %d tokens spent): no more llm or command tasks on this "
                        "worker; it goes on with %s", self.spend.usd, self.spend.tokens,
                        ", ".join(self.mutators()) or "nothing")
            if not self.mutators():
                self.request_stop()
            else:
                try:
                    self.register()  # the coordinator hears the kinds left
                except (Stopped, grpc.RpcError) as exc:
                    log.warning("could not tell the coordinator about the budget: %s", exc)

    def deliver(self, lease_id: str, result: worker_pb2.Result) -> bool:
        """Keeps the result in the outbox and wakes the outbox thread to send it: the slot goes
        on to its next evaluation without waiting for the coordinator's answer. Returns whether
        it rides on the slot's next lease call instead (answered with the next task)."""
        self.completed += 1
        if result.llm_tokens or result.cost_usd:
            self._count_cost(result)
        self.answers.expect(lease_id)
        follows = self._lease_follows(lease_id)
        return self.carried.keep(lease_id, result, lease_follows=follows)

    def await_answer(self, lease_id: str) -> None:
        """Waits (at most `ANSWER_WAIT_SECONDS`) until the report of this result was attempted."""
        if not self.answers.wait(lease_id, ANSWER_WAIT_SECONDS):
            log.debug("no answer yet for %s; the slot goes on", lease_id)

    def _answered(self, lease_id: str, response: worker_pb2.ReportResponse | None) -> None:
        """An attempt to report `lease_id` is over: stale leases it names are dropped first."""
        if response is not None and response.stale_lease_ids:
            self.drop_stale(list(response.stale_lease_ids))
        self.answers.answered(lease_id)

    def drop_stale(self, lease_ids: Sequence[str]) -> None:
        """Leases the coordinator says were made on a replaced champion: each slot hands back
        those it has not started (worker/slot.py); one already evaluating finishes."""
        with self._lock:
            slots = {self._slot_of[lease_id] for lease_id in lease_ids if lease_id in self._slot_of}
            held = [self._slots[i] for i in sorted(slots) if i in self._slots]
        for slot in held:
            slot.drop_stale(lease_ids)

    def _lease_follows(self, lease_id: str) -> bool:
        """Whether this lease's slot leases again as soon as it lets go of it: it holds as many
        tasks as it may (its preparer waits for this one's place), and new work is allowed."""
        with self._lock:
            slot = self._slot_of.get(lease_id)
            held = self._slot_held[slot] if slot is not None else 0
            depth = self._slots[slot].depth if slot in self._slots else 0
        return held >= depth > 0 and not self._finish.is_set() and self._gate.open

    def _fetch_bundle(self, bundle_hash: str, download: BundleDownload) -> None:
        """Streams a bundle into `download` (on disk, capped). A coordinator outage mid-stream is
        waited out like any other call and the download starts over; a refusal, or a stream over
        the cap, becomes a BundleError (the task is then reported as setup-failed)."""
        def attempt() -> None:
            download.restart()
            for chunk in self.connection.fetch_bundle(bundle_hash):
                download.write(chunk)

        try:
            self.connection.retry(attempt, self._halt, "fetch bundle")
        except grpc.RpcError as exc:
            raise BundleError(f"the coordinator refused bundle {bundle_hash[:12]}: "
                              f"{exc.code().name} {exc.details()}") from exc

    # -- presence -------------------------------------------------------------------------

    def _running_copy(self) -> dict[str, threading.Event]:
        with self._lock:
            return dict(self._running)

    # -- donation controls ----------------------------------------------------------------

    def _check_availability(self, prime: bool = False) -> None:
        """Asks whether new tasks may start (the GPUs asked about are those of idle slots only:
        on a GPU we are using, every process may be ours)."""
        with self._lock:
            idle_gpus = [gpu for gpu, held in zip(self._slot_gpus, self._slot_held) if gpu is not None and not held]
        if prime:  # the CPU share is measured between two looks
            self.availability.gate(idle_gpus)
            self._halt.wait(min(self.options.check_interval, 1.0))
        gate = self.availability.gate(idle_gpus)
        with self._lock:
            self._gate = gate
        self._update_state()

    def _availability_loop(self) -> None:
        while not self._halt.wait(self.options.check_interval):
            self._check_availability()




def slot_variables(hardware: HardwareInfo, slots: int | None, max_cpus: int | None, usable_cpus: int,
                   inherited: Mapping[str, str]) -> list[dict[str, str]]:
    """The variables each slot sets for its commands: which GPU it has, and, where slots share
    the CPUs, a thread count per slot unless the volunteer set one (`inherited`)."""
    if slots is not None and not hardware.gpus:
        envs = slot_environments((), slots)
    else:
        envs = slot_environments(hardware.gpus, slots or 1)
        envs = envs[:slots] if slots else envs
    if max_cpus or len(envs) > 1:
        # Numerical libraries start one thread per core unless told otherwise: several slots
        # would each start one per core and slow each other down.
        share = str(max(1, (max_cpus or usable_cpus) // len(envs)))
        for env in envs:
            env.update({name: share for name in THREAD_VARIABLES if name not in inherited})
    return envs


def _usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return list(range(os.cpu_count() or 1))


def donated_hardware(hw: HardwareInfo, options: WorkerOptions) -> HardwareInfo:
    """The machine as far as it is donated: chosen GPUs only, at most --max-cpus cores.

    This is also what the worker registers, so its hardware class reflects what evaluations get.
    """
    if options.gpus is not None:
        present = {g.index for g in hw.gpus}
        missing = [i for i in options.gpus if i not in present]
        if missing:
            raise DonationError(f"--gpus: this machine has no GPU {', '.join(map(str, missing))}; "
                                f"its GPUs are {', '.join(map(str, sorted(present))) or 'none'} "
                                "(as the start-up `machine:` line lists them)")
        hw = replace(hw, gpus=tuple(g for g in hw.gpus if g.index in options.gpus))
    if options.max_cpus:
        hw = replace(hw, cpu_cores=min(hw.cpu_cores, options.max_cpus))
    return hw


def private_directory(path: Path) -> Path:
    """`path`, made readable by this user only if it is missing (it will hold the worker's
    credential, itself in a 0600 file). A directory that exists is left as it is: it may be
    shared (`--state-dir /tmp` must not make /tmp private)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def default_state_dir() -> Path:
    """Where a worker keeps its identity, outbox and caches: $XDG_CACHE_HOME/autoswarm/worker."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autoswarm" / "worker"


def describe_machine(hw: HardwareInfo) -> str:
    gpus = ", ".join(f"{g.index}: {g.name}" for g in hw.gpus) or "no GPU"
    return f"{hw.cpu_model} ({hw.cpu_cores} cores, {hw.memory_bytes / 2**30:.1f} GiB), {gpus}, {platform.system()}"
