"""Swarm size: what every connected worker costs one coordinator, from 1,000 to 100,000.

A SETI@home-style swarm is mostly waiting: tasks take minutes, and what limits the
coordinator is the steady trickle of every connected machine, not lease + report cycles.
Simulated workers behave like a real swarm's: each is a distinct registered worker with its
own leases; a share of them is idle (no study matches what they can run), and those wait on
the long-poll `Lease` as the coordinator tells them to; the others lease a task, "evaluate"
it for minutes, heartbeat when the coordinator says so, report, and lease again.

The clock is compressed by a factor C per step: every duration of the swarm (tasks, the
study's timeout, the lease grace, every interval and long-poll length the coordinator uses)
is divided by C, and every rate it budgets for is multiplied by C. So C=4 runs four real
minutes in one, at four times the RPC rate, and the coordinator's CPU per *real* connected
worker-hour is its CPU / (workers × wall hours × C).

The workers are asyncio tasks multiplexed over a few gRPC channels in a few client
processes (not one OS connection each), all on loopback. Steps grow the same coordinator:
1,000, then 10,000, then 100,000 connected workers. Each step registers the new workers,
starts them at `--join-rate` (each working one as if mid-task, so the window sees a steady
state), then measures for `--seconds`: coordinator CPU per connected worker-hour, RPCs per
second by method, p99 Lease (the calls that handed out a task: a Lease, or a Report whose
answer carried the next task) and Report latency, coordinator memory, and what the
coordinator's event loop went through (how often a 10 ms timer was late by > 50 / > 100 ms, and
the garbage collector's pauses): at this size one stall of the loop decides the p99.

    python benchmarks/swarm_size.py                                  # 1k, 10k, 100k
    python benchmarks/swarm_size.py --steps 1000 --compression 10 --seconds 30
    python benchmarks/swarm_size.py --compare paired --quorum 2 --classes 16   # a real swarm's study
    python benchmarks/swarm_size.py --separate-report   # Report + Lease per task, as older workers do
    python benchmarks/swarm_size.py --steps 100000 --scrape 15   # metrics on, scraped as Prometheus does

Besides the clients' latencies (what a volunteer sees), it prints the server-side time of the
same calls (handler only: a stall of the loop delays a call before its handler starts), the
client processes' CPU (a starved client inflates latency), and where the loop thread was
while it was late.

`--coordinator-tree DIR` runs the coordinator from another checkout (e.g. the code before a
change), for before/after figures on the same machine in the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc  # noqa: E402
from autoswarm.coordinator.wakeups import drain_grpc_wakeups  # noqa: E402
from autoswarm.worker.connection import Attempts, retry_after  # noqa: E402
from coordinator_throughput import (  # noqa: E402
    cpu_seconds, free_port, percentile, rss_mib, start_process, stop_process, tree_loader,
)

# Real-time shape of the swarm (divided by the compression C in each step).
TASK_MEAN = 300.0        # seconds: a five-minute evaluation on average
TASK_TIMEOUT = 900.0     # the study's timeout
LEASE_GRACE = 30.0
WORKERS_PER_CLIENT_PROCESS = 25_000   # simulated workers one client process carries by default
MIN_CLIENT_PROCESSES = 2

# The coordinator, started with every duration divided by C and every budget multiplied by C.
COORDINATOR = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from autoswarm.coordinator.engine import EngineConfig
    from autoswarm.coordinator.liveness import LivenessPolicy
    from autoswarm.coordinator.server import ServerConfig, serve
    db, listen, ready, c = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    base = LivenessPolicy()
    liveness = LivenessPolicy(
        max_interval=base.max_interval / c, heartbeat_budget=base.heartbeat_budget * c,
        min_poll=base.min_poll / c, max_poll=base.max_poll / c, poll_budget=base.poll_budget * c,
        offline_slack=base.offline_slack / c)
    engine = EngineConfig(lease_grace=float(sys.argv[5]) / c, heartbeat_interval=base.min_interval / c,
                          liveness=liveness)
    # Join admission (a coordinator without it has no such field): -1 keeps the coordinator's default.
    admit = float(sys.argv[8])
    joins = ({"join_rate": admit * c, "join_burst": max(5 * admit, 1.0)}
             if admit >= 0 and "join_rate" in ServerConfig.__dataclass_fields__ else {})
    config = ServerConfig(db=Path(db), listen=listen, ready_file=Path(ready), auth=False,
                          worker_rate=0.0, reap_interval=max(0.05, 0.5 / c), engine=engine,
                          metrics_port=int(sys.argv[7]), **joins)
    asyncio.run(watched(serve(config), Path(sys.argv[6])))
""")

# `--coordinator-tree`: the coordinator's packages from another checkout. Read from the environment
# and run from a file, not `-c`, so that the credit rebuild's process (multiprocessing's spawn
# re-runs the main file as `__mp_main__` in the child, which inherits the environment) runs the
# same tree's code too: with `-c` it imported this checkout's, whatever the parent ran.
TREE_VARIABLE = "SWARM_SIZE_COORDINATOR_TREE"
TREE_FROM_ENV = tree_loader(f"os.environ.get({TREE_VARIABLE!r})")


def coordinator_script() -> str:
    """The coordinator's main file: the tree loader and the stall watch at its top level (a
    spawned child runs them too, as `__mp_main__`), the coordinator itself only as `__main__`."""
    return TREE_FROM_ENV + STALL_WATCH + "if __name__ == '__main__':\n" + textwrap.indent(COORDINATOR, "    ")


def family(pid: int) -> list[int]:
    """The processes started by `pid`, and theirs (the credit rebuild's, multiprocessing's resource
    tracker): their CPU is the coordinator's too, and on a 2-core machine it is CPU the loop shares."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def family_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each process `family` finds (one that ended meanwhile is left out)."""
    cpu = {}
    for child in family(pid):
        try:
            cpu[child] = cpu_seconds(child)
        except OSError:
            continue
    return cpu


def family_rss_mib(pid: int) -> float:
    total = 0.0
    for child in family(pid):
        try:
            total += rss_mib(child)
        except OSError:
            continue
    return total


