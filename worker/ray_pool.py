"""Worker loops as Ray actors: `autoswarm cluster` and `autoswarm run --ray`.

One actor is one worker process: the same `worker.loop.Worker` a volunteer runs, talking to the
coordinator over gRPC like any other worker. Ray only places and restarts the processes; it
holds nothing that matters. The coordinator's store is the source of truth: an actor that dies
loses at most its running task (its lease expires and is issued again) and whatever its outbox
held on a node that is gone.

Actors are named `<prefix>-<index>@<spec digest>` in a Ray namespace. Scaling is declarative
and stateless: `RayPool.scale(n)` lists the named actors, keeps those with index < n whose spec
digest matches, drains the others (finish the running task, then stop) and creates the missing
indices. So re-running `autoswarm cluster --workers N` with another N resizes the pool, and
re-running it with other resources (say `--gpus-per-worker 2`) replaces the actors.

Ray is an optional dependency: nothing here imports it at module level, and a volunteer's
worker never imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from autoswarm.worker.donation import THREAD_VARIABLES

log = logging.getLogger("autoswarm.ray")

DEFAULT_PREFIX = "autoswarm-worker"
DEFAULT_NAMESPACE = "autoswarm"
# Ray decides at import time which address a node advertises: on Linux, the machine's outward
# IP, and every Ray gRPC server then listens on all interfaces. "0" makes a local instance use
# 127.0.0.1, whose servers then bind loopback only.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_MIN_OBJECT_STORE = 128 << 20  # actors pass a few small dataclasses; Ray's default takes 30% of RAM


class RayUnavailable(RuntimeError):
    """Ray is missing, or no Ray cluster can be reached; the message says what to do."""


def import_ray() -> ModuleType:
    """`ray`, imported on first use so that the rest of autoswarm never needs it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable("Ray is not installed: pip install 'autoswarm[ray]' "
                             "(on every node of the cluster too)") from None
    return ray


# -- what each actor runs -------------------------------------------------------------------


