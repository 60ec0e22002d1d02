"""What a worker's call may still be given, from the time left on its deadline: pure, no I/O.

An overloaded coordinator (or the network, or a worker's own busy machine) delays calls on
their way in and their answers on the way back, and each call carries its caller's deadline
(gRPC's `time_remaining()` at the handler says how much of it is left). Two things then go
wrong unless the handler looks at that deadline:

- A long-poll held for as long as it asked answers after its caller has given up: the call
  ends CANCELLED, and the worker retries it, so a slow coordinator gets more calls, not
  fewer (the retry storm of benchmarks/README.md, "Seventh session"). A poll is therefore
  held for what it asked, at most `max_wait`, and always ends a margin before its deadline;
  one that reaches its handler with too little left to be worth holding is answered at once
  ("come back", with the next poll's length and the heartbeat interval the coordinator wants).
- A task handed to a call whose deadline is (nearly) past reaches nobody, and stays leased
  until its lease expires: a lease lifetime (minutes to an hour) in which nobody runs it.
  So no task is leased for a call with less than `task_margin` left: it hears "no task", as
  it would from an empty queue, and polls again.

A call without a deadline (`None`) is held for what it asked and may be given a task.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeadlinePolicy:
    """How close to its deadline a call may be held or given a task; seconds."""

    max_wait: float = 300.0       # the longest hold a worker may ask (the coordinator suggests less)
    margin: float = 5.0           # a held poll ends this long before its deadline at least...
    margin_share: float = 0.2     # ... or this share of the time left, whichever is less
    min_hold: float = 1.0         # a hold the deadline cuts below this is not worth it: answer at once
    task_margin: float = 1.0      # a task needs at least this long left for its answer to arrive

    def hold(self, asked: float, left: float | None) -> float:
        """Seconds a long-poll that asked for `asked` may be held, its deadline `left` away."""
        wait = min(max(asked, 0.0), self.max_wait)
        if left is None:
            return wait
        room = max(0.0, left - min(self.margin, left * self.margin_share))
        if room >= wait:
            return wait
        return room if room >= self.min_hold else 0.0

    def may_hand_out(self, left: float | None) -> bool:
        """Whether a task may be leased for a call whose deadline is `left` away."""
        return left is None or left >= self.task_margin


DEADLINES = DeadlinePolicy()
