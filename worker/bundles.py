"""The worker's bundle cache: content-addressed study files, fetched once, set up once.

Layout under the cache root:  bundles/<sha256>/files/...   the unpacked study directory
                              bundles/<sha256>/setup-ok    present once `setup` succeeded
                              bundles/<sha256>/setup-failed  the failed setup's log tail, for an hour
Least-recently-used bundles are evicted when the cache grows past its cap.

A bundle arrives from a coordinator the volunteer does not have to trust: it is written to a
file as it streams in, never gathered in memory, and the stream is cut as soon as it passes the
size the task advertised or the bundle cap, whichever is smaller.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoswarm.bundle import DEFAULT_MAX_BUNDLE_BYTES, BundleError, unpack_bundle, write_files

DEFAULT_CACHE_BYTES = 5 << 30
SETUP_RETRY_SECONDS = 3600.0  # a failed setup is tried again after this long, not with every task


@dataclass(frozen=True)
class CachedBundle:
    hash: str
    root: Path
    cache_hit: bool

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def setup_marker(self) -> Path:
        return self.root / "setup-ok"

    @property
    def setup_failed_marker(self) -> Path:
        return self.root / "setup-failed"


class BundleDownload:
    """One bundle arriving in chunks: appended to a file, hashed as it comes, capped.

    `fetch(bundle_hash, download)` calls `restart()` before each attempt (a retry after a
    broken stream starts over) and `write(chunk)` for each chunk; `write` raises BundleError
    the moment the bundle passes `limit` bytes, so an endless stream costs one chunk of memory.
    """

    def __init__(self, path: Path, limit: int, limit_reason: str) -> None:
        self.path = path
        self.limit = limit
        self.limit_reason = limit_reason
        self.received = 0
        self._digest = hashlib.sha256()
        self._file = open(path, "wb")

    def restart(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._digest = hashlib.sha256()
        self.received = 0

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise BundleError(f"the coordinator sent more than {self.limit_reason} ({self.limit} bytes); "
                              "the download was stopped")
        self._digest.update(chunk)
        self._file.write(chunk)

    def digest(self) -> str:
        """The sha256 of what was received (after the last restart)."""
        return self._digest.hexdigest()

    def close(self) -> None:
        self._file.close()


Fetch = Callable[[str, BundleDownload], None]


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _special_files(directory: str, names: list[str]) -> set[str]:
    """The entries of `directory` that are neither files, folders nor links (for copytree)."""
    special = set()
    for name in names:
        mode = os.lstat(os.path.join(directory, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            special.add(name)
    return special


class BundleCache:
    """Fetches bundles by hash through `fetch(hash) -> chunks` and keeps them on disk."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_CACHE_BYTES,
                 max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> None:
        self.root = Path(root) / "bundles"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_bundle_bytes = max_bundle_bytes  # the coordinators' cap on a bundle (autoswarm.bundle)
        self._lock = threading.Lock()  # slots share the cache; one fetch per bundle at a time

    def get(self, bundle_hash: str, fetch: Fetch, advertised_bytes: int = 0) -> CachedBundle:
        """The unpacked bundle, fetched to disk and hash-checked on a miss.

        `advertised_bytes` is the size the task announced (0: unknown); the download stops
        at it or at `max_bundle_bytes`, whichever is smaller.
        """
        if not bundle_hash or any(c not in "0123456789abcdef" for c in bundle_hash):
            raise BundleError(f"bad bundle hash {bundle_hash!r}")
        limit, reason = self.max_bundle_bytes, "the bundle cap"
        if advertised_bytes > self.max_bundle_bytes:
            raise BundleError(f"bundle {bundle_hash[:12]} is advertised at {advertised_bytes} bytes, over the "
                              f"{self.max_bundle_bytes}-byte bundle cap; it was not fetched")
        if advertised_bytes > 0:
            limit, reason = advertised_bytes, "the advertised size"
        with self._lock:
            entry = CachedBundle(bundle_hash, self.root / bundle_hash, cache_hit=True)
            if (entry.root / "complete").exists():
                os.utime(entry.root / "complete")  # mark as recently used for LRU
                return entry
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".fetch-"))
            try:
                download = BundleDownload(staging / "bundle.msgpack", limit, reason)
                try:
                    fetch(bundle_hash, download)
                finally:
                    download.close()
                if download.digest() != bundle_hash:
                    raise BundleError(f"bundle {bundle_hash[:12]} failed its hash check; it will be fetched again")
                # Read back only now: within the cap, and the bytes the coordinator vouched for.
                files = unpack_bundle(download.path.read_bytes(), self.max_bundle_bytes)
                (staging / "bundle.msgpack").unlink()
                write_files(files, staging / "files")
                (staging / "complete").write_text(str(time.time()))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(entry.root, ignore_errors=True)
            staging.rename(entry.root)
            self._evict(keep=bundle_hash)
            return CachedBundle(bundle_hash, entry.root, cache_hit=False)

    def copy_to(self, entry: CachedBundle, destination: Path) -> None:
        """Copies a bundle's files to a scratch directory (under the lock, so eviction waits)."""
        with self._lock:
            # Links stay links (a setup's venv has them; inside the sandbox they resolve there);
            # FIFOs, sockets and devices a setup left are not study files and are not copied.
            shutil.copytree(entry.files, destination, symlinks=True, ignore=_special_files)
            os.utime(entry.root / "complete")

    def setup_once(self, entry: CachedBundle, run_setup: Callable[[Path], tuple[bool | None, str]],
                   retry_after_seconds: float = SETUP_RETRY_SECONDS) -> tuple[bool, str, float]:
        """Runs `run_setup(files_dir)` once per bundle; returns (ok, log tail, seconds spent now).

        `run_setup` returns (True, tail), (False, tail) for a failure, or (None, tail) when it
        did not finish (cancelled: nothing to remember). A failure is remembered: the bundle is
        not set up again on this machine for `retry_after_seconds` (a dataset server may come
        back), so a broken setup is reported, not retried with every task.
        """
        with self._lock:
            if entry.setup_marker.exists():
                return True, "", 0.0
            failed = entry.setup_failed_marker
            if failed.exists() and time.time() - failed.stat().st_mtime < retry_after_seconds:
                return False, failed.read_text(errors="replace"), 0.0
            started = time.monotonic()
            ok, tail = run_setup(entry.files)
            if ok is not None:
                (entry.setup_marker if ok else failed).write_text(tail)
            return bool(ok), tail, time.monotonic() - started

    def _evict(self, keep: str) -> None:
        entries = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        sizes = {p: _tree_size(p) for p in entries}
        total = sum(sizes.values())
        by_age = sorted(entries, key=lambda p: (p / "complete").stat().st_mtime if (p / "complete").exists() else 0)
        for path in by_age:
            if total <= self.max_bytes:
                break
            if path.name == keep:
                continue
            shutil.rmtree(path, ignore_errors=True)
            total -= sizes[path]