@dataclass(frozen=True)
class ActorSpec:
    """What every worker actor of a pool runs with. Its digest is part of each actor's name,
    so that changing any of it replaces the actors instead of leaving old ones running."""

    coordinator: str
    gpus: float = 0.0                     # Ray's num_gpus per actor: one task per whole GPU
    cpus: float = 1.0                     # Ray's num_cpus per actor
    mutators: tuple[str, ...] = ("params",)
    slots: int | None = None              # None: one per GPU, or 1 without GPUs
    state_root: str = ""                  # on each node; "": ~/.cache/autoswarm/ray-workers
    sandbox: str = "auto"
    # Join token; "": the node's AUTOSWARM_JOIN_TOKEN, if any (e.g. from a Kubernetes Secret).
    token: str = field(default="", repr=False)
    ca_pem: str = ""                      # the coordinator's CA certificate (PEM): TLS

    def check(self) -> None:
        """Raises ValueError, naming the flag, for resources Ray would refuse or misplace."""
        if not self.coordinator or ":" not in self.coordinator:
            raise ValueError(f"--coordinator: expected HOST:PORT, got {self.coordinator!r}")
        if self.gpus < 0 or (self.gpus > 1 and not float(self.gpus).is_integer()):
            raise ValueError(f"--gpus-per-worker: Ray takes a fraction below 1 or a whole number, got {self.gpus}")
        if self.cpus < 0:
            raise ValueError(f"--cpus-per-worker: must be 0 or more, got {self.cpus}")
        if self.slots is not None and self.slots < 1:
            raise ValueError(f"--slots: must be at least 1, got {self.slots}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ActorStatus:
    """One actor as it describes itself."""

    name: str
    pid: int
    node: str
    worker_id: str          # "" until it has registered with the coordinator
    state: str
    completed: int          # tasks finished by this process (a restarted actor counts from 0)
    gpu_ids: tuple[int, ...]
    started: float
    guard: str = ""          # what protects the worker's secrets in this process (process_guard)
    dumpable: bool | None = None  # False: other processes of its user cannot read its memory or environment
    threads: tuple[tuple[str, str], ...] = ()  # the thread counts its evaluations get


def actor_thread_limits(cpus: float, slots: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Thread counts for one actor's evaluations: its share of the CPUs Ray gives it.

    Numerical libraries start one thread per core of the node, and the node's other actors
    use those cores too; `autoswarm run` divides a machine among its workers the same way
    (`local_run.worker_thread_limits`). Ray itself sets OMP_NUM_THREADS to the actor's CPUs,
    but none of the others and not per slot. Variables the node's environment sets
    (`environ`: what the process was started with) are left as they are; with no CPUs
    reserved (`--cpus-per-worker 0`) nothing is set.
    """
    if cpus <= 0:
        return {}
    share = str(max(1, math.floor(cpus) // max(1, slots)))
    return {name: share for name in THREAD_VARIABLES if name not in environ}


def _initial_environment() -> Mapping[str, str]:
    """The environment this process was started with (from the node, a runtime_env), not what
    Ray set in it since (OMP_NUM_THREADS); os.environ where /proc is missing."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {name: value for name, sep, value in pairs if sep}


def default_state_root() -> Path:
    """Where actors keep identity, outbox and caches on a node: beside a volunteer's state."""
    from autoswarm.worker.loop import default_state_dir

    return default_state_dir().parent / "ray-workers"


class WorkerActor:
    """One worker process on a Ray node: the volunteer's Worker loop, run in a thread.

    Wrapped with `ray.remote` by RayPool (not decorated here, so that importing this module
    needs no Ray). Ray runs `__init__` again in a new process when it restarts the actor; with
    the same state dir the worker keeps its identity and sends what its outbox still holds.
    """

    def __init__(self, name: str, spec: ActorSpec) -> None:
        ray = import_ray()
        from autoswarm.worker import process_guard
        from autoswarm.worker.hardware import detect_hardware
        from autoswarm.worker.loop import Worker, WorkerOptions

        # As `autoswarm worker` does before anything else: its evaluations run as this user,
        # and must not read the join token from this process's memory or environment.
        initial = _initial_environment()
        token = spec.token or os.environ.get("AUTOSWARM_JOIN_TOKEN", "")
        self._guard = process_guard.guard_process([token] if token else [])
        self.name = name
        state_dir = (Path(spec.state_root) if spec.state_root else default_state_root()) / name
        state_dir.mkdir(parents=True, exist_ok=True)
        # The process is this actor's alone: its log goes to the state dir and to Ray's worker log.
        logging.basicConfig(level=logging.INFO, force=True,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                            handlers=[logging.StreamHandler(sys.stderr),
                                      logging.FileHandler(state_dir / "worker.log")])
        # Ray numbers GPUs as the node sees them; the worker pins one slot to each of these
        # and to no other GPU of the node (other actors use those).
        self._gpu_ids = tuple(int(g) for g in ray.get_gpu_ids())
        # Slot commands inherit these (worker/sandbox.py lets thread counts through); a worker
        # with several slots keeps them as set, since they are already one slot's share.
        slots = spec.slots or max(1, len(self._gpu_ids))
        self._threads = actor_thread_limits(spec.cpus, slots, initial)
        os.environ.update(self._threads)
        hardware = detect_hardware()
        if spec.cpus > 0:
            # Register the share Ray gives this actor, not the node's cores, so the hardware class
            # (and paired comparison) matches what evaluations get. No affinity mask: Ray assigns
            # counts, not cores, and masks chosen per actor would pile onto the same cores.
            hardware = replace(hardware, cpu_cores=max(1, min(hardware.cpu_cores, math.ceil(spec.cpus))))
        ca = None
        if spec.ca_pem:  # shipped with the spec, so that no node needs the file in place
            ca = state_dir / "coordinator-ca.pem"
            ca.write_text(spec.ca_pem)
        options = WorkerOptions(coordinator=spec.coordinator, state_dir=state_dir, name=name, slots=spec.slots,
                                mutators=spec.mutators, gpus=self._gpu_ids, sandbox=spec.sandbox,
                                token=token, ca=ca)
        self.worker = Worker(options, hardware)
        log.info("%s", self._guard.describe())
        self._node = ray.util.get_node_ip_address()
        self._started = time.time()
        self._retiring = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException:
            log.exception("the worker loop of %s failed", self.name)
            if not self._retiring.is_set():
                # A dead loop in a live process would hold its Ray resources doing nothing:
                # end the process so that Ray restarts the actor afresh.
                os._exit(1)

    def describe(self) -> ActorStatus:
        return ActorStatus(name=self.name, pid=os.getpid(), node=self._node, worker_id=self.worker.worker_id,
                           state="stopped" if not self._thread.is_alive() else self.worker.state,
                           completed=self.worker.completed, gpu_ids=self._gpu_ids, started=self._started,
                           guard=self._guard.describe(), dumpable=self._guard.dumpable,
                           threads=tuple(sorted(self._threads.items())))

    def drain(self, timeout: float) -> ActorStatus:
        """Finishes the running task and stops; after `timeout` seconds abandons it (its lease is
        released, so the coordinator issues it again at once)."""
        self._retiring.set()
        self.worker.request_stop(immediate=False)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.worker.request_stop(immediate=True)
            self._thread.join(30)
        return self.describe()


# -- the pool ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A named actor of a pool, from its Ray name `<prefix>-<index>@<digest>`."""

    index: int
    digest: str
    ray_name: str

    @property
    def worker_name(self) -> str:
        return self.ray_name.split("@", 1)[0]


@dataclass(frozen=True)
class MemberStatus:
    member: Member
    status: ActorStatus | None   # None: it did not answer
    problem: str = ""            # why not, when it did not


@dataclass(frozen=True)
class ScaleResult:
    created: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]


class RayPool:
    """The worker actors named `<prefix>-<i>@<digest>` in the connected Ray namespace.

    `detached`: the actors outlive the driver that created them (`autoswarm cluster` exits and
    the workers go on); otherwise they end with it (`autoswarm run --ray`).
    """

    def __init__(self, spec: ActorSpec, prefix: str = DEFAULT_PREFIX, *, detached: bool = True) -> None:
        spec.check()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", prefix):
            raise ValueError(f"--name: letters, digits, '.', '_' and '-' only, got {prefix!r}")
        self.ray = import_ray()
        if not self.ray.is_initialized():
            raise RayUnavailable("connect to Ray first (ray.init)")
        self.spec = spec
        self.prefix = prefix
        self.detached = detached
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d+)@([0-9a-f]{{8}})")
        self._actor_class = self.ray.remote(WorkerActor)
        # Ray destroys a non-detached actor once no handle to it is left: the pool keeps one.
        self._handles: dict[str, Any] = {}

    def members(self) -> list[Member]:
        """This pool's actors, alive or being restarted, by index."""
        found = []
        for name in self.ray.util.list_named_actors():
            match = self._pattern.fullmatch(name)
            if match:
                found.append(Member(int(match.group(1)), match.group(2), name))
        return sorted(found, key=lambda m: (m.index, m.ray_name))

    def handle(self, member: Member) -> Any:
        return self.ray.get_actor(member.ray_name)

    def _live(self, members: list[Member]) -> list[tuple[Member, Any]]:
        """(member, handle) of those still named: one may be removed while we look."""
        found = []
        for member in members:
            try:
                found.append((member, self.handle(member)))
            except ValueError:
                continue
        return found

    def scale(self, workers: int, drain_timeout: float = 300.0) -> ScaleResult:
        """Makes the pool `workers` actors of the current spec; idempotent."""
        if workers < 0:
            raise ValueError(f"--workers: must be 0 or more, got {workers}")
        digest = self.spec.digest()
        members = self.members()
        retire = [m for m in members if m.index >= workers or m.digest != digest]
        keep = [m for m in members if m not in retire]
        # Drained before anything is created: a replacement uses the same state dir (and would
        # share its outbox and identity with a worker still finishing), and the same resources.
        self._drain(retire, drain_timeout)
        held = {m.index for m in keep}
        created = []
        for index in range(workers):
            if index not in held:
                self._create(Member(index, digest, f"{self.prefix}-{index}@{digest}"))
                created.append(f"{self.prefix}-{index}")
        return ScaleResult(created=tuple(created), removed=tuple(m.worker_name for m in retire),
                           kept=tuple(m.worker_name for m in keep))

    def _create(self, member: Member) -> None:
        self._handles[member.ray_name] = self._actor_class.options(
            name=member.ray_name, get_if_exists=True, lifetime="detached" if self.detached else None,
            max_restarts=-1,      # a dead worker process comes back, on any node with room
            max_task_retries=0,   # describe/drain are cheap to call again; never replay a drain
            max_concurrency=4,    # describe() must answer while drain() waits for the loop
            num_cpus=self.spec.cpus, num_gpus=self.spec.gpus,
        ).remote(member.worker_name, self.spec)

    def _drain(self, members: list[Member], timeout: float) -> None:
        handles = [h for _, h in self._live(members)]
        pending = [h.drain.remote(timeout) for h in handles]
        if pending:
            # A pending or restarting actor never answers: it is killed all the same.
            self.ray.wait(pending, num_returns=len(pending), timeout=timeout + 45)
        for h in handles:
            self.ray.kill(h, no_restart=True)
        for member in members:
            self._handles.pop(member.ray_name, None)

    def statuses(self, timeout: float = 10.0) -> list[MemberStatus]:
        """Each actor's status, waiting at most `timeout` seconds for all of them to answer."""
        members, refs = [], []
        for member, handle in self._live(self.members()):
            members.append(member)
            refs.append(handle.describe.remote())
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        out = []
        for member, ref in zip(members, refs):
            status, problem = None, "starting, or waiting for a node with room"
            if self.ray.wait([ref], timeout=0)[0]:
                try:
                    status, problem = self.ray.get(ref), ""
                except self.ray.exceptions.RayError as exc:  # e.g. its constructor failed
                    problem = f"failed: {str(exc).strip().splitlines()[-1]}"
            out.append(MemberStatus(member, status, problem))
        return out

    def wait_ready(self, timeout: float) -> list[ActorStatus]:
        """Waits until every actor answers; raises RayUnavailable with the actor's error (e.g. a
        failing constructor) or when some are still not up after `timeout`."""
        refs = [h.describe.remote() for _, h in self._live(self.members())]
        if not refs:
            return []
        ready, waiting = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if waiting:
            raise RayUnavailable(f"{len(waiting)} of {len(refs)} worker actor(s) not up after {timeout:.0f}s: "
                                 "Ray may lack free CPUs/GPUs for them (see `ray status`)")
        try:
            return list(self.ray.get(refs))
        except self.ray.exceptions.RayError as exc:
            raise RayUnavailable(f"a worker actor failed to start: {exc}") from None


