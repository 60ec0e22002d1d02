"""The sandbox every evaluation, setup and agent command runs in.

Two layers, applied by wrapping the command's argv (never `preexec_fn`, which is unsafe with
several slot threads):

- **limits**, always: the trampoline `worker/sandbox_exec.py` sets rlimits (memory,
  processes, file size, CPU time) and the CPU affinity on itself, then becomes the
  command. `run_command` already gives it its own process group and kills the whole group at the
  timeout.
- **isolation**, with bubblewrap (`bwrap`): a private mount namespace with the system read-only,
  the scratch copy writable, no `$HOME`, a private `/tmp`, its own PID/IPC/UTS namespaces and no
  network. When the worker runs as root, commands run as an unprivileged user (65534).

Process caps are the subtle part: RLIMIT_NPROC counts every task of the *user* and the kernel
never applies it to root. So the trampoline moves into a fresh user namespace (where the count
is this sandbox's alone) and, as root inside bubblewrap, first drops to uid 65534. `configure`
probes what really works on this machine and the worker prints it at start.

`Sandbox.prepare(argv, access, env, timeout)` is the one entry point: it returns the argv and
environment to hand to `run_command`. The command mutator uses it too, with its own `Access`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from autoswarm.worker.platforms import Platform, current_platform, describe_gaps

SANDBOX_MODES = ("auto", "bwrap", "none")
UNPRIVILEGED_ID = 65534  # "nobody": what root's commands run as inside bubblewrap
DEFAULT_MAX_PROCESSES = 1024  # tasks (threads count too); a fork bomb stops here
DEFAULT_MAX_FILE_BYTES = 8 << 30
DEFAULT_TMP_BYTES = 2 << 30  # the private /tmp and /dev/shm are memory: cap them
TRAMPOLINE = Path(__file__).with_name("sandbox_exec.py")
_TRAMPOLINE_INSIDE = "/.autoswarm/sandbox_exec.py"
# Read-only system paths inside bubblewrap (those that exist; symlinks such as /lib -> usr/lib
# are recreated as symlinks).
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys")
_PRIVATE_TMPFS = ("/tmp", "/dev/shm")
# NVIDIA's nodes, AMD's compute driver (/dev/kfd), the render nodes AMD and Intel GPUs use, and
# WSL2's GPU paravirtualisation (/dev/dxg; its user-space libraries are under /usr/lib/wsl).
_GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/kfd", "/dev/dri", "/dev/dxg")
# What of the worker's environment a study command or an agent keeps: an allow-list of what
# programs need to run (locale, paths, thread counts, GPU selection) and the variables the
# worker itself sets for the command. Everything else is dropped, whatever its name: a
# join token, a worker credential, an API key, a cloud login.
_ENV_NAMES = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "LD_LIBRARY_PATH", "PYTHONUNBUFFERED",
                        "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "USER", "LOGNAME",
                        "AUTOSWARM_TIME_BUDGET", "AUTOSWARM_CACHE_DIR", "AUTOSWARM_RESULT",
                        "AUTOSWARM_PROMPT_FILE", "AUTOSWARM_TARGET"})
_ENV_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "NCCL_",
                 "HIP_", "ROCR_", "HSA_", "ZE_", "ONEAPI_", "PYTORCH_")  # AMD, Intel and MPS GPU selection
# Within the allowed prefixes, a name that looks like a secret still stays out (CUDA_..._TOKEN).
_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASS", "CREDENTIAL", "AUTH", "COOKIE", "SESSION", "CERT")


class SandboxError(RuntimeError):
    """The requested sandbox cannot be set up here. The message says why and what to do."""


@dataclass(frozen=True)
class ResourceLimits:
    """Per-command resource caps. None: no cap of that kind."""

    # RLIMIT_DATA: the writable memory a process maps (heap, anonymous mappings, thread stacks).
    # Unlike RLIMIT_AS it does not count reservations (PROT_NONE), so big runtimes still start.
    memory_bytes: int | None = None
    max_processes: int | None = DEFAULT_MAX_PROCESSES
    file_size_bytes: int | None = DEFAULT_MAX_FILE_BYTES
    cpus: tuple[int, ...] = ()               # CPU affinity; () = all the worker has


@dataclass(frozen=True)
class Access:
    """What one command may touch inside bubblewrap (ignored without it)."""

    workdir: Path                             # the command's cwd, writable
    writable: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    home: Path | None = None                  # $HOME inside, writable; None: an empty private one
    network: bool = False
    gpus: bool = False                        # bind /dev/nvidia* (GPU slots)
    # (host path, path inside) bound read-only after everything else, e.g. a volunteer's agent
    # login into the agent's own home. The path inside must lie in a bound, writable directory.
    mapped_read_only: tuple[tuple[Path, Path], ...] = ()


@dataclass(frozen=True)
class PreparedCommand:
    """argv and environment to hand to `run_command`."""

    argv: tuple[str, ...]
    env: dict[str, str]


@dataclass(frozen=True)
class Sandbox:
    """How this worker runs commands; built by `configure`, which probes what works here."""

    isolation: str                                     # "bwrap" or "none"
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    bwrap: str = ""
    run_as: tuple[int, int] | None = None              # bwrap as root: (uid, gid) inside
    process_cap: str = "off"                           # what the probe found, for the banner
    read_only: tuple[Path, ...] = ()                   # extra paths every command may read
    tmp_bytes: int | None = DEFAULT_TMP_BYTES
    bwrap_size_option: bool = False                    # bwrap >= 0.8 can cap a tmpfs
    python: str = sys.executable
    reason: str = ""                                   # why isolation is "none", when it is
    platform: Platform = field(default_factory=current_platform)  # what the system offers (worker/platforms.py)
    missing: tuple[str, ...] = ()                      # facilities the trampoline's probe found missing
    refused: tuple[str, ...] = ()                      # rlimits the system would not set (probe)

    def with_limits(self, **changes: object) -> Sandbox:
        return replace(self, limits=replace(self.limits, **changes))

    # -- commands -------------------------------------------------------------------------

    def spec(self, timeout_seconds: float) -> dict[str, object]:
        """The trampoline's instructions for one command."""
        limits = self.limits
        cpus = len(limits.cpus) or os.cpu_count() or 1
        spec: dict[str, object] = {
            "rlimits": {
                "DATA": limits.memory_bytes,
                "NPROC": limits.max_processes,
                "FSIZE": limits.file_size_bytes,
                # A backstop behind the wall-clock timeout: never reached by a command that stops in time.
                "CPU": math.ceil(timeout_seconds * cpus) + 10,
            },
            "cpus": list(limits.cpus),
            "own_userns": limits.max_processes is not None,
        }
        if self.platform.trampoline_missing():
            spec["without"] = self.platform.trampoline_missing()
        if self.isolation == "bwrap":
            spec["drop_to"] = list(self.run_as) if self.run_as else None
        else:
            spec.update(supervise=True, parent=os.getpid())
        return spec

    def prepare(self, argv: Sequence[str], access: Access, env: Mapping[str, str],
                timeout_seconds: float) -> PreparedCommand:
        """The command wrapped in the trampoline (and bubblewrap), and its environment."""
        spec = json.dumps(self.spec(timeout_seconds), separators=(",", ":"))
        return self._wrap([spec, "--", *argv], argv, access, env)

    def _wrap(self, trampoline_args: list[str], argv: Sequence[str], access: Access,
              env: Mapping[str, str]) -> PreparedCommand:
        if self.isolation != "bwrap":
            # No mount namespace: the paths stay the worker's, but the environment is still the allow-list.
            kept = sandbox_environment(env, home=str(access.home) if access.home else env.get("HOME", "/tmp"),
                                       tmpdir=env.get("TMPDIR", "/tmp"))
            return PreparedCommand((self.python, "-I", "-S", str(TRAMPOLINE), *trampoline_args), kept)
        inner_env = sandbox_environment(env, home=str(access.home) if access.home else "/tmp")
        mounts = bwrap_arguments(access, self._read_only_paths(argv, env), tmp_bytes=self.tmp_bytes,
                                 size_option=self.bwrap_size_option)
        wrapped = (self.bwrap, *mounts, "--ro-bind", str(TRAMPOLINE), _TRAMPOLINE_INSIDE,
                   "--", self.python, "-I", "-S", _TRAMPOLINE_INSIDE, *trampoline_args)
        return PreparedCommand(wrapped, inner_env)

    def _read_only_paths(self, argv: Sequence[str], env: Mapping[str, str]) -> list[Path]:
        """The interpreter, the program itself and its libraries, plus the volunteer's extras."""
        paths = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
        paths.add(Path(os.path.realpath(self.python)).parent.parent)
        program = shutil.which(argv[0], path=env.get("PATH")) if argv else None
        if program:
            paths.add(Path(program))
            paths.add(Path(os.path.realpath(program)))
        for directory in env.get("LD_LIBRARY_PATH", "").split(":"):
            if directory and os.path.isdir(directory):
                paths.add(Path(directory))
        paths.update(self.read_only)
        return sorted(p for p in paths if p.exists())

    def shows(self, path: Path) -> bool:
        """Whether a study command may read `path`: anything this user can without bubblewrap;
        with it, what lies under the system paths, the interpreter or the volunteer's extras."""
        if self.isolation != "bwrap":
            return True
        real = Path(os.path.realpath(path))
        visible = [Path(p) for p in _SYSTEM_PATHS] + self._read_only_paths([], {})
        return any(real == top or top in real.parents for top in visible)

    def make_writable(self, *paths: Path) -> None:
        """Gives the sandbox user the paths it must write (a no-op unless root drops to nobody)."""
        if self.run_as is None:
            return
        uid, gid = self.run_as
        for top in paths:
            # Owned already: given before, and what is inside was written by the sandbox user.
            if not top.exists() or top.stat().st_uid == uid:
                continue
            os.chown(top, uid, gid)
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    # -- reporting ------------------------------------------------------------------------

    def describe(self) -> list[str]:
        """What protects this machine, in words, for the worker's start-up banner."""
        lines = []
        if self.isolation == "bwrap":
            who = f"; commands run as uid {self.run_as[0]}, not root" if self.run_as else ""
            lines.append("isolation: bubblewrap — no network (setup may opt in), no $HOME, system and study data "
                         "read-only, only the scratch copy and the study's own home writable, private /tmp, "
                         "own PID/IPC namespaces, an allow-list environment (no token or key)" + who)
        else:
            lines.append(f"isolation: NONE ({self.reason or '--sandbox none'}) — evaluations can use the network "
                         "and read and write whatever this user can (this worker's identity file too); the "
                         "environment is still an allow-list (no token or key)")
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                lines.append("running as root without bubblewrap: evaluations run as root too and can do anything on "
                             "this machine; run the worker as a user of its own (docs/security.md)")
        lines.append("limits per command: " + ", ".join(self._caps()) + "; the whole process tree is killed at the "
                     "timeout and when the worker dies" + self._kill_caveat())
        gaps = describe_gaps(self.platform, self.missing)
        if gaps:
            lines.append(gaps)
        return lines

    def _caps(self) -> list[str]:
        """Each limit as it really is here: its value, or why it is off."""
        limits, off = self.limits, set(self.refused)
        if "resource" in self.missing or not self.platform.resource:
            off |= {"DATA", "NPROC", "FSIZE", "CPU"}
        unavailable = "no cap (this system cannot set it)"
        caps = [f"memory: {unavailable}" if "DATA" in off and limits.memory_bytes else
                f"memory {_size(limits.memory_bytes)} per process"
                + (" (set, but macOS does not reliably enforce it)" if self.platform.system == "Darwin" else "")
                if limits.memory_bytes else "memory: no cap",
                f"processes: {unavailable}" if "NPROC" in off and limits.max_processes else
                f"processes {limits.max_processes} ({self.process_cap})" if limits.max_processes
                else "processes: no cap",
                f"file size: {unavailable}" if "FSIZE" in off and limits.file_size_bytes else
                f"files up to {_size(limits.file_size_bytes)}" if limits.file_size_bytes else "file size: no cap",
                f"CPU time: {unavailable}" if "CPU" in off else "CPU time up to timeout × CPUs"]
        if limits.cpus:
            pinned = self.platform.affinity and "affinity" not in self.missing
            caps.append(f"CPUs {_cpu_list(limits.cpus)}" if pinned else "CPUs: not pinned (no CPU affinity here)")
        return caps

    def _kill_caveat(self) -> str:
        if self.isolation == "bwrap":
            return ""
        if not self.platform.prctl or "prctl" in self.missing:
            return (" (noticed by polling; processes that leave the process group and outlive their parent escape "
                    "this: no child subreaper here)")
        return " (processes that leave the process group escape this)"


