"""scripts/gpu-check's pure parts: the probe it wraps tinylm's evaluation in, and its verdict."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoswarm.study import load_study
from autoswarm.worker.hardware import GpuInfo, slot_environments
from autoswarm.worker.metric import parse_metric

ROOT = Path(__file__).resolve().parents[2]


def _load():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(ROOT / "scripts" / "gpu-check"))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


gpu_check = _load()
H200 = GpuInfo(index=0, name="NVIDIA H200", memory_bytes=141 << 30, driver="570.1")


def _evaluation(visible: float | None, device: str = "cuda", devices: float = 1, status: str = "baseline",
                metric: float | None = 6.1) -> object:
    extra = {f"device_{device}": 1.0, gpu_check.CUDA_DEVICES_METRIC: devices}
    if visible is not None:
        extra[gpu_check.VISIBLE_METRIC] = visible
    return gpu_check.Evaluation("l-abc", "baseline", status, metric, extra)


def test_the_checked_study_runs_tinylm_evaluation_through_the_probe(tmp_path: Path) -> None:
    study = tmp_path / "tinylm"
    shutil.copytree(ROOT / "examples" / "tinylm", study, ignore=shutil.ignore_patterns("*.pt2", "__pycache__"))
    original = load_study(study)
    (study / "study.toml").write_text(gpu_check.check_study_toml((study / "study.toml").read_text()))
    checked = load_study(study)
    assert checked.evaluate == f"python {gpu_check.PROBE_NAME} {original.evaluate}"
    assert (checked.metric, checked.setup, checked.time_budget) == (original.metric, original.setup, original.time_budget)


def test_a_study_without_one_evaluate_line_is_refused() -> None:
    with pytest.raises(ValueError, match="evaluate"):
        gpu_check.check_study_toml('name = "x"\n')


def test_probe_reports_numbers_the_worker_keeps(tmp_path: Path) -> None:
    """The probe's lines are `name: number` lines; then it runs the wrapped command itself.

    torch is shadowed by one that fails to import (fast here, and the probe must still run
    the evaluation when torch cannot tell).
    """
    probe = tmp_path / gpu_check.PROBE_NAME
    probe.write_text(gpu_check.PROBE_SOURCE)
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no torch in this test')\n")
    done = subprocess.run([sys.executable, str(probe), "python", "-c", "print('score: 1.5')"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path,
                          env={"CUDA_VISIBLE_DEVICES": "3", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(shadow.parent)})
    reading = parse_metric(done.stdout, "score")
    assert reading.value == 1.5, done.stdout + done.stderr
    assert reading.extra[gpu_check.VISIBLE_METRIC] == 3
    assert reading.extra[gpu_check.CUDA_DEVICES_METRIC] == 0
    assert "torch cannot tell (ImportError: no torch in this test)" in done.stdout


def test_pins_are_what_the_worker_gives_each_slot() -> None:
    second = GpuInfo(index=1, name="NVIDIA H200", memory_bytes=141 << 30, driver="570.1")
    assert gpu_check.slot_pins(slot_environments([H200, second], 1)) == ["0", "1"]


def test_evaluations_on_their_own_gpu_pass() -> None:
    assert gpu_check.problems_with([_evaluation(0), _evaluation(1)], ["0", "1"], 2, 2) == []


def test_each_way_the_gpu_path_can_fail_is_named() -> None:
    problems = gpu_check.problems_with(
        [_evaluation(0, device="cpu", devices=0), _evaluation(None, devices=2), _evaluation(5),
         _evaluation(1, status="crash", metric=None)],
        ["0", "1"], wanted=6, registered_slots=1)
    text = "\n".join(problems)
    assert "registered 1 slot(s), expected 2" in text
    assert "4 of 6 evaluations finished" in text
    assert "trained on cpu, not CUDA" in text
    assert "saw 0 CUDA devices" in text and "saw 2 CUDA devices" in text
    assert "CUDA_VISIBLE_DEVICES ?" in text and "CUDA_VISIBLE_DEVICES 5" in text
    assert "ended crash" in text


def test_results_that_reached_no_evaluation_do_not_count() -> None:
    problems = gpu_check.problems_with([_evaluation(0), _evaluation(0, status="mutator-error", metric=None)],
                                       ["0"], wanted=2, registered_slots=1)
    assert problems == ["1 of 2 evaluations finished in time"]
