"""How often the credit standings are rebuilt (coordinator/standings.py)."""

from __future__ import annotations

import asyncio

from autoswarm.coordinator.standings import StandingsBook
from autoswarm.coordinator.store import Store


def test_rebuilds_are_spaced_by_what_a_rebuild_costs_not_by_the_start_of_the_process_that_runs_them(tmp_path):
    """The first rebuild also starts a fresh interpreter (seconds on a busy machine); counted as
    the rebuild's cost, it kept the empty start-up snapshot for up to five times that."""
    Store(tmp_path / "swarm.db").close()
    now = [1000.0]
    book = StandingsBook(tmp_path / "swarm.db", lambda: ([], [], {}), refresh=0.5, clock=lambda: now[0])

    async def two_snapshots() -> tuple[object, object, object]:
        first = await book.snapshot()
        again = await book.snapshot()
        now[0] += 0.6   # past the refresh interval
        return first, again, await book.snapshot()

    try:
        first, again, later = asyncio.run(two_snapshots())
    finally:
        book.close()
    assert again is first, "served while fresh"
    assert later is not first and later.computed == 1000.6, "rebuilt once the refresh interval has passed"
