"""The worker's link to the coordinator: stubs, and retrying with backoff while it is away."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from autoswarm.channel import RETRY_AFTER_KEY, open_channel
from autoswarm.v1 import worker_pb2_grpc

T = TypeVar("T")
log = logging.getLogger("autoswarm.worker")

# Errors that mean "try again later", not "your request is wrong".
TRANSIENT = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.maximum, self.initial * self.factor ** attempt))


MAX_ATTEMPT = 30   # past this many failures in a row the delay stays at its cap anyway
MAX_RETRY_AFTER = 3600.0          # what a coordinator may ask at most: a bad value must not park a worker for good
RETRY_AFTER_JITTER = 0.25         # come back up to this share later than told: a crowd told alike spreads out


def retry_after(metadata) -> float | None:
    """The seconds a coordinator asked the caller to wait (its `retry-after` trailing metadata),
    or None when it asked nothing (an older coordinator, or another refusal)."""
    for key, value in metadata or ():
        if key == RETRY_AFTER_KEY:
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return min(seconds, MAX_RETRY_AFTER) if math.isfinite(seconds) and seconds >= 0 else None
    return None


def asked_wait(exc: grpc.RpcError) -> float | None:
    """`retry_after` of a failed call's trailing metadata (sync or asyncio gRPC)."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        return retry_after(trailing() if callable(trailing) else None)
    except Exception:   # a call object without metadata to give (a stand-in, an aborted channel)
        return None


@dataclass
class Attempts:
    """One call site's failures in a row, and how long to wait before its next try.

    The delay grows as `Backoff` says (exponential, full jitter, capped) with each failure in
    a row and starts again from the first after a success; a coordinator that says when to come
    back (`retry-after`, a refused join) is taken at its word, plus jitter. `Connection.retry` retries by it,
    and so do the swarm-size benchmark's simulated workers: a swarm of volunteers whose calls
    fail together spreads its retries out instead of sending them back at once.
    """

    backoff: Backoff = field(default_factory=Backoff)
    failures: int = 0

    def failed(self, rng: random.Random) -> float:
        """Counts a failure; returns the seconds to wait before the next try."""
        delay = self.backoff.delay(self.failures, rng)
        self.failures = min(self.failures + 1, MAX_ATTEMPT)
        return delay

    def told(self, seconds: float, rng: random.Random) -> float:
        """The coordinator said when to come back: that, plus jitter; not a failure of the link."""
        return seconds * (1.0 + rng.uniform(0.0, RETRY_AFTER_JITTER))

    def wait_after(self, exc: grpc.RpcError, rng: random.Random) -> float:
        """Seconds to wait after a transient failure: as the coordinator said, else the backoff."""
        asked = asked_wait(exc)
        return self.told(asked, rng) if asked is not None else self.failed(rng)

    def succeeded(self) -> None:
        self.failures = 0


