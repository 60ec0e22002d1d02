"""How often the credit standings are rebuilt (coordinator/standings.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os

from autoswarm.coordinator.census import pickled_rows
from autoswarm.coordinator.standings import (
    MAX_TEAM_LABELS, REBUILD_NICENESS, REBUILD_SPACING, Rebuilt, Snapshot, StandingsBook, Team, TeamCredit,
    Volunteer, rebuild_interval, team_credit,
)
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


def test_the_credit_gauges_come_with_each_rebuild_and_pages_read_the_same_snapshot(tmp_path):
    """The rebuild's process sends back the gauges' sums with the snapshot still pickled: what
    the Prometheus gauges show needs no unpickling of every volunteer on the coordinator."""
    Store(tmp_path / "swarm.db").close()
    rows = [("w-1", "box-1", "alice", 1.0, "cpu:x", "idle", False), ("w-2", "box-2", "bob", 2.0, "cpu:x", "idle", False)]
    book = StandingsBook(tmp_path / "swarm.db", lambda: ([], [pickled_rows(rows)], {}), refresh=60.0)

    async def rebuilt_then_read() -> tuple[object, object, object]:
        assert book.teams is None, "nothing before the first rebuild"
        keeping = asyncio.create_task(book.keep_fresh())
        while book.teams is None:
            await asyncio.sleep(0.05)
        keeping.cancel()
        teams = book.teams
        return teams, await book.snapshot(), await book.snapshot()

    try:
        teams, snap, again = asyncio.run(rebuilt_then_read())
    finally:
        book.close()
    assert again is snap, "unpickled once per rebuild"
    assert sorted(snap.volunteers) == ["alice", "bob"] and snap.labels == {"w-1": "box-1", "w-2": "box-2"}
    assert teams == team_credit(snap) and set(teams) == {"none"}, "owners in no team"


def test_team_credit_names_the_top_teams_and_sums_the_rest_as_other():
    volunteers = {f"v{i}": Volunteer(f"v{i}", f"team{i}", False, float(i), 0.5, 1, 0.0, 1, 1, "", (), ())
                  for i in range(MAX_TEAM_LABELS + 3)}
    volunteers["solo"] = Volunteer("solo", "", False, 7.0, 0.25, 0, 0.0, 1, 1, "", (), ())
    teams = {f"team{i}": Team(f"team{i}", 1, float(i), 0.5, 1, 0.0, "") for i in range(MAX_TEAM_LABELS + 3)}
    sums = team_credit(Snapshot(0.0, {}, volunteers, teams))
    assert len(sums) == MAX_TEAM_LABELS + 2 and "team0" not in sums and "team22" in sums
    assert sums["other"] == TeamCredit(0.0 + 1.0 + 2.0, 1.5, 3) and sums["none"] == TeamCredit(7.0, 0.25, 0)


def test_the_rebuilding_process_runs_at_a_lower_priority_than_the_coordinator(tmp_path):
    Store(tmp_path / "swarm.db").close()
    book = StandingsBook(tmp_path / "swarm.db", lambda: ([], [], {}))
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    before = {p.pid for p in multiprocessing.active_children()}
    try:
        asyncio.run(book.snapshot())
        rebuilders = [p.pid for p in multiprocessing.active_children() if p.pid not in before]
        assert rebuilders, "the rebuild ran in a process of its own"
        assert all(os.getpriority(os.PRIO_PROCESS, pid) >= min(mine + REBUILD_NICENESS, 19) for pid in rebuilders)
    finally:
        book.close()


def test_the_rebuild_interval_is_the_refresh_interval_until_twenty_times_a_rebuilds_cost_is_longer():
    assert rebuild_interval(5.0, 0.01) == 5.0, "a small swarm's standings stay seconds fresh"
    assert rebuild_interval(5.0, 0.25) == 5.0 == 20 * 0.25
    assert rebuild_interval(5.0, 4.0) == 80.0, "100,000 volunteers: ~4 s of a core, at most every 80 s"
    assert rebuild_interval(0.0, 4.0) == 0.0, "refresh 0: rebuilt on every read, whatever it costs"
    assert rebuild_interval(5.0, -1.0) == 5.0, "a clock that went backwards costs nothing"
    for cost in (0.001, 0.3, 4.0, 60.0):
        assert cost / rebuild_interval(5.0, cost) <= 1 / REBUILD_SPACING + 1e-12, "never more than ~5% of a core"


def test_a_costly_rebuild_is_served_for_twenty_times_its_cost_loop_part_included(tmp_path):
    """The interval counts what the rebuild cost in its process and what reading the engine cost
    the loop; a page view inside it gets the same snapshot, not a new rebuild."""
    Store(tmp_path / "swarm.db").close()
    now = [1000.0]
    book = StandingsBook(tmp_path / "swarm.db", lambda: ([], [], {}), refresh=5.0, clock=lambda: now[0])

    async def read_after(seconds: float) -> Snapshot:
        now[0] += seconds
        return await book.snapshot()

    try:
        first = asyncio.run(read_after(0.0))
        book._rebuilt = Rebuilt(book._rebuilt.computed, book._rebuilt.snapshot, book._rebuilt.teams, 3.0)
        book._loop_cost = 1.0
        assert book.interval == 80.0
        assert asyncio.run(read_after(79.0)).computed == first.computed, "served for 20 x (3 s + 1 s)"
        assert asyncio.run(read_after(2.0)).computed == 1081.0, "then rebuilt"
    finally:
        book.close()
