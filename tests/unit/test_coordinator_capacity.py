"""The coordinator's fast paths keep its rules: durability, one unit per request, same answers.

These cover what was changed for capacity (benchmarks/coordinator_throughput.py): the WAL
checkpoint on its own thread, single-statement units without savepoints, the cycle's rows held
until the commit and committed on a writer thread, group commit with one future per waiter, growing lease ids, the baseline index of active leases, the one-pass
hardware-class refresh, the bounded liveness flush, the reaper's deadline queue and the
collector kept off long-lived objects. None of them times anything.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import replace

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.deadlines import DeadlineQueue, due_leases
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn
from autoswarm.coordinator.group_commit import GroupCommit
from autoswarm.coordinator.heap import HeapKeeper, HeapPolicy
from autoswarm.coordinator.records import TokenRecord
from autoswarm.coordinator.store import LeaseRecord, ResultRecord, Store, VersionRecord, WalCheckpointer
from autoswarm.coordinator.store_base import StoreFailed
from autoswarm.coordinator.study_state import ActiveLeases
from swarm import Clock, write_study


def _initial() -> VersionRecord:
    return VersionRecord("s", "h0", "", b"X = 1\n", "initial version", "study", 1.0)


def _lease(lease_id: str, kind: str = "explore", candidate: str = "", worker: str = "w") -> LeaseRecord:
    return LeaseRecord(lease_id, "s", worker, kind, "h0", candidate, 1, 0.0, 9.0, "active", None)


def _wal_frames(path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def test_the_checkpoint_thread_empties_the_wal_and_loses_nothing(tmp_path):
    db = tmp_path / "swarm.db"
    store = Store(db, group_commit=True, autocheckpoint_pages=0)  # no checkpoint inside a commit
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    for i in range(300):
        store.insert_lease(_lease(f"l-{i:04d}"))
        store.commit_batch()
    checkpointer = WalCheckpointer(db, interval=0.01, restart_frames=1)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # What the WAL held is in the database file now: a copy of that file alone has it.
        shutil.copyfile(db, tmp_path / "copy.db")
        store.insert_lease(_lease("l-last"))  # the first write after a full checkpoint starts the WAL over
        store.commit_batch()
    finally:
        checkpointer.stop()
    assert checkpointer.checkpoints >= 2
    assert _wal_frames(db) < 10, "the WAL started over instead of growing"
    with closing(sqlite3.connect(tmp_path / "copy.db")) as copy:
        assert copy.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 300
    store.close()


def test_the_writer_starts_the_wal_over_between_its_commits_without_a_restart_checkpoint(tmp_path):
    """With the store given, the checkpoint thread never runs a RESTART (which held commits off
    while SQLite's busy handler slept): the store's writer catches up between two background
    commits, and the WAL starts over while commits go on, nothing lost."""
    db = tmp_path / "swarm.db"
    store = Store(db, group_commit=True, autocheckpoint_pages=0)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    modes: list[str] = []

    class Recording:   # the checkpoint thread's connection, noting each checkpoint's mode
        def __init__(self, inner):
            self.inner = inner

        def execute(self, sql, *args):
            modes.append(sql)
            return self.inner.execute(sql, *args)

    checkpointer = WalCheckpointer(db, interval=0.005, restart_frames=1, store=store)
    plain = checkpointer.checkpoint
    checkpointer.checkpoint = lambda conn: plain(Recording(conn))
    checkpointer.start()
    done = threading.Event()
    try:
        deadline = time.monotonic() + 10
        i = 0
        while (store.wal_catch_ups < 3 or _wal_frames(db) >= 10) and time.monotonic() < deadline:
            store.insert_lease(_lease(f"l-{i:05d}"))
            i += 1
            done.clear()
            store.commit_in_background(lambda failure: done.set())
            done.wait(5)
            time.sleep(0.002)
    finally:
        checkpointer.stop()
    assert store.wal_catch_ups >= 3, "the writer never caught the checkpoint up"
    assert not any("RESTART" in sql for sql in modes), "the checkpoint thread ran a RESTART"
    assert _wal_frames(db) < 10, "the WAL grew instead of starting over"
    assert _rows(db, "SELECT COUNT(*) FROM leases") == [(i,)]
    store.close()


def test_a_commits_waiters_are_answered_before_its_wal_catch_up_runs(tmp_path):
    """The catch-up asked by the checkpoint thread runs after the commit it follows, as a job of
    its own: that commit's requests are answered while it runs (here: while it is held), and a
    request with nothing to commit does not wait for it either; the catch-up then runs, once."""
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    group = GroupCommit(store)
    started, release = threading.Event(), threading.Event()
    plain = store._catch_up_wal

    def held() -> None:   # the catch-up, held until the test lets it go
        started.set()
        release.wait(30)
        plain()

    store._catch_up_wal = held
    store.ask_wal_catch_up()

    async def main() -> tuple[bool, int, bool]:
        store.insert_lease(_lease("l-1"))
        await asyncio.wait_for(group.durable(), 30)   # answered with the catch-up still held
        caught_up_meanwhile = store.wal_catch_ups
        await asyncio.wait_for(group.durable(), 30)   # nothing to commit: no wait either
        return started.wait(30), caught_up_meanwhile, store.uncommitted

    try:
        assert asyncio.run(main()) == (True, 0, False)
    finally:
        release.set()
    store.commit_batch()   # waits for the writer, the catch-up included
    assert store.wal_catch_ups == 1
    assert not store.wal_catch_up_asked
    assert _rows(tmp_path / "swarm.db", "SELECT id FROM leases") == [("l-1",)]
    store.close()


def test_a_checkpoint_failure_does_not_stop_the_thread(tmp_path):
    checkpointer = WalCheckpointer(tmp_path / "missing-dir" / "swarm.db", interval=0.01)
    checkpointer.start()  # every round fails to even connect: it says so and tries again
    time.sleep(0.05)
    assert checkpointer.alive
    checkpointer.stop()
    assert not checkpointer.alive


def _token(token_hash: str) -> TokenRecord:
    return TokenRecord(token_hash, "join", "alice", "", "", 1.0, False)


def _rows(path, sql: str) -> list[tuple]:
    """What another connection sees on disk."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def test_a_refused_unit_that_runs_now_leaves_the_rest_of_the_batch(tmp_path):
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.insert_lease(_lease("l-1"))        # held for the commit
    store.add_token(_token("t1"))            # runs now: the held lease is written first
    with pytest.raises(sqlite3.IntegrityError):
        store.add_token(_token("t1"))        # same hash: refused, alone
    store.insert_lease(_lease("l-2"))
    store.commit_batch()
    store.close()
    reopened = Store(tmp_path / "swarm.db")
    assert [lease.id for lease in reopened.active_leases("s")] == ["l-1", "l-2"]
    assert [t.hash for t in reopened.tokens()] == ["t1"]


def test_a_refused_held_row_fails_its_batch_and_the_store_refuses_all_use_after(tmp_path):
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    store.insert_lease(_lease("l-1"))
    store.insert_lease(_lease("l-1"))   # a bug's duplicate key: held, so refused only at the commit
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_batch()
    with pytest.raises(StoreFailed):
        store.lease("l-1")
    failures: list[BaseException | None] = []
    store.commit_in_background(failures.append)
    assert isinstance(failures[0], StoreFailed), "a background commit is refused too, at once"
    assert _rows(tmp_path / "swarm.db", "SELECT id FROM leases") == [], "nothing of the batch is on disk"


def test_a_report_without_consequences_is_three_rows_held_until_the_commit(tmp_path):
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.insert_lease(_lease("l-1"))
    store.insert_lease(_lease("l-2"))
    store.commit_batch()
    result = ResultRecord("l-1", "s", "explore", "w", "w", "c", "h1", "h0", "ok", 1.0, {}, "", "", "discard", {}, 5.0)
    candidate = VersionRecord("s", "h1", "h0", b"X = 2\n", "", "w", 5.0)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.record_result(result, versions=[candidate])
    store.insert_lease(_lease("l-3"))
    store.record_result(replace(result, id="l-2"))
    assert statements == [], "nothing runs before the commit"
    assert store.uncommitted
    assert store.lease("l-1").state == "reported", "a read in the batch sees its held rows"
    store._db.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and not any("SAVEPOINT" in s for s in statements)
    store.commit_batch()
    store.close()
    reopened = Store(tmp_path / "swarm.db")
    assert {lease.id: lease.state for lease in reopened.leases("s")} == {
        "l-1": "reported", "l-2": "reported", "l-3": "active"}
    assert reopened.version("s", "h1") is not None
    assert [r.id for r in reopened.results("s")] == ["l-1", "l-2"]


def test_a_background_commit_answers_once_its_rows_are_on_disk_and_the_store_waits_for_it(tmp_path):
    path = tmp_path / "swarm.db"
    store = Store(path, group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    seen: list[list[tuple]] = []
    answered = threading.Event()

    def done(failure: BaseException | None) -> None:
        assert failure is None
        seen.append(_rows(path, "SELECT id, state FROM leases ORDER BY id"))   # from the disk, not memory
        answered.set()

    for i in range(50):
        store.insert_lease(_lease(f"l-{i:02d}"))
    store.record_result(ResultRecord("l-00", "s", "explore", "w", "w", "c", "h0", "h0", "ok", 1.0, {}, "", "", "discard",
                                     {}, 5.0))
    store.commit_in_background(done)
    assert store.lease("l-49") is not None, "the loop's next statement waits for the writer's commit"
    assert answered.wait(30)
    assert len(seen[0]) == 50 and seen[0][0] == ("l-00", "reported")
    store.insert_lease(_lease("l-50"))
    store.commit_in_background(lambda failure: None)
    store.close()   # finishes the background commit first
    assert len(_rows(path, "SELECT id FROM leases")) == 51


def test_old_lease_indexes_are_replaced_by_the_partial_one(tmp_path):
    db = tmp_path / "swarm.db"
    Store(db).close()
    with closing(sqlite3.connect(db)) as raw:  # a database made before: the two old indexes
        raw.execute("DROP INDEX leases_open")
        raw.execute("CREATE INDEX leases_active ON leases (state, deadline)")
        raw.execute("CREATE INDEX leases_worker ON leases (worker_id, state)")
        raw.commit()
    store = Store(db)
    names = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='leases'")}
    assert "leases_open" in names and not names & {"leases_active", "leases_worker"}
    store.insert_lease(LeaseRecord("l-1", "s", "w", "explore", "h0", "", 1, 0.0, 5.0, "active", None))
    store.insert_lease(LeaseRecord("l-2", "s", "w", "explore", "h0", "", 1, 0.0, 50.0, "active", None))
    assert [lease.id for lease in store.overdue_leases(10.0)] == ["l-1"]
    store.close_leases(["l-1"], "expired", 11.0)
    assert store.overdue_leases(100.0) == [store.lease("l-2")]


def test_lease_ids_are_unique_and_grow_even_when_the_clock_stands_still(tmp_path):
    store = Store(tmp_path / "swarm.db")
    ids = [store.new_lease_id(1_800_000_000.0) for _ in range(1000)] + [store.new_lease_id(1_800_000_001.0)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 22 and i.startswith("l-") and int(i[2:], 16) >= 0 for i in ids)
    assert [i[:16] for i in ids] == sorted(i[:16] for i in ids)


@pytest.mark.parametrize("writer_thread", [True, False])
def test_group_commit_answers_every_waiter_after_one_commit(tmp_path, writer_thread):
    commits: list[float] = []
    store = Store(tmp_path / "swarm.db", group_commit=True, on_commit=commits.append, writer_thread=writer_thread)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    commits.clear()
    group = GroupCommit(store)

    async def request(i: int) -> bool:
        store.insert_lease(_lease(f"l-{i}"))
        await group.durable()
        on_disk = (f"l-{i}",) in _rows(tmp_path / "swarm.db", "SELECT id FROM leases")  # another connection's view
        return on_disk and not store.uncommitted

    async def main() -> list[bool]:
        return await asyncio.gather(*(request(i) for i in range(5)))

    assert asyncio.run(main()) == [True] * 5
    assert len(commits) == 1, "five requests of one turn share one commit"


def test_a_cancelled_waiter_does_not_hold_up_the_others(tmp_path):
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    group = GroupCommit(store, delay=0.05)

    async def main() -> bool:
        store.insert_lease(_lease("l-1"))
        doomed = asyncio.ensure_future(group.durable())
        kept = asyncio.ensure_future(group.durable())
        await asyncio.sleep(0)
        doomed.cancel()
        await kept
        return doomed.cancelled() and not store.uncommitted

    assert asyncio.run(main())


def test_flush_commits_now_and_answers_whoever_waits(tmp_path):
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    group = GroupCommit(store, delay=60.0)  # only the flush can answer in time

    async def main() -> bool:
        waiting = asyncio.ensure_future(group.durable())
        await asyncio.sleep(0)
        group.flush()
        await asyncio.wait_for(waiting, 5)
        return not store.uncommitted

    assert asyncio.run(main())


def test_after_a_big_batch_the_next_commit_waits_for_the_window_and_after_a_small_one_not(tmp_path):
    store = Store(tmp_path / "swarm.db", group_commit=True)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    store.commit_batch()
    group = GroupCommit(store, busy_window=3600.0, busy_batch=3)

    async def request(lease_id: str) -> None:
        store.insert_lease(_lease(lease_id))
        await asyncio.wait_for(group.durable(), 30)

    async def main() -> tuple[bool, bool, bool]:
        await request("l-1")  # a batch of one: the next is not held back
        await request("l-2")
        quiet = not store.uncommitted
        await asyncio.gather(request("l-3"), request("l-4"), request("l-5"))  # a big batch
        store.insert_lease(_lease("l-6"))
        before = group.commits
        held_up = asyncio.ensure_future(group.durable())
        for _ in range(5):
            await asyncio.sleep(0)
        held = group.commits == before and not held_up.done() and store.uncommitted
        group.flush()
        await asyncio.wait_for(held_up, 30)
        return quiet, held, not store.uncommitted

    assert asyncio.run(main()) == (True, True, True)


def test_active_leases_index_their_baselines_through_every_change():
    active = ActiveLeases()
    active["a"] = _lease("a", "baseline", "v1")
    active["b"] = _lease("b", "baseline", "v1")
    active["c"] = _lease("c", "explore")
    active.setdefault("d", _lease("d", "baseline", "v2"))
    assert {lease.id for lease in active.baselines_of("v1")} == {"a", "b"}
    active["a"] = _lease("a", "baseline", "v2")          # replaced (a heartbeat's new deadline)
    assert [lease.id for lease in active.baselines_of("v1")] == ["b"]
    assert active.pop("b").id == "b" and active.pop("b", None) is None
    del active["d"]
    assert active.baselines_of("v1") == [] and [lease.id for lease in active.baselines_of("v2")] == ["a"]
    with pytest.raises(KeyError):
        active.pop("nope")
    active.update({"e": _lease("e", "baseline", "v1")})
    assert [lease.id for lease in active.baselines_of("v1")] == ["e"]
    active.clear()
    assert active.baselines_of("v2") == [] and len(active) == 0


def _hardware(cpu: str) -> dict:
    return {"cpu_model": cpu, "cpu_cores": 2, "gpus": []}


def test_paired_baselines_in_flight_are_counted_per_class(tmp_path):
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(), clock=clock)
    study = write_study(tmp_path / "study", direction="minimize", timeout=10,
                        acceptance='compare = "paired"\nbaseline_runs = 2')
    engine.add_study(pack_directory(study).data)
    a1, _ = engine.register("", "a1", _hardware("Alpha"), 1, ["params"])
    a2, _ = engine.register("", "a2", _hardware("Alpha"), 1, ["params"])
    b1, _ = engine.register("", "b1", _hardware("Beta"), 1, ["params"])
    assert engine.lease(a1).kind == "baseline" and engine.lease(a2).kind == "baseline"
    assert engine.lease(b1).kind == "baseline", "the other class's baselines in flight do not count for Beta"


def test_classes_and_liveness_are_refreshed_for_every_class_at_once(tmp_path):
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(heartbeat_interval=5.0), clock=clock)
    a, cls_a = engine.register("", "a", _hardware("Alpha"), 1, ["params"])
    b, cls_b = engine.register("", "b", _hardware("Beta"), 1, ["params"])
    members, live, live_classes = engine._classes(cls_a, clock.now)
    assert members == {a} and live == {a} and live_classes == {cls_a, cls_b}
    clock.now += 100  # both silent since: offline
    engine._seen(b)
    members, live, live_classes = engine._classes(cls_b, clock.now)
    assert members == {b} and live == {b} and live_classes == {cls_b}
    assert engine._classes(cls_a, clock.now) == (frozenset({a}), frozenset(), frozenset({cls_b}))