# -- connecting -------------------------------------------------------------------------------


def connect(address: str, namespace: str) -> ModuleType:
    """Joins the Ray cluster at `address` ("auto": the one this machine belongs to) as a driver."""
    ray = import_ray()
    try:
        ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise RayUnavailable(f"no Ray cluster at {address!r} ({exc}); start one with `ray start --head` "
                             "on this machine, or pass --ray-address HEAD_IP:6379") from None
    return ray


def start_local_ray(num_cpus: int, namespace: str = DEFAULT_NAMESPACE) -> ModuleType:
    """Starts a throw-away Ray instance on this machine, its ports on loopback only."""
    os.environ.setdefault(LOOPBACK_ENV, "0")
    already = "ray" in sys.modules
    ray = import_ray()
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        # Ray read the variable when it was imported, before we could set it.
        where = "ray was imported before autoswarm could set it" if already else f"{LOOPBACK_ENV} is set"
        raise RayUnavailable(f"a local Ray would listen on every interface: {where}; "
                             f"set {LOOPBACK_ENV}=0 in the environment")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, namespace=namespace,
             object_store_memory=_MIN_OBJECT_STORE, log_to_driver=False, logging_level=logging.WARNING)
    return ray


@dataclass
class LocalRayWorkers:
    """`autoswarm run --ray`: the run's workers as actors on a local Ray instance."""

    ray: ModuleType
    pool: RayPool
    owns_ray: bool  # started here, so stopped here; a Ray the caller had running is left running

    @classmethod
    def start(cls, spec: ActorSpec, workers: int, timeout: float = 120.0) -> LocalRayWorkers:
        running = sys.modules.get("ray")
        if running is not None and running.is_initialized():
            ray, owns_ray = running, False
            # A Ray the caller runs may have fewer CPUs free than this machine's share: fit into them.
            room = float(ray.available_resources().get("CPU", 0.0)) / max(1, workers)
            if 0 < room < spec.cpus:
                spec = replace(spec, cpus=max(1.0, math.floor(room)) if room >= 1 else room)
        else:
            ray, owns_ray = start_local_ray(num_cpus=workers * max(1, math.ceil(spec.cpus))), True
        try:
            pool = RayPool(spec, prefix="local", detached=False)
            pool.scale(workers)
            if len(pool.wait_ready(timeout)) != workers:
                raise RayUnavailable(f"started {workers} worker actor(s) but Ray lists another number")
        except BaseException:
            if owns_ray:
                ray.shutdown()
            raise
        return cls(ray, pool, owns_ray)

    def stop(self, grace: float) -> None:
        """Lets running tasks finish for `grace` seconds, then removes the actors; safe to call twice."""
        if not self.ray.is_initialized():
            return
        try:
            self.pool.scale(0, drain_timeout=grace)
        finally:
            if self.owns_ray:
                self.ray.shutdown()
