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
