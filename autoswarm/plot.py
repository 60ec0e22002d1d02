"""`autoswarm plot`: a study's progress as a picture, like autoresearch's progress.png.

Every evaluated result is a dot at its evaluation number (grey: not kept, green: kept, blue:
a baseline measurement of the champion); the running best — the champion's metric — is a
step line; evaluations that produced no metric (crash, timeout, ...) are red marks along the
bottom. Uses matplotlib's object API with the Agg canvas: no display, no pyplot global state.
matplotlib is the `plot` extra (`pip install 'autoswarm[plot]'`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoswarm import words
from autoswarm.v1 import control_pb2

DEFAULT_WIDTH_PX = 1200
DEFAULT_HEIGHT_PX = 600
DPI = 100

KEEP_COLOR = "#2ca02c"
BEST_COLOR = "#00441b"
DISCARD_COLOR = "#b4b4b4"
BASELINE_COLOR = "#1f77b4"
FAILED_COLOR = "#d62728"
MAX_LABELLED_KEEPS = 25
LABEL_CHARS = 40


class PlotError(RuntimeError):
    """Nothing to plot, or matplotlib is missing; the message says what to do."""


@dataclass(frozen=True)
class Point:
    index: int        # evaluation number, 1-based, in the order results were recorded
    metric: float
    decision: str     # keep, discard, baseline, ...
    description: str


@dataclass(frozen=True)
class Progress:
    """What the picture shows, computed from the history alone (no drawing)."""

    study: str
    metric: str
    direction: str
    points: list[Point]            # results with a metric
    failed: list[int]              # evaluation numbers of results without one
    best: list[tuple[int, float]]  # the champion's metric from each evaluation number on
    total: int

    @property
    def kept(self) -> list[Point]:
        return [p for p in self.points if p.decision == words.KEEP]


def progress(history: control_pb2.HistoryResponse) -> Progress:
    """Splits a study's history into dots, failures and the running-best steps."""
    points: list[Point] = []
    failed: list[int] = []
    best: list[tuple[int, float]] = []
    # A duplicate that was never evaluated costs nothing and is not plotted.
    rows = [row for row in history.rows if not (row.status in words.FREE_STATUSES and not row.has_metric)]
    for index, row in enumerate(rows, start=1):
        if not row.has_metric:
            failed.append(index)
            continue
        points.append(Point(index, row.metric, row.status, row.description))
        # The running best is the champion: the first measurement of the initial version,
        # then every kept candidate. (Later baselines re-measure the champion on other
        # hardware and do not change it.)
        if (row.status == words.BASELINE and not best) or row.status == words.KEEP:
            best.append((index, row.metric))
    return Progress(history.study, history.metric, history.direction, points, failed, best, len(rows))


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def view_limits(p: Progress) -> tuple[float, float] | None:
    """Y limits that keep the running best readable when a few results are far worse.

    A diverged run (loss 1e3 beside 0.99) would flatten everything else. The worst 10% of
    results may fall outside the view, never the running best. None: show everything.
    """
    values = sorted(pt.metric for pt in p.points)
    if len(values) < 10:
        return None
    best = [m for _, m in p.best] or values
    if p.direction == "minimize":
        low, high = values[0], max(_quantile(values, 0.9), max(best))
    else:
        low, high = min(_quantile(values, 0.1), min(best)), values[-1]
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def plot_progress(history: control_pb2.HistoryResponse, output: Path, *, width_px: int = DEFAULT_WIDTH_PX,
                  height_px: int = DEFAULT_HEIGHT_PX) -> Progress:
    """Draws the study's progress into a PNG of exactly width_px × height_px; returns what it drew."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.transforms import blended_transform_factory
    except ImportError as exc:
        raise PlotError("autoswarm plot needs matplotlib: pip install 'autoswarm[plot]'") from exc
    p = progress(history)
    if not p.points:
        raise PlotError(f"study {p.study!r} has no evaluated result with a metric yet; "
                        f"plot again once workers have reported ({p.total} results so far)")

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    limits = view_limits(p)

    def outside(values: Sequence[float]) -> int:
        return 0 if limits is None else sum(1 for v in values if not limits[0] <= v <= limits[1])

    groups = [
        ("not kept", [pt for pt in p.points if pt.decision not in (words.KEEP, words.BASELINE)],
         dict(s=18, color=DISCARD_COLOR, zorder=2)),
        ("baseline", [pt for pt in p.points if pt.decision == words.BASELINE],
         dict(s=36, color=BASELINE_COLOR, marker="D", zorder=3)),
        ("kept", p.kept, dict(s=60, color=KEEP_COLOR, edgecolors="black", linewidths=0.6, zorder=4)),
    ]
    for label, members, style in groups:
        if members:
            off = outside([pt.metric for pt in members])
            ax.scatter([pt.index for pt in members], [pt.metric for pt in members],
                       label=f"{label} ({len(members)}{f', {off} off the chart' if off else ''})", **style)
    if p.best:
        xs = [i for i, _ in p.best] + [p.total]
        ys = [m for _, m in p.best] + [p.best[-1][1]]
        ax.step(xs, ys, where="post", color=BEST_COLOR, linewidth=2.0, label="running best", zorder=5)
    if p.failed:
        # No metric to place them by: mark them along the bottom edge, in data x, axes y.
        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(p.failed, [0.02] * len(p.failed), transform=bottom, marker="x", s=24, color=FAILED_COLOR,
                   label=f"no metric: crash, timeout, ... ({len(p.failed)})", zorder=3, clip_on=False)
    for pt in p.kept[-MAX_LABELLED_KEEPS:]:
        text = pt.description if len(pt.description) <= LABEL_CHARS else pt.description[: LABEL_CHARS - 1] + "…"
        if text:
            ax.annotate(text, (pt.index, pt.metric), xytext=(4, 6), textcoords="offset points", fontsize=7,
                        rotation=20, color=BEST_COLOR, zorder=6)

    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_xlim(0, max(p.total, 1) + 1)
    better = "lower" if p.direction == "minimize" else "higher"
    ax.set_xlabel("evaluation #")
    ax.set_ylabel(f"{p.metric} ({better} is better)")
    start = p.best[0][1] if p.best else None
    now = p.best[-1][1] if p.best else None
    trend = f", {p.metric} {start:.6g} → {now:.6g}" if start is not None and now is not None else ""
    ax.set_title(f"{p.study}: {words.count(p.total, 'evaluation')}, {len(p.kept)} kept{trend}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, format="png", dpi=DPI)  # no bbox_inches="tight": the size must stay as asked
    return p