# What the coordinator's event loop went through, for the step's window: how often and how long
# it was late for a 10 ms timer (a stall every request in flight pays), and its collector's
# pauses. Written to a file every second (from a thread); the benchmark takes the difference over the window.
STALL_WATCH = textwrap.dedent("""
    import asyncio, collections, gc, json, os, queue, sys, threading, time, traceback
    HANDLED_KEY = "swarm-size-handled"
    def ms_bucket(ms):
        # By the millisecond up to 100 ms, then two significant digits: a backlog's waits of
        # up to minutes would otherwise be ~100,000 keys, written out every second from the loop.
        return str(int(ms)) if ms < 100 else str(int(float(f"{ms:.2g}")))
    async def watched(main, out):
        stats = {"ticks": 0, "late_50ms": 0, "late_100ms": 0, "late_max_ms": 0.0, "gc_full": 0,
                 "gc_full_ms": 0.0, "gc_ms": 0.0, "gc_max_ms": 0.0,
                 "late_wall_ms": 0.0, "late_loop_cpu_ms": 0.0, "late_process_cpu_ms": 0.0, "stacks": {}}
        started = {}
        def collector(phase, info):
            if phase == "start":
                started["t"] = time.perf_counter()
            elif "t" in started:
                ms = 1000 * (time.perf_counter() - started.pop("t"))
                stats["gc_ms"] += ms
                stats["gc_max_ms"] = max(stats["gc_max_ms"], ms)
                if info["generation"] == 2:
                    stats["gc_full"] += 1
                    stats["gc_full_ms"] += ms
        gc.callbacks.append(collector)
        # The coordinator's periodic and store calls, timed: how long each took in all, how
        # often one took > 50 ms, the longest (the checkpoint runs on its own thread).
        import importlib
        import inspect
        def timed(module, owner, method):
            # Wall time of each call (a coroutine's includes what it awaited); a static method stays static.
            try:
                cls = getattr(importlib.import_module(f"autoswarm.coordinator.{module}"), owner, None)
            except ImportError:
                return
            raw = cls.__dict__.get(method) if cls is not None else None
            if raw is None:
                return
            static = isinstance(raw, staticmethod)
            inner = raw.__func__ if static else raw
            key = f"{owner}.{method}"
            stats[key] = {"calls": 0, "ms": 0.0, "over_50ms": 0, "max_ms": 0.0}
            def count(t):
                ms, entry = 1000 * (time.perf_counter() - t), stats[key]
                entry["calls"] += 1
                entry["ms"] += ms
                entry["over_50ms"] += ms > 50
                entry["max_ms"] = max(entry["max_ms"], ms)
            if inspect.iscoroutinefunction(inner):
                async def wrapper(*args, **kwargs):
                    t = time.perf_counter()
                    try:
                        return await inner(*args, **kwargs)
                    finally:
                        count(t)
            else:
                def wrapper(*args, **kwargs):
                    t = time.perf_counter()
                    try:
                        return inner(*args, **kwargs)
                    finally:
                        count(t)
            setattr(cls, method, staticmethod(wrapper) if static else wrapper)
        # The checkpoint thread's statements by mode: a RESTART holds the writer (the loop) off.
        class TimedConnection:
            def __init__(self, db):
                self.db = db
            def execute(self, sql, *args):
                mode = sql.split("(")[-1].rstrip(")").lower()
                key = f"checkpoint {mode}"
                entry = stats.setdefault(key, {"calls": 0, "ms": 0.0, "over_50ms": 0, "max_ms": 0.0})
                t = time.perf_counter()
                try:
                    return self.db.execute(sql, *args)
                finally:
                    ms = 1000 * (time.perf_counter() - t)
                    entry["calls"] += 1
                    entry["ms"] += ms
                    entry["over_50ms"] += ms > 50
                    entry["max_ms"] = max(entry["max_ms"], ms)
        store_base = importlib.import_module("autoswarm.coordinator.store_base")
        checkpointer = getattr(store_base, "WalCheckpointer", None)
        if checkpointer is not None and hasattr(checkpointer, "checkpoint"):
            plain_checkpoint = checkpointer.checkpoint
            checkpointer.checkpoint = lambda self, db: plain_checkpoint(self, TimedConnection(db))
        for module, owner, method in (("store_base", "StoreBase", "commit_batch"),
                                      ("store_base", "StoreBase", "_catch_up_wal"),   # the writer's WAL catch-up
                                      ("store_base", "StoreBase", "_restart_wal"),    # its name in an older tree
                                      ("engine", "Engine", "expire_overdue"), ("engine", "Engine", "flush_presence"),
                                      ("engine", "Engine", "lease"), ("engine", "Engine", "report"),
                                      ("engine", "Engine", "heartbeat"), ("heap", "HeapKeeper", "tick"),
                                      # What a monitored coordinator adds on the loop: the census's slices,
                                      # the scrape, the credit rebuild's round trip (wall time, mostly
                                      # awaiting its process) and what the loop reads for it.
                                      ("census", "WorkerCensus", "_take"), ("census", "WorkerCensus", "worker_rows"),
                                      ("metrics", "CoordinatorMetrics", "exposition"),
                                      ("standings", "StandingsBook", "_fresh"),
                                      ("service", "ControlService", "Status")):
            timed(module, owner, method)
        # Server-side time of the calls that handed out a task (a Lease, held or not, or a Report
        # with its next task), as the clients count them: from the handler's start to its
        # answer, so without the wait before the handler ran. Bucketed by the millisecond.
        service = importlib.import_module("autoswarm.coordinator.service")
        def handled(method):
            inner = getattr(service.WorkerService, method)
            key = f"server {method}"
            stats[key] = {}
            stats[f"server {method} cancelled"] = {}
            if method == "Lease":
                stats["server Lease reached"] = {}
            async def wrapper(self, request, context):
                t = time.perf_counter()
                if method == "Lease":
                    # How long the call took to reach its handler: the simulated workers' timeout
                    # is their wait + 30 s (SimulatedWorker.call), so what the deadline has lost
                    # is the time since the client started the call (its own delay, the
                    # transport's, gRPC's queue before the handler, the interceptors).
                    left = context.time_remaining()
                    if left is not None:
                        reached = stats["server Lease reached"]
                        bucket = ms_bucket(1000 * max(0.0, request.wait_seconds + 30 - left))
                        reached[bucket] = reached.get(bucket, 0) + 1
                entered = time.monotonic()
                try:
                    response = await inner(self, request, context)
                    # When the handler started and answered, on the machine's monotonic clock
                    # (the clients' too): a client splits its wait into before, in and after it.
                    context.set_trailing_metadata(((HANDLED_KEY, f"{entered:.6f} {time.monotonic():.6f}"),))
                except asyncio.CancelledError:
                    # The call ended before its handler answered (the client's deadline or cancel).
                    gone = stats[f"server {method} cancelled"]
                    bucket = ms_bucket(1000 * (time.perf_counter() - t))
                    gone[bucket] = gone.get(bucket, 0) + 1
                    raise
                task = response.has_task if method == "Lease" else response.next.has_task
                if task:
                    bucket = ms_bucket(1000 * (time.perf_counter() - t))
                    stats[key][bucket] = stats[key].get(bucket, 0) + 1
                return response
            setattr(service.WorkerService, method, wrapper)
        handled("Lease"), handled("Report")
        # Calls near their deadline (coordinator/time_left.py; an older tree has none): given no
        # task, and long-polls answered at once instead of held.
        try:
            policy = importlib.import_module("autoswarm.coordinator.time_left").DeadlinePolicy
        except (ImportError, AttributeError):
            policy = None
        if policy is not None:
            stats["no task, deadline near"] = stats["no hold, deadline near"] = 0
            plain_may_hand_out, plain_hold = policy.may_hand_out, policy.hold
            def may_hand_out(self, left):
                allowed = plain_may_hand_out(self, left)
                stats["no task, deadline near"] += not allowed
                return allowed
            def hold(self, asked, left):
                wait = plain_hold(self, asked, left)
                stats["no hold, deadline near"] += wait == 0 and asked > 0
                return wait
            policy.may_hand_out, policy.hold = may_hand_out, hold
        # Turns of the loop: grpc.aio's server accepts one call per turn (its main loop awaits
        # one request_call at a time), so a loop that turns too few times a second queues calls
        # inside gRPC before any handler, without ever being "late" for the timer below.
        stats["turns"] = 0
        base_events = importlib.import_module("asyncio.base_events")
        plain_run_once = base_events.BaseEventLoop._run_once
        def counted_run_once(self):
            stats["turns"] += 1
            return plain_run_once(self)
        base_events.BaseEventLoop._run_once = counted_run_once
        loop_thread = threading.get_ident()
        loop_clock = time.pthread_getcpuclockid(loop_thread)
        beat = [time.monotonic()]
        def sampler():
            # Where the loop thread is while it is late: its stack every 20 ms of a stall, and
            # whether it ran since the last sample ("busy") or waited for the CPU, a lock or the GIL.
            cpu = time.clock_gettime(loop_clock)
            while True:
                time.sleep(0.02)
                cpu, ran = time.clock_gettime(loop_clock), time.clock_gettime(loop_clock) - cpu
                if time.monotonic() - beat[0] < 0.06:
                    continue
                frame = sys._current_frames().get(loop_thread)
                if frame is None:
                    continue
                where = ("busy  " if ran > 0.01 else "off-cpu ") + " < ".join(
                    f"{f.name}({f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
                    for f in reversed(traceback.extract_stack(frame)[-8:]))
                stacks = stats["stacks"]
                stacks[where] = stacks.get(where, 0) + 1
        threading.Thread(target=sampler, daemon=True).start()
        # The figures go to the file from a thread: opened from the loop, on a disk busy with the
        # WAL, the file held the loop off-CPU (the sampler caught it there, under load), a stall
        # the benchmark added itself. Replaced whole, so that a reader never sees half of it.
        snapshots = queue.SimpleQueue()
        def write_out():
            while True:
                snapshot = snapshots.get()
                while not snapshots.empty():
                    snapshot = snapshots.get()   # only the latest
                partial = out.with_name(out.name + ".partial")
                partial.write_text(json.dumps(snapshot))
                os.replace(partial, out)
        threading.Thread(target=write_out, daemon=True).start()
        async def watch():
            last_write = time.monotonic()
            while True:
                t0 = time.monotonic()
                c0, p0 = time.clock_gettime(loop_clock), time.process_time()
                await asyncio.sleep(0.01)
                t1 = beat[0] = time.monotonic()
                late = 1000 * (t1 - t0 - 0.01)
                stats["ticks"] += 1
                stats["late_50ms"] += late > 50
                stats["late_100ms"] += late > 100
                stats["late_max_ms"] = max(stats["late_max_ms"], late)
                if late > 50:
                    # Busy (the loop thread's own CPU ~ the wall time), or not given the CPU / the GIL.
                    stats["late_wall_ms"] += 1000 * (t1 - t0)
                    stats["late_loop_cpu_ms"] += 1000 * (time.clock_gettime(loop_clock) - c0)
                    stats["late_process_cpu_ms"] += 1000 * (time.process_time() - p0)
                if t0 - last_write > 1.0:
                    # The loop thread's CPU and the whole process's: the difference is gRPC's threads,
                    # the checkpoint thread, the credit rebuild's executor threads (pickling, holding the GIL).
                    stats["loop_cpu_ms"] = 1000 * time.clock_gettime(loop_clock)
                    stats["process_cpu_ms"] = 1000 * time.process_time()
                    snapshots.put({k: dict(v) if isinstance(v, dict) else v for k, v in stats.items()})
                    last_write = t0
        watcher = asyncio.ensure_future(watch())
        try:
            await main
        finally:
            watcher.cancel()
""")

