"""What one `autoswarm run` spent its evaluations on, read from its database.

    python benchmarks/run_stats.py runs/tinylm-*/swarm.db [...]

For each database: evaluations (and baselines among them), explores and how many ended
stale (`stale-merged`, `stale-conflict`, `stale-included`), evaluations that started on a
champion already replaced (an explore of an old champion, a baseline of one: the work the
stale-lease hand-back is for) and those that were on one by the time they were reported,
leases handed back unevaluated, champions kept and the time of the first keep (from the run's
first lease). Read-only: the database may belong to a run still going.
"""

from __future__ import annotations

import argparse
import bisect
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import msgpack

STALE_DECISIONS = ("stale-merged", "stale-conflict", "stale-included")


@dataclass(frozen=True)
class RunStats:
    evaluations: int
    baselines: int
    explores: int
    stale_explores: int          # explores decided stale-*
    started_on_replaced: int     # evaluations (explore, baseline) whose champion was replaced before they started
    reported_on_replaced: int    # ... replaced before they were reported
    released: int                # leases handed back unevaluated (stale ones, and those leased ahead at the end)
    kept: int
    first_keep_seconds: float | None

    def describe(self) -> str:
        share = f"{self.stale_explores}/{self.explores}" if self.explores else "0/0"
        first = f"{self.first_keep_seconds:.0f} s" if self.first_keep_seconds is not None else "—"
        return (f"evaluations {self.evaluations} (baselines {self.baselines}), explores stale {share}, "
                f"started on a replaced champion {self.started_on_replaced}, reported on one "
                f"{self.reported_on_replaced}, leases handed back {self.released}, kept {self.kept}, "
                f"first keep {first}")


def run_stats(db: Path) -> RunStats:
    """The figures above for one run's database."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        champions = conn.execute("SELECT created, version FROM champions ORDER BY seq").fetchall()
        results = conn.execute("SELECT kind, decision, parent, version, created, timings FROM results").fetchall()
        first_lease, = conn.execute("SELECT MIN(issued) FROM leases").fetchone()
        released, = conn.execute("SELECT COUNT(*) FROM leases WHERE state = 'released'").fetchone()
    times = [created for created, _ in champions]

    def champion_at(when: float) -> str:
        """The champion just before `when` (a keep's own result is judged against its predecessor)."""
        i = bisect.bisect_left(times, when) - 1
        return champions[max(i, 0)][1]

    started = reported = 0
    for kind, _, parent, version, created, timings in results:
        basis = parent if kind == "explore" else version if kind == "baseline" else None
        if basis is None:
            continue
        evaluate = float(msgpack.unpackb(timings).get("evaluate_seconds", 0.0))
        started += champion_at(created - evaluate) != basis
        reported += champion_at(created) != basis
    explores = [r for r in results if r[0] == "explore"]
    return RunStats(
        evaluations=len(results), baselines=sum(r[0] == "baseline" for r in results), explores=len(explores),
        stale_explores=sum(r[1] in STALE_DECISIONS for r in explores),
        started_on_replaced=started, reported_on_replaced=reported, released=released, kept=len(champions) - 1,
        first_keep_seconds=champions[1][0] - first_lease if len(champions) > 1 and first_lease else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("databases", nargs="+", type=Path)
    for db in parser.parse_args().databases:
        print(f"{db}: {run_stats(db).describe()}")


if __name__ == "__main__":
    main()
