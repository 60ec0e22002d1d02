"""Coordinator capacity: lease + report cycles per second against a bare gRPC ceiling.

In one run, on loopback:
1. a bare grpc.aio echo server (its own process) and the same async clients: the ceiling
   of this machine for unary RPCs;
2. the real coordinator (its own process, SQLite store in WAL mode) under N simulated
   workers doing lease + report cycles with instant evaluations.
The two alternate for `--rounds` rounds (echo, coordinator, echo, coordinator, ...): each
round's ratio compares phases seconds apart, which on a shared machine matters more than
anything else; the median and the spread of the ratios are printed.

The simulated workers run as async clients spread over `--client-processes` processes (2 by
default: one Python process drives at most one core), the same for every timed phase. Each
registers and leases its first task while it sets up, before the clock starts, and releases
the task it holds once the phase is over, as a worker that stops does; so a timed phase is
all steady-state cycles, and no round inherits a thousand orphaned leases (with the open
claims whose checks they hold) from the one before.

A cycle is what a worker does per task: one Report whose answer carries the next task
(`ReportRequest.next`), or with `--separate-report` (and always against an older coordinator)
a Lease and a Report. The echo ceiling does the same per cycle: as many RPCs, each of the
sizes the coordinator's cycle sends and receives (measured by a probe worker first).

Prints cycles/s, p50/p99 lease and report latency, the server's and the clients' CPU per cycle, the ratio of
cycles/s to the echo's cycles/s, and the coordinator's memory with 10,000 registered workers.

    python benchmarks/coordinator_throughput.py                 # 1,000 workers, 20 s each phase
    python benchmarks/coordinator_throughput.py --workers 200 --seconds 10
    python benchmarks/coordinator_throughput.py --compare paired --quorum 2 --classes 8   # a real swarm's study

`--coordinator-tree DIR` runs the coordinator from another checkout (e.g. the code before a
change), so that two versions can be compared on the same machine in the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc  # noqa: E402

# Answers each request with as many bytes as its first 8 digits ask: the echo ceiling sends and
# receives messages of the coordinator's sizes, not a 64-byte ping.
ECHO_SERVER = textwrap.dedent("""
    import asyncio, sys, grpc
    PAD = b"x" * (1 << 20)
    async def main():
        server = grpc.aio.server()
        async def echo(request, context):
            return PAD[:int(request[:8])]
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(sys.argv[1])
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()
    asyncio.run(main())
""")


@dataclass(frozen=True)
class Phase:
    name: str
    cycles: int
    seconds: float
    lease_ms: list[float]
    report_ms: list[float]
    cpu_seconds: float
    client_cpu_seconds: float = 0.0   # the simulated workers' processes, over the same interval

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def channels(address: str, count: int) -> list[grpc.aio.Channel]:
    # Several connections, as many machines would open; one HTTP/2 connection would serialize.
    return [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(count)]


@dataclass(frozen=True)
class Share:
    """One client process's part of a timed phase: its simulated workers and connections."""

    kind: str                 # "echo" or "coordinator"
    address: str
    first: int                # global index of its first simulated worker
    workers: int
    connections: int
    pace: float = 0.0
    classes: int = 1          # hardware classes the simulated workers are spread over
    # The cycle's RPCs as (request bytes, response bytes), as the coordinator's cycle sends them.
    shapes: tuple[tuple[int, int], ...] = ((64, 64), (64, 64))
    combined: bool = True     # coordinator cycles: a report also leases the next task (ReportRequest.next)


