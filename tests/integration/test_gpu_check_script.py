"""scripts/gpu-check on this machine, which has no NVIDIA GPU: it says so and exits 77.

A machine whose driver is broken (nvidia-smi present but failing) and one with GPUs but a CPU
build of torch get their own clear messages; the full check needs a real GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check"


def _run(path: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": path}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240,
                          env=env, cwd=ROOT)


def _tool(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return folder


def test_without_nvidia_smi_it_says_there_is_no_gpu_and_exits_77(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = _run(str(empty))
    assert done.returncode == 77, done.stdout + done.stderr
    assert "no NVIDIA GPU on this machine: nvidia-smi is not on PATH" in done.stdout
    assert "Nothing was run (exit 77)" in done.stdout
    assert "class key (computed here): cpu:" in done.stdout


def test_a_failing_driver_is_told_apart_from_a_missing_tool(tmp_path: Path) -> None:
    bin_dir = _tool(tmp_path / "bin", "nvidia-smi",
                    'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n')
    done = _run(str(bin_dir))
    assert done.returncode == 77, done.stdout + done.stderr
    assert "nvidia-smi is on PATH but lists no GPU (is the driver loaded?)" in done.stdout


def test_gpus_with_a_cpu_build_of_torch_fail_fast_with_the_fix(tmp_path: Path) -> None:
    bin_dir = _tool(tmp_path / "bin", "nvidia-smi", 'case "$*" in *query-gpu*)\n'
                    '  echo "0, NVIDIA H200, 143771, 570.1"; echo "1, NVIDIA H200, 143771, 570.1";; esac\n')
    done = _run(f"{bin_dir}:/usr/bin:/bin")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "GPU 1: NVIDIA H200" in done.stdout
    assert "class key (computed here): gpu:NVIDIA H200 x2 (140GiB)" in done.stdout
    assert "slot 0: CUDA_VISIBLE_DEVICES=0" in done.stdout and "slot 1: CUDA_VISIBLE_DEVICES=1" in done.stdout
    assert "the evaluation's torch cannot use CUDA; install a CUDA build of torch" in done.stdout
    assert "coordinator" not in done.stdout  # failed before starting anything
