"""Read the evaluation's metric from its output (autoresearch style) or its JSON result file.

An evaluation reports by printing `name: value` lines, as autoresearch's summary block does::

    ---
    val_bpb:          0.997900
    training_seconds: 300.1

or by writing a JSON object to the file named by `$AUTOSWARM_RESULT`. The JSON file is an
explicit contract, so its numbers take precedence over stdout.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

STATUS_OK = "ok"
STATUS_NO_METRIC = "no-metric"
STATUS_INVALID_METRIC = "invalid-metric"

# A result file bigger than this is not a metric report; refuse it rather than load it.
MAX_RESULT_FILE_BYTES = 4 * 1024 * 1024
_MAX_NAMES_IN_DETAIL = 12

_NUMBER = r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|nan|inf(?:inity)?)"
# Only a whole line `<name>: <number>` counts, so `step 10: loss 3.2` or `val: 0.9 (best)` do not.
_METRIC_LINE = re.compile(
    rf"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_.\-/]*)\s*:\s*(?P<value>{_NUMBER})\s*$",
    re.IGNORECASE,
)
# Colour codes from rich/tqdm-style progress output would otherwise hide a metric line.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class MetricReading:
    """What the evaluation reported.

    `status` is "ok", "no-metric" or "invalid-metric"; `value` is set only when ok; `extra`
    holds every other finite number reported; `detail` explains a non-ok status (and notes
    anything odd, such as an unreadable result file, when ok).
    """

    status: str
    value: float | None
    extra: dict[str, float] = field(default_factory=dict)
    detail: str = ""


def parse_output_numbers(output: str) -> dict[str, float]:
    """Every `name: number` line of `output`, in order of first appearance; the last value wins."""
    numbers: dict[str, float] = {}
    for line in _ANSI_ESCAPE.sub("", output).splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            numbers[match["name"]] = float(match["value"])
    return numbers


def parse_metric(output: str, metric: str, result_file: Path | None = None) -> MetricReading:
    """Find `metric` in the evaluation's output and optional JSON result file.

    Rules:
    - stdout: lines that are exactly `name: number` (float syntax incl. nan/inf/exponents,
      any whitespace); the last line for a name wins. ANSI colour codes are ignored.
    - result file: if it exists and is non-empty it must hold a JSON object; its numeric
      values (JSON numbers, not booleans or strings) override stdout's.
    - A result file that is malformed (or not an object): if stdout has the metric, stdout's
      value is used (status "ok") and `detail` says the file was ignored and why; otherwise
      "no-metric" with a detail naming the file and the JSON error.
    - The result file naming the metric with a non-number (e.g. a string) is "invalid-metric":
      the evaluation clearly meant to report it.
    - A NaN or infinite metric is "invalid-metric". Non-finite *extra* numbers are dropped so
      that one diverged auxiliary number cannot make a whole report unsendable.
    """
    numbers = parse_output_numbers(output)
    notes: list[str] = []

    if result_file is not None:
        loaded, problem = _load_result_file(result_file)
        if problem:
            notes.append(problem)
        if loaded is not None:
            file_numbers = _json_numbers(loaded)
            numbers.update(file_numbers)
            if metric in loaded and metric not in file_numbers:
                return MetricReading(
                    status=STATUS_INVALID_METRIC,
                    value=None,
                    extra=_finite_extras(numbers, metric),
                    detail=f"{metric} in {result_file} is {_short(repr(loaded[metric]))}, not a number",
                )

    extra = _finite_extras(numbers, metric)
    if metric not in numbers:
        detail = f"no '{metric}: <number>' line in the output" + (
            f" and no '{metric}' in {result_file}" if result_file is not None else ""
        )
        detail += f" ({_describe_names(numbers)})"
        if notes:
            detail += "; " + "; ".join(notes)
        return MetricReading(status=STATUS_NO_METRIC, value=None, extra=extra, detail=detail)

    value = numbers[metric]
    if not math.isfinite(value):
        return MetricReading(
            status=STATUS_INVALID_METRIC, value=None, extra=extra, detail=f"{metric} was {value}"
        )
    detail = ""
    if notes:
        detail = f"{metric} taken from the output; " + "; ".join(notes)
    return MetricReading(status=STATUS_OK, value=value, extra=extra, detail=detail)


def _load_result_file(path: Path) -> tuple[dict[str, object] | None, str]:
    """(object, "") when usable; (None, reason) when present but unusable; (None, "") if absent."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"result file {path} could not be read: {exc}"
    if size > MAX_RESULT_FILE_BYTES:
        return None, f"result file {path} ignored: {size} bytes is over {MAX_RESULT_FILE_BYTES}"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return None, f"result file {path} could not be read: {exc}"
    if not text.strip():
        # Created but never written (e.g. the evaluation crashed first): as if absent.
        return None, f"result file {path} is empty"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, 4300-digit limit, deep nesting
        return None, f"result file {path} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"result file {path} holds a JSON {type(data).__name__}, not an object"
    return data, ""


def _json_numbers(data: dict[str, object]) -> dict[str, float]:
    """The numeric values of a JSON object: numbers only (`true` is not a score)."""
    numbers: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            numbers[key] = float(value)
        except OverflowError:  # an integer beyond float range
            numbers[key] = math.inf if value > 0 else -math.inf
    return numbers


def _finite_extras(numbers: dict[str, float], metric: str) -> dict[str, float]:
    return {k: v for k, v in numbers.items() if k != metric and math.isfinite(v)}


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_names(numbers: dict[str, float]) -> str:
    if not numbers:
        return "no 'name: number' lines seen"
    names = list(numbers)
    shown = ", ".join(names[:_MAX_NAMES_IN_DETAIL])
    more = len(names) - _MAX_NAMES_IN_DETAIL
    return f"names seen: {shown}" + (f", ... +{more} more" if more > 0 else "")
