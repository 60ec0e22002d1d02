"""Reading and writing files in a scratch copy without ever following a link.

A scratch copy is touched by code the volunteer does not trust: an agent, a setup command, an
evaluation. Any of them can replace a file (or a directory on its path) with a symbolic link to
`/etc/passwd` or into `$HOME`, or with a FIFO that blocks whoever opens it. The worker reads
and writes such files *outside* the sandbox, so every path component is opened relative to its
parent with O_NOFOLLOW and checked with fstat: a link anywhere on the path is refused, never
resolved, and a FIFO is refused without blocking.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

_READ_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegularFile(OSError):
    """The path is missing, or is (or passes through) something other than a regular file.

    `kind` says what was found: "missing", "symbolic link", "directory", "FIFO", ...
    """

    def __init__(self, rel: str, kind: str) -> None:
        what = "missing" if kind == "missing" else f"a {kind}" if kind.startswith("file over") \
            else f"a {kind}, not a regular file"
        super().__init__(f"{rel} is {what}")
        self.rel = rel
        self.kind = kind


def kind_of(mode: int) -> str:
    """A file type in words, from an lstat mode."""
    for test, word in ((stat.S_ISREG, "regular file"), (stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def _parts(rel: str | PurePosixPath) -> list[str]:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ValueError(f"{rel!r} is not a path inside the directory")
    return list(parts)


def _open_parent(root: Path, parts: list[str], rel: str, *, create: bool = False) -> int:
    """An fd of the directory holding the last part, reached without following any link."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise NotRegularFile(rel, "missing") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                raise NotRegularFile(rel, f"{kind_of(info.st_mode)} on its path ({part})")
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def entry_kind(root: Path, rel: str | PurePosixPath) -> str:
    """What is at `root/rel`, without following links: "regular file", "symbolic link", "missing"..."""
    parts = _parts(rel)
    try:
        parent = _open_parent(Path(root), parts, str(rel))
    except NotRegularFile as exc:
        return exc.kind
    try:
        return kind_of(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return "missing"
    finally:
        os.close(parent)


def _open_regular(root: Path, rel: str | PurePosixPath):
    """A binary file object of the regular file `root/rel`; NotRegularFile if it is anything else."""
    parts = _parts(rel)
    parent = _open_parent(Path(root), parts, str(rel))
    try:
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            raise NotRegularFile(str(rel), "missing") from None
        except OSError:  # ELOOP: a link; ENXIO: a socket
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            raise NotRegularFile(str(rel), kind_of(info.st_mode)) from None
    finally:
        os.close(parent)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(str(rel), kind_of(mode))
    return os.fdopen(fd, "rb")


def read_regular(root: Path, rel: str | PurePosixPath, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file `root/rel`; NotRegularFile if it is anything else.

    With `max_bytes`, a longer file raises NotRegularFile(kind="file over N bytes") after
    reading at most max_bytes + 1 bytes.
    """
    with _open_regular(root, rel) as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise NotRegularFile(str(rel), f"file over {max_bytes} bytes")
    return data


def sha256_regular(root: Path, rel: str | PurePosixPath) -> str:
    """The sha256 of the regular file `root/rel`, read in chunks; NotRegularFile otherwise."""
    digest = hashlib.sha256()
    with _open_regular(root, rel) as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_regular(root: Path, rel: str | PurePosixPath, data: bytes) -> None:
    """Writes `data` to `root/rel` as a fresh regular file, replacing whatever entry was there.

    A link or FIFO at the path is removed, never written through; a link on the way (a
    directory replaced by a link) raises NotRegularFile. Missing directories are created.
    """
    parts = _parts(rel)
    parent = _open_parent(Path(root), parts, str(rel), create=True)
    try:
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                raise NotRegularFile(str(rel), "directory")
            os.unlink(parts[-1], dir_fd=parent)
        except FileNotFoundError:
            pass
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=parent)
    finally:
        os.close(parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def tree_entries(directory: Path, ignored_dirs: frozenset[str] = frozenset()) -> dict[str, os.stat_result]:
    """Every entry under `directory` by relative path, from lstat: links are listed, never entered."""
    found: dict[str, os.stat_result] = {}
    stack = [(Path(directory), PurePosixPath())]
    while stack:
        path, rel = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                child = rel / entry.name
                if stat.S_ISDIR(info.st_mode):
                    if entry.name in ignored_dirs:
                        continue
                    stack.append((Path(entry.path), child))
                found[child.as_posix()] = info
    return found
