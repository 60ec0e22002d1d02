"""Join admission as pure policy, on a fake clock; and the worker honouring its answer."""

import heapq
import random
import threading

import grpc

from autoswarm.coordinator.admission import MIN_RETRY_SECONDS, AdmissionConfig, JoinAdmission
from autoswarm.worker.connection import MAX_RETRY_AFTER, RETRY_AFTER_JITTER, Attempts, Connection, retry_after


def test_a_burst_is_admitted_then_the_rest_are_told_to_come_back_spread_at_the_rate():
    admission = JoinAdmission(AdmissionConfig(rate=10.0, burst=5.0), now=0.0)
    verdicts = [admission.ask(0.0) for _ in range(25)]
    assert [v.admitted for v in verdicts[:5]] == [True] * 5
    refused = verdicts[5:]
    assert not any(v.admitted for v in refused)
    times = [v.retry_after for v in refused]
    assert times == sorted(times) and times[0] >= MIN_RETRY_SECONDS
    # 20 refused at 10 a second: their places cover about two seconds, 0.1 s apart.
    assert all(abs((b - a) - 0.1) < 1e-9 for a, b in zip(times, times[1:]))
    assert admission.admitted == 5 and admission.refused == 20
    assert abs(admission.waiting(0.0) - times[-1]) < 1e-9


def test_a_crowd_that_comes_back_when_told_is_admitted_about_as_fast_as_the_rate():
    """10,000 join at once at 100 a second: all get in within ~the crowd's size / rate, none
    waits forever, and no second has more admissions than the bucket allows."""
    rate, burst, crowd = 100.0, 50.0, 10_000
    admission = JoinAdmission(AdmissionConfig(rate=rate, burst=burst, max_retry=3600.0), now=0.0)
    rng = random.Random(1)
    due = [(0.0, i) for i in range(crowd)]
    admitted_at: dict[int, float] = {}
    while due:
        now, who = heapq.heappop(due)
        verdict = admission.ask(now)
        if verdict.admitted:
            admitted_at[who] = now
        else:
            heapq.heappush(due, (now + verdict.retry_after * rng.uniform(1.0, 1.2), who))
    assert len(admitted_at) == crowd
    last = max(admitted_at.values())
    assert crowd / rate * 0.9 < last < crowd / rate * 1.5
    per_second = [0] * (int(last) + 1)
    for t in admitted_at.values():
        per_second[int(t)] += 1
    assert max(per_second) <= rate + burst + 1   # a token bucket: the rate, and a burst at most


def test_a_quiet_coordinator_admits_at_once_and_the_bucket_refills():
    admission = JoinAdmission(AdmissionConfig(rate=2.0, burst=2.0), now=0.0)
    assert admission.ask(0.0).admitted and admission.ask(0.0).admitted
    assert not admission.ask(0.0).admitted
    assert admission.ask(10.0).admitted, "the bucket refilled long ago"


def test_places_past_the_longest_wait_are_told_the_longest_wait_and_not_promised():
    admission = JoinAdmission(AdmissionConfig(rate=1.0, burst=1.0, max_retry=5.0), now=0.0)
    admission.ask(0.0)
    times = [admission.ask(0.0).retry_after for _ in range(10)]
    assert max(times) == 5.0
    assert admission.waiting(0.0) <= 5.0


def test_zero_rate_admits_everyone():
    admission = JoinAdmission(AdmissionConfig(rate=0.0), now=0.0)
    assert all(admission.ask(0.0).admitted for _ in range(1000))
    assert not admission.enabled


# --- the worker's side: what it does with "come back in N s" ---


class _Refused(grpc.RpcError):
    def __init__(self, metadata=(), code=grpc.StatusCode.RESOURCE_EXHAUSTED) -> None:
        self._metadata, self._code = tuple(metadata), code

    def code(self):
        return self._code

    def details(self):
        return "come back later"

    def trailing_metadata(self):
        return self._metadata


class _Waits(threading.Event):
    """A stop event that records each wait instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return False


def test_retry_after_is_read_from_trailing_metadata_and_bounded():
    assert retry_after((("retry-after", "12.5"),)) == 12.5
    assert retry_after((("other", "1"),)) is None and retry_after(None) is None
    assert retry_after((("retry-after", "soon"),)) is None
    assert retry_after((("retry-after", "-3"),)) is None and retry_after((("retry-after", "nan"),)) is None
    assert retry_after((("retry-after", "1e9"),)) == MAX_RETRY_AFTER


def test_a_worker_told_when_to_come_back_waits_that_long_with_jitter_and_its_backoff_stays_fresh():
    rng = random.Random(3)
    attempts = Attempts()
    delays = [attempts.wait_after(_Refused((("retry-after", "10"),)), rng) for _ in range(50)]
    assert all(10.0 <= d <= 10.0 * (1 + RETRY_AFTER_JITTER) for d in delays)
    assert len(set(delays)) > 40, "a crowd told alike does not come back alike"
    assert attempts.failures == 0, "being told to wait is not a failure of the link"
    assert attempts.wait_after(_Refused(), rng) <= attempts.backoff.initial, "no retry-after: the backoff"
    assert attempts.failures == 1


def test_connection_retry_honours_retry_after_then_returns_the_answer():
    connection = Connection("127.0.0.1:1")
    answers = iter([_Refused((("retry-after", "7"),)), _Refused((("retry-after", "3"),)), "registered"])
    states: list[str] = []
    connection._on_state = states.append

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    stop = _Waits()
    try:
        assert connection.retry(call, stop, "register") == "registered"
    finally:
        connection.close()
    assert 7.0 <= stop.waits[0] <= 7.0 * (1 + RETRY_AFTER_JITTER)
    assert 3.0 <= stop.waits[1] <= 3.0 * (1 + RETRY_AFTER_JITTER)
    assert states == ["reconnecting (register: RESOURCE_EXHAUSTED)", "connected"]
