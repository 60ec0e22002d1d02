"""Donation controls: what a volunteer lets the worker use, and when.

BOINC and Folding@home taught volunteers to expect these: only chosen GPUs, at most N CPUs and
so much memory, only during certain hours, only while the machine is otherwise idle. Nothing
here runs a task; the worker's loop asks `Availability` before it leases one, and the sandbox
gets the per-slot CPU sets and memory caps computed here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Protocol

from autoswarm.worker.hardware import gpu_in_use

DEFAULT_BUSY_CPU_FRACTION = 0.25   # BOINC's default: suspend when others use more than 25% of the CPUs
DEFAULT_MEMORY_SHARE = 0.75        # without --memory-limit, evaluations together get 3/4 of the RAM

# States a worker reports (Heartbeat.state) and prints.
WORKING = "working"
IDLE = "idle"
IDLE_PAUSED = "idle-paused"
OUT_OF_HOURS = "out-of-hours"
RECONNECTING = "reconnecting"
STOPPING = "stopping"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_HOUR_RE = re.compile(r"^(\d{1,2})(?::(\d{2}))?$")


class DonationError(ValueError):
    """A donation option is invalid; the message names the option, the problem and the fix."""


# -- parsing the volunteer's options ----------------------------------------------------------


def parse_size(text: str, option: str = "--memory-limit") -> int:
    """'8G', '512M', '1.5GiB', '1000000' -> bytes (binary units)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise DonationError(f"{option}: cannot read {text!r} as a size; write e.g. 8G, 512M or 1.5GiB")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * (1 << (10 * "_kmgt".index(unit or "_"))))
    if size <= 0:
        raise DonationError(f"{option}: must be more than zero, got {text!r}")
    return size


def parse_gpus(text: str) -> tuple[int, ...] | None:
    """'0,2' -> (0, 2); 'all' -> None (every GPU); 'none' -> () (CPU only)."""
    value = text.strip().lower()
    if value == "all":
        return None
    if value in ("none", ""):
        return ()
    try:
        indices = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise DonationError(f"--gpus: cannot read {text!r}; give GPU indices as the start-up `machine:` line "
                            "lists them, e.g. --gpus 0,2 (or all, or none)") from None
    if any(i < 0 for i in indices) or len(set(indices)) != len(indices):
        raise DonationError(f"--gpus: {text!r} has a negative or repeated index; e.g. --gpus 0,2")
    return indices


@dataclass(frozen=True)
class HoursWindow:
    """Local times of day when the worker may start tasks, e.g. 22-07 (overnight) or 9-17,20-23."""

    spans: tuple[tuple[int, int], ...]  # (start, end) in minutes after midnight; end may be < start
    text: str

    def contains(self, moment: time) -> bool:
        minute = moment.hour * 60 + moment.minute
        for start, end in self.spans:
            if start <= end and start <= minute < end:
                return True
            if start > end and (minute >= start or minute < end):  # the span crosses midnight
                return True
        return False


def parse_hours(text: str) -> HoursWindow:
    """'22-07', '22:30-07:15', '9-17,20-23' -> HoursWindow."""
    spans = []
    for part in text.split(","):
        bounds = part.strip().split("-")
        if len(bounds) != 2:
            raise DonationError(f"--hours: cannot read {part.strip()!r}; write START-END in local time, "
                                "e.g. --hours 22-07 or --hours 9:30-17,20-23")
        minutes = [_minute_of_day(b.strip(), part.strip()) for b in bounds]
        if minutes[0] == minutes[1]:
            raise DonationError(f"--hours: {part.strip()!r} starts and ends at the same time; "
                                "leave --hours out to donate around the clock")
        spans.append((minutes[0], minutes[1]))
    return HoursWindow(tuple(spans), text.strip())


def _minute_of_day(value: str, part: str) -> int:
    match = _HOUR_RE.match(value)
    hour, minute = (int(match.group(1)), int(match.group(2) or 0)) if match else (-1, -1)
    if not 0 <= hour <= 24 or not 0 <= minute <= 59 or (hour == 24 and minute):
        raise DonationError(f"--hours: {value!r} in {part!r} is not a time of day; use HH or HH:MM, e.g. 22 or 07:30")
    return hour * 60 + minute


# -- dividing the machine among slots --------------------------------------------------------

# What numerical libraries (torch, NumPy's BLAS) read for their number of threads: what each
# slot, each local worker of `autoswarm run` and each Ray actor gets its share of cores through.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def slot_cpu_sets(available: Sequence[int], max_cpus: int | None, slots: int) -> list[tuple[int, ...]]:
    """The CPUs each slot's commands may run on.

    The donated CPUs are the first `max_cpus` the worker may use. With at least one CPU per
    slot, each slot gets its own contiguous share, so concurrent evaluations do not fight over
    cores (and timings stay comparable); otherwise all slots share them.
    """
    if max_cpus is not None and max_cpus < 1:
        raise DonationError(f"--max-cpus: must be at least 1, got {max_cpus}")
    donated = tuple(sorted(available))[: max_cpus or None]
    if max_cpus is None:
        return [() for _ in range(slots)]  # everything the worker has: no affinity mask needed
    if len(donated) < slots:
        return [donated for _ in range(slots)]
    share = len(donated) // slots
    return [donated[i * share:(i + 1) * share] for i in range(slots)]


