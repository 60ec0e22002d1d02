"""benchmarks/engine_cycle.py drives real cycles: every timed cycle is a report and a lease on a
real engine and store, its parts add up, and a run is a function of its arguments (seeded ids,
simulated clock). It times nothing here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import engine_cycle  # noqa: E402


def _args(**changes) -> argparse.Namespace:
    args = dict(workers=40, classes=4, compare="paired", quorum=2, cycles=300, warmup=100, chunk=100, batch=3,
                seed=0, profile=False, sample=False, profile_top=10, profile_out=None)
    args.update(changes)
    return argparse.Namespace(**args)


def test_every_timed_cycle_is_a_report_and_a_lease_and_a_run_repeats_itself():
    first = engine_cycle.run(_args())
    assert first.cycles == 300 and len(first.chunks) == 3 and len(first.open_claims) == 3
    assert sum(first.decisions.values()) == 300
    assert first.decisions.get("baseline", 0) > 0, "a paired study of 4 classes measures baselines"
    assert first.wal_frames > 0, "the results were written"
    assert first.report_s > 0 and first.lease_s > 0 and first.commit_s > 0
    assert first.report_s + first.lease_s + first.commit_s <= first.cpu_s * 1.5
    assert 0 < first.loop_s <= first.cpu_s * 1.05 and len(first.loop_chunks) == 3, \
        "the driver's own thread (the loop's) is part of the process, the store's writer the rest"
    again = engine_cycle.run(_args())
    assert again.decisions == first.decisions and again.open_claims == first.open_claims
    assert again.wal_frames == first.wal_frames


def test_the_sampler_counts_the_engine_in_its_stacks():
    sampler = engine_cycle.Sampler(interval=0.0001)
    sampler.start()
    engine_cycle.run(_args(compare="absolute", quorum=1, classes=1, cycles=400))
    sampler.stop()
    assert sampler.samples > 0
    assert any("report" in name or "lease" in name or "execute" in name or "run" in name
               for name in sampler.inclusive)
