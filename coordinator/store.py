"""The coordinator's durable state in SQLite (WAL mode). Only this module and its two parts,
`store_base` (connection, transactions, schema) and `store_work` (leases, results, claims),
speak SQL.

Every method that changes state commits before it returns, so a caller that acknowledges
after the call has acknowledged only what is on disk. Changes that belong together (a
result and the champion it makes) are one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from autoswarm.coordinator.records import (  # noqa: F401  (the records are part of the store's interface)
    ChampionRecord, ClaimRecord, LeaseRecord, ResultRecord, StudyCounts, StudyEvent, StudyRecord, TokenRecord,
    VersionRecord, WorkerRecord,
)
from autoswarm.coordinator.store_base import SCHEMA_VERSION, WalCheckpointer  # noqa: F401  (as above)
from autoswarm.coordinator.store_work import WorkRows


class Store(WorkRows):
    """SQLite-backed state: studies, bundles, versions, champions, workers and tokens here; the
    work (leases, results, claims) in `store_work.WorkRows`; the connection in `store_base`.
    Not thread-safe: one coordinator event loop owns it."""

    # -- bundles and studies -------------------------------------------------------------

    def add_study(self, name: str, spec: dict[str, Any], bundle_hash: str, bundle: bytes,
                  max_evaluations: int, initial: VersionRecord) -> None:
        """Stores a new study with its bundle and its initial version as champion 0, all dated
        when that version was made (the engine's clock, which a simulation sets)."""
        now = initial.created
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
        self._write_each("UPDATE workers SET state=?, last_seen=? WHERE id=?",
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

