"""The worker's link to the coordinator: stubs, and retrying with backoff while it is away."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from autoswarm.control import open_channel
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

        call = self.stub.FetchBundle(worker_pb2.FetchBundleRequest(bundle_hash=bundle_hash), timeout=timeout)
        try:
            for chunk in call:
                yield chunk.data
        finally:
            call.cancel()  # a reader that stopped early (over the size cap) ends the stream at once