async def echo_loops(share: Share, chans: list[grpc.aio.Channel], stop: float) -> tuple[int, list[float], list[float]]:
    """Echo clients until `stop`: per cycle the coordinator's RPCs, of the same sizes each way
    (a lease and a report; or one report that also leases)."""
    calls = [c.unary_unary("/bench.Echo/Echo") for c in chans]
    requests = [f"{response:08d}".encode() + b"x" * max(0, request - 8) for request, response in share.shapes]
    done = 0
    lease_ms: list[float] = []
    report_ms: list[float] = []

    async def loop(i: int) -> None:
        nonlocal done
        call = calls[i % len(calls)]
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await call(requests[0])
            t1 = time.perf_counter()
            for request in requests[1:]:
                await call(request)
            t2 = time.perf_counter()
            lease_ms.append((t1 - t0) * 1000)
            report_ms.append((t2 - t1) * 1000 if len(requests) > 1 else (t1 - t0) * 1000)
            done += 1

    await asyncio.gather(*(loop(i) for i in range(share.workers)))
    return done, lease_ms, report_ms


def study_bundle(compare: str = "absolute", quorum: int = 1) -> bytes:
    toml = textwrap.dedent(f"""\
        name = "bench"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "maximize"
        timeout = 60
        [acceptance]
        compare = "{compare}"
        quorum = {quorum}
        """)
    return pack_files({"study.toml": toml.encode(), "target.py": b"X = 1\n"}).data


async def register(stub: worker_pb2_grpc.WorkerServiceStub, i: int, classes: int = 1) -> str:
    response = await stub.Register(worker_pb2.RegisterRequest(
        name=f"sim-{i}", slots=1, mutators=["params"],
        hardware=common_pb2.Hardware(cpu_model=f"Bench CPU {i % classes}", cpu_cores=2, memory_bytes=8 << 30)))
    return response.worker_id


async def first_task(stub: worker_pb2_grpc.WorkerServiceStub, worker_id: str) -> worker_pb2.Task | None:
    """A simulated worker's first task, leased while it sets up (untimed, like its registration)."""
    response = await stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=1.0))
    return response.task if response.has_task else None


async def coordinator_loops(share: Share, stubs: list[worker_pb2_grpc.WorkerServiceStub], ids: list[str],
                            stop: float, held: list[worker_pb2.Task | None]) -> tuple[int, list[float], list[float]]:
    """Lease + report cycles until `stop`, each worker starting with its task in `held` and
    leaving there the one it holds at the end; with `share.pace`, each worker waits ~pace
    seconds between cycles (its "evaluation"), so the offered load is below capacity and
    latency is service time."""
    pace = share.pace
    done = 0
    lease_ms: list[float] = []
    report_ms: list[float] = []

    async def loop(j: int) -> None:
        nonlocal done
        i = share.first + j
        stub, worker_id, rng = stubs[j % len(stubs)], ids[j], random.Random(i)
        if pace:  # workers of a real swarm do not all start their cycle in the same millisecond
            await asyncio.sleep(rng.uniform(0, 2 * pace))
        task = held[j]
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            carried = task is not None
            if task is None:
                response = await stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=1.0))
                if not response.has_task:
                    continue
                task = response.task
            t1 = time.perf_counter()
            request = report_request(worker_id, task, rng, share.combined)
            answer = await stub.Report(request)
            t2 = time.perf_counter()
            # With the next task in the report's answer, that call is the cycle's lease as well.
            task = answer.next.task if answer.HasField("next") and answer.next.has_task else None
            lease_ms.append((t2 - t1 if carried else t1 - t0) * 1000)
            report_ms.append((t2 - t1) * 1000)
            done += 1
            if pace:
                await asyncio.sleep(rng.uniform(0, 2 * pace))
        held[j] = task

    await asyncio.gather(*(loop(j) for j in range(share.workers)))
    return done, lease_ms, report_ms


def report_request(worker_id: str, task: worker_pb2.Task, rng: random.Random,
                   combined: bool) -> worker_pb2.ReportRequest:
    """A simulated worker's report of `task`: an edit of the parent for explore tasks."""
    content = (task.parent.content or task.candidate.content) + f"# {rng.random()}\n".encode()
    result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=rng.random(),
                               candidate=content if task.kind == common_pb2.TASK_KIND_EXPLORE else b"",
                               description="bench")
    request = worker_pb2.ReportRequest(worker_id=worker_id, lease_id=task.lease_id, result=result)
    if combined:
        request.next.worker_id = worker_id
    return request


