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


def test_a_full_table_forgets_the_longest_unused_keys_and_keeps_a_busy_one():
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2.0, clock=lambda: now[0], max_keys=100)
    assert limiter.allow("flooder") and limiter.allow("flooder")
    for i in range(1000):  # many other workers, while the flooder keeps calling
        limiter.allow(f"w{i}")
        assert not limiter.allow("flooder"), "its empty bucket must not be forgotten while it is in use"
    assert len(limiter._buckets) <= 100


def test_making_room_forgets_a_tenth_of_the_keys_longest_unused_first():
    # No bucket full: the old limiter found nothing to drop and rescanned every key for each
    # new one. Now a tenth goes at once, so the next 99 newcomers need no room made at all.
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=5.0, clock=lambda: now[0], max_keys=1000)
    for i in range(1000):
        limiter.allow(f"w{i}")
    limiter.allow("newcomer")
    assert len(limiter._buckets) == 1000 - 100 + 1
    assert "w0" not in limiter._buckets and "w999" in limiter._buckets and "newcomer" in limiter._buckets
