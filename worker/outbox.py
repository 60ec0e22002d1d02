"""The worker's outbox: finished results wait on disk until the coordinator has them.

A result is written here (fsynced) *before* the first attempt to send it, so a dead network,
a restarted coordinator or a killed worker never loses a finished experiment. The
coordinator is idempotent per lease, so sending an entry twice is harmless.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgpack

OUTBOX_FORMAT = 1


@dataclass(frozen=True)
class OutboxEntry:
    lease_id: str
    request: bytes        # a serialized ReportRequest
    created: float


class Outbox:
    """A directory of msgpack files, one per unsent report."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, lease_id: str) -> Path:
        safe = "".join(c for c in lease_id if c.isalnum() or c in "-_")
        return self.directory / f"{safe}.msgpack"

    def put(self, entry: OutboxEntry) -> None:
        """Durably stores an entry (write, fsync, atomic rename)."""
        path = self._path(entry.lease_id)
        tmp = path.with_suffix(".tmp")
        data = msgpack.packb({"format": OUTBOX_FORMAT, "lease_id": entry.lease_id,
                              "request": entry.request, "created": entry.created}, use_bin_type=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def remove(self, lease_id: str) -> None:
        self._path(lease_id).unlink(missing_ok=True)

    def pending(self) -> list[OutboxEntry]:
        """Unsent entries, oldest first. Unreadable files are set aside, not deleted."""
        entries = []
        for path in self.directory.glob("*.msgpack"):
            try:
                raw = msgpack.unpackb(path.read_bytes(), raw=False)
                entries.append(OutboxEntry(raw["lease_id"], raw["request"], float(raw["created"])))
            except Exception:
                path.rename(path.with_suffix(".corrupt"))
        return sorted(entries, key=lambda e: e.created)

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.msgpack"))
