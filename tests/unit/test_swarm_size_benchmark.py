"""The swarm-size benchmark's own arithmetic: the window's share of the coordinator's stall watch."""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import swarm_size  # noqa: E402


def test_bucket_percentile_reads_counts_by_millisecond():
    buckets = {"0": 90, "3": 9, "250": 1}
    assert swarm_size.bucket_percentile(buckets, 0.5) == 1
    assert swarm_size.bucket_percentile(buckets, 0.99) == 4
    assert swarm_size.bucket_percentile(buckets, 1.0) == 251, "one slow call of 100 is the p100, not the p99"
    assert math.isnan(swarm_size.bucket_percentile({}, 0.99))


def test_window_stalls_subtracts_counts_keeps_maxima_and_keeps_only_new_stacks():
    before = {"late_100ms": 2, "late_max_ms": 300.0, "stacks": {"busy a": 3},
              "Engine.report": {"calls": 10, "ms": 5.0, "over_50ms": 0, "max_ms": 2.0},
              "server Report": {"1": 10}}
    after = {"late_100ms": 5, "late_max_ms": 310.0, "stacks": {"busy a": 3, "off-cpu b": 2},
             "Engine.report": {"calls": 25, "ms": 9.0, "over_50ms": 1, "max_ms": 60.0},
             "server Report": {"1": 30, "120": 1}}
    window = swarm_size.window_stalls(before, after)
    assert window["late_100ms"] == 3 and window["late_max_ms"] == 310.0
    assert window["stacks"] == {"off-cpu b": 2}
    assert window["Engine.report"] == {"calls": 15, "ms": 4.0, "over_50ms": 1, "max_ms": 60.0}
    assert window["server Report"] == {"1": 20, "120": 1}


def test_the_coordinator_main_file_compiles_and_runs_the_coordinator_only_as_main():
    """Run from a file, so that the credit rebuild's spawned process loads the same tree (it
    re-runs the file as __mp_main__): the coordinator itself must start only as __main__."""
    script = swarm_size.coordinator_script()
    compile(script, "coordinator_main.py", "exec")
    assert swarm_size.TREE_VARIABLE in script and "if __name__ == '__main__':" in script
    assert script.index("def watched") < script.index("if __name__ == '__main__':") < script.index("serve(config)")


def test_family_finds_a_process_started_by_this_one_and_its_cpu():
    import os
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in swarm_size.family(os.getpid())
        assert swarm_size.family_cpu(os.getpid())[child.pid] >= 0.0
        assert swarm_size.family_rss_mib(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()


def test_the_stall_watch_counts_the_loops_turns_and_its_threads_cpu(tmp_path):
    """The stall watch, run around a short sleep in a fresh interpreter (it patches the
    coordinator's classes and asyncio's loop): it writes its figures, the loop's turns among them."""
    import json
    import subprocess

    out = tmp_path / "stalls.json"
    script = swarm_size.TREE_FROM_ENV + swarm_size.STALL_WATCH + (
        "import asyncio\nfrom pathlib import Path\n"
        "async def main():\n    await asyncio.sleep(2.5)\n"
        f"asyncio.run(watched(main(), Path({str(out)!r})))\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    stats = json.loads(out.read_text())
    assert stats["turns"] > 10 and stats["ticks"] > 10, "a 10 ms timer turns the loop ~100 times a second"
    assert stats["loop_cpu_ms"] >= 0 and stats["process_cpu_ms"] >= stats["loop_cpu_ms"]
    assert "WorkerCensus._take" in stats and "ControlService.Status" in stats, "the monitored parts are timed"


def test_phase_percentiles_are_taken_per_phase():
    phases = [(float(i), 2.0 * i, 3.0) for i in range(1, 101)]
    (to50, to99), (in50, in99), (back50, back99) = swarm_size.phase_percentiles(phases)
    assert to50 < to99 <= 100 and in99 <= 200 and in99 > in50 and back50 == back99 == 3.0
    assert swarm_size.phase_percentiles([]) == ()


def test_a_small_swarm_splits_its_calls_into_before_in_and_after_their_handlers(tmp_path):
    """The whole benchmark on 200 workers for a few seconds: the coordinator's stall watch sends
    each handler's times back in trailing metadata, and the clients split their waits with them."""
    import json
    import subprocess

    out = tmp_path / "swarm.json"
    subprocess.run([sys.executable, str(swarm_size.ROOT / "benchmarks" / "swarm_size.py"), "--steps", "200",
                    "--seconds", "4", "--compression", "20", "--json", str(out)],
                   check=True, timeout=300, capture_output=True)
    [step] = json.loads(out.read_text())
    assert step["errors"] == {}
    assert step["lease_p50_ms"] > 0 and len(step["lease_phases"]) == 3 and len(step["report_phases"]) == 3
    (to_handler, _), (in_handler, _), (back, _) = step["lease_phases"]
    assert min(to_handler, in_handler, back) >= 0, "the machine's monotonic clock is the clients' too"
    assert step["stalls"]["server Lease reached"], "the wait before the handler is counted too"


def test_client_processes_scale_with_the_largest_step():
    # With 50,000 workers a client process its own loop stalls were most of p99 Lease at 100,000.
    assert swarm_size.default_client_processes(1_000) == 2
    assert swarm_size.default_client_processes(50_000) == 2
    assert swarm_size.default_client_processes(50_001) == 3
    assert swarm_size.default_client_processes(100_000) == 4
