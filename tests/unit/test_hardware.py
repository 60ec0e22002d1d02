"""Hardware detection from recorded nvidia-smi outputs, and the per-slot environments."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autoswarm.worker.hardware import (
    GpuInfo,
    detect_gpus,
    detect_hardware,
    parse_cpu_model,
    parse_meminfo_total,
    parse_nvidia_smi,
    slot_environments,
)

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia_smi"
MIB = 1024 * 1024


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _fake_nvidia_smi(tmp_path: Path, body: str) -> str:
    """A real executable standing in for nvidia-smi; it checks it was asked the right query."""
    path = tmp_path / "bin" / "nvidia-smi"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=index,name,memory.total,driver_version*--format=csv,noheader,nounits*) ;;\n'
        '  *) echo "unexpected arguments: $*" >&2; exit 64 ;; esac\n'
        f"{body}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_one_gpu() -> None:
    assert parse_nvidia_smi(_fixture("one_gpu.txt")) == (
        GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB, driver="550.54.15"),
    )


def test_several_gpus_keep_their_indices_and_names() -> None:
    gpus = parse_nvidia_smi(_fixture("several_gpus.txt"))
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert [g.name for g in gpus] == [
        "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090", "Tesla T4",
    ]
    assert gpus[2].memory_bytes == 24564 * MIB
    assert {g.driver for g in gpus} == {"535.104.05"}


@pytest.mark.parametrize("name", ["none.txt", "driver_failed.txt", "no_devices.txt"])
def test_no_gpu_outputs_give_none(name: str) -> None:
    assert parse_nvidia_smi(_fixture(name)) == ()


def test_a_gpu_without_memory_figure_is_skipped_not_fatal() -> None:
    gpus = parse_nvidia_smi(_fixture("memory_not_available.txt"))
    assert [g.index for g in gpus] == [1]


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "a, b, c, d", "-1, X, 10, 1.0", "0, , 10, 1.0", "0, X, nan, 1.0", "0, X, 10,", "\x00\xff, ,,,"],
)
def test_garbage_never_raises(text: str) -> None:
    assert parse_nvidia_smi(text) == ()


def test_detect_gpus_runs_nvidia_smi(tmp_path: Path) -> None:
    fake = _fake_nvidia_smi(tmp_path, f"cat '{FIXTURES / 'several_gpus.txt'}'")
    gpus = detect_gpus(fake)
    assert len(gpus) == 4
    assert gpus[3] == GpuInfo(index=3, name="Tesla T4", memory_bytes=15360 * MIB, driver="535.104.05")


def test_detect_gpus_without_nvidia_smi_is_empty(tmp_path: Path) -> None:
    assert detect_gpus(str(tmp_path / "no-such-nvidia-smi")) == ()


def test_detect_gpus_when_the_driver_fails_is_empty(tmp_path: Path) -> None:
    fake = _fake_nvidia_smi(tmp_path, f"cat '{FIXTURES / 'driver_failed.txt'}'; exit 9")
    assert detect_gpus(fake) == ()


def test_detect_gpus_output_with_nonzero_exit_is_not_trusted(tmp_path: Path) -> None:
    fake = _fake_nvidia_smi(tmp_path, f"cat '{FIXTURES / 'one_gpu.txt'}'; exit 6")
    assert detect_gpus(fake) == ()


def test_detect_gpus_gives_up_on_a_hanging_nvidia_smi(tmp_path: Path) -> None:
    fake = _fake_nvidia_smi(tmp_path, "sleep 60")
    assert detect_gpus(fake, timeout_seconds=0.5) == ()


def test_detect_hardware_describes_this_machine(tmp_path: Path) -> None:
    fake = _fake_nvidia_smi(tmp_path, f"cat '{FIXTURES / 'one_gpu.txt'}'")
    info = detect_hardware(fake)
    assert info.cpu_model and info.cpu_model.strip() == info.cpu_model
    assert 1 <= info.cpu_cores <= (os.cpu_count() or 1)
    assert info.memory_bytes > 0
    assert [g.name for g in info.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert info.python_version.count(".") == 2
    assert info.platform


def test_detect_hardware_without_gpus(tmp_path: Path) -> None:
    assert detect_hardware(str(tmp_path / "missing")).gpus == ()


def test_cpu_model_from_cpuinfo() -> None:
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
    assert parse_cpu_model(x86) == "AMD EPYC 7B13 64-Core Processor"
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\nHardware\t: BCM2835\n"
    assert parse_cpu_model(arm) == "BCM2835"
    assert parse_cpu_model("processor\t: 0\nCPU part\t: 0xd0c\n") is None
    assert parse_cpu_model("") is None


def test_memory_from_meminfo() -> None:
    assert parse_meminfo_total("MemTotal:       16318884 kB\nMemFree: 1 kB\n") == 16318884 * 1024
    assert parse_meminfo_total("MemFree: 1 kB\n") is None
    assert parse_meminfo_total("") is None


def test_one_slot_per_gpu_pinned() -> None:
    gpus = parse_nvidia_smi(_fixture("several_gpus.txt"))
    slots = slot_environments(gpus, cpu_slots=8)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    # CUDA numbers GPUs the way nvidia-smi does only with PCI bus order.
    assert all(s["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for s in slots)


def test_chosen_gpus_keep_their_own_indices() -> None:
    gpus = [g for g in parse_nvidia_smi(_fixture("several_gpus.txt")) if g.index in (0, 2)]
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slot_environments(gpus, cpu_slots=1)] == ["0", "2"]


def test_cpu_slots_hide_every_gpu() -> None:
    slots = slot_environments((), cpu_slots=3)
    assert slots == [{"CUDA_VISIBLE_DEVICES": ""}] * 3
    slots[0]["X"] = "1"
    assert "X" not in slots[1]  # each slot gets its own dict


def test_zero_cpu_slots_is_an_error() -> None:
    with pytest.raises(ValueError, match="cpu_slots"):
        slot_environments((), cpu_slots=0)
