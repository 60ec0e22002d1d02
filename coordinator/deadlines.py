"""Lease deadlines in order, so that the reaper's work is O(expired), not O(leases in flight).

Pure bookkeeping, no I/O. Each active lease is filed under the whole second its deadline
falls in (its ceiling); a heartbeat's extension moves it to a later second and a report or
release takes it out, each a few dict and set operations. The reaper looks only at the seconds
that have passed. So there are never stale entries to skip or to compact away: an earlier
version kept a heap of every deadline ever set and rebuilt it from all active leases (80,000 at
100,000 workers) whenever stale entries piled up, a pass of 50-150 ms of the event loop every
few minutes that every request in flight paid. The caller still holds the truth (the active
leases); `due_leases` checks each due lease against it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator


class DeadlineQueue:
    """Each lease's current deadline (and study), filed by the second; earliest seconds first."""

    def __init__(self) -> None:
        self._at: dict[str, tuple[float, str]] = {}   # lease id -> (deadline, study)
        self._files: dict[int, set[str]] = {}         # whole second (ceiling of deadline) -> lease ids
        self._seconds: list[int] = []                 # the keys of `_files`, as a heap

    def __len__(self) -> int:
        return len(self._at)

    def push(self, deadline: float, lease_id: str, study: str) -> None:
        """The lease's deadline is now `deadline` (leased, read back, or extended)."""
        previous = self._at.get(lease_id)
        second = math.ceil(deadline)
        self._at[lease_id] = (deadline, study)
        if previous is not None:
            old_second = math.ceil(previous[0])
            if old_second == second:
                return
            filed = self._files.get(old_second)
            if filed is not None:
                filed.discard(lease_id)
        filed = self._files.get(second)
        if filed is None:
            filed = self._files[second] = set()
            heapq.heappush(self._seconds, second)
        filed.add(lease_id)

    def discard(self, lease_id: str) -> None:
        """The lease is closed (reported, released, expired): it has no deadline any more."""
        previous = self._at.pop(lease_id, None)
        if previous is not None:
            filed = self._files.get(math.ceil(previous[0]))
            if filed is not None:
                filed.discard(lease_id)

    def pop_due(self, now: float) -> Iterator[tuple[float, str, str]]:
        """Removes and yields (deadline, lease id, study) of every lease whose deadline is
        before `now`, by second (in no particular order within one)."""
        seconds, files, at = self._seconds, self._files, self._at
        while seconds and seconds[0] - 1 < now:
            second = seconds[0]
            filed = files.get(second, set())
            due = [lease_id for lease_id in filed if at[lease_id][0] < now]
            for lease_id in due:
                filed.discard(lease_id)
                deadline, study = at.pop(lease_id)
                yield deadline, lease_id, study
            if filed:           # the rest of this second is still to come
                return
            heapq.heappop(seconds)
            files.pop(second, None)


def due_leases(queue: DeadlineQueue, now: float, current: Callable[[str, str], float | None]) -> list[tuple[str, str]]:
    """(lease id, study) of the leases whose deadline has passed, each once, earliest second first.

    `current(lease_id, study)` is the lease's deadline as memory has it now, or None when it
    is no longer active: a closed lease is left out, and one whose deadline memory has later
    than the queue (extended without a `push`) is filed again under that deadline.
    """
    due: dict[str, str] = {}
    later: list[tuple[float, str, str]] = []
    for _, lease_id, study in queue.pop_due(now):
        now_deadline = current(lease_id, study)
        if now_deadline is None:
            continue
        if now_deadline < now:
            due[lease_id] = study
        else:
            later.append((now_deadline, lease_id, study))
    for deadline, lease_id, study in later:
        queue.push(deadline, lease_id, study)
    return list(due.items())
