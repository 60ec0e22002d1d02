"""Hardware detection from recorded outputs of nvidia-smi, amd-smi, rocm-smi, xpu-smi, system_profiler and
sysctl (tests/unit/fixtures/), the class key of each recorded machine, and the per-slot environments."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autoswarm.hardware_class import hardware_class
from autoswarm.worker.accelerators import parse_amd_smi, parse_mac, parse_rocm_smi, parse_xpu_smi
from autoswarm.worker.hardware import (
    GpuInfo,
    GpuTools,
    detect_all_gpus,
    detect_gpus,
    detect_hardware,
    parse_cpu_model,
    parse_meminfo_total,
    parse_nvidia_smi,
    slot_environments,
    slot_gpu,
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


# -- AMD, Intel and Apple GPUs, from their tools' recorded outputs --------------------------------

FIXTURE_ROOT = Path(__file__).parent / "fixtures"
GIB = 1 << 30


def _recorded(tool: str, name: str) -> str:
    return (FIXTURE_ROOT / tool / name).read_text()


def _class_of(gpus) -> str:
    return hardware_class("unused", 1, [(g.name, g.memory_bytes) for g in gpus])


@pytest.mark.parametrize("name, parse, expected, driver, key", [
    ("amd_smi/mi300x_x2_rocm62.json", parse_amd_smi, ["AMD Instinct MI300X"] * 2, "6.7.0",
     "gpu:AMD Instinct MI300X x2 (192GiB)"),
    ("amd_smi/mi250x_rocm60_string_sizes.json", parse_amd_smi, ["AMD Instinct MI250X"], "6.2.4",
     "gpu:AMD Instinct MI250X x1 (64GiB)"),
    ("amd_smi/w7900_rocm64_gpu_data.json", parse_amd_smi, ["AMD Radeon PRO W7900"], "6.10.5",
     "gpu:AMD Radeon PRO W7900 x1 (48GiB)"),
    ("rocm_smi/mi210_x2_rocm5.json", parse_rocm_smi, ["Instinct MI210"] * 2, "5.18.13",
     "gpu:Instinct MI210 x2 (64GiB)"),
    ("rocm_smi/rx7900xtx_rocm6_with_warning.txt", parse_rocm_smi,
     ["Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]"], "6.8.5",
     "gpu:Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M] x1 (24GiB)"),
    ("xpu_smi/max1550_x2.csv", parse_xpu_smi, ["Intel(R) Data Center GPU Max 1550"] * 2,
     "I915_23.10.32_PSB_231129.32", "gpu:Intel Data Center GPU Max 1550 x2 (128GiB)"),
    ("xpu_smi/flex170.csv", parse_xpu_smi, ["Intel(R) Data Center GPU Flex 170"], "I915_23.6.24_PSB_230425.29",
     "gpu:Intel Data Center GPU Flex 170 x1 (14GiB)"),
])
def test_amd_and_intel_gpus_from_recorded_outputs(name, parse, expected, driver, key):
    tool, file = name.split("/")
    found = parse(_recorded(tool, file))
    assert [a.name for a in found] == expected
    assert [a.device for a in found] == list(range(len(expected)))
    assert {a.driver for a in found} == {driver}
    assert all(a.memory_bytes > GIB for a in found)
    assert _class_of(found) == key


@pytest.mark.parametrize("parse", [parse_amd_smi, parse_rocm_smi, parse_xpu_smi])
@pytest.mark.parametrize("text", [
    _recorded("rocm_smi", "driver_not_loaded.txt"), _recorded("amd_smi", "no_devices.txt"),
    _recorded("xpu_smi", "level_zero_error.txt"), "", "{", "[]", "{}", "null", '{"card0": 5}', '[{"gpu": "x"}]',
    '{"card0": {"Card series": ["list"]}}', "Device ID,Device Name\nzero,\n", "\x00\xff{[", '[{"gpu": 0}]',
])
def test_garbage_from_any_gpu_tool_gives_no_gpu(parse, text):
    assert parse(text) == ()


def test_a_gpu_without_a_memory_figure_still_counts_with_zero():
    text = '[{"gpu": 0, "asic": {"market_name": "AMD Instinct MI100"}, "vram": {"size": "N/A"}}]'
    assert [(a.name, a.memory_bytes, a.driver) for a in parse_amd_smi(text)] == [("AMD Instinct MI100", 0, "unknown")]


MACS = [
    # recording, chip, CPU cores, unified memory (GiB), the Metal GPU, its driver, hardware class
    ("m1_macbook_air", "Apple M1", 8, 16, "Apple M1 7-core GPU", "Metal 3", "gpu:Apple M1 7-core GPU x1 (16GiB)"),
    ("m2_max_macbook_pro", "Apple M2 Max", 12, 32, "Apple M2 Max 38-core GPU", "Metal 3",
     "gpu:Apple M2 Max 38-core GPU x1 (32GiB)"),
    ("m3_max_40core_macbook_pro", "Apple M3 Max", 16, 64, "Apple M3 Max 40-core GPU", "Metal 3",
     "gpu:Apple M3 Max 40-core GPU x1 (64GiB)"),
    ("m3_max_30core_macbook_pro", "Apple M3 Max", 14, 36, "Apple M3 Max 30-core GPU", "Metal 3",
     "gpu:Apple M3 Max 30-core GPU x1 (36GiB)"),
    ("intel_macbook_pro_2019", "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", 16, 16, "AMD Radeon Pro 5500M", "Metal 3",
     "gpu:AMD Radeon Pro 5500M x1 (4GiB)"),
]


@pytest.mark.parametrize("recording, chip, cores, memory_gib, gpu, driver, key", MACS)
def test_macs_from_system_profiler_and_sysctl(recording, chip, cores, memory_gib, gpu, driver, key):
    mac = parse_mac(_recorded("macos", f"{recording}.profile.json"), _recorded("macos", f"{recording}.sysctl.txt"))
    assert (mac.chip, mac.cpu_cores, mac.memory_bytes) == (chip, cores, memory_gib * GIB)
    assert [(g.vendor, g.device, g.name, g.driver) for g in mac.gpus] == [("apple", 0, gpu, driver)]
    assert _class_of(mac.gpus) == key


def test_hardware_classes_separate_an_m1_from_an_m3_max_and_the_two_m3_max_bins():
    keys = [key for *_, key in MACS]
    assert len(set(keys)) == len(keys)
    # With --gpus none a Mac is a CPU class, still one per chip and core count.
    m1 = parse_mac(_recorded("macos", "m1_macbook_air.profile.json"), _recorded("macos", "m1_macbook_air.sysctl.txt"))
    assert hardware_class(m1.chip, m1.cpu_cores, []) == "cpu:Apple M1 x8"


def test_an_intel_macs_integrated_gpu_is_not_a_slot_but_its_radeon_is():
    mac = parse_mac(_recorded("macos", "intel_macbook_pro_2019.profile.json"))
    assert [g.name for g in mac.gpus] == ["AMD Radeon Pro 5500M"]
    assert mac.chip == "8-Core Intel Core i9" and mac.cpu_cores == 8  # without sysctl: system_profiler's words


def test_a_mac_is_described_by_either_tool_alone():
    profile_only = parse_mac(_recorded("macos", "m2_max_macbook_pro.profile.json"), _recorded("macos", "garbage.sysctl.txt"))
    assert (profile_only.chip, profile_only.cpu_cores, profile_only.memory_bytes) == ("Apple M2 Max", 12, 32 * GIB)
    assert profile_only.gpus[0].name == "Apple M2 Max 38-core GPU"
    sysctl_only = parse_mac(_recorded("macos", "garbage.profile.txt"), _recorded("macos", "m2_max_macbook_pro.sysctl.txt"))
    assert (sysctl_only.chip, sysctl_only.cpu_cores, sysctl_only.memory_bytes) == ("Apple M2 Max", 12, 32 * GIB)
    assert [g.name for g in sysctl_only.gpus] == ["Apple M2 Max GPU"]  # the core count is system_profiler's


@pytest.mark.parametrize("profile, sysctl", [
    ("garbage.profile.txt", "garbage.sysctl.txt"), ("garbage.profile.txt", None), (None, None),
])
def test_garbage_from_a_mac_gives_nothing(profile, sysctl):
    text = lambda name: _recorded("macos", name) if name else ""  # noqa: E731
    assert parse_mac(text(profile), text(sysctl)) is None
    assert parse_mac('{"SPHardwareDataType": [7], "SPDisplaysDataType": {"a": 1}}', "hw.ncpu: many") is None


def _fake_tool(tmp_path: Path, name: str, recording: Path | None, status: int = 0) -> str:
    """A real executable printing a recorded output (or nothing) and exiting with `status`."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"cat '{recording}'\n" if recording else ""
    path.write_text(f"#!/bin/sh\n{body}exit {status}\n")
    path.chmod(0o755)
    return str(path)