METHODS = ("Register", "Lease", "Heartbeat", "Report")
HANDLED_KEY = "swarm-size-handled"   # trailing metadata the stall watch adds: when the handler ran
# What each of the stall watch's "server ..." figures times (by the key's last word).
SERVER_FIGURES = {"": "handler only, calls that handed out a task",
                  "reached": "from the client's start of the call to its handler: the wait before it",
                  "cancelled": "ended before the handler answered, after this long in it"}


@dataclass(frozen=True)
class Share:
    """One client process's simulated workers in one step."""

    address: str
    first: int              # global index of its first worker
    first_here: int         # how many workers this client process runs already
    workers: int
    idle_share: float
    per_channel: int        # simulated workers per gRPC channel
    compression: float
    ramp: float             # wall seconds over which the new workers start
    seed: int
    classes: int = 7        # hardware classes the workers are spread over
    combined: bool = True   # reports ask for the next task (ReportRequest.next)
    drain_wakeups: bool = True   # the client's loop takes all of grpc.aio's completions each turn (wakeups.py)
    join_timeout: float = 0.0    # wall seconds to wait for every join; 0: 3 ramps + 120 s (compressed)


def study_bundle(timeout: float, compare: str = "absolute", quorum: int = 1) -> bytes:
    toml = textwrap.dedent(f"""\
        name = "swarm"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "maximize"
        timeout = {timeout:g}
        [acceptance]
        compare = "{compare}"
        quorum = {quorum}
        """)
    return pack_files({"study.toml": toml.encode(), "target.py": b"X = 1\n"}).data


