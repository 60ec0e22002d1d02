"""tinylm on every accelerator torch offers: the device it picks and the device it reports.

No GPU is needed: torch's own availability checks are what a Mac, a ROCm build or an Intel XPU
would answer, so they are set to those answers; the real evaluation then reports the device the
model trained on as an extra metric.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from swarm import needs

STUDY_DIR = Path(__file__).resolve().parents[2] / "examples" / "tinylm"

try:
    import torch

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
pytestmark = needs(HAVE_TORCH, "torch is not installed: pip install 'autoswarm[torch]' (CI installs it)")


@pytest.fixture
def tinylm(monkeypatch):
    """train.py and prepare.py as modules (train.py imports prepare from its own directory)."""
    monkeypatch.syspath_prepend(str(STUDY_DIR))
    for name in ("train", "prepare"):
        sys.modules.pop(name, None)
    train = importlib.import_module("train")
    yield train, importlib.import_module("prepare")
    for name in ("train", "prepare"):
        sys.modules.pop(name, None)


def _offer(monkeypatch, *, cuda=False, mps=False, xpu=False, hip=None):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    if hasattr(torch, "xpu"):
        monkeypatch.setattr(torch.xpu, "is_available", lambda: xpu)
    monkeypatch.setattr(torch.version, "hip", hip)


@pytest.mark.parametrize("offer, device, kind", [
    ({"cuda": True}, "cuda", "cuda"),
    ({"cuda": True, "hip": "6.2.41133"}, "cuda", "rocm"),       # a ROCm build answers torch.cuda
    ({"mps": True}, "mps", "mps"),                             # Apple Silicon
    ({"cuda": True, "mps": True}, "cuda", "cuda"),
    ({}, "cpu", "cpu"),
])
def test_train_py_picks_the_fastest_device_and_names_it(tinylm, monkeypatch, offer, device, kind):
    train, prepare = tinylm
    _offer(monkeypatch, **offer)
    chosen = train.choose_device()
    assert chosen.type == device
    assert prepare.device_kind(chosen) == kind


def test_an_intel_xpu_is_used_where_torch_has_one(tinylm, monkeypatch):
    train, prepare = tinylm
    if not hasattr(torch, "xpu"):
        monkeypatch.setattr(torch, "xpu", type("Xpu", (), {"is_available": staticmethod(lambda: True)}), raising=False)
    _offer(monkeypatch, xpu=True)
    assert train.choose_device().type == "xpu"
    assert prepare.device_kind(torch.device("xpu")) == "xpu"


def test_on_a_cpu_the_budget_is_the_training_threads_cpu_time(tinylm, monkeypatch):
    # A shared CPU: time the thread spends descheduled (here: asleep) does not use the budget,
    # so a busy machine stretches the wall time of an evaluation, not what it measures.
    _, prepare = tinylm
    ticks = iter([10.0, 10.5])
    monkeypatch.setattr(prepare.time, "thread_time", lambda: next(ticks))
    monkeypatch.setattr(prepare.time, "perf_counter", lambda: pytest.fail("the wall clock was read"))
    clock = prepare.budget_clock(torch.device("cpu"))
    assert clock() == pytest.approx(0.5)


@pytest.mark.parametrize("device", ["cuda", "mps", "xpu"])
def test_on_an_accelerator_the_budget_is_wall_clock_time(tinylm, monkeypatch, device):
    _, prepare = tinylm
    ticks = iter([100.0, 103.0])
    monkeypatch.setattr(prepare.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(prepare.time, "thread_time", lambda: pytest.fail("CPU time was read"))
    clock = prepare.budget_clock(torch.device(device))
    assert clock() == pytest.approx(3.0)


def test_train_py_stops_at_the_budget_on_the_budget_clock(tinylm, monkeypatch, capsys):
    # train.py's loop runs on prepare.budget_clock: a clock that says the budget is spent at
    # its second reading ends training after the first step, whatever the wall clock says.
    train, prepare = tinylm
    readings = iter([0.0, 100.0])
    monkeypatch.setattr(prepare, "budget_clock", lambda device: lambda: next(readings, 100.0))
    monkeypatch.setenv("AUTOSWARM_TIME_BUDGET", "50")
    saved = {}
    monkeypatch.setattr(prepare, "save_model", lambda model, block_size: saved.update(block_size=block_size))
    monkeypatch.setattr(prepare, "load_train_data", lambda: torch.randint(0, 256, (4096,), dtype=torch.uint8))
    monkeypatch.setattr(train, "choose_device", lambda: torch.device("cpu"))
    train.main()
    assert saved == {"block_size": train.BLOCK_SIZE}
    assert "trained 1 steps in 100.0s of budget" in capsys.readouterr().out
