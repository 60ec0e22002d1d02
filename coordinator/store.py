"""The coordinator's durable state in SQLite (WAL mode). The only module that speaks SQL.

Every method that changes state commits before it returns, so a caller that acknowledges
after the call has acknowledged only what is on disk. Changes that belong together (a
result and the champion it makes) are one transaction.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from autoswarm import words
from autoswarm.coordinator.credit import Claim, Step, Work

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


@dataclass(frozen=True)
class StudyRecord:
    name: str
    spec: dict[str, Any]
    bundle_hash: str
    max_evaluations: int
    error: str
    created: float
    paused: bool = False
    priority: int = 1                 # share of the swarm against other studies
    archived: bool = False            # removed by its operator: no work, not listed; rows kept


@dataclass(frozen=True)
class StudyEvent:
    study: str
    created: float
    kind: str                         # "update", "pause", "resume", "remove", "priority", "budget"
    detail: str


@dataclass(frozen=True)
class VersionRecord:
    study: str
    hash: str
    parent: str
    content: bytes
    description: str
    author: str
    created: float


@dataclass(frozen=True)
class ChampionRecord:
    study: str
    seq: int
    version: str
    metric: float | None
    result_id: str
    created: float


@dataclass(frozen=True)
class WorkerRecord:
    id: str
    name: str
    hardware: dict[str, Any]
    hardware_class: str
    slots: int
    mutators: tuple[str, ...]
    state: str
    registered: float
    last_seen: float
    owner: str = ""


@dataclass(frozen=True)
class LeaseRecord:
    id: str
    study: str
    worker_id: str
    kind: str
    parent: str
    candidate: str
    seed: int
    issued: float
    deadline: float
    state: str
    closed: float | None
    claim: str = ""


@dataclass(frozen=True)
class ResultRecord:
    id: str
    study: str
    kind: str
    worker_id: str
    worker_name: str
    hardware_class: str
    version: str
    parent: str
    status: str
    metric: float | None
    extra: dict[str, float]
    description: str
    log_tail: str
    decision: str
    timings: dict[str, float]
    created: float
    claim: str = ""
    improvement: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class ClaimRecord:
    """A candidate that beat its reference and waits for (or got) its verdict."""

    id: str
    study: str
    version: str
    parent: str
    origin: str
    claimant_worker: str
    claimant_result: str
    state: str
    reason: str
    created: float
    decided: float | None = None


@dataclass(frozen=True)
class TokenRecord:
    hash: str
    kind: str
    name: str
    worker_id: str
    parent: str
    created: float
    revoked: bool
    team: str = ""
    display: str = ""
    anonymous: bool = False


@dataclass(frozen=True)
class StudyCounts:
    evaluations: int
    improvements: int
    in_flight: int
    failed_baselines: int
    failed_edits: int = 0                     # explore tasks whose agent made no edit


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
    never let happen; past `restart_frames` frames a RESTART checkpoint waits for the
    writer to finish its batch, holds it off for the copy of the few frames left, and lets
    the WAL start over, so it stays bounded.
    """

    def __init__(self, path: Path | str, *, interval: float = 0.2, restart_frames: int = 4000) -> None:
        self.path = str(path)
        self.interval = interval
        self.restart_frames = restart_frames
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
        """One round: a passive checkpoint, and a restarting one when the WAL has grown long."""
        _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= self.restart_frames:
            db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        self.checkpoints += 1


