"""Quickstart target: a classifier for two interleaved spirals. Agents may edit this file.

The model is logistic regression on random Fourier features, i.e. a one-hidden-layer network
whose first layer (random cosine features, a Gaussian-kernel approximation) is frozen and
whose output layer is trained with mini-batch SGD, momentum, L2 and a decaying learning rate.
Pure standard-library Python, CPU only.

Run it: `python train.py` (AUTOSWARM_TIME_BUDGET seconds of training at most, 5 by default).
The last line it prints is `val_loss: <float>` (mean cross-entropy on held-out data, lower is
better); the data and the loss live in the pinned `prepare.py`.
"""

from __future__ import annotations

import math
import random
import time

import prepare

# ---------------------------------------------------------------------------
# Hyperparameters. Module-level UPPER_CASE literals so the offline `params` mutator can
# perturb them; an agent may change anything in this file.
# ---------------------------------------------------------------------------
NUM_FEATURES = 128       # random Fourier features (width of the frozen hidden layer)
FEATURE_SCALE = 1.5      # frequency scale of the features (inverse kernel bandwidth)
LEARNING_RATE = 0.05     # initial SGD step size
MOMENTUM = 0.5           # heavy-ball momentum
BATCH_SIZE = 32          # examples per SGD step
EPOCHS = 40              # passes over the training set
L2 = 0.003               # weight decay on the output weights
LR_DECAY = 0.3           # learning rate at the end as a fraction of the start (linear decay)
INIT_SCALE = 0.1         # std of the initial output weights

# Lower case on purpose, so the `params` mutator leaves them alone: tuning a seed only fits
# noise, and the cap is a memory guard, not a knob.
max_features = 4096
feature_seed = 7
init_seed = 11


def make_feature_map(num_features: int, scale: float, rng: random.Random):
    """Returns phi(point) -> list of `num_features` random cosine features."""
    freqs = [(rng.gauss(0.0, scale), rng.gauss(0.0, scale)) for _ in range(num_features)]
    phases = [rng.uniform(0.0, 2.0 * math.pi) for _ in range(num_features)]
    norm = math.sqrt(2.0 / num_features)

    def phi(point: prepare.Point) -> list[float]:
        x, y = point
        return [norm * math.cos(a * x + b * y + c) for (a, b), c in zip(freqs, phases)]

    return phi


def sigmoid(z: float) -> float:
    # Two branches so large |z| neither overflows exp() nor loses precision.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def main() -> None:
    budget = prepare.time_budget()
    (train_x, train_y), _ = prepare.load_data()  # train.py never sees the validation labels

    # Clamped so a runaway perturbation cannot exhaust memory or stall before the first
    # budget check; the time budget bounds everything else.
    num_features = min(max(1, int(NUM_FEATURES)), max_features)
    batch_size = max(1, int(BATCH_SIZE))
    epochs = max(1, int(EPOCHS))

    start = time.perf_counter()  # the budget covers building features as well as SGD
    phi = make_feature_map(num_features, FEATURE_SCALE, random.Random(feature_seed))
    features = [phi(p) for p in train_x]

    rng = random.Random(init_seed)
    weights = [rng.gauss(0.0, INIT_SCALE) for _ in range(num_features)]
    bias = 0.0
    velocity = [0.0] * num_features
    bias_velocity = 0.0
    order = list(range(len(features)))
    total_steps = epochs * math.ceil(len(order) / batch_size)

    step = 0
    out_of_time = False
    for _epoch in range(epochs):
        rng.shuffle(order)
        for first in range(0, len(order), batch_size):
            if time.perf_counter() - start > budget:
                out_of_time = True  # the fixed time budget caps any setting, however slow
                break
            batch = order[first:first + batch_size]
            lr = LEARNING_RATE * (1.0 - (1.0 - LR_DECAY) * step / total_steps)
            grad = [L2 * w for w in weights]
            grad_bias = 0.0
            inv = 1.0 / len(batch)
            for i in batch:
                f = features[i]
                z = bias + sum(map(float.__mul__, weights, f))
                err = (sigmoid(z) - train_y[i]) * inv  # d(cross-entropy)/dz
                grad = [g + err * fi for g, fi in zip(grad, f)]
                grad_bias += err
            velocity = [MOMENTUM * v - lr * g for v, g in zip(velocity, grad)]
            weights = [w + v for w, v in zip(weights, velocity)]
            bias_velocity = MOMENTUM * bias_velocity - lr * grad_bias
            bias += bias_velocity
            step += 1
        if out_of_time:
            break
    training_seconds = time.perf_counter() - start

    def predict_proba_features(f: list[float]) -> float:
        return sigmoid(bias + sum(map(float.__mul__, weights, f)))

    def predict_proba(point: prepare.Point) -> float:
        return predict_proba_features(phi(point))

    # Deliberate: a run whose weights blew up to inf/nan prints `val_loss: nan`, which the
    # worker records as an invalid metric (a failed experiment) instead of a traceback.
    diverged = not all(math.isfinite(w) for w in weights) or not math.isfinite(bias)
    if diverged:
        train_loss = val_loss = math.nan
    else:
        train_loss = prepare.log_loss([predict_proba_features(f) for f in features], train_y)
        val_loss = prepare.evaluate(predict_proba)
    prepare.print_summary(
        val_loss,
        train_loss=train_loss,
        training_seconds=training_seconds,
        steps=step,
        out_of_time=int(out_of_time),
    )


if __name__ == "__main__":
    main()