def allowed_variable(name: str) -> bool:
    """Whether a variable of the worker's environment may reach a study command or an agent."""
    if name in _ENV_NAMES:
        return True
    return name.startswith(_ENV_PREFIXES) and not any(word in name.upper() for word in _SECRET_WORDS)


def sandbox_environment(env: Mapping[str, str], home: str, tmpdir: str = "/tmp") -> dict[str, str]:
    """A command's environment: the allow-listed part of `env`, with HOME and TMPDIR replaced."""
    kept = {k: v for k, v in env.items() if allowed_variable(k)}
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    kept.update(HOME=home, TMPDIR=tmpdir)
    return kept


def bwrap_arguments(access: Access, read_only: Iterable[Path], *, tmp_bytes: int | None = None,
                    size_option: bool = False, device_root: Path = Path("/")) -> list[str]:
    """bubblewrap's options (without the program) for one command. Pure, so it can be tested.

    A GPU slot gets the GPU device nodes found under `device_root` (NVIDIA, AMD, Intel, WSL2).

    Paths keep their host names inside, so the logs, $AUTOSWARM_RESULT and cwd mean the same on
    both sides. Directories that lead to a bind mount but are not mounted themselves are created
    world-traversable (they would otherwise copy /root's 0700 and lock the sandbox user out).
    """
    args = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "autoswarm-sandbox"]
    if not access.network:
        args.append("--unshare-net")
    for path in _SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if access.gpus:
        for source, device in gpu_device_nodes(device_root):
            args += ["--dev-bind", source, device]
    for tmpfs in _PRIVATE_TMPFS:
        args += ["--perms", "1777"]
        if size_option and tmp_bytes:
            args += ["--size", str(tmp_bytes)]
        args += ["--tmpfs", tmpfs]
    system = [Path(p) for p in _SYSTEM_PATHS if os.path.exists(p)]
    read_only = {Path(p) for p in (*read_only, *access.read_only)}
    if access.network:  # /etc/resolv.conf often links into /run (systemd-resolved): DNS needs its target
        read_only.add(Path(os.path.realpath("/etc/resolv.conf")))
    binds: dict[Path, str] = {}
    for path in read_only:
        # Already visible read-only through a system path or a wider read-only bind.
        if not any(other in path.parents for other in (*system, *read_only)):
            binds[path] = "--ro-bind"
    for path in (*access.writable, access.workdir, *([access.home] if access.home else [])):
        binds[Path(path)] = "--bind"  # writable wins over a read-only bind of the same path
    covered = [*binds, *system]
    parents = sorted({parent for path in binds for parent in path.parents
                      if parent != Path("/") and str(parent) not in _PRIVATE_TMPFS
                      and not any(parent == c or c in parent.parents for c in covered)},
                     key=lambda p: len(p.parts))
    for parent in parents:
        args += ["--perms", "0755", "--dir", str(parent)]
    args += ["--perms", "0755", "--dir", str(Path(_TRAMPOLINE_INSIDE).parent)]
    for path in sorted(binds, key=lambda p: len(p.parts)):  # a parent before what is mounted inside it
        args += [binds[path], str(path), str(path)]
    for source, inside in access.mapped_read_only:
        args += ["--ro-bind", str(source), str(inside)]
    args += ["--chdir", str(access.workdir)]
    return args


