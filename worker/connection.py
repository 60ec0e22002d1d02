"""The worker's link to the coordinator: stubs, and retrying with backoff while it is away."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from autoswarm.v1 import worker_pb2_grpc

T = TypeVar("T")

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


class Stopped(Exception):
    """The worker is stopping; the retried call was abandoned."""


class Connection:
    """A gRPC channel to the coordinator with a retry helper."""

    def __init__(self, address: str, *, backoff: Backoff | None = None, max_message_bytes: int = 80 << 20,
                 on_state: Callable[[str], None] = lambda state: None) -> None:
        self.address = address
        self.backoff = backoff or Backoff()
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.enable_retries", 0),
        ])
        self.stub = worker_pb2_grpc.WorkerServiceStub(self.channel)
        self._rng = random.Random()
        self._on_state = on_state

    def close(self) -> None:
        self.channel.close()

    def retry(self, call: Callable[[], T], stop: threading.Event, what: str) -> T:
        """Calls until it succeeds or fails for a reason retrying cannot fix (re-raised)."""
        attempt = 0
        while True:
            try:
                result = call()
                if attempt:
                    self._on_state("connected")
                return result
            except grpc.RpcError as exc:
                if exc.code() not in TRANSIENT:
                    raise
                if attempt == 0:
                    self._on_state(f"reconnecting ({what}: {exc.code().name})")
                if stop.wait(self.backoff.delay(attempt, self._rng)):
                    raise Stopped(what) from exc
                attempt = min(attempt + 1, 30)

    def fetch_bundle(self, bundle_hash: str, timeout: float = 600.0) -> Iterator[bytes]:
        from autoswarm.v1 import worker_pb2

        for chunk in self.stub.FetchBundle(worker_pb2.FetchBundleRequest(bundle_hash=bundle_hash), timeout=timeout):
            yield chunk.data
