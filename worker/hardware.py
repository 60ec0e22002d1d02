"""What this machine offers: CPU, memory, GPUs of every vendor, and the per-slot environments.

GPUs come from `nvidia-smi`, `amd-smi` (or the older `rocm-smi`) and Intel's `xpu-smi` on Linux,
and from `system_profiler`/`sysctl` on a Mac, where the GPU is the chip's Metal GPU (parsers in
accelerators.py). Everything degrades cleanly: a missing tool, a broken driver or an odd /proc
gives fewer facts, never an exception.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoswarm.worker import accelerators
from autoswarm.worker.runner import run_command

NVIDIA_SMI_QUERY = (
    "--query-gpu=index,name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
)
COMPUTE_APPS_QUERY = ("--query-compute-apps=pid", "--format=csv,noheader")
_MIB = 1024 * 1024
# Marks a GPU slot in its environment overrides (the worker's own: not passed to commands).
GPU_SLOT_VARIABLE = "AUTOSWARM_GPU"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU. `index` is the worker's number for it (`--gpus`): nvidia-smi's for NVIDIA GPUs,
    then the other vendors' GPUs after them; `device` is the vendor runtime's own index."""

    index: int
    name: str
    memory_bytes: int
    driver: str
    vendor: str = "nvidia"                # nvidia | amd | intel | apple
    device: int | None = None             # None: the same as `index`

    @property
    def vendor_index(self) -> int:
        """The number this GPU's runtime knows it by (what its *_VISIBLE_DEVICES variable means)."""
        return self.index if self.device is None else self.device


@dataclass(frozen=True)
class GpuTools:
    """The tools that describe this machine, and the system they run on (a seam for tests)."""

    nvidia_smi: str = "nvidia-smi"
    amd_smi: str = "amd-smi"
    rocm_smi: str = "rocm-smi"
    xpu_smi: str = "xpu-smi"
    system_profiler: str = "system_profiler"
    sysctl: str = "sysctl"
    system: str = field(default_factory=platform.system)
    timeout_seconds: float = 10.0


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
    return run_tool(nvidia_smi, args, timeout_seconds)


def run_tool(tool: str, args: Sequence[str], timeout_seconds: float = 10.0) -> str | None:
    """`TOOL ARGS` output (stdout and stderr); None when it is missing, fails or hangs."""
    # A wedged driver can make a vendor tool hang: run it with our hard, tree-killing timeout.
    with tempfile.TemporaryDirectory(prefix="autoswarm-hardware-") as scratch:
        outcome = run_command(
            [tool, *args],
            cwd=Path(scratch),
            env=os.environ,
            timeout_seconds=timeout_seconds,
            log_path=Path(scratch) / "tool.log",
            tail_chars=1_000_000,
            kill_grace_seconds=1.0,
        )
    return outcome.output_tail if outcome.returncode == 0 else None


def detect_gpus(nvidia_smi: str = "nvidia-smi", timeout_seconds: float = 10.0) -> tuple[GpuInfo, ...]:
    """NVIDIA GPUs of this machine; () without `nvidia-smi`, on its failure, or if it hangs."""
    output = run_nvidia_smi(NVIDIA_SMI_QUERY, nvidia_smi, timeout_seconds)
    return parse_nvidia_smi(output) if output is not None else ()


def detect_all_gpus(tools: GpuTools) -> tuple[GpuInfo, ...]:
    """Every GPU of this machine, numbered for `--gpus`: NVIDIA's as nvidia-smi numbers them, then
    AMD's (amd-smi, else rocm-smi) and Intel's (xpu-smi) after them; on a Mac its Metal GPU."""
    if tools.system == "Darwin":
        mac = detect_mac(tools)
        return _numbered((), mac.gpus) if mac else ()
    nvidia = detect_gpus(tools.nvidia_smi, tools.timeout_seconds)
    amd = _ask(tools.amd_smi, accelerators.AMD_SMI_QUERY, accelerators.parse_amd_smi, tools.timeout_seconds) \
        or _ask(tools.rocm_smi, accelerators.ROCM_SMI_QUERY, accelerators.parse_rocm_smi, tools.timeout_seconds)
    intel = _ask(tools.xpu_smi, accelerators.XPU_SMI_QUERY, accelerators.parse_xpu_smi, tools.timeout_seconds)
    return _numbered(nvidia, (*amd, *intel))


