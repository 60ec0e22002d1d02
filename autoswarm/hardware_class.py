"""Hardware class keys: which workers' scores are comparable under a fixed time budget.

Shared by the worker (to show the volunteer its class) and the coordinator (to group
baselines). A class is the accelerator model and count, or the CPU model and core count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _squash(text: str) -> str:
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"\bCPU\b|@.*$|\bProcessor\b", "", text)
    return re.sub(r"\s+", " ", text).strip() or "unknown"


def hardware_class(cpu_model: str, cpu_cores: int, gpus: Sequence[tuple[str, int]]) -> str:
    """Class key, e.g. `gpu:NVIDIA H100 80GB HBM3 x2 (80GiB)` or `cpu:AMD EPYC 7B13 x2`.

    `gpus` are (name, memory_bytes) pairs. Mixed GPU models join with '+'.
    """
    if gpus:
        names = sorted({name for name, _ in gpus})
        mem_gib = round(min(mem for _, mem in gpus) / 2**30)
        return f"gpu:{'+'.join(_squash(n) for n in names)} x{len(gpus)} ({mem_gib}GiB)"
    return f"cpu:{_squash(cpu_model)} x{max(int(cpu_cores), 1)}"