def test_liveness_is_written_in_bounded_rounds(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "swarm.db")
    engine = Engine(store, EngineConfig(), clock=clock)
    ids = [engine.register("", f"w{i}", _hardware("Alpha"), 1, ["params"])[0] for i in range(5)]
    clock.now += 10
    for worker in ids:
        engine.heartbeat(worker, [], "working")
    assert engine.flush_presence(max_rows=2) == 3
    assert engine.flush_presence(max_rows=2) == 1
    assert engine.flush_presence() == 0
    assert {(w.state, w.last_seen) for w in store.workers()} == {("working", clock.now)}


def test_the_deadline_queue_yields_each_due_lease_once_at_its_current_deadline():
    queue = DeadlineQueue()
    deadlines = {"a": 10.0, "b": 20.0, "c": 5.0, "d": 7.0}
    for lease_id, deadline in deadlines.items():
        queue.push(deadline, lease_id, "s")
    deadlines["a"] = 30.0          # extended: it moves to its new deadline
    queue.push(30.0, "a", "s")
    del deadlines["c"]             # reported, and memory let go of it behind the queue's back
    del deadlines["d"]             # reported, and the queue was told
    queue.discard("d")
    assert len(queue) == 3
    queue.push(12.0, "b", "s")     # the queue holds an earlier deadline than memory: b is filed again
    current = lambda lease_id, study: deadlines.get(lease_id)  # noqa: E731
    assert due_leases(queue, 15.0, current) == []
    assert len(queue) == 2, "c was dropped when it came due, b filed again under 20"
    assert due_leases(queue, 25.0, current) == [("b", "s")]
    assert len(queue) == 1 and due_leases(queue, 31.0, current) == [("a", "s")]
    assert len(queue) == 0 and due_leases(queue, 1e9, current) == []


