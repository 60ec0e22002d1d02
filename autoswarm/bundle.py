"""Study bundles: the study directory as one content-addressed msgpack archive.

Workers fetch a bundle once per hash and cache it; the hash is the sha256 of the archive
bytes, so the archive encoding must be canonical (sorted paths, no timestamps).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import msgpack

BUNDLE_FORMAT = 1
DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024
# Caches, environments and outputs: never part of what an agent or evaluation needs.
EXCLUDED_DIRS = frozenset({
    "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", "runs", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", "node_modules", ".autoswarm",
})
EXCLUDED_FILES = ("*.pyc", "*.pyo", ".DS_Store", "*.db", "*.db-wal", "*.db-shm")


class BundleError(ValueError):
    """A bundle cannot be built or unpacked; the message says why and what to do."""


@dataclass(frozen=True)
class Bundle:
    """A packed study directory."""

    data: bytes
    hash: str
    files: dict[str, bytes]


def sha256_hex(data: bytes) -> str:
    """The content address used for bundles and versions."""
    return hashlib.sha256(data).hexdigest()


def _excluded(rel: PurePosixPath, patterns: tuple[str, ...]) -> bool:
    if any(part in EXCLUDED_DIRS for part in rel.parts[:-1]):
        return True
    name = rel.name
    if any(fnmatch.fnmatch(name, pat) for pat in EXCLUDED_FILES):
        return True
    text = rel.as_posix()
    return any(fnmatch.fnmatch(text, pat) or fnmatch.fnmatch(name, pat) for pat in patterns)


def collect_files(study_dir: Path, exclude: tuple[str, ...] = (),
                  max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> dict[str, bytes]:
    """Reads the files of a study directory that belong in its bundle."""
    files: dict[str, bytes] = {}
    total = 0
    for root, dirs, names in os.walk(study_dir):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not os.path.islink(os.path.join(root, d)))
        for name in sorted(names):
            path = Path(root) / name
            rel = PurePosixPath(path.relative_to(study_dir).as_posix())
            if path.is_symlink() or not path.is_file() or _excluded(rel, exclude):
                continue
            total += path.stat().st_size
            if total > max_bytes:
                raise BundleError(
                    f"the study directory {study_dir} holds more than {max_bytes / 2**20:.0f} MiB "
                    f"(reached at {rel}); add large files (data, checkpoints) to `exclude` in "
                    "study.toml and let `setup` produce them on each worker"
                )
            files[rel.as_posix()] = path.read_bytes()
    return files


def pack_files(files: dict[str, bytes]) -> Bundle:
    """Encodes files canonically and computes the bundle hash."""
    entries = [[path, files[path]] for path in sorted(files)]
    data = msgpack.packb({"format": BUNDLE_FORMAT, "files": entries}, use_bin_type=True)
    return Bundle(data=data, hash=sha256_hex(data), files=dict(files))


def pack_directory(study_dir: Path, exclude: tuple[str, ...] = (),
                   max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> Bundle:
    """Packs a study directory minus caches and outputs."""
    return pack_files(collect_files(Path(study_dir), exclude, max_bytes))


def _safe_relpath(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or ".." in rel.parts or "\\" in path:
        raise BundleError(f"bundle entry {path!r} would be written outside the study directory")
    return rel


def unpack_bundle(data: bytes, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> dict[str, bytes]:
    """Decodes a bundle archive, rejecting anything malformed or unsafe."""
    if len(data) > max_bytes:
        raise BundleError(f"bundle is {len(data)} bytes, over the {max_bytes}-byte cap")
    try:
        decoded = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise BundleError(f"bundle is not a valid msgpack archive: {exc}") from exc
    if not isinstance(decoded, dict) or decoded.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle has an unknown format; expected format {BUNDLE_FORMAT}")
    files: dict[str, bytes] = {}
    for entry in decoded.get("files", []):
        if not (isinstance(entry, list) and len(entry) == 2
                and isinstance(entry[0], str) and isinstance(entry[1], bytes)):
            raise BundleError("bundle has a malformed file entry")
        rel = _safe_relpath(entry[0]).as_posix()
        if rel in files:
            # Which copy would win depends on the reader; a canonical bundle never has two.
            raise BundleError(f"bundle has two entries for {rel!r}; a study file appears once")
        files[rel] = entry[1]
    folders = {parent.as_posix() for rel in files for parent in PurePosixPath(rel).parents}
    if clash := sorted(folders & set(files)):
        raise BundleError(f"bundle entry {clash[0]!r} is both a file and a folder of other entries")
    return files


def write_files(files: dict[str, bytes], directory: Path) -> None:
    """Writes unpacked bundle files under `directory`."""
    for rel, content in files.items():
        path = Path(directory) / _safe_relpath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
