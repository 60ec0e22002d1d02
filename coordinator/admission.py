"""Join admission: how many workers may join (or come back) per second, and when the rest return.

A coordinator holds a large swarm in its steady state but not every ramp into it: the benchmark
(benchmarks/README.md, "The ramp starts the storm") showed 50,000 workers joining at 150 a second
settle with p99 Lease 45 ms while the same workers at 600 a second tip it into a retry storm it
never leaves. A coordinator restart, when every worker comes back at once, is such a ramp. So a
join past the admitted rate is refused with a time to come back, and those times are spread
out at the admitted rate: a crowd of 10,000 told to come back returns over 10,000 / rate
seconds instead of all at once (and each worker adds jitter of its own).

Pure and clock-driven: `JoinAdmission.ask` takes the time.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class AdmissionConfig:
    """`rate` joins a second (0: no limit) with bursts of `burst`; refusals are told to come back
    within `max_retry` seconds."""

    rate: float = 100.0
    burst: float = 500.0
    max_retry: float = 600.0


@dataclass(frozen=True)
class Verdict:
    """Admitted, or come back in `retry_after` seconds."""

    admitted: bool
    retry_after: float = 0.0


ADMITTED = Verdict(True)


class JoinAdmission:
    """A token bucket for joins, and a queue of promised return times for those refused.

    Admission takes a token (the bucket refills at `rate`, holds at most `burst`). A refusal
    promises the caller the next free place after those already promised, `1 / rate` apart, so
    the returns arrive about as fast as tokens come back. A returning caller still needs a
    token: one that finds none (newcomers took it) is simply told a later place. Places more
    than `max_retry` ahead are not promised: the caller is told `max_retry` (a crowd that large
    comes back spread by its own jitter).
    """

    def __init__(self, config: AdmissionConfig, now: float) -> None:
        self.config = config
        self._tokens = config.burst
        self._updated = now
        self._promised = now   # the last return time handed out
        self.admitted = 0
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.config.rate > 0

    def ask(self, now: float) -> Verdict:
        """One worker asks to join at `now`: the verdict."""
        config = self.config
        if config.rate <= 0:
            return ADMITTED
        self._tokens = min(config.burst, self._tokens + max(0.0, now - self._updated) * config.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.admitted += 1
            return ADMITTED
        self.refused += 1
        # The next free place: after every place already promised, and no sooner than the
        # bucket can have a token for it.
        ready = now + (1.0 - self._tokens) / config.rate if self._tokens < 1.0 else now
        place = max(self._promised + 1.0 / config.rate, ready, now + MIN_RETRY_SECONDS)
        if place - now > config.max_retry:
            return Verdict(False, config.max_retry)
        self._promised = place
        return Verdict(False, place - now)

    def waiting(self, now: float) -> float:
        """Seconds until the last promised return: how far behind the joins are."""
        return max(0.0, self._promised - now)
