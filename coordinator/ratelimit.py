"""Per-worker rate limits: a token bucket per (worker, kind of call). Pure and clock-driven."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allows `rate` calls per second with bursts of `burst`, per key; forgets idle keys.

    Memory is bounded by `max_keys`. The buckets are kept in the order they were last used,
    so making room forgets the longest unused ones first, a tenth of the keys at a time: O(1)
    per call, amortized, however many workers there are. (Scanning every bucket for full ones
    on each new key, as this did before, cost O(keys) per call once a swarm had more than
    `max_keys` keys, which 100,000 workers calling Lease and Report do.) A forgotten bucket
    starts full again; a key unused that long had refilled anyway unless `max_keys` is far
    below the number of keys in use within `burst / rate` seconds.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float], max_keys: int = 250_000) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max(1, max_keys)
        self._buckets: dict[str, _Bucket] = {}   # least recently used first

    def allow(self, key: str) -> bool:
        """Takes one token for `key`; False when the bucket is empty (the call is refused)."""
        if self.rate <= 0:
            return True
        now = self._clock()
        bucket = self._buckets.pop(key, None)   # re-inserted below: last used goes last
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_oldest()
            bucket = _Bucket(self.burst, now)
        self._buckets[key] = bucket
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_oldest(self) -> None:
        # Dicts keep insertion order and `allow` re-inserts on every use: the first keys are
        # the least recently used.
        for key in list(itertools.islice(self._buckets, max(1, self._max_keys // 10))):
            del self._buckets[key]