def detect_mac(tools: GpuTools) -> accelerators.MacHardware | None:
    """The Mac's chip, cores, memory and Metal GPU; None when neither tool answers."""
    profile = run_tool(tools.system_profiler, accelerators.SYSTEM_PROFILER_QUERY, max(tools.timeout_seconds, 30.0))
    sysctl = run_tool(tools.sysctl, accelerators.SYSCTL_QUERY, tools.timeout_seconds)
    return accelerators.parse_mac(profile or "", sysctl or "")


def _ask(tool: str, query: Sequence[str], parse: Callable[[str], tuple[accelerators.Accelerator, ...]],
         timeout_seconds: float) -> tuple[accelerators.Accelerator, ...]:
    """What `parse` reads in `tool`'s answer to `query`; () when the tool is missing or fails."""
    output = run_tool(tool, query, timeout_seconds)
    return parse(output) if output is not None else ()


def _numbered(nvidia: Sequence[GpuInfo], others: Sequence[accelerators.Accelerator]) -> tuple[GpuInfo, ...]:
    """NVIDIA's GPUs keep nvidia-smi's numbers (what `--gpus` always meant); the others follow."""
    start = max((g.index for g in nvidia), default=-1) + 1
    return (*nvidia, *(GpuInfo(index=start + i, name=a.name, memory_bytes=a.memory_bytes, driver=a.driver,
                               vendor=a.vendor, device=a.device) for i, a in enumerate(others)))


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


def detect_hardware(nvidia_smi: str = "nvidia-smi", tools: GpuTools | None = None) -> HardwareInfo:
    """This machine's CPU model, usable cores (CPU affinity), memory, GPUs, platform, Python.

    `tools` says where the vendor tools are and which system this is (default: this one, with
    `nvidia_smi` as given).
    """
    tools = tools or GpuTools(nvidia_smi=nvidia_smi)
    if tools.system == "Darwin":
        mac = detect_mac(tools)
        if mac is not None:
            return HardwareInfo(cpu_model=mac.chip, cpu_cores=mac.cpu_cores,
                                memory_bytes=mac.memory_bytes or _sysconf_memory(), gpus=_numbered((), mac.gpus),
                                platform=platform.platform(), python_version=platform.python_version())
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
        gpus=detect_all_gpus(tools) if tools.system != "Darwin" else (),
        platform=platform.platform(),
        python_version=platform.python_version(),
    )


def slot_environments(gpus: Sequence[GpuInfo], cpu_slots: int) -> list[dict[str, str]]:
    """Environment overrides for each slot: one slot per GPU, else `cpu_slots` CPU slots.

    A GPU slot is pinned to its GPU with the variables of that GPU's stack (`gpu_pinning`) and
    marked with AUTOSWARM_GPU (its `--gpus` index). A CPU slot hides every NVIDIA GPU
    (`CUDA_VISIBLE_DEVICES=""`) so it never grabs one; in bubblewrap it gets no GPU device at
    all. Raises ValueError when there are no GPUs and `cpu_slots` < 1.
    """
    if gpus:
        return [{GPU_SLOT_VARIABLE: str(gpu.index), **gpu_pinning(gpu)} for gpu in gpus]
    if cpu_slots < 1:
        raise ValueError(f"cpu_slots must be at least 1 on a machine without GPUs, got {cpu_slots}")
    return [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(cpu_slots)]


def gpu_pinning(gpu: GpuInfo) -> dict[str, str]:
    """The variables that make a command see only `gpu`.

    NVIDIA: `CUDA_VISIBLE_DEVICES` with `CUDA_DEVICE_ORDER=PCI_BUS_ID`, so CUDA numbers GPUs as
    nvidia-smi does. AMD: `ROCR_VISIBLE_DEVICES` (the ROCm runtime, under every language) to the
    GPU, and `HIP_VISIBLE_DEVICES=0`, which HIP reads as an index into what ROCR left visible.
    Intel: `ZE_AFFINITY_MASK` (Level Zero, which SYCL and PyTorch's XPU use). Apple: nothing, a
    Mac has one Metal GPU.
    """
    device = str(gpu.vendor_index)
    if gpu.vendor == "nvidia":
        return {"CUDA_VISIBLE_DEVICES": device, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    if gpu.vendor == "amd":
        return {"ROCR_VISIBLE_DEVICES": device, "HIP_VISIBLE_DEVICES": "0"}
    if gpu.vendor == "intel":
        return {"ZE_AFFINITY_MASK": device}
    return {}


def slot_gpu(slot_env: Mapping[str, str]) -> int | None:
    """The `--gpus` index of a slot's GPU, from its environment overrides; None for a CPU slot."""
    value = slot_env.get(GPU_SLOT_VARIABLE, "")
    return int(value) if value.isdigit() else None


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