def pending_claims(address: str) -> int:
    """The open claims of the coordinator's studies (ControlService.Status), between phases."""
    with grpc.insecure_channel(address) as channel:
        status = control_pb2_grpc.ControlServiceStub(channel).Status(control_pb2.StatusRequest(), timeout=60)
    return sum(s.pending_claims for s in status.studies)


def cycle_shapes(address: str, combined: bool) -> tuple[tuple[int, int], ...]:
    """The RPCs of one coordinator cycle as (request, response) sizes, from a probe worker's
    cycles (the last of a few, once the study's first baseline is done): one RPC when the
    coordinator leases with reports, else a lease and a report."""
    rng = random.Random(0)
    with grpc.insecure_channel(address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        worker_id = stub.Register(worker_pb2.RegisterRequest(
            name="probe", slots=1, mutators=["params"], hardware=common_pb2.Hardware(cpu_model="Bench CPU 0")),
            timeout=30).worker_id
        lease_request = worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=1.0)
        lease = stub.Lease(lease_request, timeout=30)
        shapes: tuple[tuple[int, int], ...] = ()
        for _ in range(4):
            request = report_request(worker_id, lease.task, rng, combined)
            answer = stub.Report(request, timeout=30)
            if answer.HasField("next") and answer.next.has_task:
                shapes = ((request.ByteSize(), answer.ByteSize()),)
                lease = answer.next
            else:
                shapes = ((lease_request.ByteSize(), lease.ByteSize()), (request.ByteSize(), answer.ByteSize()))
                lease = stub.Lease(lease_request, timeout=30)
        stub.Release(worker_pb2.ReleaseRequest(worker_id=worker_id, lease_ids=[lease.task.lease_id]), timeout=30)
    return shapes


async def client(share: Share, pipe: Connection) -> None:
    """One client process: sets up (registers its workers, each leases its first task), says
    ready, runs until told when to stop, reports, and once told so releases the tasks its
    workers still hold, as a worker that stops does (untimed: the server's CPU is read by then)."""
    chans = channels(share.address, share.connections)
    ids: list[str] = []
    held: list[worker_pb2.Task | None] = []
    stubs = [worker_pb2_grpc.WorkerServiceStub(c) for c in chans]
    if share.kind == "coordinator":
        ids = list(await asyncio.gather(*(register(stubs[j % len(stubs)], share.first + j, share.classes)
                                          for j in range(share.workers))))
        held = list(await asyncio.gather(*(first_task(stubs[j % len(stubs)], ids[j]) for j in range(share.workers))))
    loop = asyncio.get_running_loop()
    pipe.send("ready")
    stop = await loop.run_in_executor(None, pipe.recv)
    if share.kind == "echo":
        done, lease_ms, report_ms = await echo_loops(share, chans, stop)
    else:
        done, lease_ms, report_ms = await coordinator_loops(share, stubs, ids, stop, held)
    pipe.send((done, lease_ms, report_ms, time.monotonic()))
    await loop.run_in_executor(None, pipe.recv)
    await asyncio.gather(*(stubs[j % len(stubs)].Release(worker_pb2.ReleaseRequest(
        worker_id=ids[j], lease_ids=[task.lease_id])) for j, task in enumerate(held) if task is not None))
    pipe.send("released")
    for c in chans:
        await c.close()


def client_main(share: Share, pipe: Connection) -> None:
    """Entry point of a client process."""
    asyncio.run(client(share, pipe))


