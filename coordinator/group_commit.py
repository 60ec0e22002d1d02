"""Group commit: many requests share one SQLite commit, and none is answered before it.

Every request handled in the same turn of the event loop writes into one open transaction
(each one atomic unit of it); the first one to ask for durability schedules a commit right
after the current turn, and all of them are answered once it has happened. The rule
"committed before acknowledged" holds, at a fraction of the commits.
"""

from __future__ import annotations

import asyncio
import logging
import os

from coordinator.store import Store

log = logging.getLogger("autoswarm.coordinator")


class GroupCommit:
    def __init__(self, store: Store, delay: float = 0.0) -> None:
        self.store = store
        self.delay = delay
        # One future per waiting request, rather than one shared future each request shields:
        # a request that is cancelled cancels only its own, and waking a waiter is one step of
        # the loop instead of two.
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled: asyncio.TimerHandle | asyncio.Handle | None = None

    async def durable(self) -> None:
        """Returns once everything written so far is committed."""
        if not self.store.uncommitted:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._scheduled is None:
            self._scheduled = loop.call_later(self.delay, self._commit) if self.delay > 0 \
                else loop.call_soon(self._commit)
        await waiter

    def _commit(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()  # a no-op when it is the call running now
            self._scheduled = None
        waiters, self._waiters = self._waiters, []
        try:
            self.store.commit_batch()
        except Exception as exc:
            # Memory already holds what the disk refused: stop, and let a restart rebuild
            # the state from what is really committed.
            log.critical("commit failed, stopping the coordinator: %s", exc)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            os._exit(70)
        for waiter in waiters:
            if not waiter.done():  # its request was cancelled meanwhile
                waiter.set_result(None)

    def flush(self) -> None:
        """Commits now (for writers outside a request, e.g. the lease reaper)."""
        self._commit()
