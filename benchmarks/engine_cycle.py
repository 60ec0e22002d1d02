"""The coordinator's own cost per cycle, without gRPC: `Engine.report` + `Engine.lease` driven in process.

The same cycles `coordinator_throughput.py` drives over gRPC — `--workers` simulated workers
over `--classes` hardware classes, each reporting its task (an explore task's edit of the parent,
a random metric) and leasing the next in the same step, the store in WAL mode with group commit,
committed every `--batch` cycles (the busy coordinator's group commit serves ~3.4 requests a
commit) — but called directly on one `Engine`, with a seeded store and a simulated clock, so a run
is a function of its arguments.

Prints the process CPU per cycle (a busy neighbour slows the wall clock, not this figure much),
the least of it over chunks of `--chunk` cycles (steadier on a shared machine), this thread's CPU
in `Engine.report`, in `Engine.lease` (each with what `WorkerService.Report` does around it: the
rate limiter, `result_in`, the response, `task_message`, the worker's next contact) and in the
commit, the WAL pages written per cycle and the open claims. The worker's own report message is
built outside the parts' timing (it is the client's work) but inside the process CPU (~25 µs).
`--sample` prints a statistical profile (inclusive and own share of each function: no cost per
call, unlike `--profile`, cProfile, which inflates the many small functions of this path).

    python benchmarks/engine_cycle.py                                      # absolute, quorum 1
    python benchmarks/engine_cycle.py --compare paired --quorum 2 --classes 8
    python benchmarks/engine_cycle.py --compare paired --quorum 2 --classes 8 --sample

`--tree DIR` runs the engine of another checkout (e.g. main before a change) under this driver,
so that two versions are compared in the same minutes (run them in turns).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Sampler:
    """A statistical profiler: every `interval` seconds of CPU time, the Python stack's
    functions are counted (no cost per call, unlike cProfile, which inflates small functions)."""

    def __init__(self, interval: float = 0.0002) -> None:
        self.interval = interval
        self.samples = 0
        self.inclusive: Counter[str] = Counter()
        self.own: Counter[str] = Counter()

    def _tick(self, signum: int, frame: Any) -> None:
        self.samples += 1
        seen: set[str] = set()
        first = True
        while frame is not None:
            code = frame.f_code
            name = f"{Path(code.co_filename).name}:{code.co_firstlineno}({code.co_name})"
            if code.co_filename == "<string>" and frame.f_back is not None:   # a dataclass's __init__: whose?
                name += f" from {frame.f_back.f_code.co_name}:{frame.f_back.f_lineno}"
            if first:
                self.own[name] += 1
                first = False
            if name not in seen:
                seen.add(name)
                self.inclusive[name] += 1
            frame = frame.f_back

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._tick)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def print(self, top: int, per_cycle_us: float) -> None:
        """The top functions by inclusive and by own share, with µs a cycle from `per_cycle_us`."""
        for title, counts in (("inclusive", self.inclusive), ("own", self.own)):
            print(f"-- {title} (of {self.samples} samples)")
            for name, n in counts.most_common(top):
                print(f"{100 * n / self.samples:6.1f}% {per_cycle_us * n / self.samples:7.1f} µs  {name}")


@dataclass
class Figures:
    """What one run measured."""

    cycles: int = 0
    cpu_s: float = 0.0
    loop_s: float = 0.0        # this thread's CPU (the event loop's, in the coordinator), commits' waits included
    report_s: float = 0.0
    lease_s: float = 0.0
    commit_s: float = 0.0
    wal_frames: int = 0
    chunks: list[float] = field(default_factory=list)   # CPU seconds of each chunk of cycles
    loop_chunks: list[float] = field(default_factory=list)   # this thread's, of each chunk
    open_claims: list[int] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)

    def per_cycle_us(self, seconds: float) -> float:
        return seconds / max(self.cycles, 1) * 1e6


def run(args: argparse.Namespace) -> Figures:
    """Sets up a study and `args.workers` workers, then times `args.cycles` report + lease cycles."""
    from autoswarm.coordinator.engine import Engine, EngineConfig
    from autoswarm.coordinator.ids import seeded_ids
    from autoswarm.coordinator.service import result_in, task_message
    from autoswarm.coordinator.ratelimit import RateLimiter
    from autoswarm.coordinator.store import Store
    from autoswarm.v1 import worker_pb2
    from benchmarks.coordinator_throughput import report_request, study_bundle

    clock_now = [1_000_000.0]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "swarm.db", group_commit=True, autocheckpoint_pages=10_000_000,
                      ids=seeded_ids(args.seed))
        engine = Engine(store, EngineConfig(), clock=lambda: clock_now[0])
        engine.add_study(study_bundle(args.compare, args.quorum), max_evaluations=0)
        hardware = [{"cpu_model": f"Bench CPU {c}", "cpu_cores": 2, "memory_bytes": 8 << 30, "gpus": []}
                    for c in range(args.classes)]
        ids = [engine.register("", f"sim-{i}", hardware[i % args.classes], 1, ["params"])[0]
               for i in range(args.workers)]
        held = [engine.lease(w) for w in ids]
        store.commit_batch()
        rng = random.Random(args.seed)
        limiter = RateLimiter(1e9, 1e9, lambda: clock_now[0])
        figures = Figures()
        failures: list[BaseException] = []

        def commit() -> None:
            """As the group commit does: on the store's writer thread where it has one."""
            if hasattr(store, "commit_in_background"):
                store.commit_in_background(lambda failure: failure is not None and failures.append(failure))
            else:
                store.commit_batch()
        profile = cProfile.Profile() if args.profile else None
        sampler = Sampler() if args.sample else None

        def one_pass(count: int, timed: bool) -> None:
            perf = time.thread_time
            for n in range(count):
                j = rng.randrange(len(ids))
                worker_id, task = ids[j], held[j]
                clock_now[0] += 0.001
                if task is None:
                    task = held[j] = engine.lease(worker_id)
                    if task is None:
                        continue
                message = worker_pb2.Task()
                task_message(task, into=message)
                request = report_request(worker_id, message, rng, True)
                t0 = perf()
                # What `WorkerService.Report` does around the engine (less gRPC and the commit's wait).
                limiter.allow(f"{worker_id}/Report")
                outcome = engine.report(worker_id, request.lease_id, result_in(request.result))
                response = worker_pb2.ReportResponse(
                    result_id=outcome.result_id, duplicate=outcome.duplicate, decision=outcome.decision,
                    new_champion=outcome.new_champion, stale_lease_ids=outcome.stale)
                t1 = perf()
                limiter.allow(f"{worker_id}/Lease")
                held[j] = engine.lease(worker_id)
                if held[j] is not None:
                    response.next.has_task = True
                    response.next.lease_wait_seconds = engine.poll_seconds()
                    task_message(held[j], into=response.next.task)
                    response.next.heartbeat_interval_seconds = engine.next_contact(worker_id)
                t2 = perf()
                if (n + 1) % args.batch == 0:
                    commit()
                t3 = perf()
                if timed:
                    figures.cycles += 1
                    figures.report_s += t1 - t0
                    figures.lease_s += t2 - t1
                    figures.commit_s += t3 - t2
                    figures.decisions[outcome.decision] = figures.decisions.get(outcome.decision, 0) + 1

        one_pass(args.warmup, timed=False)
        store.commit_batch()
        wal = Path(tmp) / "swarm.db-wal"
        wal_before = wal.stat().st_size if wal.exists() else 0
        started, loop_started = time.process_time(), time.thread_time()
        if profile is not None:
            profile.enable()
        if sampler is not None:
            sampler.start()
        for _ in range(args.cycles // args.chunk):
            # In chunks: on a shared machine the least CPU a chunk took is the steadier figure.
            chunk_started, chunk_loop = time.process_time(), time.thread_time()
            one_pass(args.chunk, timed=True)
            figures.chunks.append(time.process_time() - chunk_started)
            figures.loop_chunks.append(time.thread_time() - chunk_loop)
            figures.open_claims.append(sum(len(s.claims) for s in engine._studies.values()))
        if sampler is not None:
            sampler.stop()
        if profile is not None:
            profile.disable()
        figures.loop_s = time.thread_time() - loop_started
        store.commit_batch()
        figures.cpu_s = time.process_time() - started
        if failures:
            raise RuntimeError(f"a commit failed: {failures[0]}")
        # Each WAL frame is a page written (4 KiB and a 24-byte header); no checkpoint runs meanwhile.
        figures.wal_frames = (wal.stat().st_size - wal_before) // (4096 + 24)
        store.close()
    if sampler is not None:
        sampler.print(args.profile_top, figures.per_cycle_us(figures.cpu_s))
    if profile is not None:
        if args.profile_out is not None:
            profile.dump_stats(str(args.profile_out))
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.profile_top)
        stats.sort_stats("tottime").print_stats(args.profile_top)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument("--compare", choices=("absolute", "paired"), default="absolute")
    parser.add_argument("--quorum", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=10_000, help="timed cycles")
    parser.add_argument("--warmup", type=int, default=3_000, help="untimed cycles first")
    parser.add_argument("--chunk", type=int, default=500, help="cycles timed together (the least is printed too)")
    parser.add_argument("--batch", type=int, default=3, help="cycles per commit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--sample", action="store_true",
                        help="print a sampling profile (inclusive and own share of each function)")
    parser.add_argument("--profile-top", type=int, default=45)
    parser.add_argument("--profile-out", type=Path, help="also write cProfile's stats to this file")
    parser.add_argument("--tree", type=Path, help="run the engine of this checkout instead")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = parser.parse_args()
    if args.tree is not None:
        # This driver, with another checkout's packages loaded in place of this one's.
        from benchmarks.coordinator_throughput import USE_TREE
        rest = [a for i, a in enumerate(sys.argv[1:]) if a != "--tree" and sys.argv[i] != "--tree"]
        code = USE_TREE + f"import runpy; sys.argv[0] = {str(Path(__file__).resolve())!r}; " \
            f"runpy.run_path(sys.argv[0], run_name='__main__')"
        raise SystemExit(subprocess.call([sys.executable, "-c", code, str(args.tree.resolve()), *rest], cwd=ROOT))
    tree = str(Path(sys.modules["autoswarm"].__file__).resolve().parent.parent) if "autoswarm" in sys.modules else str(ROOT)
    figures = run(args)
    row = {
        "tree": tree, "compare": args.compare, "quorum": args.quorum, "classes": args.classes,
        "workers": args.workers, "cycles": figures.cycles,
        "cpu_us_per_cycle": round(figures.per_cycle_us(figures.cpu_s), 1),
        "least_chunk_us": round(min(figures.chunks) / args.chunk * 1e6, 1),
        "loop_us_per_cycle": round(figures.per_cycle_us(figures.loop_s), 1),
        "least_loop_chunk_us": round(min(figures.loop_chunks) / args.chunk * 1e6, 1),
        "report_us": round(figures.per_cycle_us(figures.report_s), 1),
        "lease_us": round(figures.per_cycle_us(figures.lease_s), 1),
        "commit_us": round(figures.per_cycle_us(figures.commit_s), 1),
        "wal_pages_per_cycle": round(figures.wal_frames / max(figures.cycles, 1), 2),
        "open_claims": [min(figures.open_claims), max(figures.open_claims)], "decisions": figures.decisions,
    }
    if args.json:
        print(json.dumps(row))
    else:
        for key, value in row.items():
            print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
