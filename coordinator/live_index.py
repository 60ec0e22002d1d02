"""Which workers are connected, per hardware class, kept up to date as they call: no pass over
the swarm. Pure bookkeeping, no I/O, no clock of its own.

A worker is connected until `last heard + the silence it was allowed` (see `liveness`). Each
contact moves the worker's expiry (O(1)); `sweep(now)` takes out the workers whose expiry has
passed, looking only at those (their expiries are filed by the second, so a worker may count
as connected until the end of the second its time ran out in). At 100,000 workers a
full recount took 100-300 ms of the event loop every few seconds, a stall every request in
flight paid; this costs a few dict operations per contact instead.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Set as AbstractSet

_EMPTY: frozenset[str] = frozenset()


class LiveIndex:
    """Members and connected workers of each class, and how many are connected in all."""

    def __init__(self) -> None:
        self._class: dict[str, str] = {}            # worker -> its class
        self._members: dict[str, set[str]] = {}     # class -> its workers
        self._live: dict[str, set[str]] = {}        # class -> its connected workers
        self._until: dict[str, float] = {}          # connected worker -> when it stops counting
        self._files: dict[int, set[str]] = {}       # whole second (ceiling of until) -> workers
        self._seconds: list[int] = []               # the keys of `_files`, as a heap
        self.connected = 0

    def place(self, worker_id: str, hardware_class: str) -> None:
        """A worker belongs to `hardware_class` (registered, moved, or read back at start)."""
        old = self._class.get(worker_id)
        if old == hardware_class:
            return
        if old is not None:
            self._members[old].discard(worker_id)
            if worker_id in self._live.get(old, _EMPTY):
                self._live[old].discard(worker_id)
                self._live.setdefault(hardware_class, set()).add(worker_id)
        self._class[worker_id] = hardware_class
        self._members.setdefault(hardware_class, set()).add(worker_id)

    def heard(self, worker_id: str, until: float) -> None:
        """The worker counts as connected until `until` (it called, or was told a new interval)."""
        cls = self._class.get(worker_id)
        if cls is None:
            return
        previous = self._until.get(worker_id)
        if previous is None:
            self._live.setdefault(cls, set()).add(worker_id)
            self.connected += 1
        else:
            old_second = math.ceil(previous)
            if old_second == math.ceil(until):
                self._until[worker_id] = until
                return
            filed = self._files.get(old_second)
            if filed is not None:
                filed.discard(worker_id)
        self._until[worker_id] = until
        second = math.ceil(until)
        filed = self._files.get(second)
        if filed is None:
            filed = self._files[second] = set()
            heapq.heappush(self._seconds, second)
        filed.add(worker_id)

    def sweep(self, now: float) -> None:
        """Takes out the workers whose time ran out before `now`: O(those), not O(workers)."""
        seconds = self._seconds
        while seconds and seconds[0] <= now:
            second = seconds[0]
            filed = self._files.get(second, set())
            # The second may still hold workers whose time runs out later within it.
            left = {w for w in filed if self._until[w] >= now}
            for worker_id in filed - left if left else filed:
                del self._until[worker_id]
                self._live[self._class[worker_id]].discard(worker_id)
                self.connected -= 1
            if left:
                self._files[second] = left
                break
            heapq.heappop(seconds)
            self._files.pop(second, None)

    def members(self, hardware_class: str) -> AbstractSet[str]:
        """The workers of a class (a live view: read it, do not keep it)."""
        return self._members.get(hardware_class, _EMPTY)

    def live(self, hardware_class: str) -> AbstractSet[str]:
        """The connected workers of a class as of the last `sweep` (a live view, likewise)."""
        return self._live.get(hardware_class, _EMPTY)

    def live_classes(self) -> dict[str, set[str]]:
        """Every class with its connected workers, classes with none left out."""
        return {cls: workers for cls, workers in self._live.items() if workers}