class Tally:
    """What one client process saw: calls by method in the window, latencies."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.lease_ms: list[float] = []
        self.report_ms: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_details: dict[str, str] = {}   # the first error's details, by method and code
        # Of the calls in lease_ms / report_ms: (to the handler, in it, back from it) in ms, from
        # the handler's times the coordinator's stall watch sends back in trailing metadata.
        self.lease_phases: list[tuple[float, float, float]] = []
        self.report_phases: list[tuple[float, float, float]] = []
        self.late_100ms = 0          # this process's event loop: 10 ms timers late by > 100 ms
        self.late_max_ms = 0.0
        self.window: tuple[float, float] = (float("inf"), float("inf"))

    def counting(self) -> bool:
        return self.window[0] <= time.monotonic() < self.window[1]

    def count(self, method: str) -> None:
        if self.counting():
            self.calls[method] += 1

    def clear(self) -> None:
        for figures in (self.calls, self.errors, self.error_details, self.lease_ms, self.report_ms,
                        self.lease_phases, self.report_phases):
            figures.clear()
        self.late_100ms, self.late_max_ms = 0, 0.0

    async def watch_loop(self) -> None:
        """How late this client process's own loop is (a starved client inflates every latency)."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            late = 1000 * (time.monotonic() - t0 - 0.01)
            if self.counting():
                self.late_100ms += late > 100
                self.late_max_ms = max(self.late_max_ms, late)


class SimulatedWorker:
    """One registered worker that behaves as the coordinator tells it to."""

    def __init__(self, stub: worker_pb2_grpc.WorkerServiceStub, worker_id: str, rng: random.Random,
                 tally: Tally, compression: float, combined: bool = True,
                 registered: worker_pb2.RegisterResponse | None = None) -> None:
        self.stub, self.id, self.rng, self.tally, self.c = stub, worker_id, rng, tally, compression
        # What Register told it, as a real worker keeps it (worker/registration.py); the real
        # worker's defaults otherwise (worker/loop.py).
        told = registered or worker_pb2.RegisterResponse()
        self.interval = told.heartbeat_interval_seconds or 5.0 / compression
        self.wait = told.lease_wait_seconds or 20.0 / compression
        # Failed lease calls in a row, retried as the real worker retries them (Connection.retry).
        self.lease_attempts = Attempts()
        self.combined = combined   # a report also asks for the next task (ReportRequest.next), as workers do
        self.phases: tuple[float, float, float] | None = None   # the last call's (see Tally.lease_phases)
        self.error: grpc.aio.AioRpcError | None = None   # the last call's, when it failed

    def told(self, answer: worker_pb2.LeaseResponse) -> None:
        self.interval = answer.heartbeat_interval_seconds or self.interval
        self.wait = answer.lease_wait_seconds or self.wait

    def task_seconds(self) -> float:
        # Exponential: what is left of a task under way is distributed like a whole one, so a
        # worker that joins "mid-task" simply draws a task, and the swarm starts in its steady state.
        return min(self.rng.expovariate(1.0 / TASK_MEAN), TASK_TIMEOUT * 0.8) / self.c

    async def call(self, method: str, request):
        self.tally.count(method)
        self.phases = None
        self.error = None
        try:
            started = time.monotonic()
            call = getattr(self.stub, method)(request, timeout=self.wait + 30)
            response = await call
            received = time.monotonic()
            if method in ("Lease", "Report"):
                handled = dict(await call.trailing_metadata() or ()).get(HANDLED_KEY)
                if handled:
                    entered, answered = (float(t) for t in handled.split())
                    self.phases = (1000 * (entered - started), 1000 * (answered - entered),
                                   1000 * (received - answered))
            return response
        except grpc.aio.AioRpcError as exc:
            self.error = exc
            if self.tally.counting():
                what = f"{method} {exc.code().name}"
                self.tally.errors[what] += 1
                self.tally.error_details.setdefault(what, str(exc.details()))
            # As the real worker: a failed lease is retried after a backoff that grows with each
            # failure in a row (`run`); a failed heartbeat waits for the next one's turn; a failed
            # report that carried the next lease goes on to a long-poll at once (worker/carry.py).
            return None

    async def run(self, start_after: float, join: worker_pb2.RegisterRequest | None = None,
                  joins: JoinCount | None = None) -> None:
        """Joins after `start_after` seconds (registers with `join` first, when given), then works."""
        await asyncio.sleep(start_after)
        if join is not None:
            registered = await register(self.stub, join, self.rng, joins or JoinCount())
            self.id = registered.worker_id
            self.interval = registered.heartbeat_interval_seconds or self.interval
            self.wait = registered.lease_wait_seconds or self.wait
        first = True
        task: worker_pb2.Task | None = None
        while True:
            if task is None:
                t0 = time.perf_counter()
                response = await self.call("Lease", worker_pb2.LeaseRequest(
                    worker_id=self.id, wait_seconds=self.wait, state="idle"))
                if response is None:
                    # A reconnect an admitting coordinator refused says when to come back.
                    await asyncio.sleep(self.lease_attempts.wait_after(self.error, self.rng)
                                        if self.error is not None else self.lease_attempts.failed(self.rng))
                    continue
                self.lease_attempts.succeeded()
                self.told(response)
                if not response.has_task:
                    continue
                if self.tally.counting():
                    self.tally.lease_ms.append((time.perf_counter() - t0) * 1000)
                    if self.phases:
                        self.tally.lease_phases.append(self.phases)
                task = response.task
            # The report's answer may carry the next task (a coordinator that leases with reports).
            task = await self.evaluate(task.lease_id, self.task_seconds(), first,
                                       task.kind == common_pb2.TASK_KIND_EXPLORE)
            first = False

    async def evaluate(self, lease_id: str, seconds: float, first: bool,
                       explore: bool = True) -> worker_pb2.Task | None:
        """Runs a task for `seconds` with heartbeats as told, reports it; returns the next task
        when the report's answer carried one."""
        end = time.monotonic() + seconds
        # A task already under way when the window opens is anywhere between two heartbeats.
        nap = self.rng.uniform(0, self.interval) if first else self.interval
        while (left := end - time.monotonic()) > 0:
            if left <= nap:
                await asyncio.sleep(left)
                break
            await asyncio.sleep(nap)
            nap = self.interval
            response = await self.call("Heartbeat", worker_pb2.HeartbeatRequest(
                worker_id=self.id, lease_ids=[lease_id], state="working"))
            if response is not None:
                self.interval = response.heartbeat_interval_seconds or self.interval
                if lease_id in response.cancelled_lease_ids:
                    return None
        # A measurement of an unchanged version (baseline, verification) is 1.0 and a little noise;
        # an edit scores below it: no edit improves, as most do not in a real study (what
        # acceptance costs is coordinator_throughput's and acceptance_sim's business).
        result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True,
                                   metric=self.rng.random() if explore else self.rng.gauss(1.0, 0.01),
                                   candidate=f"X = {self.rng.random()}\n".encode(), description="sim")
        request = worker_pb2.ReportRequest(worker_id=self.id, lease_id=lease_id, result=result)
        if self.combined:
            request.next.worker_id, request.next.state = self.id, "working"
        t0 = time.perf_counter()
        response = await self.call("Report", request)
        if response is None:
            return None
        latency = (time.perf_counter() - t0) * 1000
        if self.tally.counting():
            self.tally.report_ms.append(latency)
            if self.phases:
                self.tally.report_phases.append(self.phases)
        if not response.HasField("next"):
            return None       # an older coordinator, or not asked: lease with Lease
        self.told(response.next)
        if not response.next.has_task:
            return None
        if self.tally.counting():
            self.tally.lease_ms.append(latency)   # a task handed out: the "lease" latency is this call's
            if self.phases:
                self.tally.lease_phases.append(self.phases)
        return response.next.task


