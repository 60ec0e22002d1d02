"""Keeps Python's cyclic garbage collector from stalling the event loop over the whole swarm.

A full collection visits every tracked object: at 100,000 workers (their records, presences,
leases, and the calls of idle long-polls) that is 1-2 million objects and 300-500 ms of the
loop on a 2-core machine, a stall every request in flight pays, every minute or so once idle
long-polls keep moving objects into the oldest generation. Long-lived state needs no such
visits: `gc.freeze()` moves everything alive to a permanent generation that collections skip.

So the coordinator freezes after it has loaded its state, and again whenever the objects
that collections still visit pass `max_unfrozen`. The bound is kept small (50,000 objects, a
few tens of ms for a full collection on a busy 2-core machine) because every collection of the
oldest generation is a stall of the loop: at 100,000 workers about 200,000 new long-lived
objects a minute (the calls of idle long-polls, leases, presences) reach it, and a bound of
200,000 meant 4 full collections a minute of 150-800 ms each, which alone made the p99 lease
latency 0.7 s (benchmarks/README.md, "Swarm size"). A freeze collects only the young
generations first (cheap); the oldest one is collected by the collector's own full
collections, which run often while it holds few objects, so little garbage is frozen. Objects
frozen while alive that later die inside a reference cycle are not reclaimed until the next
thaw: every `thaw_every` seconds everything is unfrozen and collected once, one stall of a
full collection per thaw instead of several a minute.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HeapPolicy:
    """When to freeze and thaw, from how many objects collections visit; pure."""

    max_unfrozen: int = 50_000       # visited objects (oldest generation) that trigger a freeze
    check_every: float = 2.0         # seconds between counts (a count costs ~1 ms per 20,000 objects)
    thaw_every: float = 3600.0       # seconds between thaws

    def action(self, now: float, unfrozen: int, last_thaw: float) -> str:
        """"thaw", "freeze" or "" (nothing), given the objects the oldest generation holds."""
        if now - last_thaw >= self.thaw_every:
            return "thaw"
        return "freeze" if unfrozen > self.max_unfrozen else ""


@dataclass
class HeapKeeper:
    """Applies a `HeapPolicy` to this process's collector; `tick` is called now and then."""

    policy: HeapPolicy = field(default_factory=HeapPolicy)
    clock: Callable[[], float] = field(default=lambda: 0.0)
    freezes: int = 0
    thaws: int = 0
    _last_check: float = -math.inf
    _last_thaw: float = 0.0

    def start(self) -> None:
        """Freezes what the coordinator loaded at start (its workers, studies, leases)."""
        self._last_thaw = self.clock()
        gc.collect()
        gc.freeze()
        self.freezes += 1

    def tick(self) -> str:
        """Counts the visited objects every `check_every` seconds and acts on the policy."""
        now = self.clock()
        if now - self._last_check < self.policy.check_every:
            return ""
        self._last_check = now
        action = self.policy.action(now, len(gc.get_objects(generation=2)), self._last_thaw)
        if action == "thaw":
            gc.unfreeze()
            self._last_thaw = now
            self.thaws += 1
            gc.collect()          # the one full collection of everything, per thaw
        if action:
            gc.collect(1)         # the young generations only: a full one is the stall this avoids
            gc.freeze()
            self.freezes += 1
        return action