def test_the_deadline_queue_splits_a_second_at_now():
    queue = DeadlineQueue()
    for lease_id, deadline in {"early": 10.2, "late": 10.8, "next": 11.5}.items():
        queue.push(deadline, lease_id, "s")
    current = {"early": 10.2, "late": 10.8, "next": 11.5}.get
    assert due_leases(queue, 10.5, lambda lease_id, study: current(lease_id)) == [("early", "s")]
    assert due_leases(queue, 10.5, lambda lease_id, study: current(lease_id)) == []
    assert sorted(due_leases(queue, 12.0, lambda lease_id, study: current(lease_id))) == [("late", "s"), ("next", "s")]


def test_the_deadline_queue_holds_one_entry_per_lease_however_often_it_is_extended():
    queue = DeadlineQueue()
    for step in range(1000):
        for lease_id in ("a", "b", "c"):
            queue.push(100.0 + step * 0.7, lease_id, "s")
    assert len(queue) == 3
    assert len(queue._seconds) <= 1000, "one heap entry per second filed, not per extension"
    last = 100.0 + 999 * 0.7
    assert due_leases(queue, last, lambda lease_id, study: last) == [], "not due before its last deadline"
    assert sorted(due_leases(queue, last + 0.1, lambda lease_id, study: last)) == [("a", "s"), ("b", "s"), ("c", "s")]
    assert len(queue) == 0