def measure_initial_version(stub: worker_pb2_grpc.WorkerServiceStub) -> None:
    """Evaluates the study's first version at once: a swarm in its steady state has long
    measured it, and the simulated workers should not all wait minutes for the first one."""
    worker_id = stub.Register(worker_pb2.RegisterRequest(
        name="seed", slots=1, mutators=["params"], hardware=common_pb2.Hardware(cpu_model="Seed", cpu_cores=1)),
        timeout=30).worker_id
    task = stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=5), timeout=30).task
    stub.Report(worker_pb2.ReportRequest(worker_id=worker_id, lease_id=task.lease_id, result=worker_pb2.Result(
        status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=1.0)), timeout=30)


async def register(stub, request: worker_pb2.RegisterRequest, rng: random.Random,
                   joins: JoinCount) -> worker_pb2.RegisterResponse:
    """Registers one worker as a real one does (worker/registration.py): retried with the
    shared backoff, and when the coordinator says when to come back (admission), then."""
    attempts = Attempts()
    while True:
        try:
            answer = await stub.Register(request, timeout=120)
            joins.joined += 1
            return answer
        except grpc.aio.AioRpcError as exc:
            joins.refused += retry_after(exc.trailing_metadata()) is not None
            await asyncio.sleep(attempts.wait_after(exc, rng))


@dataclass
class JoinCount:
    """One client process's joins in a step: registered, and refusals told when to come back."""

    joined: int = 0
    refused: int = 0


async def client(pipe: Connection) -> None:
    """One client process: for each step, registers its new workers, starts them, reports its tally."""
    tally = Tally()
    tasks: list[asyncio.Task] = [asyncio.create_task(tally.watch_loop())]
    chans: dict[str, list[grpc.aio.Channel]] = {}
    loop = asyncio.get_running_loop()
    while True:
        share = await loop.run_in_executor(None, pipe.recv)
        if share is None:
            break
        # Enough connections that none carries more than `per_channel` workers' calls: a
        # connection with a few thousand calls in flight (idle long-polls) stalls them all,
        # where each real volunteer would have a connection of its own.
        mine = chans.setdefault(share.address, [])
        while len(mine) * share.per_channel < share.first_here + share.workers:
            mine.append(grpc.aio.insecure_channel(share.address, options=[("grpc.use_local_subchannel_pool", 1)]))
        stubs = [worker_pb2_grpc.WorkerServiceStub(c) for c in mine]
        if share.drain_wakeups:
            drain_grpc_wakeups(loop)   # wraps grpc.aio's reader once (then finds only its own wrapper)
        rng = random.Random(share.seed)
        joins = JoinCount()
        # Each worker joins at its own moment in the ramp: it registers (coming back when an
        # admitting coordinator says so) and leases at once, as a volunteer starting up does.
        for i in range(share.first, share.first + share.workers):
            idle = i < share.first + int(share.workers * share.idle_share)
            request = worker_pb2.RegisterRequest(
                name=f"sim-{i}", slots=1, mutators=["none"] if idle else ["params"],
                hardware=common_pb2.Hardware(cpu_model=f"Sim CPU {i % share.classes}", cpu_cores=4))
            worker = SimulatedWorker(stubs[i % len(stubs)], "", random.Random(rng.random()), tally,
                                     share.compression, share.combined)
            tasks.append(asyncio.create_task(worker.run(rng.uniform(0, share.ramp), request, joins)))
        # A coordinator in a retry storm may never take them all: measure what joined by then.
        give_up = time.monotonic() + (share.join_timeout or 3 * share.ramp + 120 / share.compression)
        while joins.joined < share.workers and time.monotonic() < give_up:
            await asyncio.sleep(0.2)
        pipe.send((joins.joined, joins.refused))
        window = await loop.run_in_executor(None, pipe.recv)
        tally.clear()
        tally.window = window
        await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
        pipe.send((dict(tally.calls), dict(tally.errors), tally.lease_ms, tally.report_ms, dict(tally.error_details),
                   tally.lease_phases, tally.report_phases, tally.late_100ms, tally.late_max_ms))
    for task in tasks:
        task.cancel()


