"""Hardware class keys: which workers' scores are comparable under a fixed time budget.

Shared by the worker (to show the volunteer its class) and the coordinator (to group
baselines). A class is the accelerator model and count, or the CPU model and core count.

What a worker reports about its hardware is a claim, not a fact: the strings are checked
here (printable, bounded) before they name anything, and the coordinator checks the class
against measurements (a worker that measures unlike its class is moved to one of its own,
`moved_class`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_TEXT_CHARS = 128          # a CPU or GPU model name; real ones are under 64
MAX_CORES = 4096
MAX_GPUS = 64
MAX_GPU_MEMORY = 1 << 44      # 16 TiB per GPU: anything larger is not a real device
_MOVED = " [unlike its class: "


class HardwareError(ValueError):
    """A hardware report that cannot name a class; the message names the field."""


def _squash(text: str) -> str:
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"\bCPU\b|@.*$|\bProcessor\b", "", text)
    return re.sub(r"\s+", " ", text).strip() or "unknown"


def clean_text(value: object, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A reported string, trimmed; refused if it holds control characters or is too long.

    Control characters (NUL, newline, tab, escape sequences) would make two classes look the
    same in `status` while being different keys, or the same key while looking different.
    """
    text = str(value).strip(" ")   # spaces only: a trailing newline is a control character too
    if not text.isprintable():
        raise HardwareError(f"{field} contains control characters; report plain text")
    if len(text) > max_chars:
        raise HardwareError(f"{field} is {len(text)} characters, over the limit of {max_chars}")
    return text


def _whole(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HardwareError(f"{field} must be a whole number from {low} to {high}, got {value!r}")
    return value


def checked_hardware(hardware: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware report with every string checked and every number bounded.

    Raises HardwareError naming the first field that is wrong.
    """
    gpus = list(hardware.get("gpus", []))
    if len(gpus) > MAX_GPUS:
        raise HardwareError(f"at most {MAX_GPUS} GPUs, got {len(gpus)}")
    checked = dict(hardware)
    checked["cpu_model"] = clean_text(hardware.get("cpu_model", ""), "hardware.cpu_model")
    checked["cpu_cores"] = _whole(hardware.get("cpu_cores", 1) or 1, "hardware.cpu_cores", 1, MAX_CORES)
    checked["gpus"] = [
        {**gpu, "name": clean_text(gpu.get("name", "") or "?", f"hardware.gpus[{i}].name"),
         "driver": clean_text(gpu.get("driver", ""), f"hardware.gpus[{i}].driver", 64),
         "memory_bytes": _whole(gpu.get("memory_bytes", 0), f"hardware.gpus[{i}].memory_bytes", 0, MAX_GPU_MEMORY)}
        for i, gpu in enumerate(gpus)
    ]
    for key in ("platform", "python_version"):
        if key in hardware:
            checked[key] = clean_text(hardware[key], f"hardware.{key}", 256)
    return checked


def _printable(text: str) -> str:
    """Drops what `clean_text` refuses, for callers that build a key without checking first."""
    return "".join(ch for ch in text if ch.isprintable())[:MAX_TEXT_CHARS]


def hardware_class(cpu_model: str, cpu_cores: int, gpus: Sequence[tuple[str, int]]) -> str:
    """Class key, e.g. `gpu:NVIDIA H100 80GB HBM3 x2 (80GiB)` or `cpu:AMD EPYC 7B13 x2`.

    `gpus` are (name, memory_bytes) pairs. Mixed GPU models join with '+'.
    """
    if gpus:
        names = sorted({_printable(name) for name, _ in gpus[:MAX_GPUS]})
        mem_gib = round(min(max(mem, 0) for _, mem in gpus[:MAX_GPUS]) / 2**30)
        return f"gpu:{'+'.join(_squash(n) for n in names)} x{min(len(gpus), MAX_GPUS)} ({mem_gib}GiB)"
    return f"cpu:{_squash(_printable(cpu_model))} x{min(max(int(cpu_cores), 1), MAX_CORES)}"


def moved_class(hardware_class_key: str, worker_id: str) -> str:
    """The class of its own a worker is moved to when it measures unlike its reported class."""
    return f"{origin_class(hardware_class_key)}{_MOVED}{worker_id}]"


def origin_class(hardware_class_key: str) -> str:
    """The class a worker reported, whether or not it was moved out of it."""
    return hardware_class_key.split(_MOVED, 1)[0]


def is_moved(hardware_class_key: str) -> bool:
    """Whether this class is one a worker was moved to (shown in `status` as such)."""
    return _MOVED in hardware_class_key