def test_a_linux_box_with_nvidia_amd_and_intel_gpus_numbers_and_pins_each(tmp_path: Path):
    tools = GpuTools(
        nvidia_smi=_fake_nvidia_smi(tmp_path, f"cat '{FIXTURES / 'several_gpus.txt'}'"),
        amd_smi=_fake_tool(tmp_path, "amd-smi", FIXTURE_ROOT / "amd_smi" / "no_devices.txt", status=1),
        rocm_smi=_fake_tool(tmp_path, "rocm-smi", FIXTURE_ROOT / "rocm_smi" / "mi210_x2_rocm5.json"),
        xpu_smi=_fake_tool(tmp_path, "xpu-smi", FIXTURE_ROOT / "xpu_smi" / "flex170.csv"),
        system="Linux",
    )
    gpus = detect_all_gpus(tools)
    assert [(g.index, g.vendor, g.vendor_index) for g in gpus] == [
        (0, "nvidia", 0), (1, "nvidia", 1), (2, "nvidia", 2), (3, "nvidia", 3),
        (4, "amd", 0), (5, "amd", 1), (6, "intel", 0)]
    slots = slot_environments(gpus, cpu_slots=1)
    assert slots[5] == {"AUTOSWARM_GPU": "5", "ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "0"}
    assert slots[6] == {"AUTOSWARM_GPU": "6", "ZE_AFFINITY_MASK": "0"}
    assert slots[2] == {"AUTOSWARM_GPU": "2", "CUDA_VISIBLE_DEVICES": "2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert [slot_gpu(s) for s in slots] == list(range(7))
    assert slot_gpu(slot_environments((), cpu_slots=1)[0]) is None


def test_amd_smi_is_preferred_over_rocm_smi(tmp_path: Path):
    tools = GpuTools(
        nvidia_smi=str(tmp_path / "missing"),
        amd_smi=_fake_tool(tmp_path, "amd-smi", FIXTURE_ROOT / "amd_smi" / "mi300x_x2_rocm62.json"),
        rocm_smi=_fake_tool(tmp_path, "rocm-smi", FIXTURE_ROOT / "rocm_smi" / "mi210_x2_rocm5.json"),
        xpu_smi=str(tmp_path / "missing"), system="Linux")
    assert [g.name for g in detect_all_gpus(tools)] == ["AMD Instinct MI300X"] * 2


def test_a_mac_is_detected_through_its_tools_and_its_metal_gpu_is_a_slot(tmp_path: Path):
    tools = GpuTools(
        system_profiler=_fake_tool(tmp_path, "system_profiler", FIXTURE_ROOT / "macos" / "m2_max_macbook_pro.profile.json"),
        sysctl=_fake_tool(tmp_path, "sysctl", FIXTURE_ROOT / "macos" / "m2_max_macbook_pro.sysctl.txt"),
        nvidia_smi=_fake_nvidia_smi(tmp_path, f"cat '{FIXTURES / 'one_gpu.txt'}'"),  # never asked on a Mac
        system="Darwin")
    info = detect_hardware(tools=tools)
    assert (info.cpu_model, info.cpu_cores, info.memory_bytes) == ("Apple M2 Max", 12, 32 * GIB)
    assert info.gpus == (GpuInfo(index=0, name="Apple M2 Max 38-core GPU", memory_bytes=32 * GIB, driver="Metal 3",
                                 vendor="apple", device=0),)
    assert slot_environments(info.gpus, cpu_slots=1) == [{"AUTOSWARM_GPU": "0"}]


def test_a_mac_whose_tools_fail_falls_back_to_what_python_sees(tmp_path: Path):
    tools = GpuTools(system_profiler=_fake_tool(tmp_path, "system_profiler", None, status=1),
                     sysctl=str(tmp_path / "no-sysctl"), system="Darwin")
    info = detect_hardware(tools=tools)
    assert info.gpus == () and info.cpu_cores >= 1 and info.memory_bytes > 0


def test_a_huge_bracket_storm_is_given_up_on_quickly():
    assert parse_rocm_smi("{[" * 500_000) == () and parse_amd_smi("[" * 1_000_000) == ()


def test_names_are_made_fit_for_the_coordinator():
    from autoswarm.hardware_class import MAX_TEXT_CHARS, clean_text

    text = '[{"gpu": 0, "asic": {"market_name": "AMD\\u001b[31m Instinct\\n' + "X" * 300 + '"}}]'
    (gpu,) = parse_amd_smi(text)
    assert gpu.name.startswith("AMD[31m Instinct") and len(gpu.name) == MAX_TEXT_CHARS
    assert clean_text(gpu.name, "gpu name") == gpu.name  # what the coordinator would accept


def test_rocm_smi_card_numbers_become_runtime_indices():
    # card0 is another vendor's display (or simpledrm): the only AMD GPU is ROCm's device 0.
    text = ('{"card1": {"Card Series": "AMD Radeon RX 7600", "VRAM Total Memory (B)": "8573157376"}, '
            '"card3": {"Card Series": "AMD Radeon RX 7600", "VRAM Total Memory (B)": "8573157376"}}')
    assert [a.device for a in parse_rocm_smi(text)] == [0, 1]
