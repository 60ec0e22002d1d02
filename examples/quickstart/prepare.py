"""Fixed data and evaluation for the quickstart study. Do not modify.

This is the pinned half of the study, in the spirit of autoresearch's `prepare.py`: the
synthetic dataset (two interleaved spirals with label noise) and the validation loss that
`train.py` reports. `train.py` is the only file agents may edit; it imports this module.

Everything here is generated in-process from fixed seeds with the standard library only, so
there is nothing to download or cache and the same `train.py` always gets the same score
on a given machine.
"""

from __future__ import annotations

import math
import os
import random
from typing import Callable, Sequence

# ---------------------------------------------------------------------------
# Fixed constants (lower case on purpose: the `params` mutator only perturbs the target's
# UPPER_CASE constants, and this file is pinned anyway).
# ---------------------------------------------------------------------------
n_train = 600          # training points
n_val = 400            # validation points, drawn from their own seed: disjoint from training
label_noise = 0.05     # fraction of labels flipped; sets the floor on val_loss (~0.2 nats)
train_seed = 20240301
val_seed = 20240302
default_time_budget = 5.0  # seconds, when AUTOSWARM_TIME_BUDGET is not set (running by hand)

Point = tuple[float, float]


def time_budget() -> float:
    """Training time in seconds, from `AUTOSWARM_TIME_BUDGET` (set by the worker)."""
    raw = os.environ.get("AUTOSWARM_TIME_BUDGET", "")
    try:
        value = float(raw)
    except ValueError:
        return default_time_budget
    return value if math.isfinite(value) and value > 0 else default_time_budget


def make_spirals(n: int, seed: int) -> tuple[list[Point], list[int]]:
    """Two interleaved spirals in the plane, class 0 and class 1, with some label noise.

    Not linearly separable, so a model needs a good nonlinear feature map and enough
    training to reach the noise floor.
    """
    rng = random.Random(seed)
    xs: list[Point] = []
    ys: list[int] = []
    for _ in range(n):
        label = rng.randrange(2)
        t = rng.uniform(0.25, 1.0)            # position along the arm
        angle = 3.0 * math.pi * t + math.pi * label
        radius = 2.0 * t
        x = radius * math.cos(angle) + rng.gauss(0.0, 0.08)
        y = radius * math.sin(angle) + rng.gauss(0.0, 0.08)
        if rng.random() < label_noise:
            label = 1 - label
        xs.append((x, y))
        ys.append(label)
    return xs, ys


def load_data() -> tuple[tuple[list[Point], list[int]], tuple[list[Point], list[int]]]:
    """Returns ((train_x, train_y), (val_x, val_y)); the two splits come from different seeds."""
    return make_spirals(n_train, train_seed), make_spirals(n_val, val_seed)


def log_loss(probabilities: Sequence[float], labels: Sequence[int]) -> float:
    """Mean binary cross-entropy in nats. NaN if any probability is not a finite number.

    Probabilities are clipped to [1e-12, 1 - 1e-12] so one confident mistake costs a lot
    (about 27.6 nats) but stays finite.
    """
    total = 0.0
    for p, y in zip(probabilities, labels):
        if not math.isfinite(p):
            return math.nan
        p = min(max(p, 1e-12), 1.0 - 1e-12)
        total -= math.log(p) if y == 1 else math.log(1.0 - p)
    return total / len(labels)


def evaluate(predict_proba: Callable[[Point], float]) -> float:
    """The metric: mean cross-entropy of `predict_proba` on the validation spirals."""
    _, (val_x, val_y) = load_data()
    return log_loss([predict_proba(point) for point in val_x], val_y)


def print_summary(val_loss: float, **extra: float | int) -> None:
    """Prints an autoresearch-style summary block that ends with the metric line.

    The worker reads `name: value` lines and the last `val_loss:` line wins, so the metric
    comes last; the other lines are extra metrics shown in the results.
    """
    print("---")
    for name, value in extra.items():
        text = f"{value:.6f}" if isinstance(value, float) else str(value)
        print(f"{name + ':':<18}{text}")
    print(f"{'val_loss:':<18}{val_loss:.6f}", flush=True)
