"""What volunteers loading the web page cost the coordinator's gRPC loop.

A real coordinator process on a database of `--results` results (30 workers of 10 owners on
3 hardware classes), on loopback. The probe is the Status control RPC, timed back to back on
the same event loop the web page runs on: first with nobody on the web page (the baseline),
then with `--viewers` clients loading /api/v1/leaderboard as fast as they can, once with the
default snapshot refresh (5 s) and once rebuilding the snapshot for every request (the worst
case, `--web-refresh 0`). Reported: the probe's latency percentiles and their ratio to the
baseline, and how many page loads the viewers got.

    python benchmarks/web_load.py --results 50000 --seconds 10 --viewers 4
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from autoswarm.bundle import pack_files
from autoswarm.control import ControlClient
from autoswarm.coordinator.engine import Engine
from autoswarm.coordinator.store import ClaimRecord, ResultRecord, Store, WorkerRecord

STUDY = b'name = "bench"\ntarget = "t.py"\nevaluate = "python t.py"\nmetric = "score"\ndirection = "maximize"\n' \
        b'timeout = 600\n'


def fill(db: Path, results: int) -> None:
    """A study with `results` results: mostly discards and baselines, a claim every 50."""
    store = Store(db, group_commit=True)
    Engine(store).add_study(pack_files({"study.toml": STUDY, "t.py": b"X = 1\n"}).data)
    workers = [WorkerRecord(f"w-{i:016x}", f"box-{i}", {}, f"cpu:class-{i % 3} x2", 1, ("params",), "idle", 0.0, 0.0,
                            owner=f"owner-{i % 10}") for i in range(30)]
    for w in workers:
        store.upsert_worker(w)
    for i in range(results):
        w = workers[i % len(workers)]
        claim = f"c-{i}" if i % 50 == 0 else ""
        record = ResultRecord(f"l-{i:020x}", "bench", "explore" if i % 4 else "baseline", w.id, w.name,
                              w.hardware_class, f"v{i // 4}", "v0", "ok", float(i % 97), {}, "an edit", "",
                              "claim" if claim else ("discard" if i % 4 else "baseline"),
                              {"evaluate_seconds": 300.0 * (1 + i % 3)}, float(i), claim, 0.1, 0.05)
        claims = [ClaimRecord(claim, "bench", record.version, "v0", "explore", w.id, record.id,
                              "accepted" if i % 100 == 0 else "rejected", "", float(i), float(i) + 1)] if claim else []
        store.record_result(record, claims=claims)
        if i % 2000 == 0:
            store.commit_batch()
    store.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db: Path, refresh: float) -> tuple[subprocess.Popen, str, str]:
    port, web = _port(), _port()
    ready = db.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "autoswarm", "coordinator", "--db", str(db), "--listen",
                             f"127.0.0.1:{port}", "--auth", "none", "--metrics-port", "0", "--web-port", str(web),
                             "--web-refresh", str(refresh), "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ready.exists():
        if proc.poll() is not None:
            raise SystemExit("the coordinator did not start")
        time.sleep(0.05)
    json.loads(ready.read_text())
    return proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{web}/api/v1/leaderboard"


def measure(address: str, url: str, seconds: float, viewers: int, pause: float = 0.0) -> dict[str, float]:
    """Status RPC latency while `viewers` load the page, each waiting `pause` seconds between loads."""
    stop = threading.Event()
    loads = [0] * viewers

    def view(k: int) -> None:
        while not stop.wait(pause):
            with urllib.request.urlopen(url, timeout=120) as response:
                response.read()
            loads[k] += 1

    threads = [threading.Thread(target=view, args=(k,), daemon=True) for k in range(viewers)]
    with ControlClient(address, timeout=120) as control:
        control.status()
        urllib.request.urlopen(url, timeout=120).read()        # the first snapshot, outside the timing
        for t in threads:
            t.start()
        latencies = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            control.status()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    stop.set()
    for t in threads:
        t.join(120)
    q = statistics.quantiles(latencies, n=100)
    return {"p50": q[49] * 1e3, "p99": q[98] * 1e3, "max": max(latencies) * 1e3, "loads": sum(loads) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--viewers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "swarm.db"
        started = time.perf_counter()
        fill(db, args.results)
        print(f"filled {args.results} results in {time.perf_counter() - started:.1f}s", flush=True)
        rows = []
        phases = (("nobody on the page", 5.0, 0, 0.0),
                  (f"{args.viewers} viewers, 10 loads/s each, refresh 5 s (default)", 5.0, args.viewers, 0.1),
                  (f"{args.viewers} viewers as fast as they can, refresh 5 s", 5.0, args.viewers, 0.0),
                  (f"{args.viewers} viewers as fast as they can, rebuilt every request", 0.0, args.viewers, 0.0))
        for label, refresh, viewers, pause in phases:
            proc, address, url = start(db, refresh)
            try:
                rows.append((label, measure(address, url, args.seconds, viewers, pause)))
            finally:
                proc.terminate()
                proc.wait(30)
    base = rows[0][1]
    print(f"| Status RPC while ... | p50 ms | p99 ms | max ms | p99 / baseline | page loads/s |")
    print("|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | {r['p99'] / base['p99']:.1f}× | "
              f"{r['loads']:.1f} |")


if __name__ == "__main__":
    main()