def run_phase(name: str, kind: str, address: str, workers: int, seconds: float, pid: int, conns: int,
              processes: int, pace: float = 0.0, classes: int = 1, shapes: tuple[tuple[int, int], ...] = (),
              combined: bool = True) -> Phase:
    """Runs one timed phase with the simulated workers spread over `processes` client processes.

    One Python process cannot drive more than one core, and a bare gRPC server on this
    machine answers faster than one client process can ask; both the echo and the
    coordinator phases use the same split, so their ratio stays fair. The server's CPU and
    the clock are read only between the moment every client is set up and the end.
    """
    processes = max(1, min(processes, workers))
    context = multiprocessing.get_context("spawn")  # grpc does not survive fork
    pipes: list[Connection] = []
    procs = []
    first = 0
    for k in range(processes):
        count = workers // processes + (1 if k < workers % processes else 0)
        share = Share(kind, address, first, count, max(1, conns // processes), pace, classes,
                      shapes or Share.shapes, combined)
        first += count
        here, there = context.Pipe()
        proc = context.Process(target=client_main, args=(share, there), daemon=True)
        proc.start()
        pipes.append(here)
        procs.append(proc)
    try:
        for pipe in pipes:
            if not pipe.poll(300):
                raise RuntimeError("a client process did not get ready")
            pipe.recv()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        client_cpu0 = sum(cpu_seconds(proc.pid) for proc in procs)
        for pipe in pipes:
            pipe.send(t0 + seconds)
        results = [pipe.recv() for pipe in pipes]
        cpu = cpu_seconds(pid) - cpu0
        client_cpu = sum(cpu_seconds(proc.pid) for proc in procs) - client_cpu0
        for pipe in pipes:
            pipe.send("release")
        for pipe in pipes:
            pipe.recv()
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return Phase(name, sum(r[0] for r in results), max(r[3] for r in results) - t0,
                 [x for r in results for x in r[1]], [x for r in results for x in r[2]], cpu, client_cpu)


async def memory_phase(address: str, count: int, pid: int, conns: int) -> tuple[float, float]:
    chans = channels(address, conns)
    stubs = [worker_pb2_grpc.WorkerServiceStub(c) for c in chans]
    before = rss_mib(pid)
    for start in range(0, count, 500):
        await asyncio.gather(*(register(stubs[i % len(stubs)], 100_000 + i) for i in range(start, min(count, start + 500))))
    after = rss_mib(pid)
    for c in chans:
        await c.close()
    return before, after


def tree_loader(tree_expression: str) -> str:
    """Source that loads the packages of the checkout `tree_expression` names (evaluated in the
    child; empty: this checkout's, left alone) in place of this one's."""
    return textwrap.dedent("""
        import importlib.util, os, sys
        tree = %s
        if tree:
            # An editable install maps the packages to its own checkout: take that finder out.
            sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", ""))]
            for name, sub in (("autoswarm", "autoswarm"), ("autoswarm.coordinator", "coordinator"),
                              ("autoswarm.worker", "worker")):
                spec = importlib.util.spec_from_file_location(name, f"{tree}/{sub}/__init__.py")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
    """) % tree_expression


# Loads the packages of another checkout (argv[1], taken off argv) in place of this one's.
USE_TREE = tree_loader("sys.argv.pop(1)")
# Runs `python -m autoswarm` from another checkout (argv[1]).
FROM_TREE = USE_TREE + textwrap.dedent("""
    import runpy
    sys.argv[0] = "autoswarm"
    runpy.run_module("autoswarm", run_name="__main__")
""")


def coordinator_command(tree: Path | None) -> list[str]:
    """The arguments (after the interpreter) that start `autoswarm` from `tree`, or from here."""
    return ["-m", "autoswarm"] if tree is None else ["-c", FROM_TREE, str(tree.resolve())]


def all_joins_at_once(tree: Path | None) -> list[str]:
    """`--join-rate 0` where the tree's coordinator has join admission: this benchmark's workers
    all register at once by design, and what it measures is the cycle after (swarm_size.py
    measures admission)."""
    cli = (tree or ROOT) / "autoswarm" / "cli.py"
    return ["--join-rate", "0"] if "join_rate" in cli.read_text() else []


def start_process(args: list[str], ready: Path | None = None, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ready is not None and ready.exists():
            return proc
        if ready is None and proc.stdout is not None and proc.stdout.readline().strip() == b"ready":
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"{args} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{args} did not start")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def describe(phase: Phase) -> str:
    return (f"{phase.name:32s} {phase.rate:9.0f} cycles/s   lease p50 {percentile(phase.lease_ms, 0.5):6.2f} ms "
            f"p99 {percentile(phase.lease_ms, 0.99):6.2f} ms   report p50 {percentile(phase.report_ms, 0.5):6.2f} ms "
            f"p99 {percentile(phase.report_ms, 0.99):6.2f} ms   server CPU {1e6 * phase.cpu_seconds / max(phase.cycles, 1):6.0f} µs/cycle   "
            f"clients' CPU {1e6 * phase.client_cpu_seconds / max(phase.cycles, 1):5.0f} µs/cycle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1000, help="simulated workers (concurrent cycles)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each timed phase")
    parser.add_argument("--connections", type=int, default=16, help="gRPC connections the workers share")
    parser.add_argument("--registered", type=int, default=10_000, help="workers registered for the memory figure")
    parser.add_argument("--pace", type=float, default=5.0,
                        help="mean seconds each worker waits between cycles in the latency phase")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="processes the simulated workers are spread over, in every timed phase alike")
    parser.add_argument("--rounds", type=int, default=3,
                        help="echo and coordinator phases, alternating: one ratio per round")
    parser.add_argument("--compare", choices=("absolute", "paired"), default="absolute",
                        help="the study's acceptance: paired is what a swarm of many kinds of machine runs")
    parser.add_argument("--quorum", type=int, default=1, help="confirmations a claim needs")
    parser.add_argument("--classes", type=int, default=1, help="hardware classes the workers are spread over")
    parser.add_argument("--separate-report", action="store_true",
                        help="cycles of Lease + Report, as before ReportRequest.next (an older coordinator "
                             "answers that way anyway); the echo then does two RPCs a cycle too")
    parser.add_argument("--coordinator-tree", type=Path,
                        help="run the coordinator from this checkout instead (an A/B against other code)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    combined = not args.separate_report

    tmp = Path(tempfile.mkdtemp(prefix="autoswarm-bench-"))
    echo_address = f"127.0.0.1:{free_port()}"
    address = f"127.0.0.1:{free_port()}"
    ready = tmp / "ready.json"
    echo = coordinator = None
    pairs: list[tuple[Phase, Phase]] = []
    open_claims: list[int] = []   # after each saturated round: a paired lease's cost grows with them
    try:
        echo = start_process(["-c", ECHO_SERVER, echo_address])
        coordinator = start_process([*coordinator_command(args.coordinator_tree), "coordinator", "--db",
                                     str(tmp / "bench.db"), "--listen", address, "--ready-file", str(ready),
                                     "--metrics-port", "0", "--auth", "none", *all_joins_at_once(args.coordinator_tree)],
                                    ready=ready, log=tmp / "coordinator.log")
        with grpc.insecure_channel(address) as channel:
            control_pb2_grpc.ControlServiceStub(channel).AddStudy(
                control_pb2.AddStudyRequest(bundle=study_bundle(args.compare, args.quorum)), timeout=30)
        shapes = cycle_shapes(address, combined)
        echo_name = f"echo ({len(shapes)} RPC{'s' if len(shapes) > 1 else ''} = 1 cycle)"
        cycle_name = "coordinator (report + next)" if len(shapes) == 1 else "coordinator (lease + report)"
        # Echo and coordinator phases alternate, so that each ratio compares two phases a few
        # seconds apart: on a shared machine the load moves more between runs than within one.
        for _ in range(args.rounds):
            pairs.append((
                run_phase(echo_name, "echo", echo_address, args.workers, args.seconds, echo.pid,
                          args.connections, args.client_processes, shapes=shapes),
                run_phase(cycle_name, "coordinator", address, args.workers, args.seconds,
                          coordinator.pid, args.connections, args.client_processes, classes=args.classes,
                          combined=combined)))
            open_claims.append(pending_claims(address))
        stop_process(echo)
        paced_result = run_phase(f"coordinator, paced {args.pace:g} s", "coordinator", address, args.workers,
                                 args.seconds, coordinator.pid, args.connections, args.client_processes,
                                 pace=args.pace, classes=args.classes, combined=combined)
        rss_before, rss_after = asyncio.run(memory_phase(address, args.registered, coordinator.pid,
                                                         args.connections))
    finally:
        for proc in (echo, coordinator):
            if proc is not None:
                stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    ratios = sorted(c.rate / e.rate for e, c in pairs if e.rate)
    ratio = statistics.median(ratios) if ratios else float("nan")
    echo_phase_result, coordinator_result = pairs[len(pairs) // 2]
    print(f"machine: {os.cpu_count()} CPUs, {args.workers} simulated workers over {args.connections} connections "
          f"in {args.client_processes} client processes, {args.seconds:g} s per phase, load average "
          f"{os.getloadavg()[0]:.1f}; study {args.compare}, quorum {args.quorum}, {args.classes} classes; "
          f"coordinator from {args.coordinator_tree or ROOT}")
    print(f"a cycle: {' + '.join(f'{q} B -> {r} B' for q, r in shapes)} "
          f"({'one report that leases the next task' if len(shapes) == 1 else 'a lease and a report'}); "
          f"the echo ceiling sends the same")
    for echo_phase, coordinator_phase in pairs:
        print(describe(echo_phase))
        print(describe(coordinator_phase))
    print(describe(paced_result))
    print(f"open claims after each saturated round: {' / '.join(map(str, open_claims))}")
    print(f"ratio to the echo ceiling (its cycles of the same RPCs), each round: "
          f"{' '.join(f'{r:.0%}' for r in ratios)}; median {ratio:.0%}   (target >= 50%)")
    print(f"cycles/s: {coordinator_result.rate:.0f} (target >= 1500); lease p99 at {args.workers} workers paced "
          f"{args.pace:g} s: {percentile(paced_result.lease_ms, 0.99):.1f} ms (target < 50 ms)")
    print(f"coordinator memory: {rss_before:.0f} MiB -> {rss_after:.0f} MiB after registering {args.registered} more "
          f"workers ({1024 * (rss_after - rss_before) / max(args.registered, 1):.1f} KiB/worker)")
    if args.json:
        args.json.write_text(json.dumps({
            "echo_cycles_per_second": echo_phase_result.rate, "cycles_per_second": coordinator_result.rate,
            "ratio": ratio, "ratios": ratios,
            "lease_p50_ms": percentile(coordinator_result.lease_ms, 0.5),
            "lease_p99_ms": percentile(coordinator_result.lease_ms, 0.99),
            "report_p50_ms": percentile(coordinator_result.report_ms, 0.5),
            "report_p99_ms": percentile(coordinator_result.report_ms, 0.99),
            "cpu_us_per_cycle": 1e6 * coordinator_result.cpu_seconds / max(coordinator_result.cycles, 1),
            "paced_lease_p99_ms": percentile(paced_result.lease_ms, 0.99),
            "paced_cycles_per_second": paced_result.rate,
            "open_claims": open_claims,
            "rss_mib_before": rss_before, "rss_mib_after": rss_after, "registered": args.registered,
            "client_processes": args.client_processes, "rpcs_per_cycle": len(shapes), "shapes": shapes,
            "client_cpu_us_per_cycle": 1e6 * coordinator_result.client_cpu_seconds / max(coordinator_result.cycles, 1),
            "echo_client_cpu_us_per_cycle":
                1e6 * echo_phase_result.client_cpu_seconds / max(echo_phase_result.cycles, 1),
            "echo_cpu_us_per_cycle":
                1e6 * echo_phase_result.cpu_seconds / max(echo_phase_result.cycles, 1),
        }, indent=2))


if __name__ == "__main__":
    main()
