"""SIGTERM and SIGINT for a worker process: the first finishes running work, a second stops now.

A Python signal handler runs in the main thread between two bytecodes: in the middle of
whatever the main thread was doing, including a `with lock:` block or the handler of the
previous signal. `Worker.request_stop` takes the worker's locks and calls the coordinator
(to release leases), so called from a handler it can wait forever for a lock its own thread
holds — a second SIGTERM sent right after the first then hangs the worker instead of stopping
it. So the handler only queues the request (`queue.SimpleQueue.put` is safe in a signal
handler) and a thread of its own hands each request, in order, to the worker.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterable
from typing import Protocol


class Stoppable(Protocol):
    def request_stop(self, immediate: bool = False) -> None: ...


class StopSignals:
    """Installs the handlers on `install()`; `requests` counts the signals received."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, worker: Stoppable, signals: Iterable[signal.Signals] = SIGNALS) -> None:
        self.worker = worker
        self.signals = tuple(signals)
        self.requests = 0
        self._queue: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="stop-signals", daemon=True)

    def install(self) -> StopSignals:
        self._thread.start()
        for sig in self.signals:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requests += 1
        self._queue.put(self.requests > 1)

    def _serve(self) -> None:
        while True:
            self.worker.request_stop(immediate=self._queue.get())