def read_stalls(path: Path) -> dict[str, float]:
    """The stall watch's figures so far (empty until it first wrote them)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Scraper:
    """Scrapes the coordinator's /metrics every `interval` seconds on a thread of this process,
    as Prometheus would, and keeps how long each scrape took."""

    def __init__(self, port: int, interval: float) -> None:
        self.url, self.interval = f"http://127.0.0.1:{port}/metrics", interval
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    response.read()
                self.seconds.append(time.monotonic() - t)
            except OSError:
                self.seconds.append(float("inf"))


def bucket_percentile(buckets: dict[str, int], q: float) -> float:
    """The q-quantile of counts by whole millisecond (the bucket's upper edge; above 100 ms the stall
    watch buckets by two significant digits, so within 5%)."""
    total = sum(buckets.values())
    seen = 0
    for ms in sorted(buckets, key=int):
        seen += buckets[ms]
        if seen >= q * total:
            return int(ms) + 1
    return float("nan")


def window_stalls(before: dict, after: dict) -> dict:
    """The stall watch's figures for the window: counts and sums as differences, maxima as they
    are (the run so far), and the loop thread's stacks sampled while late, by how often."""
    stalls = {k: (v if k.endswith("max_ms") else v - before.get(k, 0))
              for k, v in after.items() if not isinstance(v, dict)}
    for key, entry in after.items():
        if key.startswith("server "):
            stalls[key] = {ms: n - before.get(key, {}).get(ms, 0) for ms, n in entry.items()}
        elif isinstance(entry, dict) and key != "stacks":
            stalls[key] = window_stalls(before.get(key, {}), entry)
            stalls[key].pop("stacks")
    old = before.get("stacks", {})
    stalls["stacks"] = {k: n - old.get(k, 0) for k, n in after.get("stacks", {}).items() if n > old.get(k, 0)}
    return stalls


def phase_percentiles(phases: list[tuple[float, float, float]]) -> tuple[tuple[float, float], ...]:
    """(p50, p99) of each phase of a call: to its handler, in it, back from it."""
    if not phases:
        return ()
    return tuple((percentile(list(column), 0.5), percentile(list(column), 0.99)) for column in zip(*phases))


def client_main(pipe: Connection) -> None:
    asyncio.run(client(pipe))


@dataclass(frozen=True)
class StepResult:
    workers: int
    compression: float
    seconds: float
    cpu_seconds: float
    rpcs: dict[str, float]
    errors: dict[str, int]
    lease_p50_ms: float
    lease_p99_ms: float
    report_p50_ms: float
    report_p99_ms: float
    rss_mib: float
    load_average: float
    stalls: dict    # the coordinator loop's lateness, GC pauses and stacks while late in the window (STALL_WATCH)
    client_cpu_seconds: float = 0.0   # the simulated workers' processes, together, in the window
    scrapes: tuple[float, ...] = ()   # seconds each /metrics scrape in the window took (--scrape)
    family_cpu_seconds: float = 0.0   # the coordinator's own child processes (the credit rebuild's), in the window
    family_rss_mib: float = 0.0       # ... and their memory at the window's end
    error_details: dict[str, str] = field(default_factory=dict)   # a failed call's details, by method and code
    # p50 / p99 of each phase (to the handler, in it, back), ms, of the calls in the latencies
    lease_phases: tuple[tuple[float, float], ...] = ()
    report_phases: tuple[tuple[float, float], ...] = ()
    client_late_100ms: int = 0        # the client processes' loops, late by > 100 ms (together)
    client_late_max_ms: float = 0.0

    @property
    def cpu_ms_per_worker_hour(self) -> float:
        """Coordinator CPU per real connected worker-hour (the compression undone)."""
        return 1000 * self.cpu_seconds / (self.workers * self.seconds * self.compression / 3600)

    def describe(self) -> str:
        rpcs = "  ".join(f"{m} {self.rpcs.get(m, 0):.0f}/s" for m in METHODS if m != "Register")
        errors = f"  errors: {self.errors}" if self.errors else ""
        return (f"{self.workers:>7} workers (C={self.compression:g}, {self.seconds:.0f} s): "
                f"coordinator CPU {self.cpu_ms_per_worker_hour:.1f} ms per connected worker-hour "
                f"({100 * self.cpu_seconds / self.seconds:.0f}% of a core)\n"
                f"          RPCs: {rpcs}  (at C={self.compression:g}; real time: ÷{self.compression:g})\n"
                f"          Lease p50 {self.lease_p50_ms:.1f} ms p99 {self.lease_p99_ms:.1f} ms   "
                f"Report p50 {self.report_p50_ms:.1f} ms p99 {self.report_p99_ms:.1f} ms   "
                f"memory {self.rss_mib:.0f} MiB   load average {self.load_average:.1f}{errors}\n"
                f"          event loop late > 50 ms: {self.stalls.get('late_50ms', 0):.0f} times, > 100 ms: "
                f"{self.stalls.get('late_100ms', 0):.0f}, longest {self.stalls.get('late_max_ms', 0):.0f} ms (run so far); "
                f"GC {self.stalls.get('gc_ms', 0):.0f} ms in the window, {self.stalls.get('gc_full', 0):.0f} full "
                f"collections ({self.stalls.get('gc_full_ms', 0):.0f} ms), longest pause "
                f"{self.stalls.get('gc_max_ms', 0):.0f} ms (run so far)\n"
                f"          while late > 50 ms: {self.stalls.get('late_wall_ms', 0):.0f} ms of wall time, the loop "
                f"thread ran {self.stalls.get('late_loop_cpu_ms', 0):.0f} ms of it, the coordinator's threads "
                f"{self.stalls.get('late_process_cpu_ms', 0):.0f} ms of CPU; client processes "
                f"{100 * self.client_cpu_seconds / self.seconds:.0f}% of a core"
                + (f"\n          calls near their deadline: {self.stalls['no task, deadline near']:.0f} given no task, "
                   f"{self.stalls.get('no hold, deadline near', 0):.0f} polls answered at once"
                   if "no task, deadline near" in self.stalls else "")
                + f"\n          loop turns {self.stalls.get('turns', 0) / self.seconds:.0f}/s against "
                f"{sum(self.rpcs.values()):.0f} RPCs/s answered (grpc.aio accepts one call per turn)"
                f"\n          coordinator's loop thread {self.stalls.get('loop_cpu_ms', 0) / 10 / self.seconds:.0f}% "
                f"of a core, its other threads {(self.stalls.get('process_cpu_ms', 0) - self.stalls.get('loop_cpu_ms', 0)) / 10 / self.seconds:.0f}%, "
                f"its child processes (credit rebuild) {100 * self.family_cpu_seconds / self.seconds:.0f}% "
                f"({self.family_rss_mib:.0f} MiB)"
                + (f"; {len(self.scrapes)} scrapes of /metrics, longest {1000 * max(self.scrapes):.0f} ms"
                   if self.scrapes else "")
                + "".join(f"\n            {key} ({SERVER_FIGURES.get(key.split(' ', 2)[-1], SERVER_FIGURES[''])}): "
                          f"{sum(e.values())} calls, p50 {bucket_percentile(e, 0.5):.0f} ms, "
                          f"p99 {bucket_percentile(e, 0.99):.0f} ms"
                          for key, e in self.stalls.items() if key.startswith("server ") and sum(e.values()))
                + "".join(f"\n            client saw {what}: {detail}" for what, detail in self.error_details.items())
                + "".join(f"\n          {name} with a task, p50 / p99 ms: to the handler {p[0][0]:.0f} / {p[0][1]:.0f}, "
                          f"in it {p[1][0]:.0f} / {p[1][1]:.0f}, back from it {p[2][0]:.0f} / {p[2][1]:.0f}"
                          for name, p in (("Lease", self.lease_phases), ("Report", self.report_phases)) if p)
                + f"\n          client loops late > 100 ms: {self.client_late_100ms} times, longest {self.client_late_max_ms:.0f} ms"
                + "".join(f"\n            {key}: {e['calls']:.0f} calls, {e['ms']:.0f} ms, {e['over_50ms']:.0f} over "
                          f"50 ms, longest {e['max_ms']:.0f} ms (run so far)"
                          for key, e in self.stalls.items() if isinstance(e, dict) and "calls" in e)
                + "".join(f"\n            {n:>4} x {where}" for where, n in sorted(
                    self.stalls.get("stacks", {}).items(), key=lambda kv: -kv[1])[:8]))


