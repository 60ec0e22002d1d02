"""How the worker keeps its own secrets from the commands it runs.

Evaluations, setups and agents are children of the worker. They get an allow-list environment
(`worker/sandbox.py`), so they never inherit a token; but without bubblewrap they run as the
worker's user, and on Linux a process may read `/proc/<pid>/environ`, `/proc/<pid>/mem` and
`/proc/<pid>/cmdline` of every other process of its user. The first two show the environment
the worker was started with (tokens given as `AUTOSWARM_JOIN_TOKEN` or `AUTOSWARM_TOKEN`) and
everything it holds in memory; the third, readable by every user of the machine, shows a token
given as a flag.

`guard_process`, called once at start before the worker talks to anyone:

- makes the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): its `/proc/<pid>/environ`,
  `mem`, `maps` and `fd` are then closed to other processes of the same user (root keeps
  access). Its children become dumpable again when they exec, which is fine: they hold no
  secret of the worker's;
- overwrites the secrets where the kernel keeps the command line and the initial environment
  (what `cmdline` and `environ` show), so they are hidden even from readers allowed in;
- removes the token variables from `os.environ`, so no child the worker starts inherits them.

`read_token_file` reads a join token from a file or from standard input (`--token-file -`; at a
terminal it asks without echo), which keeps it out of the command line and the environment.

What this cannot do is stated in docs/security.md ("The worker's own secrets"): a command
running as the worker's user without a sandbox can read every *file* that user can read.
"""

from __future__ import annotations

import ctypes
import getpass
import os
import stat
import sys
from collections.abc import Iterable, MutableMapping, MutableSequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autoswarm.worker.platforms import Platform, current_platform

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
# The worker's token variables: read at start, then removed from its environment.
TOKEN_VARIABLES = ("AUTOSWARM_JOIN_TOKEN", "AUTOSWARM_TOKEN")
MAX_TOKEN_FILE_BYTES = 4096
# Shorter values are not tokens: overwriting every occurrence of them would damage the rest.
MIN_SECRET_CHARS = 8
HIDDEN_BYTE = ord("*")


class TokenFileError(ValueError):
    """A --token-file that cannot be used, with the reason and what to do."""