def test_the_reaper_expires_each_lease_once_through_extensions_and_reports(tmp_path):
    clock = Clock()
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig(lease_factor=1.0, lease_grace=5.0), clock=clock)
    engine.add_study(pack_directory(write_study(tmp_path / "study", direction="minimize", timeout=10)).data)
    seed, _ = engine.register("", "seed", _hardware("Alpha"), 1, ["params"])
    first = engine.lease(seed)
    engine.report(seed, first.lease_id, ResultIn("ok", 1.0, {}, b"", "", "", {}))
    workers = [engine.register("", f"w{i}", _hardware("Alpha"), 1, ["params"])[0] for i in range(40)]
    leases = {w: engine.lease(w).lease_id for w in workers}   # ttl 10 x 1 + 5 = 15 s
    kept, silent, done = workers[:10], workers[10:30], workers[30:]
    for step in range(30):   # the kept ones heartbeat every 5 s for 150 s: many stale entries
        clock.now += 5.0
        for w in kept:
            assert engine.heartbeat(w, [leases[w]], "working").cancelled == []
        if step == 0:
            for w in done:
                engine.report(w, leases[w], ResultIn("ok", 2.0, {}, b"X = 3\n", "", "", {}))
        expired = engine.expire_overdue()
        if step == 3:   # 20 s after their lease, 5 s past its deadline: the silent ones go, once
            assert sorted(lease.id for lease in expired) == sorted(leases[w] for w in silent)
        else:
            assert expired == [], f"step {step}"
        in_flight = engine.study_summaries()[0].in_flight
        assert len(engine.leasing._deadlines) == in_flight, "one entry per active lease, none stale"
    assert {s.in_flight for s in engine.study_summaries()} == {len(kept)}
    clock.now += 16.0
    assert sorted(lease.id for lease in engine.expire_overdue()) == sorted(leases[w] for w in kept)


