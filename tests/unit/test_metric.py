"""Reading the evaluation's metric from autoresearch-style output and JSON result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoswarm.worker.metric import parse_metric

AUTORESEARCH_OUTPUT = """\
step 00950 (99.7%) | loss: 3.015625 | lrm: 0.05 | dt: 315ms | tok/sec: 1,663,457 | mfu: 39.8% | epoch: 1 | remaining: 1s
step 10: loss 3.2
---
val_bpb:          0.997900
training_seconds: 300.1
total_seconds:    325.9
peak_vram_mb:     45060.2
mfu_percent:      39.80
total_tokens_M:   499.6
num_steps:        953
num_params_M:     50.3
depth:            8
"""


def test_autoresearch_summary_block_gives_metric_and_extras() -> None:
    reading = parse_metric(AUTORESEARCH_OUTPUT, "val_bpb")
    assert reading.status == "ok"
    assert reading.value == pytest.approx(0.9979)
    assert reading.extra["training_seconds"] == pytest.approx(300.1)
    assert reading.extra["num_steps"] == 953
    assert reading.extra["peak_vram_mb"] == pytest.approx(45060.2)
    assert "val_bpb" not in reading.extra
    # Progress lines are not `name: number` lines.
    assert "step 10" not in reading.extra and "step" not in reading.extra
    assert reading.detail == ""


def test_last_line_for_the_metric_wins() -> None:
    output = "val_loss: 2.5\nval_loss: 1.75\nsomething else\n"
    assert parse_metric(output, "val_loss").value == 1.75


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("score: 3", 3.0),
        ("score:0.5", 0.5),
        ("  score :\t -1.5e-3  ", -1.5e-3),
        ("score: 2E+2", 200.0),
        ("score: .25", 0.25),
        ("score: +7.", 7.0),
    ],
)
def test_number_forms_are_accepted(line: str, expected: float) -> None:
    reading = parse_metric(f"noise\n{line}\nmore noise\n", "score")
    assert reading.status == "ok"
    assert reading.value == pytest.approx(expected)


@pytest.mark.parametrize(
    "line",
    [
        "score: 0.9 (best so far)",
        "score: 1,234",
        "score: n/a",
        "the score: 0.5",
        "# score: 0.5 is what we want",
        "score: 0.5 0.6",
    ],
)
def test_lines_that_are_not_exactly_name_number_are_ignored(line: str) -> None:
    reading = parse_metric(line + "\n", "score")
    assert reading.status == "no-metric"


def test_crlf_progress_bars_and_colours_do_not_hide_the_metric() -> None:
    output = "epoch 1\r\nprogress 10%\rprogress 100%\r\n\x1b[32mval_loss: 0.42\x1b[0m\r\n"
    reading = parse_metric(output, "val_loss")
    assert reading.status == "ok"
    assert reading.value == pytest.approx(0.42)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_or_infinite_metric_is_invalid(text: str) -> None:
    reading = parse_metric(f"val_loss: {text}\n", "val_loss")
    assert reading.status == "invalid-metric"
    assert reading.value is None
    assert "val_loss" in reading.detail
    assert ("nan" in reading.detail) or ("inf" in reading.detail)


def test_last_finite_line_after_a_nan_line_is_used() -> None:
    # The *last* line wins, whatever came before.
    assert parse_metric("val_loss: nan\nval_loss: 0.3\n", "val_loss").value == 0.3
    assert parse_metric("val_loss: 0.3\nval_loss: nan\n", "val_loss").status == "invalid-metric"


def test_missing_metric_names_what_was_expected_and_what_was_seen() -> None:
    reading = parse_metric("val_bpb: 0.99\nnum_steps: 10\n", "val_loss")
    assert reading.status == "no-metric"
    assert reading.value is None
    assert "val_loss" in reading.detail
    assert "val_bpb" in reading.detail and "num_steps" in reading.detail
    assert reading.extra == {"val_bpb": 0.99, "num_steps": 10.0}


def test_missing_metric_detail_is_truncated_when_many_names_are_seen() -> None:
    output = "".join(f"name_{i}: {i}\n" for i in range(500))
    reading = parse_metric(output, "val_loss")
    assert reading.status == "no-metric"
    assert "name_0" in reading.detail
    assert "name_499" not in reading.detail
    assert "more" in reading.detail
    assert len(reading.detail) < 500


def test_empty_output_is_no_metric() -> None:
    reading = parse_metric("", "val_loss")
    assert reading.status == "no-metric"
    assert "val_loss" in reading.detail


def test_non_finite_extras_are_dropped() -> None:
    reading = parse_metric("grad_norm: nan\nlr: inf\nval_loss: 0.5\n", "val_loss")
    assert reading.status == "ok"
    assert reading.extra == {}


def test_json_result_file_takes_precedence_over_stdout(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"sharpe": 1.25, "trades": 42, "note": "held-out", "ok": True}))
    reading = parse_metric("sharpe: 0.5\nwin_rate: 0.61\n", "sharpe", result)
    assert reading.status == "ok"
    assert reading.value == 1.25
    # Numbers from both sources; strings and booleans are not numbers.
    assert reading.extra == {"trades": 42.0, "win_rate": 0.61}


def test_json_result_file_alone_is_enough(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"load_time_ms": 812}')
    reading = parse_metric("", "load_time_ms", result)
    assert reading.status == "ok"
    assert reading.value == 812.0


def test_json_boolean_metric_is_not_a_number(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"accuracy": true}')
    reading = parse_metric("", "accuracy", result)
    assert reading.status == "invalid-metric"
    assert reading.value is None
    assert "accuracy" in reading.detail and "True" in reading.detail


def test_json_nan_metric_is_invalid(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"val_loss": NaN}')
    reading = parse_metric("val_loss: 0.5\n", "val_loss", result)
    assert reading.status == "invalid-metric"


def test_malformed_json_without_stdout_metric_names_file_and_error(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"val_loss": 0.5')
    reading = parse_metric("starting\n", "val_loss", result)
    assert reading.status == "no-metric"
    assert str(result) in reading.detail
    assert "JSON" in reading.detail


def test_malformed_json_falls_back_to_stdout_and_says_so(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text("not json at all")
    reading = parse_metric("val_loss: 0.5\n", "val_loss", result)
    assert reading.status == "ok"
    assert reading.value == 0.5
    assert str(result) in reading.detail and "JSON" in reading.detail


def test_json_array_is_not_a_result_object(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text("[0.5]")
    reading = parse_metric("", "val_loss", result)
    assert reading.status == "no-metric"
    assert "object" in reading.detail


def test_absent_or_empty_result_file_means_stdout_only(tmp_path: Path) -> None:
    absent = parse_metric("val_loss: 0.5\n", "val_loss", tmp_path / "never-written.json")
    assert absent.status == "ok" and absent.value == 0.5 and absent.detail == ""
    empty = tmp_path / "empty.json"
    empty.write_text("")
    reading = parse_metric("val_loss: 0.5\n", "val_loss", empty)
    assert reading.status == "ok" and reading.value == 0.5


def test_json_without_the_metric_falls_back_to_stdout(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"other": 1}')
    reading = parse_metric("val_loss: 0.5\n", "val_loss", result)
    assert reading.status == "ok"
    assert reading.value == 0.5
    assert reading.extra == {"other": 1.0}


def test_huge_json_integer_metric_is_invalid_not_a_crash(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"score": 1' + "0" * 400 + "}")
    reading = parse_metric("", "score", result)
    assert reading.status == "invalid-metric"
    assert reading.value is None


@pytest.mark.parametrize("text", ['{"score": ' + "1" * 5000 + "}", "[" * 100_000 + "]" * 100_000])
def test_pathological_json_is_reported_not_raised(tmp_path: Path, text: str) -> None:
    result = tmp_path / "result.json"
    result.write_text(text)
    reading = parse_metric("score: 2\n", "score", result)
    assert reading.status == "ok"
    assert reading.value == 2.0
    assert str(result) in reading.detail
