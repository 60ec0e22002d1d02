"""Global acceptance: does a measured candidate beat the champion? Pure decision logic.

No I/O here: the engine feeds it numbers from the store and records what it decides, the
way BOINC keeps its validator apart from its transport.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoswarm.study import AcceptancePolicy


@dataclass(frozen=True)
class Verdict:
    """The decision on one candidate and the numbers behind it."""

    accept: bool
    improvement: float   # positive means better, in the metric's own units, whatever the direction
    threshold: float
    reason: str


def improvement(direction: str, reference: float, candidate: float) -> float:
    """How much better `candidate` is than `reference`: positive is better."""
    return reference - candidate if direction == "minimize" else candidate - reference


def judge(policy: AcceptancePolicy, direction: str, champion_metric: float, candidate_metric: float) -> Verdict:
    """Absolute comparison: keep the candidate when it beats the champion by more than min_delta.

    With `min_delta = 0` this is autoresearch's rule: kept if the metric strictly improved.
    """
    if not (math.isfinite(champion_metric) and math.isfinite(candidate_metric)):
        return Verdict(False, math.nan, policy.min_delta, "a metric is not finite")
    gain = improvement(direction, champion_metric, candidate_metric)
    if gain > policy.min_delta:
        return Verdict(True, gain, policy.min_delta, f"improved by {gain:.6g} > {policy.min_delta:g}")
    return Verdict(False, gain, policy.min_delta, f"improvement {gain:.6g} not above {policy.min_delta:g}")