def test_the_heap_policy_freezes_past_its_bound_and_thaws_on_schedule():
    policy = HeapPolicy(max_unfrozen=100, check_every=1.0, thaw_every=60.0)
    assert policy.action(10.0, 50, last_thaw=0.0) == ""
    assert policy.action(10.0, 101, last_thaw=0.0) == "freeze"
    assert policy.action(60.0, 0, last_thaw=0.0) == "thaw"


def test_the_heap_keeper_freezes_the_live_objects_and_a_thaw_lets_the_collector_reclaim_them():
    import gc
    import weakref

    class Node:
        def __init__(self) -> None:
            self.me = self   # a reference cycle: only the collector reclaims it

    now = [0.0]
    keeper = HeapKeeper(HeapPolicy(max_unfrozen=0, check_every=1.0, thaw_every=100.0), clock=lambda: now[0])
    try:
        keeper.start()
        node = Node()
        alive = weakref.ref(node)
        gc.collect()                  # alive: it moves to the oldest generation
        now[0] = 2.0
        assert keeper.tick() == "freeze" and gc.get_freeze_count() > 0
        del node                      # garbage now, but frozen: no collection sees it
        gc.collect()
        assert alive() is not None
        now[0] = 2.5
        assert keeper.tick() == "", "counts at most every check_every seconds"
        now[0] = 101.0
        assert keeper.tick() == "thaw" and alive() is None
    finally:
        gc.unfreeze()
