"""How often the credit standings are rebuilt (coordinator/standings.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os

from autoswarm.coordinator.census import pickled_rows
from autoswarm.coordinator.standings import (
    MAX_TEAM_LABELS, REBUILD_NICENESS, Snapshot, StandingsBook, Team, TeamCredit, Volunteer, team_credit,
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
