"""When each worker must next contact the coordinator: pure arithmetic, no I/O.

A worker's heartbeat has one job that matters for correctness: to reach the coordinator
before its running leases pass their deadlines, with room for a few lost heartbeats. Past
that, every heartbeat is cost — a swarm of 100,000 machines running five-minute evaluations
needs no heartbeat every five seconds. So the interval follows the work (the time left on the
worker's leases) and the swarm's size (the heartbeats per second the coordinator budgets for
everyone together), and it is always short enough for the leases: a lease is kept by
heartbeats, and expires `ttl` after the last one, whatever the interval.

Idle workers do not heartbeat: they wait on one long-poll `Lease`, whose length grows with
the swarm the same way. Presence comes from whatever a worker last sent, and a worker counts
as offline once it has been silent for several of the intervals it was told.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SHORTEST_INTERVAL = 0.2   # seconds: below this a heartbeat costs more than any lease it could save


@dataclass(frozen=True)
class LivenessPolicy:
    """How often workers contact the coordinator; all times in seconds."""

    min_interval: float = 5.0          # never ask for heartbeats more often (--heartbeat-interval)
    max_interval: float = 300.0        # never let a working worker be silent longer
    heartbeat_budget: float = 500.0    # heartbeats per second the whole swarm may send, at most
    tries: int = 3                     # heartbeats that fit in a lease's time left: tries - 1 may be lost
    min_tries: int = 2                 # under load, at least this many still fit
    # A long-poll is woken as soon as work appears, so its length costs no latency; it only
    # bounds how late an idle worker that vanished is noticed, and NAT boxes drop links quiet
    # for more than about 5 minutes: no longer than a working worker's longest silence.
    min_poll: float = 30.0             # an idle worker's long-poll lasts at least this long
    max_poll: float = 300.0            # and at most this long (30,000 idle workers and more: 200 polls/s)
    poll_budget: float = 200.0         # idle long-polls per second the whole swarm may start, at most
    missed: int = 3                    # silent for this many intervals (plus slack): offline
    offline_slack: float = 5.0

    def spread(self, connected: int) -> float:
        """The interval the swarm's size affords: `connected` workers within the heartbeat budget."""
        return max(self.min_interval, connected / self.heartbeat_budget)

    def heartbeat_interval(self, now: float, deadlines: Iterable[float], connected: int) -> float:
        """Seconds until a worker should next heartbeat, given its leases' deadlines.

        A long lease needs few heartbeats (its time left / `tries`); a big swarm stretches them
        further (`spread`); but the interval never leaves fewer than `min_tries` heartbeats
        before the nearest deadline, nor exceeds `max_interval`. A worker without leases has
        nothing to keep alive and heartbeats only for presence, at the swarm's pace.
        """
        earliest = min(deadlines, default=None)
        spread = self.spread(connected)
        if earliest is None:
            return max(SHORTEST_INTERVAL, min(self.max_interval, max(spread, self.idle_interval(connected))))
        room = max(earliest - now, 0.0)
        interval = min(max(spread, room / self.tries), room / self.min_tries, self.max_interval)
        return max(SHORTEST_INTERVAL, interval)

    def idle_interval(self, connected: int) -> float:
        """How long an idle worker may go between contacts (its long-poll, or a paused worker's heartbeat)."""
        return self.poll_seconds(connected)

    def poll_seconds(self, connected: int) -> float:
        """How long an idle worker's long-poll should last: long enough that idle workers
        together start at most `poll_budget` polls a second."""
        return min(self.max_poll, max(self.min_poll, connected / self.poll_budget))

    def allowed_silence(self, interval: float) -> float:
        """How long a worker told to come back within `interval` may be silent and still count as connected."""
        return self.missed * interval + self.offline_slack

    def restart_room(self, lease_ttl: float, grace: float) -> float:
        """Time a running lease gets after the coordinator restarts: a worker may have been
        told to heartbeat up to half a lease's lifetime later, and downtime must not count."""
        return grace + min(self.max_interval, lease_ttl / self.min_tries)