def read_token_file(path: str | Path, stdin: IO[str] | None = None) -> str:
    """The token in `path` ('-': standard input, asked for without echo at a terminal), stripped
    of surrounding whitespace.

    Refuses an empty or oversized file, a token with whitespace or control characters inside,
    and a regular file that other users may read (as ssh refuses a private key: chmod 600 it).
    """
    where = "standard input" if str(path) == "-" else str(path)
    try:
        if str(path) == "-" and stdin is None and sys.stdin is not None and sys.stdin.isatty():
            text = getpass.getpass("join token: ")
        elif str(path) == "-":
            text = (stdin or sys.stdin).read(MAX_TOKEN_FILE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if stat.S_ISREG(mode) and mode & 0o077:
                    raise TokenFileError(
                        f"--token-file {where} may be read by other users (mode {stat.S_IMODE(mode):04o}): "
                        f"`chmod 600 {where}`, then start again")
                text = handle.read(MAX_TOKEN_FILE_BYTES + 1).decode("utf-8")
    except UnicodeDecodeError:
        raise TokenFileError(f"--token-file {where} is not UTF-8 text; it should hold the token alone") from None
    except OSError as exc:
        raise TokenFileError(f"--token-file {where}: {exc.strerror or exc}") from None
    if len(text) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(f"--token-file {where} is over {MAX_TOKEN_FILE_BYTES} bytes; it should hold the "
                             "token alone")
    token = text.strip()
    if not token:
        raise TokenFileError(f"--token-file {where} is empty; it should hold the join token "
                             "(`autoswarm token create NAME` prints one)")
    if not token.isprintable() or any(ch.isspace() for ch in token):
        raise TokenFileError(f"--token-file {where} holds more than one word; it should hold the token alone")
    return token


@dataclass(frozen=True)
class Guard:
    """What `guard_process` achieved, for the start-up banner."""

    system: str
    dumpable: bool | None            # None: this system has no prctl, so it is not known
    hidden: int = 0                  # secrets overwritten in the command line and initial environment
    scrubbed: tuple[str, ...] = ()   # variables removed from os.environ
    proc: bool = True                # the system has /proc (so `hidden` could be looked for)

    def describe(self) -> str:
        """One banner line: what protects the worker's own secrets here, and what does not."""
        if self.dumpable is False:
            parts = ["not dumpable: this user's other processes, evaluations included, cannot read its memory "
                     "or environment"]
        elif self.dumpable is None:
            parts = [f"this system ({self.system}) cannot make the worker non-dumpable: this user's other "
                     "processes, evaluations included, can read its environment and command line (on macOS "
                     "`ps eww`); give the join token with --token-file"]
        else:
            parts = ["STILL DUMPABLE (prctl refused): this user's other processes can read its memory and "
                     "environment"]
        if self.hidden:
            parts.append(f"{self.hidden} token value(s) hidden from its command line and environment")
        return "worker process: " + "; ".join(parts)


def guard_process(secrets: Iterable[str], platform: Platform | None = None,
                  environ: MutableMapping[str, str] | None = None,
                  argv: Iterable[MutableSequence[str]] | None = None) -> Guard:
    """Hides `secrets` (the tokens the worker was given) from the rest of this machine.

    `environ` defaults to `os.environ`, `argv` to `sys.argv` and `sys.orig_argv`; `platform`
    is what the system offers (tests take prctl or /proc away).
    """
    platform = platform or current_platform()
    environ = os.environ if environ is None else environ
    wanted = {s for s in secrets if len(s) >= MIN_SECRET_CHARS}
    scrubbed = tuple(name for name in TOKEN_VARIABLES if name in environ)
    for name in scrubbed:
        value = environ.pop(name)
        if len(value) >= MIN_SECRET_CHARS:
            wanted.add(value)
    for args in (argv if argv is not None else (sys.argv, getattr(sys, "orig_argv", []))):
        for i, arg in enumerate(args):
            args[i] = _hidden_arg(arg, wanted)
    hidden = _hide_in_initial_blocks(wanted) if platform.proc and platform.system == "Linux" else 0
    return Guard(system=platform.system, dumpable=_make_undumpable() if platform.prctl else None, hidden=hidden,
                 scrubbed=scrubbed, proc=platform.proc)


def _hidden_arg(arg: str, secrets: set[str]) -> str:
    """An argument with a secret value (`TOKEN` or `--option=TOKEN`) starred out."""
    if arg in secrets:
        return "*" * len(arg)
    name, sep, value = arg.partition("=")
    if sep and value in secrets:
        return f"{name}={'*' * len(value)}"
    return arg


def _make_undumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0); whether the process is still dumpable afterwards."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return True


def _hide_in_initial_blocks(secrets: set[str]) -> int:
    """Overwrites `secrets` where the kernel reads /proc/self/cmdline and /proc/self/environ from.

    Those files show the process's own memory between the addresses /proc/self/stat gives
    (arg_start, arg_end, env_start, env_end: fields 48 to 51). The block is only written when
    what it holds is exactly what the file shows, so a wrong address cannot be written to.
    Returns how many values were overwritten.
    """
    if not secrets:
        return 0
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): field N is fields[N - 3].
        arg_start, arg_end, env_start, env_end = (int(fields[n - 3]) for n in (48, 49, 50, 51))
        shown = {"cmdline": Path("/proc/self/cmdline").read_bytes(),
                 "environ": Path("/proc/self/environ").read_bytes()}
    except (OSError, ValueError, IndexError):
        return 0
    encoded = {s.encode() for s in secrets}
    hidden = 0
    for (start, end), name, env in (((arg_start, arg_end), "cmdline", False), ((env_start, env_end), "environ", True)):
        if not 0 < start < end or end - start > 1 << 24:
            continue
        block = ctypes.string_at(start, end - start)
        if block != shown[name]:
            continue
        offset = 0
        for entry in block.split(b"\0"):
            value_at = _secret_offset(entry, encoded, env)
            if value_at is not None:
                ctypes.memset(start + offset + value_at, HIDDEN_BYTE, len(entry) - value_at)
                hidden += 1
            offset += len(entry) + 1
    return hidden


def _secret_offset(entry: bytes, secrets: set[bytes], env: bool) -> int | None:
    """Where the secret value starts in one NUL-separated entry (`NAME=VALUE`, `--opt=VALUE`
    or `VALUE` alone on the command line); None if the entry holds none."""
    if not env and entry in secrets:
        return 0
    name, sep, value = entry.partition(b"=")
    if sep and value in secrets:
        return len(name) + 1
    return None
