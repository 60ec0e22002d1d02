"""The sandbox trampoline: applies one evaluation's limits to itself, then becomes the command.

    python -I -S sandbox_exec.py SPEC_JSON -- PROGRAM ARG...
    python -I -S sandbox_exec.py SPEC_JSON --probe      (prints what it could enforce, as JSON)

It runs *in the child*, after fork and exec, so the worker never needs `preexec_fn` (which is
unsafe with several slot threads). Inside bubblewrap it is the first program of the sandbox;
without bubblewrap it stays as a small supervisor between the worker and the command. It uses
the standard library only and imports nothing of autoswarm, because inside the sandbox it is a
lone file bound read-only and `-S` keeps site-packages out.

SPEC keys (all optional):
  rlimits     {"DATA": bytes, "NPROC": tasks, "FSIZE": bytes, "CPU": seconds}
  cpus        CPU numbers for the affinity mask
  drop_to     [uid, gid]: when running as root, become this unprivileged user first
  own_userns  count processes per sandbox: move into a fresh user namespace
  supervise   stay as parent of the command; kill what it leaves behind, and all of it if
              the worker dies (bubblewrap's PID namespace does this by itself)
  parent      the worker's pid (with supervise)
  without     facilities to treat as missing even if present: "prctl", "resource", "proc",
              "affinity", "user_namespaces" (how the worker runs macOS's fallbacks on Linux)

Where a facility is missing (macOS has no prctl, /proc, CPU affinity or user namespaces;
Windows has no `resource`), the trampoline does without it and --probe says so under "missing".
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
RLIMIT_NAMES = {"DATA": "RLIMIT_DATA", "NPROC": "RLIMIT_NPROC", "FSIZE": "RLIMIT_FSIZE", "CPU": "RLIMIT_CPU",
                "CORE": "RLIMIT_CORE"}
_PARENT_POLL_SECONDS = 0.1  # without a parent-death signal, how often the supervisor looks for the worker


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def facilities(without: list[str] | tuple[str, ...] = ()) -> dict[str, bool]:
    """What this system offers the trampoline, minus the facilities named in `without`."""
    try:
        libc = _libc()
        prctl, unshare = hasattr(libc, "prctl"), hasattr(libc, "unshare")
    except (OSError, TypeError):
        prctl = unshare = False
    found = {
        "prctl": prctl,
        "resource": resource is not None,
        "proc": os.path.isdir("/proc/self"),
        "affinity": hasattr(os, "sched_setaffinity"),
        "user_namespaces": unshare and sys.platform.startswith("linux"),
    }
    return {name: present and name not in without for name, present in found.items()}


def _drop_privileges(uid: int, gid: int) -> bool:
    """Root becomes `uid`: RLIMIT_NPROC is never enforced on root, and root needs no sandbox."""
    if os.geteuid() != 0:
        return False
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return True


def _enter_user_namespace(have: dict[str, bool]) -> bool:
    """Moves into a fresh user namespace, mapping our uid and gid to themselves.

    RLIMIT_NPROC counts tasks per (user namespace, uid): in a fresh namespace it counts only
    this sandbox, not every process of the user nor the other slots.
    """
    if not have["user_namespaces"]:
        return False
    uid, gid = os.getuid(), os.getgid()
    if _libc().unshare(CLONE_NEWUSER) != 0:
        return False
    # Identity maps so that getuid() still reports the real user (tools look it up). A failure
    # leaves the ids unmapped (shown as 65534), which the limits do not care about.
    for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                       ("/proc/self/gid_map", f"{gid} {gid} 1")):
        try:
            with open(path, "w") as handle:
                handle.write(text)
        except OSError:
            pass
    return True


def _user_tasks(uid: int, have: dict[str, bool]) -> int:
    """Tasks (threads included) whose real uid is `uid`: what RLIMIT_NPROC compares against.

    From /proc, else from `ps` (macOS counts processes, not threads, against RLIMIT_NPROC).
    """
    if not have["proc"]:
        rows = _ps("uid=", "nlwp=") or [[*row, "1"] for row in _ps("uid=")]
        return sum(int(row[1]) for row in rows if len(row) >= 2 and row[0] == str(uid) and row[1].isdigit())
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return total


def apply(spec: dict) -> dict:
    """Applies SPEC to this process; returns what is in force (for --probe and the worker's banner).

    "missing" lists the facilities this system lacks, "refused" the rlimits it would not set.
    """
    have = facilities(spec.get("without") or ())
    in_force: dict = {"dropped_to": None, "own_userns": False, "nproc": "off",
                      "missing": sorted(name for name, present in have.items() if not present), "refused": []}
    drop = spec.get("drop_to")
    if drop and _drop_privileges(int(drop[0]), int(drop[1])):
        in_force["dropped_to"] = int(drop[0])
    is_root = os.getuid() == 0  # before the user namespace, which would show root as 65534
    limits = {k: int(v) for k, v in (spec.get("rlimits") or {}).items() if v is not None}
    if not have["resource"]:
        limits = {}
        in_force["nproc"] = "off: no rlimits on this system"
    # Not for root: the kernel exempts root from RLIMIT_NPROC anyway, and root inside a user
    # namespace would lose its access to the worker's files.
    if spec.get("own_userns") and "NPROC" in limits and not is_root:
        in_force["own_userns"] = _enter_user_namespace(have)
    if "NPROC" in limits:
        if is_root:
            in_force["nproc"] = "off: the kernel does not apply it to root"
        elif in_force["own_userns"]:
            in_force["nproc"] = "per sandbox"
        else:
            # Shared with every process of this user: leave room for what already runs.
            limits["NPROC"] += _user_tasks(os.getuid(), have)
            in_force["nproc"] = "per user (no user namespaces)"
    if have["resource"]:
        limits.setdefault("CORE", 0)
    for name, value in limits.items():
        kind = getattr(resource, RLIMIT_NAMES[name], None)
        if kind is None:
            in_force["refused"].append(name)
            continue
        try:
            _, hard = resource.getrlimit(kind)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (value, value))  # hard too: the command cannot raise it again
        except (ValueError, OSError):
            # macOS refuses some values (RLIMIT_NPROC above kern.maxprocperuid): say so, run on.
            in_force["refused"].append(name)
    if in_force["refused"] and "NPROC" in in_force["refused"]:
        in_force["nproc"] = "off: this system refused the cap"
    cpus = spec.get("cpus")
    if cpus and have["affinity"]:
        try:
            os.sched_setaffinity(0, [int(c) for c in cpus])
        except OSError:
            pass  # a CPU that went offline: run on what the worker has
    return in_force


def _exec(argv: list[str]) -> None:
    # Python ignores these at start-up and exec keeps ignored signals: give the command the
    # defaults it would get from a shell (what subprocess's restore_signals does).
    for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"[autoswarm] cannot start {argv[0]!r}: {exc}\n")
        sys.stderr.flush()
        os._exit(EXIT_CANNOT_EXECUTE if isinstance(exc, PermissionError) else EXIT_NOT_FOUND)


def _ps(*columns: str) -> list[list[str]]:
    """Rows of `ps -A -o COLUMNS` for every process, split into fields; [] if ps fails."""
    argv = ["ps", "-A"] + [arg for column in columns for arg in ("-o", column)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split() for line in out.splitlines() if line.strip()]


def _children_table(have: dict[str, bool]) -> dict[int, list[int]]:
    """Live (non-zombie) processes by parent pid, from /proc or else `ps`."""
    children: dict[int, list[int]] = {}
    if not have["proc"]:
        for row in _ps("pid=", "ppid=", "stat="):
            if len(row) >= 3 and row[0].isdigit() and row[1].isdigit() and not row[2].startswith("Z"):
                children.setdefault(int(row[1]), []).append(int(row[0]))
        return children
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _descendants(pid: int, have: dict[str, bool]) -> list[int]:
    """Live (non-zombie) processes below `pid`."""
    children = _children_table(have)
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill_descendants(have: dict[str, bool], only_other_groups: bool = False) -> None:
    """SIGKILLs what the command left below us; as a subreaper, even daemons that setsid()."""
    me, group = os.getpid(), os.getpgrp()
    for _ in range(100):  # a fork bomb keeps forking while we look: look again
        victims = [pid for pid in _descendants(me, have) if not only_other_groups or _pgid(pid) != group]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _supervise(argv: list[str], parent: int, have: dict[str, bool]) -> None:
    """Runs the command as a child and makes sure nothing it started outlives it.

    As a child subreaper, orphans of the command (daemons included) become our children. When
    the command exits, they are killed. When the worker signals the group (timeout, cancel),
    those that left the group are killed at once, the group gets the worker's own treatment.
    When the worker itself dies, everything goes.

    Without prctl (macOS) there is no subreaper and no parent-death signal: descendants are
    killed while they are still below us, and the worker's death is noticed by polling.
    """
    def on_term(signum: int, frame: object) -> None:
        if os.getppid() != parent:  # the worker is gone: nobody else will clean up
            _worker_gone()
        _kill_descendants(have, only_other_groups=True)

    def _worker_gone() -> None:
        _kill_descendants(have)
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = _libc() if have["prctl"] else None
    if libc is not None:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(EXIT_CANNOT_EXECUTE)
    me = os.getpid()
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # and if this supervisor is killed
        if os.getppid() != me:
            os._exit(EXIT_CANNOT_EXECUTE)
        _exec(argv)
    status = _wait_child(child, parent, watch_parent=libc is None, on_parent_gone=_worker_gone)
    _kill_descendants(have)
    if os.WIFSIGNALED(status):
        # Die of the same signal, so the worker sees -N as if it had run the command itself.
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(me, sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _wait_child(child: int, parent: int, *, watch_parent: bool, on_parent_gone) -> int:
    """The child's wait status; with `watch_parent`, polls for the worker's death meanwhile."""
    pause = 0.005  # grows to _PARENT_POLL_SECONDS: a short command is still noticed at once
    while True:
        try:
            pid, status = os.waitpid(child, os.WNOHANG if watch_parent else 0)
        except ChildProcessError:
            os._exit(EXIT_CANNOT_EXECUTE)
        if pid == child:
            return status
        if os.getppid() != parent:  # what PR_SET_PDEATHSIG would have told us
            on_parent_gone()
        time.sleep(pause)
        pause = min(pause * 2, _PARENT_POLL_SECONDS)


def main(args: list[str]) -> None:
    if len(args) < 2:
        sys.stderr.write(__doc__ or "")
        os._exit(2)
    spec = json.loads(args[0])
    if args[1] == "--probe":
        print(json.dumps(apply(spec)), flush=True)
        return
    if args[1] != "--" or len(args) < 3:
        sys.stderr.write("usage: sandbox_exec.py SPEC -- PROGRAM ARG...\n")
        os._exit(2)
    apply(spec)
    if spec.get("supervise"):
        _supervise(args[2:], int(spec.get("parent", os.getppid())), facilities(spec.get("without") or ()))
    _exec(args[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