class HeartbeatSchedule:
    """When the worker heartbeats next: as the coordinator last said, and soon after news.

    The coordinator sends an interval with every lease and heartbeat answer, from the
    worker's leases and the swarm's size; an older coordinator sends none (0), and the last
    one stays. A worker with leases running heartbeats at that interval, counted from its last
    heartbeat, to keep them. One without leases has nothing to keep: while it waits on a
    long-poll, that call is its presence; otherwise (paused, out of hours) it heartbeats at the
    interval. News the coordinator should hear at once (a state change) makes it due now.
    Thread-safe: the heartbeat thread waits on it while slots report what they are doing.
    """

    def __init__(self, interval: float, lease_wait: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.lease_wait = lease_wait
        self._clock = clock
        self._last = clock()
        self._polling = 0
        self._news = False
        self._changed = threading.Condition()

    def told(self, interval: float = 0.0, lease_wait: float = 0.0) -> None:
        """Takes the coordinator's answer; 0 keeps the current value."""
        with self._changed:
            if interval > 0 and interval != self.interval:
                if abs(interval - self.interval) > 0.1 * self.interval:
                    log.info("the coordinator asks for a heartbeat every %.3g s", interval)
                self.interval = interval
                self._changed.notify_all()
            if lease_wait > 0:
                self.lease_wait = lease_wait

    def polling(self, delta: int) -> None:
        """A long-poll starts (+1) or ends (-1)."""
        with self._changed:
            self._polling += delta
            self._changed.notify_all()

    def news(self) -> None:
        """Something the coordinator should hear soon: heartbeat now."""
        with self._changed:
            self._news = True
            self._changed.notify_all()

    def sent(self) -> None:
        """A heartbeat went out (whether or not it arrived); also a lease granted to a worker
        that held none: its deadline is as fresh as a heartbeat would make it."""
        with self._changed:
            self._last = self._clock()
            self._news = False

    def due_in(self, running: int) -> float:
        """Seconds until the next heartbeat; inf while an idle worker's long-poll speaks for it."""
        with self._changed:
            return self._due_in(running)

    def _due_in(self, running: int) -> float:
        if self._news:
            return 0.0
        if not running and self._polling > 0:
            return math.inf
        return max(0.0, self._last + self.interval - self._clock())

    def wait(self, running: Callable[[], int], stop: threading.Event, tick: float = 1.0) -> bool:
        """Blocks until a heartbeat is due; False once `stop` is set.

        Woken early by a new interval, a long-poll's end or news; `tick` bounds each nap so
        that new leases (`running`) and `stop` are noticed without a wake-up of their own.
        """
        with self._changed:
            while not stop.is_set():
                due = self._due_in(running())
                if due <= 0:
                    return True
                self._changed.wait(min(due, tick))
        return False


class Stopped(Exception):
    """The worker is stopping; the retried call was abandoned."""


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the connection's current token to every call as `authorization: Bearer ...`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        token = self.connection.token
        if not token:
            return details
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: list[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class Connection:
    """A gRPC channel to the coordinator with a retry helper.

    `token` is sent with every call: the join token until the worker has registered, then
    the worker's own credential. `ca` turns on TLS (the coordinator's CA certificate).
    """

    def __init__(self, address: str, *, backoff: Backoff | None = None, max_message_bytes: int = 80 << 20,
                 on_state: Callable[[str], None] = lambda state: None, token: str = "",
                 ca: Path | None = None) -> None:
        self.address = address
        self.backoff = backoff or Backoff()
        self.token = token
        self._raw_channel = open_channel(address, ca, max_message_bytes=max_message_bytes)
        self.channel = grpc.intercept_channel(self._raw_channel, _Bearer(self))
        self.stub = worker_pb2_grpc.WorkerServiceStub(self.channel)
        self._rng = random.Random()
        self._on_state = on_state

    def close(self) -> None:
        self._raw_channel.close()

    def retry(self, call: Callable[[], T], stop: threading.Event, what: str) -> T:
        """Calls until it succeeds or fails for a reason retrying cannot fix (re-raised).

        A coordinator that says when to come back (a refused join: `retry-after`) is waited
        for as it says, with jitter; any other transient failure backs off (`Attempts`).
        """
        attempts = Attempts(self.backoff)
        troubled = False
        while True:
            try:
                result = call()
                if troubled:
                    self._on_state("connected")
                return result
            except grpc.RpcError as exc:
                if exc.code() not in TRANSIENT:
                    raise
                if not troubled:
                    self._on_state(f"reconnecting ({what}: {exc.code().name})")
                    troubled = True
                delay = attempts.wait_after(exc, self._rng)
                if asked_wait(exc) is not None:   # told when to come back: not a failure of the link
                    log.info("the coordinator asks to come back later (%s); %s again in %.1f s",
                             exc.details(), what, delay)
                if stop.wait(delay):
                    raise Stopped(what) from exc

    def fetch_bundle(self, bundle_hash: str, timeout: float = 600.0) -> Iterator[bytes]:
        from autoswarm.v1 import worker_pb2

        call = self.stub.FetchBundle(worker_pb2.FetchBundleRequest(bundle_hash=bundle_hash), timeout=timeout)
        try:
            for chunk in call:
                yield chunk.data
        finally:
            call.cancel()  # a reader that stopped early (over the size cap) ends the stream at once
