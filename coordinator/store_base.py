"""The store's foundation: the schema, the connection, transactions and group-commit batches,
migrations, and the WAL checkpoint thread. The rows of each kind are in `store` and `store_work`.

Every method that changes state commits before it returns, so a caller that acknowledges
after the call has acknowledged only what is on disk; with group commit on, it is inside the
open batch, and callers that acknowledge wait for `commit_batch()` (see `group_commit`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from autoswarm.coordinator.ids import Ids
from autoswarm.coordinator.records import VersionRecord
from autoswarm.coordinator.store_writer import BatchWriter, Done

SCHEMA_VERSION = 1

log = logging.getLogger("autoswarm.coordinator")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (
    hash TEXT PRIMARY KEY, data BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,               -- the study.toml as validated, JSON
    bundle_hash TEXT NOT NULL REFERENCES bundles(hash),
    max_evaluations INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',   -- set when the study cannot go on (e.g. its baseline always fails)
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    study TEXT NOT NULL, hash TEXT NOT NULL, parent TEXT NOT NULL, content BLOB NOT NULL,
    description TEXT NOT NULL, author TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (study, hash));
CREATE TABLE IF NOT EXISTS champions (
    study TEXT NOT NULL, seq INTEGER NOT NULL, version TEXT NOT NULL,
    metric REAL,                      -- NULL until the version has been evaluated
    result_id TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    PRIMARY KEY (study, seq));
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hardware TEXT NOT NULL, hardware_class TEXT NOT NULL,
    slots INTEGER NOT NULL, mutators TEXT NOT NULL, state TEXT NOT NULL,
    registered REAL NOT NULL, last_seen REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT '');    -- who stands behind the worker (join token name), if known
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, study TEXT NOT NULL, worker_id TEXT NOT NULL, kind TEXT NOT NULL,
    parent TEXT NOT NULL, candidate TEXT NOT NULL, seed INTEGER NOT NULL,
    issued REAL NOT NULL, deadline REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'reported', 'expired', 'released')),
    closed REAL, claim TEXT NOT NULL DEFAULT '');
-- Active leases by deadline (the reaper, restarts). Partial: a lease leaves it when it closes,
-- so it stays as small as the work in flight. It replaces an index over every lease, and
-- one by worker that no query used; each cost page writes on every lease.
DROP INDEX IF EXISTS leases_active;
DROP INDEX IF EXISTS leases_worker;
CREATE INDEX IF NOT EXISTS leases_open ON leases (deadline) WHERE state='active';
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,              -- equals the lease id: one result per lease
    study TEXT NOT NULL, kind TEXT NOT NULL, worker_id TEXT NOT NULL, worker_name TEXT NOT NULL,
    hardware_class TEXT NOT NULL, version TEXT NOT NULL, parent TEXT NOT NULL,
    status TEXT NOT NULL, metric REAL, extra BLOB NOT NULL, description TEXT NOT NULL,
    log_tail TEXT NOT NULL, decision TEXT NOT NULL, timings BLOB NOT NULL, created REAL NOT NULL,
    claim TEXT NOT NULL DEFAULT '',   -- the claim this result made or measured
    improvement REAL, threshold REAL); -- how the result compared with its reference, when judged
CREATE INDEX IF NOT EXISTS results_study ON results (study, created);
CREATE TABLE IF NOT EXISTS claims (
    id TEXT PRIMARY KEY, study TEXT NOT NULL, version TEXT NOT NULL, parent TEXT NOT NULL,
    origin TEXT NOT NULL,             -- explore: a worker's improvement; merge: replayed onto a newer champion
    claimant_worker TEXT NOT NULL, claimant_result TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'rejected', 'unconfirmed', 'superseded')),
    reason TEXT NOT NULL, created REAL NOT NULL, decided REAL);
CREATE INDEX IF NOT EXISTS claims_study ON claims (study, state);
-- What an operator did to a study (updated its bundle, paused it...), for its lineage.
CREATE TABLE IF NOT EXISTS study_events (
    study TEXT NOT NULL, created REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,            -- sha256 of the token; the token itself is never stored
    kind TEXT NOT NULL CHECK (kind IN ('admin', 'join', 'worker', 'reader')),
    name TEXT NOT NULL,               -- the owner (join tokens and the worker credentials they issued)
    worker_id TEXT NOT NULL,          -- worker credentials: the worker they speak for
    parent TEXT NOT NULL,             -- worker credentials: hash of the join token used
    created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
    team TEXT NOT NULL DEFAULT '',    -- join tokens: the owner's team on the leaderboard ('' none)
    display TEXT NOT NULL DEFAULT '', -- join tokens: the name public pages show ('' the token's name)
    anonymous INTEGER NOT NULL DEFAULT 0); -- join tokens: public pages show a pseudonym
"""