def gpu_device_nodes(root: Path = Path("/")) -> list[tuple[str, str]]:
    """(host path, path inside) of every GPU device node under `root` (a seam for tests)."""
    found = []
    for pattern in _GPU_DEVICES:
        for source in sorted(glob.glob(str(root / pattern.lstrip("/")))):
            found.append((source, "/" + Path(source).relative_to(root).as_posix()))
    return found


def limit_hit(returncode: int | None, timed_out: bool, log_tail: str) -> str | None:
    """Which resource limit ended a command, judged from how it ended; None if none did.

    Signals come as -N (our supervisor re-raises them) or 128+N (bubblewrap's exit status).
    The rest is recognised from the messages programs print when an allocation, a fork or a
    write is refused. A command that timed out counts only if it also printed such a message
    (a fork bomb that keeps retrying).
    """
    if returncode == 0 and not timed_out:
        return None
    if not timed_out and returncode is not None:
        sig = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else 0)
        if sig == signal.SIGXCPU:
            return "the CPU time limit (SIGXCPU)"
        if sig == signal.SIGXFSZ:
            return "the file size limit (SIGXFSZ)"
        if sig == signal.SIGKILL:
            return "a SIGKILL it did not get from us: most likely the kernel's out-of-memory killer"
    lowered = log_tail.lower()
    for needle, what in _LIMIT_MESSAGES:
        if needle in lowered:
            return what
    return None


