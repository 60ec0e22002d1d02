"""What the operating system offers the worker's process control and sandbox, and where it stops.

The worker uses Linux's best tools where they exist (pidfds, prctl's child subreaper and
parent-death signal, user namespaces, bubblewrap) and falls back where they do not: macOS, old
kernels, containers that forbid them. `Platform` names each facility; `current_platform()` finds
out what this machine has. Tests build one with facilities taken away (`without`) to run every
fallback here on Linux through the same code a Mac runs.

The sandbox trampoline (`sandbox_exec.py`) cannot import this module (it runs with `-I -S`,
alone inside bubblewrap), so it detects the same facilities itself and is told by its spec which
ones to treat as missing: `trampoline_missing()` is that list.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform as _platform
import select
from dataclasses import dataclass, fields, replace
from functools import lru_cache

# Facilities the trampoline detects on its own; the spec's "without" names them.
TRAMPOLINE_FACILITIES = ("prctl", "resource", "proc", "affinity", "user_namespaces")

WINDOWS_ADVICE = (
    "autoswarm worker does not run natively on Windows: its sandbox and process control need a "
    "POSIX system. Two ways to donate this machine:\n"
    "  1. WSL2 (GPUs included, as WSL passes them through): in PowerShell `wsl --install -d Ubuntu`, "
    "then inside Ubuntu `pip install autoswarm && sudo apt-get install -y bubblewrap` and run "
    "`autoswarm worker --coordinator HOST:PORT` there.\n"
    "  2. Docker Desktop: build the image from deploy/worker/Dockerfile (`--target cpu`, or `--target cuda` "
    "for an NVIDIA GPU) and run `docker run -d --init -v autoswarm-worker:/var/lib/autoswarm autoswarm-worker "
    "worker --coordinator HOST:PORT` (add `--gpus all` for the CUDA image).\n"
    "docs/platforms.md explains what each path isolates."
)


@dataclass(frozen=True)
class Platform:
    """The facilities this machine offers; each one missing has a fallback and a banner line."""

    system: str             # platform.system(): "Linux", "Darwin", "Windows", ...
    pidfd: bool             # os.pidfd_open: a child's exit is noticed at once (Linux >= 5.3)
    kqueue: bool            # select.kqueue: the same on macOS and the BSDs
    waitid: bool            # os.waitid with WNOWAIT: look at an exit without reaping (macOS: Python >= 3.13)
    prctl: bool             # child subreaper and parent-death signal (Linux)
    resource: bool          # the `resource` module: rlimits (missing on Windows)
    proc: bool              # /proc lists processes; otherwise `ps` does
    affinity: bool          # os.sched_setaffinity: pinning a slot to CPUs (Linux)
    user_namespaces: bool   # unshare(CLONE_NEWUSER) exists; whether it is allowed is probed
    bwrap: bool             # bubblewrap can exist here at all (Linux only)

    def without(self, *names: str) -> Platform:
        """This platform with the named facilities taken away (unknown names raise ValueError)."""
        known = {f.name for f in fields(self)} - {"system"}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown platform facilities {unknown}; known: {sorted(known)}")
        return replace(self, **{name: False for name in names})

    def trampoline_missing(self) -> list[str]:
        """The facilities the trampoline must treat as missing (its spec's "without")."""
        return [name for name in TRAMPOLINE_FACILITIES if not getattr(self, name)]


@lru_cache(maxsize=1)
def current_platform() -> Platform:
    """What this machine and this Python offer (found once: it does not change while we run)."""
    system = _platform.system()
    return Platform(
        system=system,
        pidfd=hasattr(os, "pidfd_open"),
        kqueue=hasattr(select, "kqueue"),
        waitid=all(hasattr(os, name) for name in ("waitid", "P_PID", "WNOWAIT", "WEXITED")),
        prctl=_libc_has("prctl"),
        resource=importlib.util.find_spec("resource") is not None,
        proc=os.path.isdir("/proc/self"),
        affinity=hasattr(os, "sched_setaffinity"),
        user_namespaces=system == "Linux" and _libc_has("unshare"),
        bwrap=system == "Linux",
    )


def system_name() -> str:
    """The operating system's name, as platform.system() gives it (the CLI's seam for tests)."""
    return _platform.system()


def native_refusal(system: str) -> str | None:
    """Why `autoswarm worker` cannot run natively on `system`, with what to do instead; None if it can."""
    if system == "Windows" or system.startswith(("CYGWIN", "MSYS", "MINGW")):
        return WINDOWS_ADVICE
    return None


def _libc_has(symbol: str) -> bool:
    try:
        return hasattr(ctypes.CDLL(None), symbol)
    except (OSError, TypeError):  # Windows: no process-wide C library to open
        return False


# What each missing facility costs, for the "what protects your machine" lines at start.
_GAPS = {
    "prctl": "no child subreaper or parent-death signal (prctl): the worker's death is noticed by polling, and "
             "processes that leave the process group and outlive their parent escape the kill",
    "resource": "no rlimits (no `resource` module): memory, process, file size and CPU time caps are off",
    "proc": "no /proc: processes are listed with `ps`",
    "affinity": "no CPU affinity: slots are not pinned to CPUs (thread counts are still set)",
    "user_namespaces": "no user namespaces: the process cap counts all of this user's processes",
    "pidfd": "no pidfd or kqueue: a command's exit is noticed by polling (up to 0.1 s late)",
    "waitid": "no waitid(WNOWAIT): a finished command is reaped before its leftover processes are killed",
    "bwrap": "no bubblewrap on this system: no filesystem or network isolation",
}


def describe_gaps(platform: Platform, also_missing: tuple[str, ...] | list[str] = ()) -> str | None:
    """One banner line naming every missing facility and what it costs; None when nothing is missing.

    `also_missing`: what the sandbox trampoline's probe found missing besides.
    """
    missing = set(also_missing) | {name for name in TRAMPOLINE_FACILITIES if not getattr(platform, name)}
    if not platform.pidfd and not platform.kqueue:
        missing.add("pidfd")
    if not platform.waitid:
        missing.add("waitid")
    if not platform.bwrap:
        missing.add("bwrap")
    if platform.system != "Linux":
        missing.discard("proc")  # not a protection: only how processes are found
    gaps = [_GAPS[name] for name in _GAPS if name in missing]
    return f"not available on this system ({platform.system}): " + "; ".join(gaps) if gaps else None


def describe_idle_gaps(idle_only: bool, platform: Platform, gpu_vendors: tuple[str, ...] | list[str]) -> list[str]:
    """Banner lines for what --idle-only cannot watch here: other programs' CPU use without /proc,
    other programs on GPUs that nvidia-smi does not report on."""
    if not idle_only:
        return []
    lines = []
    if not platform.proc:
        lines.append("--idle-only: other programs' CPU use cannot be measured on this system (no /proc): "
                     "only --hours and the donated NVIDIA GPUs' use pause work")
    others = sorted({vendor for vendor in gpu_vendors if vendor != "nvidia"})
    if others:
        names = "/".join("Apple" if v == "apple" else v.upper() if v == "amd" else v.capitalize() for v in others)
        lines.append(f"--idle-only: other programs' use of {names} GPUs is not watched (only NVIDIA GPUs' is)")
    return lines
