"""Coordinator capacity: lease + report cycles per second against a bare gRPC ceiling.

In one run, on loopback:
1. a bare grpc.aio echo server (its own process) and the same async clients: the ceiling
   of this machine for unary RPCs;
2. the real coordinator (its own process, SQLite store in WAL mode) under N simulated
   workers doing lease + report cycles with instant evaluations.

Prints cycles/s, p50/p99 lease and report latency, coordinator CPU per cycle, the ratio of
cycles/s to half the echo RPC rate (a cycle is two RPCs), and the coordinator's memory with
10,000 registered workers.

    python benchmarks/coordinator_throughput.py                 # 1,000 workers, 20 s each phase
    python benchmarks/coordinator_throughput.py --workers 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoswarm.bundle import pack_files  # noqa: E402
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc  # noqa: E402

ECHO_SERVER = textwrap.dedent("""
    import asyncio, sys, grpc
    async def main():
        server = grpc.aio.server()
        async def echo(request, context):
            return request
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


async def echo_phase(address: str, workers: int, seconds: float, pid: int, conns: int) -> Phase:
    chans = channels(address, conns)
    calls = [c.unary_unary("/bench.Echo/Echo") for c in chans]
    payload = b"x" * 64
    done = 0
    lease_ms: list[float] = []
    report_ms: list[float] = []
    stop = time.monotonic() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        call = calls[i % len(calls)]
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await call(payload)
            t1 = time.perf_counter()
            await call(payload)
            t2 = time.perf_counter()
            lease_ms.append((t1 - t0) * 1000)
            report_ms.append((t2 - t1) * 1000)
            done += 1

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(workers)))
    phase = Phase("echo (2 RPCs = 1 cycle)", done, time.monotonic() - t0, lease_ms, report_ms, cpu_seconds(pid) - cpu0)
    for c in chans:
        await c.close()
    return phase


def study_bundle() -> bytes:
    toml = textwrap.dedent("""\
        name = "bench"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "maximize"
        timeout = 60
        [acceptance]
        compare = "absolute"
        quorum = 1
        """)
    return pack_files({"study.toml": toml.encode(), "target.py": b"X = 1\n"}).data


async def register(stub: worker_pb2_grpc.WorkerServiceStub, i: int) -> str:
    response = await stub.Register(worker_pb2.RegisterRequest(
        name=f"sim-{i}", slots=1, mutators=["params"],
        hardware=common_pb2.Hardware(cpu_model="Bench CPU", cpu_cores=2, memory_bytes=8 << 30)))
    return response.worker_id


