"""Group commit: many requests share one SQLite commit, and none is answered before it.

Every request handled in the same turn of the event loop writes into one open transaction
(each as its own savepoint); the first one to ask for durability schedules a commit right
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
        self._pending: asyncio.Future[None] | None = None

    async def durable(self) -> None:
        """Returns once everything written so far is committed."""
        if not self.store.uncommitted:
            return
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_later(self.delay, self._commit)
        await asyncio.shield(self._pending)

    def _commit(self) -> None:
        pending, self._pending = self._pending, None
        try:
            self.store.commit_batch()
        except Exception as exc:
            # Memory already holds what the disk refused: stop, and let a restart rebuild
            # the state from what is really committed.
            log.critical("commit failed, stopping the coordinator: %s", exc)
            if pending is not None:
                pending.set_exception(exc)
            os._exit(70)
        if pending is not None:
            pending.set_result(None)

    def flush(self) -> None:
        """Commits now (for writers outside a request, e.g. the lease reaper)."""
        if self._pending is not None:
            self._commit()
        else:
            self.store.commit_batch()
