"""A worker's SIGTERM/SIGINT handling: the request leaves the signal handler at once."""

from __future__ import annotations

import os
import signal
import threading
import time

from autoswarm.worker.stop_signals import StopSignals


class LockedWorker:
    """Takes its lock in request_stop, as Worker.request_stop does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[bool] = []

    def request_stop(self, immediate: bool = False) -> None:
        with self.lock:
            self.calls.append(immediate)


def test_signals_arriving_while_the_worker_holds_its_lock_stop_it_in_order_without_a_deadlock():
    worker = LockedWorker()
    previous = {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS}
    try:
        StopSignals(worker).install()
        with worker.lock:
            # The handlers run here, in this thread, while it holds the lock: a handler that
            # called request_stop itself would wait for this thread forever.
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # lets the interpreter run the handlers before the lock is let go
            assert worker.calls == []
        deadline = time.monotonic() + 10
        while len(worker.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.calls == [False, True], "the first finishes running work, the second stops now"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
