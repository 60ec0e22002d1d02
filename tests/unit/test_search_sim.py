"""Parallel workers find improvements faster: the search-scaling simulation on a small landscape.

Runs benchmarks/search_sim.py's simulation (the real engine and params mutator, a simulated
clock), so nothing here depends on how fast this machine is.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from search_scaling import Landscape  # noqa: E402
from search_sim import simulate  # noqa: E402


def test_the_landscape_starts_far_off_and_its_optimum_scores_zero():
    landscape = Landscape()
    start = landscape.target(0.0, 0.0)
    assert landscape.score(start) < -10
    optimum = "".join(f"{k} = {v!r}\n" for k, v in landscape.optimum().items())
    assert landscape.score(optimum) == 0.0


def test_four_workers_reach_the_target_well_over_twice_as_fast_as_one():
    landscape = Landscape()
    seconds = {n: statistics.median(simulate(landscape, n, seed, 1.0, -0.5, 2000.0).seconds for seed in range(3))
               for n in (1, 4)}
    assert seconds[1] < 2000.0, "one worker reaches the target"
    assert seconds[4] < seconds[1] / 2.5, seconds


def test_every_evaluation_is_accounted_for_and_merges_are_checked():
    run = simulate(Landscape(), 4, 0, 1.0, -0.5, 2000.0)
    assert sum(run.decisions.values()) == run.evaluations, "every report has its row"
    assert run.decisions["verify:keep"] > 0, "parallel edits were combined by checked merges"


def test_the_spread_of_runs_is_reported_beside_their_median():
    from search_sim import spread
    assert spread([40.0, 50.0, 60.0, 70.0, 80.0]) == "quartiles 50.0-70.0 s, mean 60.0 s"
    assert spread([52.0]) == "mean 52.0 s"
    assert spread([]) == "no runs"