class Store:
    """SQLite-backed state. Not thread-safe: one coordinator event loop owns it."""

    def __init__(self, path: Path | str, *, fsync: bool = False, readonly: bool = False,
                 on_commit: Callable[[float], None] = lambda seconds: None, group_commit: bool = False,
                 autocheckpoint_pages: int = 1000) -> None:
        """Opens (creating if needed) the database at `path`.

        `autocheckpoint_pages`: the WAL size at which a COMMIT copies the WAL back into the
        database file itself; with a `WalCheckpointer` running, make it a large backstop.
        """
        self.path = str(path)
        self._on_commit = on_commit
        self._group_commit = group_commit
        self._batch_started = 0.0
        self._readonly = readonly
        self._lease_seq = 0
        if readonly:
            if not Path(self.path).is_file():
                raise FileNotFoundError(f"{self.path}: no such database")
            self._db = sqlite3.connect(f"file:{Path(self.path).resolve()}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            return
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so transactions are explicit.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
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
        self._db.close()

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

    @property
    def uncommitted(self) -> bool:
        """Whether a group-commit batch holds changes not yet on disk."""
        return self._db.in_transaction

    def commit_batch(self) -> None:
        """Commits the open group-commit batch (one disk write for many requests)."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
            self._on_commit(time.perf_counter() - self._batch_started)

    # -- bundles and studies -------------------------------------------------------------

    def add_study(self, name: str, spec: dict[str, Any], bundle_hash: str, bundle: bytes,
                  max_evaluations: int, initial: VersionRecord) -> None:
        """Stores a new study with its bundle and its initial version as champion 0."""
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO bundles VALUES (?, ?, ?)", (bundle_hash, bundle, now))
            db.execute(
                "INSERT INTO studies (name, spec, bundle_hash, max_evaluations, created) VALUES (?, ?, ?, ?, ?)",
                (name, json.dumps(spec, sort_keys=True), bundle_hash, max_evaluations, now),
            )
            self._insert_version(db, initial)
            db.execute("INSERT INTO champions VALUES (?, 0, ?, NULL, '', ?)", (name, initial.hash, now))

    def set_study_limit(self, name: str, max_evaluations: int) -> None:
        self._write("UPDATE studies SET max_evaluations=? WHERE name=?", (max_evaluations, name))

    def set_study_error(self, name: str, error: str) -> None:
        self._write("UPDATE studies SET error=? WHERE name=?", (error, name))

    def _migrate_studies(self) -> None:
        """Adds the lifecycle columns to a studies table made before them (in place, once)."""
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(studies)")}
        for column, ddl in (("paused", "INTEGER NOT NULL DEFAULT 0"), ("priority", "INTEGER NOT NULL DEFAULT 1"),
                            ("archived", "INTEGER NOT NULL DEFAULT 0")):
            if column not in columns:
                self._db.execute(f"ALTER TABLE studies ADD COLUMN {column} {ddl}")

    def change_study(self, name: str, event: StudyEvent, *, paused: bool | None = None, priority: int | None = None,
                     archived: bool | None = None, max_evaluations: int | None = None,
                     release_leases: Sequence[str] = ()) -> int:
        """Applies an operator's change to a study with its event, atomically; returns leases released."""
        sets = [(col, value) for col, value in (("paused", paused), ("priority", priority), ("archived", archived),
                                                ("max_evaluations", max_evaluations)) if value is not None]
        with self.transaction() as db:
            if sets:
                db.execute(f"UPDATE studies SET {', '.join(f'{col}=?' for col, _ in sets)} WHERE name=?",
                           [int(value) for _, value in sets] + [name])
            db.execute("INSERT INTO study_events VALUES (?, ?, ?, ?)", (name, event.created, event.kind, event.detail))
            cur = db.executemany("UPDATE leases SET state='released', closed=? WHERE id=? AND state='active'",
                                 [(event.created, lid) for lid in release_leases])
            return cur.rowcount if release_leases else 0

    def update_study_bundle(self, name: str, spec: dict[str, Any], bundle_hash: str, bundle: bytes,
                            event: StudyEvent) -> None:
        """A new bundle of the same study: champion, versions and results stay; the event is recorded."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO bundles VALUES (?, ?, ?)", (bundle_hash, bundle, event.created))
            db.execute("UPDATE studies SET spec=?, bundle_hash=? WHERE name=?",
                       (json.dumps(spec, sort_keys=True), bundle_hash, name))
            db.execute("INSERT INTO study_events VALUES (?, ?, ?, ?)", (name, event.created, event.kind, event.detail))

    def study_events(self, name: str) -> list[StudyEvent]:
        """A study's operator events, oldest first (none in a database made before them)."""
        try:
            rows = self._db.execute("SELECT * FROM study_events WHERE study=? ORDER BY created", (name,)).fetchall()
        except sqlite3.OperationalError:  # a read-only look at an older database
            return []
        return [StudyEvent(r["study"], r["created"], r["kind"], r["detail"]) for r in rows]

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

    def studies(self) -> list[StudyRecord]:
        rows = self._db.execute("SELECT * FROM studies ORDER BY name").fetchall()
        return [self._study(r) for r in rows]

    def study(self, name: str) -> StudyRecord | None:
        row = self._db.execute("SELECT * FROM studies WHERE name=?", (name,)).fetchone()
        return self._study(row) if row else None

    @staticmethod
    def _study(row: sqlite3.Row) -> StudyRecord:
        keys = row.keys()  # a read-only look at an older database may lack the lifecycle columns
        return StudyRecord(row["name"], json.loads(row["spec"]), row["bundle_hash"],
                           row["max_evaluations"], row["error"], row["created"],
                           bool(row["paused"]) if "paused" in keys else False,
                           int(row["priority"]) if "priority" in keys else 1,
                           bool(row["archived"]) if "archived" in keys else False)

    def bundle(self, bundle_hash: str) -> bytes | None:
        row = self._db.execute("SELECT data FROM bundles WHERE hash=?", (bundle_hash,)).fetchone()
        return bytes(row["data"]) if row else None

    # -- versions and champions -----------------------------------------------------------

    @staticmethod
    def _insert_version(db: sqlite3.Connection, v: VersionRecord) -> None:
        db.execute(
            "INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (v.study, v.hash, v.parent, v.content, v.description, v.author, v.created),
        )

    def version_parent(self, study: str, version_hash: str) -> str | None:
        """A version's parent hash ("" for a study's first version), without loading its content."""
        row = self._db.execute("SELECT parent FROM versions WHERE study=? AND hash=?", (study, version_hash)).fetchone()
        return None if row is None else row["parent"]

    def version(self, study: str, version_hash: str) -> VersionRecord | None:
        row = self._db.execute("SELECT * FROM versions WHERE study=? AND hash=?", (study, version_hash)).fetchone()
        if row is None:
            return None
        return VersionRecord(row["study"], row["hash"], row["parent"], bytes(row["content"]),
                             row["description"], row["author"], row["created"])

    def champion(self, study: str) -> ChampionRecord | None:
        row = self._db.execute(
            "SELECT * FROM champions WHERE study=? ORDER BY seq DESC LIMIT 1", (study,)
        ).fetchone()
        return self._champion(row) if row else None

    def champions(self, study: str) -> list[ChampionRecord]:
        rows = self._db.execute("SELECT * FROM champions WHERE study=? ORDER BY seq", (study,)).fetchall()
        return [self._champion(r) for r in rows]

    @staticmethod
    def _champion(row: sqlite3.Row) -> ChampionRecord:
        return ChampionRecord(row["study"], row["seq"], row["version"], row["metric"], row["result_id"], row["created"])

    # -- workers --------------------------------------------------------------------------

    def upsert_worker(self, w: WorkerRecord) -> None:
        self._write(
            "INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "name=excluded.name, hardware=excluded.hardware, hardware_class=excluded.hardware_class, "
            "slots=excluded.slots, mutators=excluded.mutators, state=excluded.state, "
            "last_seen=excluded.last_seen, owner=excluded.owner",
            (w.id, w.name, json.dumps(w.hardware, sort_keys=True), w.hardware_class, w.slots,
             json.dumps(list(w.mutators)), w.state, w.registered, w.last_seen, w.owner),
        )

    def touch_workers(self, seen: Sequence[tuple[str, str, float]]) -> None:
        """Records (worker id, state, last seen) for many workers in one commit."""
        if not seen:
            return
        with self.transaction() as db:
            db.executemany("UPDATE workers SET state=?, last_seen=? WHERE id=?",
                           [(state, last, wid) for wid, state, last in seen])

    def worker(self, worker_id: str) -> WorkerRecord | None:
        row = self._db.execute("SELECT * FROM workers WHERE id=?", (worker_id,)).fetchone()
        return self._worker(row) if row else None

    def workers(self) -> list[WorkerRecord]:
        return [self._worker(r) for r in self._db.execute("SELECT * FROM workers ORDER BY registered")]

    @staticmethod
    def _worker(row: sqlite3.Row) -> WorkerRecord:
        return WorkerRecord(row["id"], row["name"], json.loads(row["hardware"]), row["hardware_class"],
                            row["slots"], tuple(json.loads(row["mutators"])), row["state"],
                            row["registered"], row["last_seen"], row["owner"])

    # -- leases ---------------------------------------------------------------------------

    def new_lease_id(self, now: float) -> str:
        """A fresh lease id: "l-" and 20 hex digits, growing with time.

        Random ids would make every lease and every result insert into a random page of its
        table's primary-key index (one more page written per commit each); growing ones
        append. 14 digits count 1/4096 ms (unique within this process even if the clock
        stands still), 6 random ones keep apart ids from runs whose clocks disagree.
        """
        self._lease_seq = max(self._lease_seq + 1, int(now * 4_096_000))
        return f"l-{self._lease_seq:014x}{secrets.token_hex(3)}"

    def insert_lease(self, lease: LeaseRecord) -> None:
        self._write(
            "INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (lease.id, lease.study, lease.worker_id, lease.kind, lease.parent, lease.candidate,
             lease.seed, lease.issued, lease.deadline, lease.state, lease.closed, lease.claim),
        )

    def lease(self, lease_id: str) -> LeaseRecord | None:
        row = self._db.execute("SELECT * FROM leases WHERE id=?", (lease_id,)).fetchone()
        return self._lease(row) if row else None

    def active_leases(self, study: str | None = None) -> list[LeaseRecord]:
        if study is None:
            rows = self._db.execute("SELECT * FROM leases WHERE state='active'").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM leases WHERE state='active' AND study=?", (study,)).fetchall()
        return [self._lease(r) for r in rows]

    def leases(self, study: str) -> list[LeaseRecord]:
        rows = self._db.execute("SELECT * FROM leases WHERE study=? ORDER BY issued", (study,)).fetchall()
        return [self._lease(r) for r in rows]

    def extend_leases(self, worker_id: str, lease_ids: Sequence[str], deadline_for: dict[str, float]) -> None:
        """Moves the deadlines of a worker's active leases (heartbeat)."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE leases SET deadline=MAX(deadline, ?) WHERE id=? AND worker_id=? AND state='active'",
                [(deadline_for[lid], lid, worker_id) for lid in lease_ids if lid in deadline_for],
            )

    def close_leases(self, lease_ids: Sequence[str], state: str, when: float) -> int:
        """Marks active leases expired or released; returns how many changed."""
        with self.transaction() as db:
            cur = db.executemany(
                "UPDATE leases SET state=?, closed=? WHERE id=? AND state='active'",
                [(state, when, lid) for lid in lease_ids],
            )
            return cur.rowcount

    def overdue_leases(self, now: float) -> list[LeaseRecord]:
        rows = self._db.execute("SELECT * FROM leases WHERE state='active' AND deadline < ?", (now,)).fetchall()
        return [self._lease(r) for r in rows]

    def push_active_deadlines(self, not_before: float) -> None:
        """After a restart: downtime must not count against running leases."""
        self._write("UPDATE leases SET deadline=? WHERE state='active' AND deadline < ?", (not_before, not_before))

    @staticmethod
    def _lease(row: sqlite3.Row) -> LeaseRecord:
        return LeaseRecord(row["id"], row["study"], row["worker_id"], row["kind"], row["parent"],
                           row["candidate"], row["seed"], row["issued"], row["deadline"], row["state"],
                           row["closed"], row["claim"])

    # -- tokens ---------------------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> None:
        self._write("INSERT INTO tokens (hash, kind, name, worker_id, parent, created, revoked, team, display, "
                    "anonymous) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (token.hash, token.kind, token.name, token.worker_id, token.parent, token.created,
                     int(token.revoked), token.team, token.display, int(token.anonymous)))

    def revoke_tokens(self, hashes: Sequence[str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE tokens SET revoked=1 WHERE hash=?", [(h,) for h in hashes])

    def tokens(self) -> list[TokenRecord]:
        return [TokenRecord(r["hash"], r["kind"], r["name"], r["worker_id"], r["parent"], r["created"],
                            bool(r["revoked"]), r["team"], r["display"], bool(r["anonymous"]))
                for r in self._db.execute("SELECT * FROM tokens ORDER BY created")]

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

    # -- results --------------------------------------------------------------------------

    def record_result(self, result: ResultRecord, *, versions: Sequence[VersionRecord] = (),
                      claims: Sequence[ClaimRecord] = (), decisions: Sequence[tuple[str, str]] = (),
                      new_champion: ChampionRecord | None = None,
                      champion_metric: tuple[str, int, float] | None = None, rewrite: bool = False) -> None:
        """Stores a result, closes its lease, and applies its consequences, atomically.

        `rewrite`: the result is stored already (it waited for its class's baseline) and is
        judged now: its decision, improvement, threshold and claim are rewritten instead.

        `versions` are new target versions (the candidate, merges); `claims` are inserted or
        replaced; `decisions` rewrite earlier results' decisions (a claim's verdict);
        `champion_metric` = (study, seq, metric) sets the score of a champion row that had
        none; `new_champion` appends to the champion chain.
        """
        with self.transaction() as db:
            for version in versions:
                self._insert_version(db, version)
            if rewrite:
                db.execute("UPDATE results SET decision=?, improvement=?, threshold=?, claim=? WHERE id=?",
                           (result.decision, result.improvement, result.threshold, result.claim, result.id))
            else:
                db.execute(
                    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (result.id, result.study, result.kind, result.worker_id, result.worker_name,
                     result.hardware_class, result.version, result.parent, result.status, result.metric,
                     msgpack.packb(result.extra), result.description, result.log_tail, result.decision,
                     msgpack.packb(result.timings), result.created, result.claim, result.improvement,
                     result.threshold),
                )
                db.execute("UPDATE leases SET state='reported', closed=? WHERE id=?", (result.created, result.id))
            for claim in claims:
                db.execute(
                    "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (claim.id, claim.study, claim.version, claim.parent, claim.origin, claim.claimant_worker,
                     claim.claimant_result, claim.state, claim.reason, claim.created, claim.decided),
                )
            if decisions:
                db.executemany("UPDATE results SET decision=? WHERE id=?", [(d, rid) for rid, d in decisions])
            if champion_metric is not None:
                study, seq, metric = champion_metric
                db.execute("UPDATE champions SET metric=?, result_id=? WHERE study=? AND seq=? AND metric IS NULL",
                           (metric, result.id, study, seq))
            if new_champion is not None:
                db.execute(
                    "INSERT INTO champions VALUES (?, ?, ?, ?, ?, ?)",
                    (new_champion.study, new_champion.seq, new_champion.version, new_champion.metric,
                     new_champion.result_id, new_champion.created),
                )

    def claims(self, study: str, state: str | None = None) -> list[ClaimRecord]:
        sql, args = "SELECT * FROM claims WHERE study=?", [study]
        if state is not None:
            sql, args = sql + " AND state=?", [study, state]
        rows = self._db.execute(sql + " ORDER BY created, id", args).fetchall()
        return [ClaimRecord(r["id"], r["study"], r["version"], r["parent"], r["origin"], r["claimant_worker"],
                            r["claimant_result"], r["state"], r["reason"], r["created"], r["decided"]) for r in rows]

    def result(self, result_id: str) -> ResultRecord | None:
        row = self._db.execute("SELECT * FROM results WHERE id=?", (result_id,)).fetchone()
        return self._result(row) if row else None

    def results(self, study: str) -> list[ResultRecord]:
        rows = self._db.execute("SELECT * FROM results WHERE study=? ORDER BY created, id", (study,)).fetchall()
        return [self._result(r) for r in rows]

    def count_results_by_worker(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._db.execute("SELECT worker_id, COUNT(*) FROM results GROUP BY worker_id")}

    def study_counts(self, study: str) -> StudyCounts:
        free = sorted(words.FREE_STATUSES)  # a duplicate costs no evaluation
        evaluations = self._db.execute(
            f"SELECT COUNT(*) FROM results WHERE study=? AND status NOT IN ({', '.join('?' * len(free))})",
            (study, *free)).fetchone()[0]
        champions = self._db.execute("SELECT COUNT(*) FROM champions WHERE study=?", (study,)).fetchone()[0]
        in_flight = self._db.execute(
            "SELECT COUNT(*) FROM leases WHERE study=? AND state='active'", (study,)).fetchone()[0]
        failed = self._db.execute(
            "SELECT COUNT(*) FROM results WHERE study=? AND kind='baseline' AND status!='ok'", (study,)).fetchone()[0]
        failed_edits = self._db.execute(
            "SELECT COUNT(*) FROM results WHERE study=? AND kind='explore' AND status='mutator-error'",
            (study,)).fetchone()[0]
        return StudyCounts(evaluations, max(champions - 1, 0), in_flight, failed, failed_edits)

    def study_spend(self, study: str) -> tuple[int, float]:
        """(tokens, US dollars) the study's agents spent, from its results' timings."""
        tokens, usd = 0, 0.0
        for (blob,) in self._db.execute("SELECT timings FROM results WHERE study=? AND kind='explore'", (study,)):
            timings = msgpack.unpackb(blob)
            tokens += int(timings.get("llm_tokens", 0))
            usd += float(timings.get("cost_usd", 0.0))
        return tokens, usd

    @staticmethod
    def _result(row: sqlite3.Row) -> ResultRecord:
        return ResultRecord(
            row["id"], row["study"], row["kind"], row["worker_id"], row["worker_name"], row["hardware_class"],
            row["version"], row["parent"], row["status"], row["metric"], msgpack.unpackb(row["extra"]),
            row["description"], row["log_tail"], row["decision"], msgpack.unpackb(row["timings"]), row["created"],
            row["claim"], row["improvement"], row["threshold"],
        )

    # -- credit and the web page (issue 16): lean reads, no contents or logs ----------------

    def credit_inputs(self) -> tuple[list[Work], list[Claim], list[Step]]:
        """Every result, claim and champion as the credit module reads them, without the
        candidates' contents or log tails (a public page refreshes from these)."""
        work = [Work(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                     float(msgpack.unpackb(r[9]).get("evaluate_seconds", 0.0)), r[10], r[11], r[12])
                for r in self._db.execute(
                    "SELECT id, study, kind, worker_id, hardware_class, version, status, decision, claim, timings, "
                    "created, improvement, metric FROM results ORDER BY created, id")]
        claims = [Claim(*r) for r in self._db.execute(
            "SELECT id, study, version, origin, claimant_worker, claimant_result, state, reason, created, decided "
            "FROM claims ORDER BY created, id")]
        steps = [Step(*r) for r in self._db.execute(
            "SELECT study, seq, version, metric, created FROM champions ORDER BY study, seq")]
        return work, claims, steps

    def version_descriptions(self, study: str, hashes: Sequence[str]) -> dict[str, str]:
        """The descriptions of some versions of a study (no contents)."""
        out: dict[str, str] = {}
        for start in range(0, len(hashes), 500):
            chunk = list(hashes[start:start + 500])
            out.update((r[0], r[1]) for r in self._db.execute(
                f"SELECT hash, description FROM versions WHERE study=? AND hash IN ({','.join('?' * len(chunk))})",
                [study, *chunk]))
        return out

    def recent_results(self, study: str, limit: int) -> list[ResultRecord]:
        """A study's newest results, newest first."""
        rows = self._db.execute("SELECT * FROM results WHERE study=? ORDER BY created DESC, id DESC LIMIT ?",
                                (study, limit)).fetchall()
        return [self._result(r) for r in rows]