_LIMIT_MESSAGES = (
    ("out of memory", "the memory limit (out of memory)"),   # before "memoryerror": OutOfMemoryError
    ("unable to allocate", "the memory limit (unable to allocate)"),
    ("cannot allocate memory", "the memory limit (cannot allocate memory)"),
    ("std::bad_alloc", "the memory limit (std::bad_alloc)"),
    ("memoryerror", "the memory limit (MemoryError)"),
    ("can't start new thread", "the process limit (cannot start a thread)"),
    ("pthread_create failed", "the process limit (cannot start a thread)"),
    ("fork: retry", "the process limit (fork refused)"),
    ("resource temporarily unavailable", "the process limit (fork refused: resource temporarily unavailable)"),
    ("file too large", "the file size limit (file too large)"),
)


# -- configuration and probing ----------------------------------------------------------------


def configure(mode: str = "auto", limits: ResourceLimits | None = None, *, read_only: Sequence[Path] = (),
              bwrap: str = "bwrap", tmp_bytes: int | None = DEFAULT_TMP_BYTES,
              platform: Platform | None = None) -> Sandbox:
    """The sandbox to use, after checking on this machine that it really works.

    `auto` uses bubblewrap when it runs here and falls back to limits only (saying why);
    `bwrap` raises SandboxError when bubblewrap is missing or broken; `none` skips it.
    `platform` is what the system offers (default: this machine's; tests take facilities away).
    """
    platform = platform or current_platform()
    if mode not in SANDBOX_MODES:
        raise SandboxError(f"--sandbox: unknown mode {mode!r}; use one of {', '.join(SANDBOX_MODES)}")
    limits = limits or ResourceLimits()
    base = Sandbox(isolation="none", limits=limits, read_only=tuple(read_only), tmp_bytes=tmp_bytes,
                   reason="--sandbox none", platform=platform)
    if mode != "none":
        found = shutil.which(bwrap) if platform.bwrap else None
        if found is None and platform.system not in ("Linux", ""):
            reason = f"bubblewrap exists only on Linux, and this is {platform.system}"
            if mode == "bwrap":
                raise SandboxError(f"--sandbox bwrap: {reason}; run with --sandbox auto or none, or run the worker "
                                   "in a Linux VM or container (docs/platforms.md)")
            base = replace(base, reason=f"{reason}; docs/platforms.md shows how to get it in a Linux VM")
        elif found is None:
            reason = "bubblewrap is not installed"
            if mode == "bwrap":
                raise SandboxError(f"--sandbox bwrap: {reason}; install it (e.g. `apt-get install bubblewrap`) "
                                   "or run with --sandbox none")
            base = replace(base, reason=f"{reason}; install it, e.g. `apt-get install bubblewrap`")
        else:
            candidate = replace(base, isolation="bwrap", bwrap=found, reason="",
                                run_as=(UNPRIVILEGED_ID, UNPRIVILEGED_ID) if os.geteuid() == 0 else None,
                                bwrap_size_option=_bwrap_has_option(found, "--size"))
            probed, failure = _probe(candidate)
            if probed is not None:
                return probed
            if mode == "bwrap":
                raise SandboxError(f"--sandbox bwrap: bubblewrap does not work here: {failure}; "
                                   "allow user namespaces (or run the worker as root) or use --sandbox none")
            base = replace(base, reason=f"bubblewrap does not work here: {failure}")
    probed, failure = _probe(base)
    if probed is None:
        raise SandboxError(f"the sandbox trampoline does not start: {failure}")
    return probed


