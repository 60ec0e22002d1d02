"""The rows of the work in flight and done: leases, results, claims, and the lean reads of
them that credit and the web page make. Part of `store.Store`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import msgpack

from autoswarm import words
from autoswarm.coordinator.credit import Claim, Step, Work
from autoswarm.coordinator.records import ClaimRecord, ChampionRecord, LeaseRecord, ResultRecord, StudyCounts, VersionRecord
from autoswarm.coordinator.store_base import StoreBase


_INSERT_RESULT = "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_LEASE = "INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_VERSION = "INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)"
_LEASE_REPORTED = "UPDATE leases SET state='reported', closed=? WHERE id=?"
# The same for held rows, in the form whose VALUES group `many_rows` repeats: (closed, id).
_LEASES_REPORTED = "UPDATE leases SET state='reported', closed=v.column1 FROM (VALUES (?, ?)) AS v WHERE leases.id=v.column2"
# Heartbeats' lease extensions, held: (deadline, id, worker). Grouped first, because UPDATE ...
# FROM takes an arbitrary one of several rows that match: two heartbeats for one lease in a
# batch must leave the later deadline, as one statement each did.
_LEASES_EXTENDED = ("UPDATE leases SET deadline=MAX(deadline, v.d) FROM (SELECT column2 AS id, column3 AS w, "
                    "MAX(column1) AS d FROM (VALUES (?, ?, ?)) GROUP BY column2, column3) AS v "
                    "WHERE leases.id=v.id AND leases.worker_id=v.w AND leases.state='active'")


def _result_row(result: ResultRecord, pack: Callable[[Any], bytes]) -> tuple:
    """A result as the values of `_INSERT_RESULT`; `pack` is a `msgpack.Packer`'s (one kept by
    the store: `msgpack.packb` makes a new packer on every call, half its cost for these dicts)."""
    return (result.id, result.study, result.kind, result.worker_id, result.worker_name, result.hardware_class,
            result.version, result.parent, result.status, result.metric, pack(result.extra),
            result.description, result.log_tail, result.decision, pack(result.timings), result.created,
            result.claim, result.improvement, result.threshold)


class WorkRows(StoreBase):
    """Leases, results and claims (see the module's docstring)."""

    # A cycle's four rows, held until the batch's commit (`StoreBase._defer`). In this order
    # they are written as they were issued: the keys are fresh (a lease's id is new, a result's
    # is its lease's, which has none yet), a version is its hash (OR IGNORE), and the only
    # row that needs another first, a lease closed by its result, comes after the leases.
    # Extensions come last: they touch active leases only, so one reported in the same batch
    # keeps its state either way, and one leased in it is there first.
    DEFERRED = (_INSERT_LEASE, _INSERT_VERSION, _INSERT_RESULT, _LEASES_REPORTED, _LEASES_EXTENDED)

    @cached_property
    def _pack(self) -> Callable[[Any], bytes]:
        """Packs a result's dicts (one packer per store, which one thread uses)."""
        return msgpack.Packer().pack

    # -- leases ---------------------------------------------------------------------------

    def new_lease_id(self, now: float) -> str:
        """A fresh lease id: "l-" and 20 hex digits, growing with time.

        Random ids would make every lease and every result insert into a random page of its
        table's primary-key index (one more page written per commit each); growing ones
        append. 14 digits count 1/4096 ms (unique within this process even if the clock
        stands still), 6 random ones keep apart ids from runs whose clocks disagree.
        """
        self._lease_seq = max(self._lease_seq + 1, int(now * 4_096_000))
        return f"l-{self._lease_seq:014x}{self.ids.token_hex(3)}"

    def insert_lease(self, lease: LeaseRecord) -> None:
        """Stores a new lease (its id fresh: `new_lease_id`); held until the batch's commit."""
        self._defer(
            _INSERT_LEASE,
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
        """Moves the deadlines of a worker's active leases (heartbeat).

        In a group-commit batch the rows are held to its commit (`_defer`): a heartbeat then
        costs the event loop no statement, and no wait for a background commit to finish
        (the connection is the writer thread's until then), which was most of its store time.
        Expiry runs on the engine's in-memory deadlines; any statement that reads or writes
        leases now writes the held rows first (`_db`).
        """
        for lid in lease_ids:
            if lid in deadline_for:
                self._defer(_LEASES_EXTENDED, (deadline_for[lid], lid, worker_id))

    def close_leases(self, lease_ids: Sequence[str], state: str, when: float) -> int:
        """Marks active leases expired or released; returns how many changed."""
        cur = self._write_each("UPDATE leases SET state=?, closed=? WHERE id=? AND state='active'",
                               [(state, when, lid) for lid in lease_ids])
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
        if self._group_commit and not (rewrite or claims or decisions or champion_metric or new_champion):
            # Most reports: the result, its candidate, its lease: three rows held for the
            # batch's commit (`_defer`). The result's key is its lease's, which the engine
            # closes in memory as it reports, so a second result for it never gets here.
            self._defer(_INSERT_RESULT, _result_row(result, self._pack))
            for version in versions:   # OR IGNORE: a version is its hash
                self._defer(_INSERT_VERSION, (version.study, version.hash, version.parent, version.content,
                                              version.description, version.author, version.created))
            self._defer(_LEASES_REPORTED, (result.created, result.id))
            return
        with self.transaction() as db:
            for version in versions:
                self._insert_version(db, version)
            if rewrite:
                db.execute("UPDATE results SET decision=?, improvement=?, threshold=?, claim=? WHERE id=?",
                           (result.decision, result.improvement, result.threshold, result.claim, result.id))
            else:
                db.execute(_INSERT_RESULT, _result_row(result, self._pack))
                db.execute(_LEASE_REPORTED, (result.created, result.id))
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
