"""What this machine offers: CPU, memory, NVIDIA GPUs, and the per-slot environments.

Everything degrades cleanly: no `nvidia-smi`, a broken driver or an odd /proc gives fewer
facts, never an exception.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoswarm.worker.runner import run_command

NVIDIA_SMI_QUERY = (
    "--query-gpu=index,name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
)
COMPUTE_APPS_QUERY = ("--query-compute-apps=pid", "--format=csv,noheader")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as `nvidia-smi` numbers it."""

    index: int
    name: str
    memory_bytes: int
    driver: str


@dataclass(frozen=True)
class HardwareInfo:
    """The machine's fingerprint, sent when a worker registers."""

    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    gpus: tuple[GpuInfo, ...]
    platform: str
    python_version: str


def parse_nvidia_smi(text: str) -> tuple[GpuInfo, ...]:
    """GPUs from `nvidia-smi --query-gpu=index,name,memory.total,driver_version
    --format=csv,noheader,nounits` output (memory in MiB). Lines that do not fit are skipped;
    garbage or empty text gives (). Never raises."""
    gpus: list[GpuInfo] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4:
            continue
        # Index first, memory and driver last: a comma inside a name would still parse.
        index_text, memory_text, driver = fields[0], fields[-2], fields[-1]
        name = ", ".join(fields[1:-2])
        try:
            index = int(index_text)
            memory_mib = float(memory_text)
        except ValueError:
            continue  # e.g. "[N/A]" or an error message that happens to contain commas
        if index < 0 or not name or not driver or not memory_mib >= 0 or memory_mib == float("inf"):
            continue
        gpus.append(GpuInfo(index=index, name=name, memory_bytes=int(memory_mib * _MIB), driver=driver))
    return tuple(gpus)


def run_nvidia_smi(args: Sequence[str], nvidia_smi: str = "nvidia-smi", timeout_seconds: float = 10.0) -> str | None:
    """`nvidia-smi ARGS` output; None when it is missing, fails or hangs."""
    # A wedged driver can make nvidia-smi hang: run it with our hard, tree-killing timeout.
    with tempfile.TemporaryDirectory(prefix="autoswarm-nvidia-smi-") as scratch:
        outcome = run_command(
            [nvidia_smi, *args],
            cwd=Path(scratch),
            env=os.environ,
            timeout_seconds=timeout_seconds,
            log_path=Path(scratch) / "nvidia-smi.log",
            tail_chars=1_000_000,
            kill_grace_seconds=1.0,
        )
    return outcome.output_tail if outcome.returncode == 0 else None


def detect_gpus(nvidia_smi: str = "nvidia-smi", timeout_seconds: float = 10.0) -> tuple[GpuInfo, ...]:
    """NVIDIA GPUs of this machine; () without `nvidia-smi`, on its failure, or if it hangs."""
    output = run_nvidia_smi(NVIDIA_SMI_QUERY, nvidia_smi, timeout_seconds)
    return parse_nvidia_smi(output) if output is not None else ()


def parse_compute_apps(text: str) -> tuple[int, ...]:
    """Process ids from `nvidia-smi --query-compute-apps=pid --format=csv,noheader` output."""
    return tuple(int(line.strip()) for line in text.splitlines() if line.strip().isdigit())


def gpu_in_use(index: int, nvidia_smi: str = "nvidia-smi") -> bool:
    """Whether any process computes on GPU `index` (False when nvidia-smi cannot tell)."""
    output = run_nvidia_smi(["-i", str(index), *COMPUTE_APPS_QUERY], nvidia_smi)
    return bool(output and parse_compute_apps(output))


def parse_cpu_model(cpuinfo: str) -> str | None:
    """The CPU model from /proc/cpuinfo text: `model name` (x86), else `Hardware`/`cpu model`."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if sep and value and key not in found:
            found[key] = value
    for key in ("model name", "hardware", "cpu model", "cpu"):
        if key in found:
            return found[key]
    return None


def parse_meminfo_total(meminfo: str) -> int | None:
    """MemTotal in bytes from /proc/meminfo text (which states it in kB)."""
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        if key.strip() == "MemTotal":
            parts = rest.split()
            if parts and parts[0].isdigit():
                unit = parts[1].lower() if len(parts) > 1 else "kb"
                return int(parts[0]) * (1024 if unit == "kb" else 1)
    return None


def detect_hardware(nvidia_smi: str = "nvidia-smi") -> HardwareInfo:
    """This machine's CPU model, usable cores (CPU affinity), memory, GPUs, platform, Python."""
    cpu_model = parse_cpu_model(_read_text("/proc/cpuinfo")) or platform.processor() or "unknown cpu"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    memory = parse_meminfo_total(_read_text("/proc/meminfo")) or _sysconf_memory()
    return HardwareInfo(
        cpu_model=cpu_model,
        cpu_cores=max(cores, 1),
        memory_bytes=memory,
        gpus=detect_gpus(nvidia_smi),
        platform=platform.platform(),
        python_version=platform.python_version(),
    )


def slot_environments(gpus: Sequence[GpuInfo], cpu_slots: int) -> list[dict[str, str]]:
    """Environment overrides for each slot: one slot per GPU, else `cpu_slots` CPU slots.

    A GPU slot pins `CUDA_VISIBLE_DEVICES` to its index, with `CUDA_DEVICE_ORDER=PCI_BUS_ID`
    so CUDA numbers GPUs as nvidia-smi does. A CPU slot hides every GPU
    (`CUDA_VISIBLE_DEVICES=""`) so it never grabs one. Raises ValueError when there are no
    GPUs and `cpu_slots` < 1.
    """
    if gpus:
        return [
            {"CUDA_VISIBLE_DEVICES": str(gpu.index), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
            for gpu in gpus
        ]
    if cpu_slots < 1:
        raise ValueError(f"cpu_slots must be at least 1 on a machine without GPUs, got {cpu_slots}")
    return [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(cpu_slots)]


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _sysconf_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 0