def memory_per_slot(total_memory: int, limit: int | None, slots: int) -> int | None:
    """Each slot's memory cap: --memory-limit split evenly, else 3/4 of the RAM split evenly."""
    budget = limit if limit is not None else int(total_memory * DEFAULT_MEMORY_SHARE)
    return budget // max(slots, 1) if budget > 0 else None


# -- is the machine free for us? -------------------------------------------------------------


class LoadSource(Protocol):
    """How busy the machine is with work that is not ours (injectable for tests)."""

    def other_cpu_fraction(self) -> float | None:
        """Share of all CPUs (0..1) used by other programs since the last call; None: unknown."""

    def gpu_busy(self, index: int) -> bool:
        """Whether another program computes on GPU `index`."""


class SystemLoad:
    """Measures from /proc/stat and `nvidia-smi`; this worker's own process tree is left out."""

    def __init__(self, own_pid: int | None = None, nvidia_smi: str = "nvidia-smi") -> None:
        self._own_pid = own_pid or os.getpid()
        self._nvidia_smi = nvidia_smi
        self._last: tuple[int, int, int] | None = None  # jiffies: machine busy, machine total, our tree

    def other_cpu_fraction(self) -> float | None:
        machine = _machine_cpu()
        if machine is None:
            return None
        sample = (*machine, _tree_cpu(self._own_pid))
        previous, self._last = self._last, sample
        if previous is None or sample[1] <= previous[1]:
            return None
        busy, total, ours = (now - before for now, before in zip(sample, previous))
        return min(max((busy - ours) / total, 0.0), 1.0)

    def gpu_busy(self, index: int) -> bool:
        return gpu_in_use(index, self._nvidia_smi)


class FileLoad:
    """Reads the other programs' CPU share (0..1) from a file; a missing file means 0.

    For tests and for volunteers with their own idea of busy: a script can write 1 to pause.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def other_cpu_fraction(self) -> float | None:
        try:
            return float(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0

    def gpu_busy(self, index: int) -> bool:
        return False


def _machine_cpu() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    return total - values[3] - values[4], total


def _tree_cpu(root: int) -> int:
    """CPU jiffies of `root` and its live descendants, reaped children included (cutime/cstime)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = sum(int(v) for v in fields[11:15])
    total, stack = stats.get(root, 0), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            total += stats.get(child, 0)
            stack.append(child)
    return total


@dataclass(frozen=True)
class DonationPolicy:
    """When the volunteer lets the worker start tasks."""

    hours: HoursWindow | None = None
    idle_only: bool = False
    busy_cpu_fraction: float = DEFAULT_BUSY_CPU_FRACTION


@dataclass(frozen=True)
class Gate:
    """Whether a new task may start now, and if not, why (in the volunteer's words)."""

    state: str          # IDLE (open), IDLE_PAUSED or OUT_OF_HOURS
    reason: str = ""

    @property
    def open(self) -> bool:
        return self.state == IDLE


class Availability:
    """Decides, from the policy, the clock and the load, whether the worker may start tasks."""

    def __init__(self, policy: DonationPolicy, load: LoadSource | None = None,
                 clock: Callable[[], datetime] = datetime.now) -> None:
        self.policy = policy
        self.load = load or SystemLoad()
        self.clock = clock

    def gate(self, idle_gpus: Sequence[int] = ()) -> Gate:
        """Call periodically (the CPU share is measured between calls). `idle_gpus`: the GPUs
        of slots that would take the next task; ours are busy only with our own work."""
        policy = self.policy
        if policy.hours is not None and not policy.hours.contains(self.clock().time()):
            return Gate(OUT_OF_HOURS, f"outside the donated hours {policy.hours.text}")
        if not policy.idle_only:
            return Gate(IDLE)
        share = self.load.other_cpu_fraction()
        if share is not None and share > policy.busy_cpu_fraction:
            return Gate(IDLE_PAUSED, f"other programs use {share:.0%} of the CPUs "
                                     f"(more than {policy.busy_cpu_fraction:.0%})")
        for index in idle_gpus:
            if self.load.gpu_busy(index):
                return Gate(IDLE_PAUSED, f"another program is using GPU {index}")
        return Gate(IDLE)

    def describe(self) -> str:
        parts = []
        if self.policy.hours is not None:
            parts.append(f"starts tasks only between {self.policy.hours.text} (local time)")
        if self.policy.idle_only:
            parts.append(f"only while other programs use at most {self.policy.busy_cpu_fraction:.0%} of the CPUs "
                         "and none uses its GPUs")
        return "; ".join(parts) or "starts tasks at any time"


def worker_state(*, running: int, stopping: bool, connected: bool, gate: Gate) -> str:
    """The one word the worker prints and reports: what it is doing, or why it is not."""
    if stopping:
        return STOPPING
    if not connected:
        return RECONNECTING
    if running:
        return WORKING
    return gate.state if not gate.open else IDLE
