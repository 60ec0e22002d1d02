"""GPUs other than NVIDIA's, from their vendors' tools: AMD (`amd-smi`, `rocm-smi`), Intel
(`xpu-smi`) and Apple Silicon (`system_profiler`, `sysctl`).

Pure parsers of each tool's output; running the tools is hardware.py's job. Every parser
takes whatever text the tool printed (warnings before the JSON, a driver error, garbage) and
gives what it can read, never an exception.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from autoswarm.hardware_class import MAX_TEXT_CHARS

# How each tool is asked; fixtures under tests/unit/fixtures/ record these very commands.
AMD_SMI_QUERY = ("static", "--asic", "--vram", "--driver", "--json")
ROCM_SMI_QUERY = ("--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json")
XPU_SMI_QUERY = ("discovery", "--dump", "1,2,8,16")  # device id, name, driver version, memory
SYSTEM_PROFILER_QUERY = ("-json", "SPHardwareDataType", "SPDisplaysDataType")
SYSCTL_QUERY = ("hw.memsize", "hw.ncpu", "machdep.cpu.brand_string")

_MAX_JSON_STARTS = 20  # warnings before the JSON have a bracket or two, not more
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


@dataclass(frozen=True)
class Accelerator:
    """One GPU as its vendor's tool numbers it (`device`), before the worker numbers all GPUs."""

    vendor: str        # "nvidia", "amd", "intel", "apple"
    device: int        # the index the vendor's runtime uses (what its *_VISIBLE_DEVICES means)
    name: str
    memory_bytes: int  # the GPU's own memory; Apple: the unified memory it shares with the CPU
    driver: str


@dataclass(frozen=True)
class MacHardware:
    """What a Mac says of itself: the chip, its cores, its memory and its Metal GPUs."""

    chip: str                              # "Apple M2 Max", or an Intel Mac's CPU
    cpu_cores: int
    memory_bytes: int
    gpus: tuple[Accelerator, ...]


# -- AMD ----------------------------------------------------------------------------------------


def parse_amd_smi(text: str) -> tuple[Accelerator, ...]:
    """GPUs from `amd-smi static --asic --vram --driver --json`.

    Three layouts are in use: a list of GPUs (ROCm 6.0-6.3), the same list under "gpu_data"
    (ROCm 6.4 on), and VRAM sizes either as {"value": 196592, "unit": "MB"} or as "196592 MB"
    (amd-smi's MB are MiB: an MI300X's 192 GiB less what the driver reserves).
    """
    data = _json_in(text)
    if isinstance(data, dict):
        data = data.get("gpu_data")
    if not isinstance(data, list):
        return ()
    found = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        asic, vram, driver = (entry.get(k) if isinstance(entry.get(k), dict) else {} for k in ("asic", "vram", "driver"))
        name = _text(asic.get("market_name"))
        device = _integer(entry.get("gpu"))
        if not name or device is None:
            continue
        found.append(Accelerator("amd", device, name, _size(vram.get("size"), default_unit="mb", binary=True) or 0,
                                 _text(driver.get("version")) or _text(driver.get("driver_version")) or "unknown"))
    return tuple(sorted(found, key=lambda a: a.device))


def parse_rocm_smi(text: str) -> tuple[Accelerator, ...]:
    """GPUs from `rocm-smi --showproductname --showmeminfo vram --showdriverversion --json`.

    Keys are "card0", "card1"...; their spelling changed between versions ("Card series" and
    "Card Series"), so they are matched without case. The driver version sits under "system"
    or in each card. rocm-smi may print warnings before the JSON. A card number can be a DRM
    number (card1 when card0 is another vendor's display), so the ROCm runtime's index is the
    card's position among the AMD cards.
    """
    data = _json_in(text)
    if not isinstance(data, dict):
        return ()
    system = {k.lower(): v for k, v in data.get("system", {}).items()} if isinstance(data.get("system"), dict) else {}
    found = []
    for key, card in data.items():
        match = re.fullmatch(r"card(\d+)", str(key))
        if not match or not isinstance(card, dict):
            continue
        fields = {str(k).lower(): v for k, v in card.items()}
        name = _text(fields.get("card series")) or _text(fields.get("card model"))
        if not name:
            continue
        memory = _integer(fields.get("vram total memory (b)")) or 0
        driver = _text(fields.get("driver version")) or _text(system.get("driver version")) or "unknown"
        found.append(Accelerator("amd", int(match.group(1)), name, max(memory, 0), driver))
    ordered = sorted(found, key=lambda a: a.device)
    return tuple(Accelerator(a.vendor, position, a.name, a.memory_bytes, a.driver) for position, a in enumerate(ordered))


# -- Intel --------------------------------------------------------------------------------------


def parse_xpu_smi(text: str) -> tuple[Accelerator, ...]:
    """GPUs from `xpu-smi discovery --dump 1,2,8,16` (CSV with a header row; memory "65536.00 MiB")."""
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Device ID")), None)
    if start is None:
        return ()
    found = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:])), skipinitialspace=True):
        device = _integer(row.get("Device ID"))
        name = _text(row.get("Device Name"))
        if device is None or not name:
            continue
        found.append(Accelerator("intel", device, name, _size(row.get("Memory Physical Size")) or 0,
                                 _text(row.get("Driver Version")) or "unknown"))
    return tuple(sorted(found, key=lambda a: a.device))