async def coordinator_phase(address: str, workers: int, seconds: float, pid: int, conns: int,
                            pace: float = 0.0) -> Phase:
    """Lease + report cycles; with `pace`, each worker waits ~pace seconds between cycles (its
    "evaluation"), so the offered load is below capacity and latency is service time."""
    chans = channels(address, conns)
    stubs = [worker_pb2_grpc.WorkerServiceStub(c) for c in chans]
    ids = await asyncio.gather(*(register(stubs[i % len(stubs)], i) for i in range(workers)))
    done = 0
    lease_ms: list[float] = []
    report_ms: list[float] = []
    stop = time.monotonic() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        stub, worker_id, rng = stubs[i % len(stubs)], ids[i], random.Random(i)
        if pace:  # workers of a real swarm do not all start their cycle in the same millisecond
            await asyncio.sleep(rng.uniform(0, 2 * pace))
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            response = await stub.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=1.0))
            t1 = time.perf_counter()
            if not response.has_task:
                continue
            task = response.task
            content = (task.parent.content or task.candidate.content) + f"# {rng.random()}\n".encode()
            result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=rng.random(),
                                       candidate=content if task.kind == common_pb2.TASK_KIND_EXPLORE else b"",
                                       description="bench")
            await stub.Report(worker_pb2.ReportRequest(worker_id=worker_id, lease_id=task.lease_id, result=result))
            t2 = time.perf_counter()
            lease_ms.append((t1 - t0) * 1000)
            report_ms.append((t2 - t1) * 1000)
            done += 1
            if pace:
                await asyncio.sleep(rng.uniform(0, 2 * pace))

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(workers)))
    phase = Phase(f"coordinator, paced {pace:g} s" if pace else "coordinator (lease + report)", done, time.monotonic() - t0, lease_ms, report_ms,
                  cpu_seconds(pid) - cpu0)
    for c in chans:
        await c.close()
    return phase


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
            f"p99 {percentile(phase.report_ms, 0.99):6.2f} ms   server CPU {1e6 * phase.cpu_seconds / max(phase.cycles, 1):6.0f} µs/cycle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1000, help="simulated workers (concurrent cycles)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each timed phase")
    parser.add_argument("--connections", type=int, default=16, help="gRPC connections the workers share")
    parser.add_argument("--registered", type=int, default=10_000, help="workers registered for the memory figure")
    parser.add_argument("--pace", type=float, default=5.0,
                        help="mean seconds each worker waits between cycles in the latency phase")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="autoswarm-bench-"))
    try:
        echo_address = f"127.0.0.1:{free_port()}"
        echo = start_process(["-c", ECHO_SERVER, echo_address])
        try:
            echo_phase_result = asyncio.run(echo_phase(echo_address, args.workers, args.seconds, echo.pid,
                                                       args.connections))
        finally:
            stop_process(echo)

        address = f"127.0.0.1:{free_port()}"
        ready = tmp / "ready.json"
        coordinator = start_process(["-m", "autoswarm", "coordinator", "--db", str(tmp / "bench.db"), "--listen",
                                     address, "--ready-file", str(ready), "--metrics-port", "0", "--auth", "none"],
                                    ready=ready, log=tmp / "coordinator.log")
        try:
            with grpc.insecure_channel(address) as channel:
                control_pb2_grpc.ControlServiceStub(channel).AddStudy(
                    control_pb2.AddStudyRequest(bundle=study_bundle()), timeout=30)
            coordinator_result = asyncio.run(coordinator_phase(address, args.workers, args.seconds, coordinator.pid,
                                                                args.connections))
            paced_result = asyncio.run(coordinator_phase(address, args.workers, args.seconds, coordinator.pid,
                                                         args.connections, pace=args.pace))
            rss_before, rss_after = asyncio.run(memory_phase(address, args.registered, coordinator.pid,
                                                             args.connections))
        finally:
            stop_process(coordinator)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ceiling = echo_phase_result.rate
    ratio = coordinator_result.rate / ceiling if ceiling else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, {args.workers} simulated workers over {args.connections} connections, "
          f"{args.seconds:g} s per phase")
    print(describe(echo_phase_result))
    print(describe(coordinator_result))
    print(describe(paced_result))
    print(f"ratio to the echo ceiling (half its RPC rate): {ratio:.0%}   (target >= 50%)")
    print(f"cycles/s: {coordinator_result.rate:.0f} (target >= 1500); lease p99 at {args.workers} workers paced "
          f"{args.pace:g} s: {percentile(paced_result.lease_ms, 0.99):.1f} ms (target < 50 ms)")
    print(f"coordinator memory: {rss_before:.0f} MiB -> {rss_after:.0f} MiB after registering {args.registered} more "
          f"workers ({1024 * (rss_after - rss_before) / max(args.registered, 1):.1f} KiB/worker)")
    if args.json:
        args.json.write_text(json.dumps({
            "echo_cycles_per_second": ceiling, "cycles_per_second": coordinator_result.rate, "ratio": ratio,
            "lease_p50_ms": percentile(coordinator_result.lease_ms, 0.5),
            "lease_p99_ms": percentile(coordinator_result.lease_ms, 0.99),
            "report_p50_ms": percentile(coordinator_result.report_ms, 0.5),
            "report_p99_ms": percentile(coordinator_result.report_ms, 0.99),
            "cpu_us_per_cycle": 1e6 * coordinator_result.cpu_seconds / max(coordinator_result.cycles, 1),
            "paced_lease_p99_ms": percentile(paced_result.lease_ms, 0.99),
            "paced_cycles_per_second": paced_result.rate,
            "rss_mib_before": rss_before, "rss_mib_after": rss_after, "registered": args.registered,
        }, indent=2))


if __name__ == "__main__":
    main()
