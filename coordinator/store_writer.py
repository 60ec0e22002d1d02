"""The store's commits on a thread of their own, so that SQLite's work overlaps the event loop.

SQLite releases the GIL while it runs a statement, and a commit is mostly that: writing the
batch's held rows and its pages into the WAL. On the event loop those microseconds are lost to
every request; on this thread the loop goes on serving while the disk work happens.

One job at a time, in the order submitted, so commits happen in order. The store hands this
thread its connection only while a job runs, and waits for it (`wait_idle`) before it uses the
connection itself (`StoreBase._db`); a request is answered only from `done`, after its commit.
Besides commits, the store queues its WAL catch-up here, after a commit whose `done` has then
already run (`StoreBase._catch_up_wal_if_asked`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("autoswarm.coordinator")

Done = Callable[[BaseException | None], None]


class BatchWriter:
    """Runs submitted jobs one after another on one thread, and tells each one's `done`."""

    def __init__(self, name: str = "store-writer") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Done, bool] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0     # submitted and not finished
        self._commits = 0         # of those, the commits (the others: WAL catch-ups)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self.jobs_done = 0        # for tests and curiosity

    @property
    def busy(self) -> bool:
        """Whether a job is queued or running (the connection is the thread's then)."""
        return self._outstanding > 0

    @property
    def committing(self) -> bool:
        """Whether a commit is queued or running (what was written is not all on disk yet)."""
        return self._commits > 0

    def submit(self, job: Callable[[], None], done: Done, *, commit: bool = True) -> None:
        """Queues `job`; `done(None)` or `done(exc)` runs on the thread once it has finished.
        `commit`: whether the job commits (`committing`), or is other work on the connection."""
        with self._lock:
            self._outstanding += 1
            self._commits += commit
            if not self._started:
                self._started = True
                self._thread.start()
        self._jobs.put((job, done, commit))

    def wait_idle(self) -> None:
        """Blocks until every submitted job has finished (the caller may use the connection then)."""
        with self._idle:
            while self._outstanding:
                self._idle.wait()

    def stop(self) -> None:
        """Finishes the queued jobs, then ends the thread."""
        if self._started:
            self._jobs.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done, commit = item
            failure: BaseException | None = None
            try:
                job()
            except BaseException as exc:   # reported to `done`: the store's owner decides
                failure = exc
            with self._idle:
                self._outstanding -= 1
                self._commits -= commit
                self.jobs_done += 1
                self._idle.notify_all()
            try:
                done(failure)
            except Exception:   # e.g. the event loop closed meanwhile
                log.exception("a store commit's answer could not be delivered")
