"""Heartbeats' lease extensions held to the batch's commit (store_work._LEASES_EXTENDED)."""

from __future__ import annotations

from autoswarm.coordinator.store import LeaseRecord, Store, VersionRecord


def _store(directory, group_commit: bool) -> Store:
    directory.mkdir(parents=True, exist_ok=True)
    store = Store(directory / "swarm.db", group_commit=group_commit)
    store.add_study("s", {"name": "s"}, "b" * 64, b"x", 0, _initial())
    for i, worker in enumerate(("w", "w", "w", "x")):
        store.insert_lease(LeaseRecord(f"l-{i}", "s", worker, "explore", "h0", "", i, 0.0, 10.0, "active", None))
    if group_commit:
        store.commit_batch()
    return store


def _initial() -> VersionRecord:
    return VersionRecord("s", "h0", "", b"X = 1\n", "initial version", "study", 1.0)


def test_extensions_held_in_a_batch_keep_the_latest_deadline_and_touch_only_the_workers_active_leases(tmp_path):
    for group_commit in (True, False):
        store = _store(tmp_path / str(group_commit), group_commit)
        store.close_leases(["l-2"], "released", 5.0)
        store.extend_leases("w", ["l-0"], {"l-0": 50.0})
        store.extend_leases("w", ["l-0", "l-1"], {"l-0": 30.0, "l-1": 5.0})   # an older deadline never wins
        store.extend_leases("w", ["l-2", "l-3", "l-9"], {"l-2": 40.0, "l-3": 40.0})   # released, another's, unknown
        if group_commit:
            store.commit_batch()
        deadlines = {lease.id: lease.deadline for lease in store.active_leases()}
        assert deadlines == {"l-0": 50.0, "l-1": 10.0, "l-3": 10.0}, group_commit
        store.close()


def test_a_held_extension_is_written_before_anything_reads_the_leases(tmp_path):
    store = _store(tmp_path, group_commit=True)
    store.extend_leases("w", ["l-0"], {"l-0": 99.0})
    assert [lease.id for lease in store.overdue_leases(20.0)] == ["l-1", "l-2", "l-3"]
    store.commit_batch()
    store.close()
    reopened = Store(tmp_path / "swarm.db")
    assert {lease.id: lease.deadline for lease in reopened.active_leases()}["l-0"] == 99.0
    reopened.close()