def default_client_processes(largest_step: int) -> int:
    """How many client processes simulate a swarm whose largest step is `largest_step` workers:
    one per `WORKERS_PER_CLIENT_PROCESS`, at least `MIN_CLIENT_PROCESSES` (4 at 100,000). With 50,000
    workers a process, its loop stalled up to 628 ms and p99 Lease was 104.7 ms, most of it spent
    before the coordinator's handler; with 25,000 it was 49 ms (benchmarks/README.md, session 12)."""
    return max(MIN_CLIENT_PROCESSES, math.ceil(largest_step / WORKERS_PER_CLIENT_PROCESS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,10000,100000", help="connected workers at each step")
    parser.add_argument("--compression", default="1",
                        help="clock compression per step (one value, or one per step)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured wall seconds per step")
    parser.add_argument("--join-rate", type=float, default=300.0,
                        help="new workers that start per (compressed) second: volunteers join over time, "
                             "and a swarm that all leased in the same second would not be in its steady state")
    parser.add_argument("--admit-rate", type=float, default=-1.0,
                        help="the coordinator's join admission: joins a second (coordinator --join-rate); "
                             "0 admits all at once; -1 (default) keeps the coordinator's default")
    parser.add_argument("--join-timeout", type=float, default=0.0, metavar="SECONDS",
                        help="how long a step waits for every worker to join before it measures what joined "
                             "(0: three ramps + 120 s; an admitting coordinator slower than --join-rate needs more)")
    parser.add_argument("--restart", type=float, default=0.0, metavar="SECONDS",
                        help="once every worker has joined, restart the coordinator (same database and port) "
                             "after this many seconds down, so that the whole swarm reconnects at once; 0: no restart")
    parser.add_argument("--settle", type=float, default=60.0, metavar="SECONDS",
                        help="with --restart: seconds between the restart and the measured window")
    parser.add_argument("--idle-share", type=float, default=0.2, help="share of workers with nothing to run")
    parser.add_argument("--client-processes", type=int, default=None,
                        help="processes the simulated workers are spread over (default: one per "
                             f"{WORKERS_PER_CLIENT_PROCESS:,} workers of the largest step, at least "
                             f"{MIN_CLIENT_PROCESSES}: at 100,000 two processes' own loop stalls were most of p99 Lease)")
    parser.add_argument("--workers-per-channel", type=int, default=200,
                        help="simulated workers sharing one gRPC connection")
    parser.add_argument("--compare", choices=("absolute", "paired"), default="absolute",
                        help="the study's acceptance: paired is what a swarm of many kinds of machine runs")
    parser.add_argument("--quorum", type=int, default=1, help="confirmations a claim needs")
    parser.add_argument("--classes", type=int, default=7, help="hardware classes the workers are spread over")
    parser.add_argument("--separate-report", action="store_true",
                        help="workers report and lease in two calls, as before ReportRequest.next "
                             "(an older coordinator is answered that way anyway)")
    parser.add_argument("--scrape", type=float, default=0.0, metavar="SECONDS",
                        help="serve Prometheus metrics and scrape /metrics this often, as a monitored "
                             "coordinator is (deploy/ scrapes every 15 s); 0: metrics off")
    parser.add_argument("--coordinator-tree", type=Path,
                        help="run the coordinator from this checkout instead (an A/B against other code)")
    parser.add_argument("--plain-client-wakeups", action="store_true",
                        help="the client processes take grpc.aio's completions one per turn of their loop, "
                             "as before coordinator/wakeups.py (their calls then wait inside gRPC past "
                             "~4,000 completions a second, whatever the coordinator does)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    compressions = [float(c) for c in args.compression.split(",")]
    compressions = compressions * len(steps) if len(compressions) == 1 else compressions
    if len(compressions) != len(steps):
        parser.error("--compression: one value, or one per step")
    if args.client_processes is None:
        args.client_processes = default_client_processes(max(steps))

    tmp = Path(tempfile.mkdtemp(prefix="autoswarm-swarm-size-"))
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    results: list[StepResult] = []
    coordinator = None
    scraper: Scraper | None = None
    try:
        for _ in range(args.client_processes):
            here, there = context.Pipe()
            proc = context.Process(target=client_main, args=(there,), daemon=True)
            proc.start()
            pipes.append(here)
            procs.append(proc)
        connected = 0
        for step, (target, c) in enumerate(zip(steps, compressions)):
            # A new coordinator for each compression; the same one while it stays.
            if coordinator is None or c != results[-1].compression:
                if coordinator is not None:
                    stop_process(coordinator)
                connected = 0
                address = f"127.0.0.1:{free_port()}"
                ready = tmp / f"ready-{step}.json"
                if args.coordinator_tree is not None:
                    os.environ[TREE_VARIABLE] = str(args.coordinator_tree.resolve())
                main_file = tmp / "coordinator_main.py"
                main_file.write_text(coordinator_script())
                stalls_file = tmp / f"stalls-{step}.json"
                coordinator_args = [str(main_file), str(tmp / f"swarm-{step}.db"), address, str(ready), str(c),
                                    str(LEASE_GRACE), str(stalls_file), str(free_port() if args.scrape else 0),
                                    str(args.admit_rate)]
                coordinator = start_process(coordinator_args, ready=ready, log=tmp / "coordinator.log")
                if scraper is not None:
                    scraper.stop()
                scraper = None
                if args.scrape:
                    scraper = Scraper(json.loads(ready.read_text())["metrics_port"], args.scrape / c).start()
                with grpc.insecure_channel(address) as channel:
                    control_pb2_grpc.ControlServiceStub(channel).AddStudy(control_pb2.AddStudyRequest(
                        bundle=study_bundle(TASK_TIMEOUT / c, args.compare, args.quorum)), timeout=60)
                    measure_initial_version(worker_pb2_grpc.WorkerServiceStub(channel))
            new = target - connected
            ramp = max(10.0 / c, (target - connected) / (args.join_rate * c))
            first = connected
            for k, pipe in enumerate(pipes):
                count = new // len(pipes) + (1 if k < new % len(pipes) else 0)
                here = connected // len(pipes) + (1 if k < connected % len(pipes) else 0)
                pipe.send(Share(address, first, here, count, args.idle_share, args.workers_per_channel, c, ramp,
                                1000 * step + k, args.classes, not args.separate_report,
                                not args.plain_client_wakeups, args.join_timeout))
                first += count
            t_register = time.monotonic()
            joins = [pipe.recv() for pipe in pipes]
            joined_in = time.monotonic() - t_register
            print(f"step {target}: {sum(j[0] for j in joins)} of {new} workers joined in {joined_in:.0f} s "
                  f"(ramp {ramp:.0f} s; {sum(j[1] for j in joins)} joins told to come back later)", flush=True)
            time.sleep(max(0.0, ramp - joined_in))
            if args.restart:
                # The same database on the same port, down for `--restart` seconds: every worker's
                # calls fail meanwhile, and then the whole swarm reconnects at once, as it does
                # after a coordinator is restarted or upgraded. The window opens `--settle` s later.
                stop_process(coordinator)
                time.sleep(args.restart)
                ready.unlink(missing_ok=True)
                coordinator = start_process(coordinator_args, ready=ready, log=tmp / "coordinator-restarted.log")
                print(f"step {target}: coordinator restarted after {args.restart:g} s down; "
                      f"measuring from {args.settle:g} s later", flush=True)
                time.sleep(args.settle)
                if args.scrape and scraper is not None:
                    scraper.stop()
                    scraper = Scraper(json.loads(ready.read_text())["metrics_port"], args.scrape / c).start()
            cpu0, t0 = cpu_seconds(coordinator.pid), time.monotonic()
            family0 = family_cpu(coordinator.pid)
            clients0 = sum(cpu_seconds(p.pid) for p in procs)
            scraped0 = len(scraper.seconds) if scraper is not None else 0
            stalls0 = read_stalls(stalls_file)
            for pipe in pipes:
                pipe.send((t0, t0 + args.seconds))
            tallies = [pipe.recv() for pipe in pipes]
            seconds, cpu = time.monotonic() - t0, cpu_seconds(coordinator.pid) - cpu0
            family1 = family_cpu(coordinator.pid)
            family_seconds = sum(cpu - family0.get(child, 0.0) for child, cpu in family1.items())
            clients_cpu = sum(cpu_seconds(p.pid) for p in procs) - clients0
            stalls1 = read_stalls(stalls_file)
            stalls = window_stalls(stalls0, stalls1)
            calls: collections.Counter[str] = collections.Counter()
            errors: collections.Counter[str] = collections.Counter()
            for t in tallies:
                calls.update(t[0])
                errors.update(t[1])
            lease_ms = [x for t in tallies for x in t[2]]
            report_ms = [x for t in tallies for x in t[3]]
            result = StepResult(target, c, seconds, cpu, {m: n / seconds for m, n in calls.items()}, dict(errors),
                                percentile(lease_ms, 0.5), percentile(lease_ms, 0.99),
                                percentile(report_ms, 0.5), percentile(report_ms, 0.99),
                                rss_mib(coordinator.pid), os.getloadavg()[0], stalls, clients_cpu,
                                tuple(scraper.seconds[scraped0:]) if scraper is not None else (),
                                family_seconds, family_rss_mib(coordinator.pid),
                                {what: detail for t in tallies for what, detail in t[4].items()},
                                phase_percentiles([p for t in tallies for p in t[5]]),
                                phase_percentiles([p for t in tallies for p in t[6]]),
                                sum(t[7] for t in tallies), max(t[8] for t in tallies))
            results.append(result)
            connected = target
            print(result.describe(), flush=True)
    finally:
        for pipe in pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        if scraper is not None:
            scraper.stop()
        if coordinator is not None:
            stop_process(coordinator)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {os.cpu_count()} CPUs; {args.client_processes} client processes, "
          f"{args.workers_per_channel} workers per connection; "
          f"idle share {args.idle_share:.0%}; tasks of {TASK_MEAN / 60:g} min on average (real time); "
          f"study {args.compare}, quorum {args.quorum}, {args.classes} classes; "
          f"{'Report then Lease' if args.separate_report else 'reports lease the next task'}; "
          f"coordinator from {args.coordinator_tree or ROOT}")
    if args.json:
        args.json.write_text(json.dumps([{**r.__dict__, "cpu_ms_per_worker_hour": r.cpu_ms_per_worker_hour}
                                         for r in results], indent=2))


if __name__ == "__main__":
    main()
