"""Lease deadlines in order, so that the reaper's work is O(expired), not O(leases in flight).

Pure bookkeeping, no I/O. A heap of (deadline, lease id, study) entries: a lease gets an
entry whenever its deadline is set (leased, read back after a restart, extended by a
heartbeat). Entries are never updated in place; an extension pushes a new one, and the old
one is recognised as stale when it comes due (the lease's deadline in memory is later, or
the lease is closed). The caller holds the truth (the active leases); this only says which
to look at.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator


class DeadlineQueue:
    """Entries (deadline, lease id, study), earliest first; stale ones are skipped by the caller.

    Stale entries cost memory until they come due; `compact` drops them all at once, and
    `needs_compacting` says when that pays (more than `slack` times the live count plus a
    floor), so compacting is amortized O(1) per push.
    """

    def __init__(self, slack: float = 2.0, floor: int = 1024) -> None:
        self._heap: list[tuple[float, str, str]] = []
        self.slack = slack
        self.floor = floor

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, deadline: float, lease_id: str, study: str) -> None:
        heapq.heappush(self._heap, (deadline, lease_id, study))

    def pop_due(self, now: float) -> Iterator[tuple[float, str, str]]:
        """Removes and yields every entry whose deadline is before `now`, earliest first."""
        heap = self._heap
        while heap and heap[0][0] < now:
            yield heapq.heappop(heap)

    def needs_compacting(self, live: int) -> bool:
        return len(self._heap) > self.slack * live + self.floor

    def compact(self, live: Iterable[tuple[float, str, str]]) -> None:
        """Replaces every entry by `live`: one entry per active lease, its current deadline."""
        self._heap = list(live)
        heapq.heapify(self._heap)


def due_leases(queue: DeadlineQueue, now: float, current: Callable[[str, str], float | None]) -> list[tuple[str, str]]:
    """(lease id, study) of the leases whose deadline has passed, each once, earliest first.

    `current(lease_id, study)` is the lease's deadline as memory has it now, or None when it
    is no longer active: an entry whose lease was extended or closed since is stale.
    """
    due: dict[str, str] = {}
    for deadline, lease_id, study in queue.pop_due(now):
        now_deadline = current(lease_id, study)
        if now_deadline is not None and now_deadline < now:
            due[lease_id] = study
    return list(due.items())