def _bwrap_has_option(bwrap: str, option: str) -> bool:
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return option in out.stdout + out.stderr


def _probe(sandbox: Sandbox) -> tuple[Sandbox | None, str]:
    """Runs the trampoline's --probe through `sandbox`; returns it completed, or (None, why not)."""
    with tempfile.TemporaryDirectory(prefix="autoswarm-probe-") as scratch:
        workdir = Path(scratch)
        sandbox.make_writable(workdir)
        spec = json.dumps(sandbox.spec(10), separators=(",", ":"))
        prepared = sandbox._wrap([spec, "--probe"], [], Access(workdir=workdir), os.environ)
        try:
            out = subprocess.run(prepared.argv, cwd=workdir, env=prepared.env, capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, str(exc)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return None, lines[-1] if lines else f"exit status {out.returncode}"
    try:
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"unexpected probe output {out.stdout[-200:]!r}"
    return replace(sandbox, process_cap=str(found.get("nproc", "off")),
                   missing=tuple(str(m) for m in found.get("missing") or ()),
                   refused=tuple(str(r) for r in found.get("refused") or ())), ""


def _size(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def _cpu_list(cpus: Sequence[int]) -> str:
    """0,1,2,3,6 -> '0-3,6'."""
    ranges: list[str] = []
    ordered = sorted(set(cpus))
    start = prev = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)
