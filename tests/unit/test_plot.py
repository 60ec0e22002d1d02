"""`autoswarm plot`: a PNG of the expected size that really shows the results."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colors
from matplotlib.image import imread
from typer.testing import CliRunner

from autoswarm.cli import app
from autoswarm.plot import (
    BEST_COLOR,
    DISCARD_COLOR,
    FAILED_COLOR,
    KEEP_COLOR,
    PlotError,
    plot_progress,
    progress,
    view_limits,
)
from autoswarm.v1 import control_pb2


def history(rows: list[tuple[str, float | None, str]], direction: str = "minimize") -> control_pb2.HistoryResponse:
    """(status, metric or None, description) rows, in the order they were recorded."""
    response = control_pb2.HistoryResponse(study="demo", metric="val_loss", direction=direction)
    for i, (status, metric, description) in enumerate(rows):
        response.rows.append(control_pb2.HistoryRow(
            result_id=f"r{i}", version=f"v{i}", status=status, has_metric=metric is not None, metric=metric or 0.0,
            description=description, kind="baseline" if status == "baseline" else "explore"))
    return response


SEARCH = history([
    ("baseline", 1.00, "initial version"),
    ("discard", 1.10, "LR 0.01 -> 0.02"),
    ("keep", 0.90, "LR 0.01 -> 0.005"),
    ("crash", None, "DEPTH 8 -> 80"),
    ("discard", 0.95, "WARMUP 10 -> 13"),
    ("keep", 0.80, "BATCH 32 -> 48"),
    ("discard", 0.85, "WD 0.1 -> 0.2"),
    ("timeout", None, "STEPS 100 -> 1000"),
])


def pixels_near(image: np.ndarray, color: str, tolerance: float = 0.04) -> int:
    """How many pixels have (about) this color."""
    rgb = np.array(colors.to_rgb(color))
    return int((np.abs(image[:, :, :3] - rgb).max(axis=2) < tolerance).sum())


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_progress_splits_dots_failures_and_the_running_best():
    p = progress(SEARCH)
    assert [pt.index for pt in p.points] == [1, 2, 3, 5, 6, 7]
    assert p.failed == [4, 8]
    assert p.best == [(1, 1.00), (3, 0.90), (6, 0.80)], "the champion: initial measurement, then each keep"
    assert [pt.metric for pt in p.kept] == [0.90, 0.80]


def test_plot_writes_a_png_of_the_asked_size_showing_every_kind_of_result(tmp_path):
    out = tmp_path / "progress.png"
    plot_progress(SEARCH, out)
    assert png_size(out) == (1200, 600)
    image = imread(out)
    assert image.shape[:2] == (600, 1200)
    rgb = (image[:, :, :3] * 255).round().astype(np.uint32)
    assert len(np.unique(rgb[:, :, 0] << 16 | rgb[:, :, 1] << 8 | rgb[:, :, 2])) > 50, "a blank or flat image"
    assert (image[:, :, :3] < 0.9).any(axis=2).mean() > 0.01, "almost nothing drawn"
    for name, color in [("kept dots", KEEP_COLOR), ("discarded dots", DISCARD_COLOR),
                        ("the running best", BEST_COLOR), ("failure marks", FAILED_COLOR)]:
        assert pixels_near(image, color) > 20, f"no {name} ({color}) in the picture"

    small = tmp_path / "small.png"
    plot_progress(SEARCH, small, width_px=640, height_px=360)
    assert png_size(small) == (640, 360)


def test_a_search_without_improvements_shows_no_kept_color(tmp_path):
    out = tmp_path / "flat.png"
    plot_progress(history([("baseline", 1.0, ""), ("discard", 1.2, ""), ("discard", 1.1, "")]), out)
    image = imread(out)
    assert pixels_near(image, KEEP_COLOR) == 0
    assert pixels_near(image, DISCARD_COLOR) > 20 and pixels_near(image, BEST_COLOR) > 20


def test_far_worse_outliers_do_not_flatten_the_running_best():
    rows = [("baseline", 1.0, "")] + [("discard", 1.0 + i / 100, "") for i in range(12)] + [("discard", 1e6, "")]
    low, high = view_limits(progress(history(rows)))
    assert low < 1.0 and high < 10, "the diverged run is off the chart"
    maximize = [("baseline", 5.0, "")] + [("discard", 5.0 - i / 100, "") for i in range(12)] + [("discard", -1e6, "")]
    low, high = view_limits(progress(history(maximize, "maximize")))
    assert low > -10 and high >= 5.0


def test_nothing_to_plot_is_a_clear_error(tmp_path):
    with pytest.raises(PlotError, match="no evaluated result"):
        plot_progress(history([("crash", None, "")]), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_cli_plot_from_a_missing_database_says_so(tmp_path):
    result = CliRunner().invoke(app, ["plot", "--study", "demo", "--db", str(tmp_path / "none.db"),
                                      "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 2
    assert "no such database" in " ".join(result.output.split())