class WalCheckpointer:
    """Copies the WAL back into the database file on a thread of its own.

    SQLite's automatic checkpoint runs inside whichever COMMIT makes the WAL cross its
    threshold, i.e. on the coordinator's event loop, and it copies a thousand pages and
    fsyncs the database file: under load, most of the time spent committing and a stall
    that every request waiting on that turn of the loop pays. Here it runs on its own
    connection and thread instead (sqlite releases the GIL while it works), concurrently
    with the writer. Durability does not depend on it: a committed transaction is in the
    WAL, which a restart replays.

    A passive checkpoint never blocks the writer, but the WAL only starts over from its
    beginning once a checkpoint has caught up with every commit, which a busy writer may
    never let happen. Past `restart_frames` frames, with a `store` given, the store's own
    writer catches up between two of its commits (`StoreBase.ask_wal_catch_up`): a passive
    checkpoint of the few frames since this thread's, after which its next commit starts
    the WAL over. Nothing then waits on a lock: a RESTART checkpoint from this thread held
    the writer off while it waited for readers with SQLite's busy handler, which sleeps up
    to 100 ms a try, and so stalled commits (and the event loop waiting on them) for up to
    450 ms at 100,000 workers. Without a `store`, a RESTART here bounds the WAL as before.
    """

    def __init__(self, path: Path | str, *, interval: float = 0.2, restart_frames: int = 4000,
                 store: StoreBase | None = None) -> None:
        self.path = str(path)
        self.interval = interval
        self.restart_frames = restart_frames
        self.store = store
        self.checkpoints = 0          # for tests and curiosity: checkpoints run so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread (after the checkpoint in progress, if any)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if db is None:
                        db = sqlite3.connect(self.path, isolation_level=None)
                        db.execute("PRAGMA busy_timeout=5000")
                    self.checkpoint(db)
                except sqlite3.Error as exc:  # e.g. busy for too long: the next round retries
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            if db is not None:
                db.close()

    def checkpoint(self, db: sqlite3.Connection) -> None:
        """One round: a passive checkpoint, and a restart of the WAL when it has grown long."""
        if self.store is not None and self.store.wal_catch_up_asked:
            return   # the writer's catch-up is pending or running: it checkpoints alone (no lock to wait on)
        _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= self.restart_frames:
            # The last frames' copy holds up the next commit (the writer's catch-up runs before
            # it, or a RESTART holds it off); flush both files first, outside that wait, so that
            # its syncs find little left to write (on a busy disk they took up to 200 ms).
            for path in (self.path + "-wal", self.path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if self.store is not None:
                self.store.ask_wal_catch_up()
            else:
                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        self.checkpoints += 1


HELD_ROWS_PER_STATEMENT = 64   # rows one statement writes at most (and so ≤ 64 texts per statement cached)


@lru_cache(maxsize=1024)
def many_rows(sql: str, rows: int) -> str:
    """`sql`, whose one `VALUES (?, ...)` group is one row, for `rows` rows at once: one step of
    SQLite for all of them (so one handover of the GIL between the writer thread and the loop,
    where `executemany` has two per row)."""
    head, rest = sql.split("VALUES ", 1)
    end = rest.index(")") + 1
    return head + "VALUES " + ", ".join([rest[:end]] * rows) + rest[end:]


def _catch_up_failed(failure: BaseException | None) -> None:
    """A WAL catch-up job's end: nothing waits on it, so a failure (the frames stay in the WAL,
    nothing is lost) is only logged."""
    if failure is not None:
        log.warning("WAL catch-up failed: %s", failure)


class StoreFailed(RuntimeError):
    """A held row or a commit that the database refused: what memory holds is not on disk, and
    the coordinator must stop (a restart rebuilds its state from what is committed)."""


class StoreBase:
    """The connection and its transactions. Not thread-safe: one coordinator event loop owns it
    (and lends the connection to its `BatchWriter` for each background commit, see `_db`)."""

    # The statements whose rows a group-commit batch holds back and writes at its commit, one
    # `executemany` each, in this order (see `_defer`); set by the subclass that issues them.
    DEFERRED: tuple[str, ...] = ()

    def __init__(self, path: Path | str, *, fsync: bool = False, readonly: bool = False,
                 on_commit: Callable[[float], None] = lambda seconds: None, group_commit: bool = False,
                 autocheckpoint_pages: int = 1000, ids: Ids | None = None, writer_thread: bool = True) -> None:
        """Opens (creating if needed) the database at `path`.

        `ids`: where fresh ids come from (`ids.Ids`, random by default; a simulation seeds them).

        `autocheckpoint_pages`: the WAL size at which a COMMIT copies the WAL back into the
        database file itself; with a `WalCheckpointer` running, make it a large backstop.

        `group_commit`: writes go into one open batch that `commit_batch()` (or, off the event
        loop, `commit_in_background()`) commits; the hot path's rows wait in memory until then.
        `writer_thread`: whether `commit_in_background` commits on a thread of its own (else
        now, on the caller's).
        """
        self._deferred = self._fresh_deferred()
        self._deferred_rows = 0
        self._writer = BatchWriter() if group_commit and writer_thread and not readonly else None
        self._failed: BaseException | None = None
        self._wal_catch_up = threading.Event()   # set by the checkpoint thread, cleared once the catch-up ran
        self._catch_up_queued = False            # a catch-up job is queued on the writer (set on the loop)
        self.wal_catch_ups = 0                   # catch-ups run (for tests and curiosity)
        self.path = str(path)
        self._on_commit = on_commit
        self._group_commit = group_commit
        self._batch_started = 0.0
        self._readonly = readonly
        self._lease_seq = 0
        self.ids = ids or Ids()
        if readonly:
            if not Path(self.path).is_file():
                raise FileNotFoundError(f"{self.path}: no such database")
            self._conn = sqlite3.connect(f"file:{Path(self.path).resolve()}?mode=ro", uri=True,
                                         isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            return
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so transactions are explicit.
        # More cached statements than the 128 by default: each held statement has a text per
        # number of rows (`many_rows`).
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     cached_statements=512)
        self._conn.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (kill -9); FULL also survives power loss.
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint_pages)}")
        self._db.executescript(_SCHEMA)
        self._migrate_studies()
        self._migrate_tokens()
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row["value"]) != SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {row['value']}, this coordinator needs {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        if not self._readonly:
            self.commit_batch()
        if self._writer is not None:
            self._writer.stop()
        self._conn.close()

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, for a statement to run now, in order after every write before it:
        a background commit in progress is waited for (the connection is its thread's until
        then), and the rows the batch holds back are written first."""
        if self._writer is not None and self._writer.busy:
            self._writer.wait_idle()
        if self._failed is not None:
            raise StoreFailed(f"an earlier write or commit failed: {self._failed}") from self._failed
        if self._deferred_rows:
            rows, self._deferred, self._deferred_rows = self._deferred, self._fresh_deferred(), 0
            try:
                self._write_rows(rows)
            except BaseException as exc:
                self._failed = exc
                raise
        return self._conn

    def _fresh_deferred(self) -> dict[str, list[Sequence[Any]]]:
        return {sql: [] for sql in self.DEFERRED}

    def _defer(self, sql: str, row: Sequence[Any]) -> None:
        """A unit of change that is one row of a `DEFERRED` statement: in a group-commit batch
        it is held in memory and written at the batch's commit (or before the next statement
        that runs now, see `_db`), with the other rows of its statement in one (`many_rows`).

        Only for statements that the database cannot refuse but for a bug or a failing disk
        (fresh keys, updates of plain columns, `OR IGNORE`): the caller has moved on when it
        runs, so a refusal fails the batch (`StoreFailed`) and stops the coordinator.
        """
        if not self._group_commit:
            self._write(sql, row)
            return
        self._deferred[sql].append(row)
        self._deferred_rows += 1

    def _write_rows(self, rows: dict[str, list[Sequence[Any]]]) -> None:
        """Writes held rows into the open batch (opening it), statement by statement in order, as
        few statements as `HELD_ROWS_PER_STATEMENT` allows."""
        if not any(rows.values()):
            return
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
            self._batch_started = time.perf_counter()
        for sql, values in rows.items():
            for start in range(0, len(values), HELD_ROWS_PER_STATEMENT):
                chunk = values[start:start + HELD_ROWS_PER_STATEMENT]
                self._conn.execute(many_rows(sql, len(chunk)), [value for row in chunk for value in row])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of change.

        Committed at once, or — with group commit on — inside the open batch as a savepoint,
        committed by `commit_batch()`; callers that acknowledge must wait for that commit.
        """
        if not self._group_commit:
            started = time.perf_counter()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._on_commit(time.perf_counter() - started)
            return
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._batch_started = time.perf_counter()
        self._db.execute("SAVEPOINT unit")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK TO unit")  # undo this unit only, not the batch
            self._db.execute("RELEASE unit")
            raise
        self._db.execute("RELEASE unit")

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """A unit of change that is one statement.

        SQLite undoes a failed statement by itself and keeps the transaction, so inside a
        group-commit batch it needs no savepoint (two statements fewer on the hot path).
        """
        if not self._group_commit:
            with self.transaction() as db:
                return db.execute(sql, params)
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._batch_started = time.perf_counter()
        return self._db.execute(sql, params)

    def _write_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        """A unit of change that is one statement run for each of `rows`, for statements that
        cannot fail on a constraint (UPDATEs of plain columns): only a failing disk could stop
        one halfway, and that stops the coordinator (see `group_commit`), so no savepoint."""
        if not self._group_commit:
            with self.transaction() as db:
                return db.executemany(sql, rows)
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._batch_started = time.perf_counter()
        return self._db.executemany(sql, rows)

    @property
    def uncommitted(self) -> bool:
        """Whether a group-commit batch holds changes not yet on disk (held rows, an open
        transaction, or a background commit not finished)."""
        return bool(self._deferred_rows) or (self._writer is not None and self._writer.committing) \
            or self._conn.in_transaction

    def commit_batch(self) -> None:
        """Commits the open group-commit batch (one disk write for many requests), now."""
        db = self._db   # after any background commit, with the held rows written
        if db.in_transaction:
            db.execute("COMMIT")
            self._on_commit(time.perf_counter() - self._batch_started)
        self._catch_up_wal_if_asked()

    def commit_in_background(self, done: Done) -> None:
        """Commits the open batch on the writer thread: its held rows are written and the
        COMMIT runs there while the caller goes on; `done(None)` runs on that thread once it
        is on disk, `done(exc)` if it failed (then the store refuses all use: `StoreFailed`).
        Without group commit, commits now and calls `done` before returning."""
        if self._writer is None:
            try:
                self.commit_batch()
            except BaseException as exc:
                done(exc)
                return
            done(None)
            return
        if self._failed is not None:
            done(StoreFailed(f"an earlier write or commit failed: {self._failed}"))
            return
        rows, self._deferred, self._deferred_rows = self._deferred, self._fresh_deferred(), 0
        started = self._batch_started

        def commit() -> None:
            try:
                self._write_rows(rows)
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")
                    self._on_commit(time.perf_counter() - started)
            except BaseException as exc:
                self._failed = exc
                raise

        self._writer.submit(commit, done)
        self._catch_up_wal_if_asked()

    @property
    def wal_catch_up_asked(self) -> bool:
        """Whether the writer is to catch the checkpoint up after its next commit (or is doing so)."""
        return self._wal_catch_up.is_set()

    def ask_wal_catch_up(self) -> None:
        """Asks the writer to catch the checkpoint up after its next commit (from the checkpoint
        thread, once it has copied and synced nearly all of the WAL)."""
        self._wal_catch_up.set()

    def _catch_up_wal_if_asked(self) -> None:
        """Right after a commit was run or queued (on the loop): when the checkpoint thread has
        asked, queues the catch-up as the writer's next job, behind that commit. The commit's
        waiters are answered when its job ends, before the catch-up starts, so no request waits
        for a catch-up but one that needs the connection while it runs (its own commit, or a
        statement that runs now). Without a writer thread it runs now."""
        if not self._wal_catch_up.is_set() or self._catch_up_queued:
            return
        if self._writer is None:
            self._catch_up_wal()
            return
        self._catch_up_queued = True
        self._writer.submit(self._catch_up_wal, _catch_up_failed, commit=False)

    def _catch_up_wal(self) -> None:
        """Between two commits, on the connection (the writer's thread, mostly): a passive
        checkpoint of the frames the checkpoint thread has not copied yet. With nothing else
        writing and that thread standing aside, it copies every frame, and the next commit starts
        the WAL over. Passive: it never waits for a lock (a reader still on an older snapshot only
        leaves the WAL as it is, until the next time the thread asks). A failure here loses nothing
        (the frames stay in the WAL): it is logged, and the thread asks again later."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.wal_catch_ups += 1
        except sqlite3.Error as exc:
            log.warning("WAL catch-up checkpoint failed: %s", exc)
        finally:
            # Only now may the checkpoint thread run again (and ask again): two checkpoints at
            # once would find each other busy. A second catch-up queued meanwhile does no harm.
            self._wal_catch_up.clear()
            self._catch_up_queued = False

    def _migrate_studies(self) -> None:
        """Adds the lifecycle columns to a studies table made before them (in place, once)."""
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(studies)")}
        for column, ddl in (("paused", "INTEGER NOT NULL DEFAULT 0"), ("priority", "INTEGER NOT NULL DEFAULT 1"),
                            ("archived", "INTEGER NOT NULL DEFAULT 0")):
            if column not in columns:
                self._db.execute(f"ALTER TABLE studies ADD COLUMN {column} {ddl}")

    def _migrate_tokens(self) -> None:
        """Brings a tokens table made before reader tokens and teams up to date (in place, once)."""
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(tokens)")}
        sql = self._db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='tokens'").fetchone()[0]
        if "'reader'" in sql and "anonymous" in columns:
            return
        # A CHECK constraint cannot be altered in SQLite: the table is rebuilt, in one transaction.
        start = _SCHEMA.index("CREATE TABLE IF NOT EXISTS tokens")
        create = _SCHEMA[start:_SCHEMA.index(");", start) + 2]
        self._db.executescript(
            "BEGIN IMMEDIATE; ALTER TABLE tokens RENAME TO tokens_before_teams;"
            + create.replace("IF NOT EXISTS ", "", 1)
            + "INSERT INTO tokens (hash, kind, name, worker_id, parent, created, revoked) "
            "SELECT hash, kind, name, worker_id, parent, created, revoked FROM tokens_before_teams;"
            "DROP TABLE tokens_before_teams; COMMIT;")

    def backup(self, target: Path | str, pages_per_step: int = 256) -> None:
        """A consistent copy of the database at `target`, made with SQLite's online backup API.

        Safe while the coordinator runs: the copy holds every committed transaction up to some
        moment, and writers wait only for the short steps of `pages_per_step` pages.
        """
        copy = sqlite3.connect(str(target))
        try:
            self._db.backup(copy, pages=pages_per_step)
        finally:
            copy.close()

    @staticmethod
    def _insert_version(db: sqlite3.Connection, v: VersionRecord) -> None:
        db.execute(
            "INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",   # = store_work._INSERT_VERSION
            (v.study, v.hash, v.parent, v.content, v.description, v.author, v.created),
        )