# -- Apple --------------------------------------------------------------------------------------


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl NAME...` output ("hw.memsize: 34359738368" lines) as a dict."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            values[key.strip()] = value.strip()
    return values


def parse_mac(profile: str, sysctl: str = "") -> MacHardware | None:
    """A Mac's chip, cores, memory and Metal GPUs from `system_profiler -json SPHardwareDataType
    SPDisplaysDataType` and `sysctl hw.memsize hw.ncpu machdep.cpu.brand_string`.

    Apple Silicon has one GPU, named for the chip and its GPU cores ("Apple M3 Max 40-core
    GPU"), whose memory is the unified memory: so an M1 and an M3 Max, or the two M3 Max
    bins, are different hardware classes. An Intel Mac's GPUs are its discrete ones (with their
    own VRAM). None when neither source says what the chip is.
    """
    data = _json_in(profile)
    data = data if isinstance(data, dict) else {}
    overview = _first_dict(data.get("SPHardwareDataType"))
    facts = parse_sysctl(sysctl)
    chip = (_text(overview.get("chip_type")) or _text(facts.get("machdep.cpu.brand_string"))
            or _text(overview.get("cpu_type")))
    if not chip:
        return None
    memory = _integer(facts.get("hw.memsize")) or _size(overview.get("physical_memory"), binary=True) or 0
    cores = _integer(facts.get("hw.ncpu")) or _processor_count(overview.get("number_processors")) or 1
    displays = [d for d in data.get("SPDisplaysDataType") or [] if isinstance(d, dict)]
    gpus: list[Accelerator] = []
    if chip.startswith("Apple"):
        built_in = next((d for d in displays if _text(d.get("sppci_model")).startswith("Apple")), None)
        gpu_cores = _integer(built_in.get("sppci_cores")) if built_in else None
        name = f"{_text(built_in.get('sppci_model')) if built_in else chip}"
        name += f" {gpu_cores}-core GPU" if gpu_cores else " GPU"
        metal = _metal(built_in.get("spdisplays_mtlgpufamilysupport")) if built_in else ""
        gpus.append(Accelerator("apple", 0, name[:MAX_TEXT_CHARS], memory, metal or "Metal"))
    else:
        for display in displays:
            vram = _size(display.get("spdisplays_vram"), binary=True)
            name = _text(display.get("sppci_model"))
            if vram and name:  # discrete only: an Intel Mac's integrated GPU shares system memory
                gpus.append(Accelerator("apple", len(gpus), name, vram,
                                        _metal(display.get("spdisplays_mtlgpufamilysupport")) or "Metal"))
    return MacHardware(chip=chip, cpu_cores=max(cores, 1), memory_bytes=max(memory, 0), gpus=tuple(gpus))


# -- helpers ------------------------------------------------------------------------------------


def _json_in(text: str) -> Any:
    """The JSON document in `text`, skipping warnings printed before it; None if there is none."""
    decoder = json.JSONDecoder()
    tries = 0
    for start, char in enumerate(text):
        if char in "{[":  # the first place a document parses: a list's "[" comes before its objects
            try:
                return decoder.raw_decode(text, start)[0]
            except (ValueError, RecursionError):  # RecursionError: brackets nested beyond Python's stack
                tries += 1
                if tries >= _MAX_JSON_STARTS:  # garbage full of brackets: give up, do not go quadratic
                    return None
    return None


def _text(value: object) -> str:
    """A tool's string as the coordinator accepts it: printable, at most MAX_TEXT_CHARS; "" for N/A."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return ""
    text = "".join(char for char in str(value) if char.isprintable())[:MAX_TEXT_CHARS].strip()
    return "" if text.upper() in ("N/A", "NA", "UNKNOWN", "") else text


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = _text(value)
    return int(text) if text.isdigit() else None


def _size(value: object, default_unit: str = "b", binary: bool = False) -> int | None:
    """Bytes from 196592, "196592 MB", {"value": 196592, "unit": "MB"} or "32 GB".

    `binary`: "GB" and "MB" mean GiB and MiB (system_profiler's "32 GB", amd-smi's "196592 MB").
    """
    if isinstance(value, dict):
        amount, unit = value.get("value"), _text(value.get("unit")) or default_unit
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        amount, unit = value, default_unit
    else:
        match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?i?B)?\s*", _text(value), re.IGNORECASE)
        if not match:
            return None
        amount, unit = match.group(1), match.group(2) or default_unit
    try:
        number = float(amount)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    unit = unit.lower()
    if binary and unit in ("kb", "mb", "gb", "tb"):
        unit = unit[0] + "ib"
    if unit not in _UNITS or not 0 <= number < 1e15:
        return None
    return int(number * _UNITS[unit])


def _processor_count(value: object) -> int | None:
    """system_profiler's "proc 12:8:4" (total:performance:efficiency) or an Intel Mac's 6."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.match(r"proc (\d+)", _text(value))
    return int(match.group(1)) if match else None


def _metal(value: object) -> str:
    """"spdisplays_metal3" -> "Metal 3"."""
    match = re.fullmatch(r"spdisplays_metal(\d*)", _text(value))
    return f"Metal {match.group(1)}".strip() if match else ""


def _first_dict(value: object) -> dict:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}
