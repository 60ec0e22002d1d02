"""The quickstart study: a valid study file, and a target that scores deterministically and
whose defaults a `params`-style edit can beat (that is the whole point of the demo)."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from autoswarm.study import load_study

STUDY_DIR = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
METRIC_LINE = re.compile(r"^val_loss:\s+(\S+)\s*$", re.MULTILINE)


def run_train(workdir: Path, source: str | None = None, budget: str = "5") -> float:
    """Runs the study's evaluation (`python train.py`) as the worker does and returns the
    metric from the last `val_loss:` line."""
    if source is not None:
        (workdir / "train.py").write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSWARM_")}
    env["AUTOSWARM_TIME_BUDGET"] = budget
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = METRIC_LINE.findall(proc.stdout)
    assert lines, f"no val_loss line in:\n{proc.stdout}"
    assert proc.stdout.rstrip().splitlines()[-1].startswith("val_loss:"), "the metric must be the last line"
    return float(lines[-1])


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A scratch copy of the study directory, as the worker makes one per evaluation."""
    dest = tmp_path / "quickstart"
    shutil.copytree(STUDY_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_study_file_has_the_contract_keys() -> None:
    data = tomllib.loads((STUDY_DIR / "study.toml").read_text(encoding="utf-8"))
    assert data["name"] == "quickstart"
    assert data["target"] == "train.py" and (STUDY_DIR / data["target"]).is_file()
    assert (STUDY_DIR / data["program"]).is_file()
    assert data["evaluate"] == "python train.py"
    assert data["metric"] == "val_loss"
    assert data["direction"] == "minimize"
    assert 0 < data["time_budget"] <= 10
    assert data["timeout"] >= 6 * data["time_budget"]
    assert data["acceptance"] == {"quorum": 1, "min_delta": 0.0, "compare": "absolute"}
    assert data["mutator"] == {"kind": "params"}
    assert "setup" not in data  # nothing to prepare: the data is generated in-process


def test_study_file_is_accepted_by_the_study_parser() -> None:
    study = load_study(STUDY_DIR)
    assert (study.name, study.target, study.metric, study.direction) == ("quickstart", "train.py", "val_loss", "minimize")


def test_target_exposes_hyperparameters_as_upper_case_literals() -> None:
    source = (STUDY_DIR / "train.py").read_text(encoding="utf-8")
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*) = [0-9.e-]+\s", source, re.MULTILINE))
    assert {"LEARNING_RATE", "MOMENTUM", "BATCH_SIZE", "EPOCHS", "L2", "NUM_FEATURES"} <= names
    # Seeds must not be tunable: perturbing a seed only fits noise.
    assert not any("SEED" in name for name in names)


def test_evaluation_is_finite_and_deterministic(scratch: Path) -> None:
    first = run_train(scratch)
    second = run_train(scratch)
    assert math.isfinite(first)
    assert 0.2 < first < math.log(2)  # learns something, yet far from the noise floor
    assert first == second


def test_defaults_are_clearly_improvable(scratch: Path) -> None:
    source = (scratch / "train.py").read_text(encoding="utf-8")
    match = re.search(r"^LEARNING_RATE = ([0-9.e-]+)", source, re.MULTILINE)
    assert match
    default = run_train(scratch)
    faster = source.replace(match.group(0), f"LEARNING_RATE = {float(match.group(1)) * 3!r}")
    improved = run_train(scratch, faster)
    assert improved < default - 0.05, (default, improved)


def test_divergence_reports_nan_instead_of_crashing(scratch: Path) -> None:
    source = (scratch / "train.py").read_text(encoding="utf-8")
    exploding = re.sub(r"^MOMENTUM = \S+", "MOMENTUM = 3.0", source, flags=re.MULTILINE)
    assert math.isnan(run_train(scratch, exploding))


def test_time_budget_stops_a_runaway_setting(scratch: Path) -> None:
    source = (scratch / "train.py").read_text(encoding="utf-8")
    endless = re.sub(r"^EPOCHS = \S+", "EPOCHS = 1000000", source, flags=re.MULTILINE)
    (scratch / "train.py").write_text(endless, encoding="utf-8")
    env = dict(os.environ, AUTOSWARM_TIME_BUDGET="0.5")
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=scratch, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^out_of_time:\s+1$", proc.stdout, re.MULTILINE), proc.stdout
    assert math.isfinite(float(METRIC_LINE.findall(proc.stdout)[-1]))
