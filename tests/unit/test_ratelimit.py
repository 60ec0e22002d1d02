"""The per-worker token bucket."""

from autoswarm.coordinator.ratelimit import RateLimiter


def test_bursts_then_refills_at_the_rate_per_key():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [limiter.allow("w1") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("w2"), "another worker has its own bucket"
    now[0] += 0.5  # one token back
    assert limiter.allow("w1") and not limiter.allow("w1")


def test_memory_stays_bounded_with_many_keys():
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=1.0, clock=lambda: now[0], max_keys=100)
    for i in range(1000):
        now[0] += 1.0
        limiter.allow(f"w{i}")
    assert len(limiter._buckets) <= 100


def test_zero_rate_means_unlimited():
    limiter = RateLimiter(rate=0.0, burst=0.0, clock=lambda: 0.0)
    assert all(limiter.allow("w") for _ in range(1000))
