"""The swarm's public standings: credit, leaderboards, studies and lineage, as one snapshot.

Read by the web page, its JSON API, `autoswarm credit` and the Prometheus credit gauges.
The snapshot is rebuilt at most every few seconds, in a process of its own, from a read-only
connection (SQLite in WAL mode lets it read while the coordinator writes), so a page view
never holds up the gRPC event loop for the time a full read of the results takes. What only
the engine knows (who is quarantined, workers' live states) is read on the loop first: a
cheap copy.

Public means public: owners appear under their display name or a pseudonym, machines of an
anonymous owner under numbers, and nothing carries an address, a token or a log.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from prometheus_client.core import GaugeMetricFamily, Metric

from autoswarm.coordinator import credit
from autoswarm.coordinator.census import unpickled_rows
from autoswarm.coordinator.auth import Profile, profiles
from autoswarm.coordinator.engine import StudySummary
from autoswarm.coordinator.store import ResultRecord, Store

REFRESH_SECONDS = 5.0
MAX_SERIES_POINTS = 400        # points of one chart: a long study's history is thinned to this
MAX_TEAM_LABELS = 20           # Prometheus: the teams with most credit; the rest count as "other"
RECENT_RESULTS = 50
REBUILD_SPACING = 20.0         # a rebuild waits at least this many times its own cost: ~5% of a core at most

log = logging.getLogger("autoswarm.coordinator.standings")


@dataclass(frozen=True)
class Machine:
    worker_id: str             # internal only: never rendered (the API and pages use `label`)
    label: str
    hardware_class: str
    state: str
    credit: float
    recent_average: float
    granted: int
    results: int


@dataclass(frozen=True)
class Volunteer:
    name: str                  # public name
    team: str
    anonymous: bool
    credit: float
    recent_average: float
    discoveries: int
    discovery: float
    granted: int
    results: int
    badge: str
    machines: tuple[Machine, ...]
    credit_series: tuple[tuple[float, float], ...]        # (unix time, cumulative credit)


@dataclass(frozen=True)
class Team:
    name: str
    members: int
    credit: float
    recent_average: float
    discoveries: int
    discovery: float
    badge: str


@dataclass(frozen=True)
class LineageStep:
    seq: int
    version: str
    description: str
    metric: float | None
    created: float
    improvement: float
    found_by: tuple[str, ...]          # public owner names of the contributors
    verified_by: tuple[str, ...]       # machine labels of the verifiers that agreed
    deltas: dict[str, float]           # improvement over the previous champion, per hardware class
    cross_class: bool                  # measured on more than one hardware class


@dataclass(frozen=True)
class StudyPage:
    summary: StudySummary
    compare: str
    quorum: int
    champion_series: tuple[tuple[float, float], ...]     # (unix time, champion metric)
    lineage: tuple[LineageStep, ...]


@dataclass(frozen=True)
class Snapshot:
    computed: float
    studies: dict[str, StudyPage]
    volunteers: dict[str, Volunteer]
    teams: dict[str, Team]
    labels: dict[str, str] = field(default_factory=dict)      # worker id -> public machine label
    owners: dict[str, str] = field(default_factory=dict)      # worker id -> public owner name


class WorkerRow(NamedTuple):
    """What the standings need of a worker (built in the rebuild's process from the census's
    rows, `summaries.WorkerRowTuple`, pickled a slice at a time: pickling holds the GIL against
    the loop, and a list of 100,000 summaries took 1.3 s, as many tuples 0.1 s)."""

    id: str
    name: str
    owner: str
    registered: float
    hardware_class: str
    state: str
    quarantined: bool


def _thin(points: Sequence[tuple[float, float]], limit: int = MAX_SERIES_POINTS) -> tuple[tuple[float, float], ...]:
    """At most `limit` points, evenly picked, always keeping the last."""
    if len(points) <= limit:
        return tuple(points)
    step = len(points) / (limit - 1)
    return tuple(points[int(i * step)] for i in range(limit - 1)) + (points[-1],)


def _until(points: Sequence[tuple[float, float]], now: float) -> tuple[tuple[float, float], ...]:
    """The series thinned, with its last value carried to `now` (a step chart then ends today)."""
    thinned = _thin(points)
    return thinned + ((now, thinned[-1][1]),) if thinned and thinned[-1][0] < now else thinned


def _cumulative(grants: Sequence[credit.Grant], now: float) -> tuple[tuple[float, float], ...]:
    total, points = 0.0, []
    for g in sorted(grants, key=lambda g: g.when):
        total += g.credit
        points.append((g.when, total))
    return _until(points, now)


def _identities(workers: Sequence[WorkerRow], people: dict[str, Profile]) -> tuple[
        dict[str, str], dict[str, str], dict[str, str], dict[str, bool]]:
    """Worker id -> (public owner, team, machine label), and owner -> anonymous."""
    owner_of: dict[str, str] = {}
    team_of: dict[str, str] = {}
    label_of: dict[str, str] = {}
    anonymous: dict[str, bool] = {}
    numbers: dict[str, int] = {}
    for w in sorted(workers, key=lambda w: w.registered):
        # A worker with no owner (a coordinator without tokens) stands for itself.
        owner = w.owner or w.name
        profile = people.get(owner, Profile(owner, "", False))
        owner_of[w.id] = profile.public
        team_of[w.id] = profile.team
        anonymous[profile.public] = profile.anonymous
        numbers[profile.public] = numbers.get(profile.public, 0) + 1
        label_of[w.id] = f"machine {numbers[profile.public]}" if profile.anonymous else w.name
    return owner_of, team_of, label_of, anonymous


def build(store: Store, studies: Sequence[StudySummary], workers: Sequence[WorkerRow],
          policies: dict[str, tuple[str, int, float]], now: float) -> Snapshot:
    """The snapshot from the store (read here) and the engine's summaries (read by the caller).

    `policies`: study -> (compare, quorum, timeout).
    """
    work, claims, steps = store.credit_inputs()
    quarantined = frozenset(w.id for w in workers if w.quarantined)
    owner_of, team_of, label_of, anonymous = _identities(workers, profiles(store.tokens()))
    timeouts = {name: policy[2] for name, policy in policies.items()}
    granted = credit.grants(work, claims, quarantined, timeouts)
    direction = {s.name: s.direction for s in studies}
    found: list[credit.Discovery] = []
    pages: dict[str, StudyPage] = {}
    for s in studies:
        chain = [st for st in steps if st.study == s.name]
        mine = [c for c in claims if c.study == s.name]
        study_work = [w for w in work if w.study == s.name]
        discovered = credit.discoveries(direction[s.name], chain, mine, study_work, quarantined)
        found.extend(discovered)
        pages[s.name] = _study_page(store, s, policies.get(s.name, ("", 0, 0.0)), chain, mine, study_work,
                                    discovered, owner_of, label_of, now)
    results: dict[str, int] = {}
    for w in work:
        results[w.worker_id] = results.get(w.worker_id, 0) + 1
    members = [credit.Member(w.id, owner_of[w.id], team_of[w.id]) for w in workers]
    table = credit.standings(members, granted, found, now, results)
    grants_by_owner: dict[str, list[credit.Grant]] = {}
    for g in granted:
        if g.worker_id in owner_of:
            grants_by_owner.setdefault(owner_of[g.worker_id], []).append(g)
    machines_of: dict[str, list[Machine]] = {}
    for w in workers:
        mine = table.workers[w.id]
        machines_of.setdefault(owner_of[w.id], []).append(Machine(
            w.id, label_of[w.id], w.hardware_class, w.state, mine.credit, mine.recent_average,
            mine.granted, mine.results))
    volunteers = {}
    for name, t in table.owners.items():
        machines = tuple(machines_of.get(name, ()))
        volunteers[name] = Volunteer(name, t.team, anonymous.get(name, False), t.credit, t.recent_average,
                                     t.discoveries, t.discovery, t.granted, t.results, t.badge, machines,
                                     _cumulative(grants_by_owner.get(name, []), now))
    teams = {name: Team(name, len(t.members), t.credit, t.recent_average, t.discoveries, t.discovery, t.badge)
             for name, t in table.teams.items()}
    return Snapshot(now, pages, volunteers, teams, label_of, owner_of)


def _study_page(store: Store, summary: StudySummary, policy: tuple[str, int, float], chain: list[credit.Step],
                claims: list[credit.Claim], work: list[credit.Work], discovered: list[credit.Discovery],
                owner_of: dict[str, str], label_of: dict[str, str], now: float) -> StudyPage:
    accepted = {c.version: c for c in claims if c.state == "accepted"}
    descriptions = store.version_descriptions(summary.name, [s.version for s in chain])
    by_step: dict[int, list[credit.Discovery]] = {}
    for d in discovered:
        by_step.setdefault(d.seq, []).append(d)
    agreeing: dict[str, list[credit.Work]] = {}
    for w in work:
        if w.claim and w.decision in credit.AGREEING:
            agreeing.setdefault(w.claim, []).append(w)
    lineage = []
    for step in chain:
        claim = accepted.get(step.version)
        measured = agreeing.get(claim.id, []) if claim else []
        by_class: dict[str, list[float]] = {}
        for w in measured:
            if w.improvement is not None:
                by_class.setdefault(w.hardware_class, []).append(w.improvement)
        deltas = {cls: sum(v) / len(v) for cls, v in sorted(by_class.items())}
        found = by_step.get(step.seq, [])
        lineage.append(LineageStep(
            step.seq, step.version, descriptions.get(step.version, ""), step.metric, step.created,
            sum(d.improvement for d in found) if found else 0.0,
            tuple(dict.fromkeys(owner_of.get(d.worker_id, "?") for d in found)),
            tuple(label_of.get(w.worker_id, "?") for w in measured if w.kind == "verify"),
            deltas, len(deltas) > 1))
    series = _until([(s.created, s.metric) for s in chain if s.metric is not None], now)
    return StudyPage(summary, policy[0], policy[1], series, tuple(lineage))


REBUILD_NICENESS = 10         # the rebuilding process yields the CPU to the coordinator's loop


def rebuild_interval(refresh: float, cost: float, spacing: float = REBUILD_SPACING) -> float:
    """How long a snapshot is served before the next rebuild: the refresh interval, or `spacing`
    times what the last rebuild cost in CPU seconds (its process's, and the loop's part of it),
    whichever is longer; a refresh of 0 rebuilds on every read.

    The cost grows with the store and the swarm (every result and every worker is read again):
    ~4 s of a core at 100,000 volunteers, which every 20 s (five times its cost, as before) was a
    fifth of a core on a 2-core machine where the loop needs most of one. Spaced by twenty
    times its cost it never takes more than ~5% of a core, however big the swarm grows; the
    standings are then older (~80 s there), which credit can afford and a loop cannot."""
    if refresh <= 0:
        return 0.0
    return max(refresh, spacing * max(cost, 0.0))


def _exit_with(parent: int) -> None:
    """In the rebuilding process: run at a lower priority than the coordinator (a rebuild at
    100,000 workers is ~4 s of a core, on machines where the loop needs most of one), and exit
    as soon as the coordinator is gone, even after a kill -9.

    Polling the parent id works wherever Python does (Linux's PR_SET_PDEATHSIG would not on a Mac).
    """
    os.nice(REBUILD_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-coordinator", daemon=True).start()


@dataclass(frozen=True)
class TeamCredit:
    """What the Prometheus credit gauges show of one team label."""

    credit: float
    recent_average: float
    discoveries: int


def team_credit(snap: Snapshot) -> dict[str, TeamCredit]:
    """The credit gauges' values: sums per team label ('none': owners in no team; past the
    `MAX_TEAM_LABELS` teams with most credit: 'other')."""
    top = {t.name for t in sorted(snap.teams.values(), key=lambda t: -t.credit)[:MAX_TEAM_LABELS]}
    sums: dict[str, TeamCredit] = {}
    for v in snap.volunteers.values():
        label = "none" if not v.team else (v.team if v.team in top else "other")
        was = sums.get(label, TeamCredit(0.0, 0.0, 0))
        sums[label] = TeamCredit(was.credit + v.credit, was.recent_average + v.recent_average,
                                 was.discoveries + v.discoveries)
    return dict(sorted(sums.items()))


@dataclass(frozen=True)
class Rebuilt:
    """A rebuild, as its process hands it back: the snapshot pickled, the credit gauges, the cost.

    The snapshot stays pickled until a page or a credit call reads it: unpickled on its arrival,
    a swarm of 100,000 volunteers was 1.2 s of the coordinator's GIL and 400,000 objects for the
    collector at every rebuild, for the Prometheus gauges that need a few sums."""

    computed: float
    snapshot: bytes
    teams: dict[str, TeamCredit]
    cost: float          # CPU seconds the rebuild took in its process (without that process's start)


def rebuild(db: str, studies: Sequence[StudySummary], workers: Sequence[bytes],
            policies: dict[str, tuple[str, int, float]], now: float) -> Rebuilt:
    """What the rebuilding process runs: `build` on a read-only connection of its own, from the
    census's rows (`census.WorkerCensus.worker_rows`), and what it costs in CPU there (not the
    start of that process, a fresh interpreter, nor the time a busy machine made it wait for a core)."""
    started = time.process_time()
    store = Store(db, readonly=True)
    try:
        snap = build(store, studies, [WorkerRow(*row) for row in unpickled_rows(workers)], policies, now)
    finally:
        store.close()
    blob = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
    return Rebuilt(now, blob, team_credit(snap), time.process_time() - started)


class StandingsBook:
    """Keeps the latest snapshot; at most one rebuild runs at a time, in a process of its own.

    A process, not a thread: the rebuild is Python work over every result, and on a thread it
    would hold the GIL against the gRPC loop for as long as it runs. Rebuilds are also spaced
    by twenty times their cost (`rebuild_interval`), however big the store and the swarm.
    The snapshot comes back pickled (`Rebuilt`) and is unpickled once, for the first page or
    credit call that reads it; the Prometheus gauges read the sums that came with it.
    """

    def __init__(self, db: Path | str, read_engine: Callable[[], tuple[list[StudySummary], Sequence[bytes],
                                                                        dict[str, tuple[str, int, float]]]],
                 refresh: float = REFRESH_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self._db = Path(db)
        self._read_engine = read_engine
        self._refresh = refresh
        self._clock = clock
        self._lock = asyncio.Lock()
        self._results_lock = asyncio.Lock()
        self._store: Store | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._rebuilt: Rebuilt | None = None
        self._loop_cost = 0.0      # CPU seconds the loop spent on the last rebuild (reading the engine)
        self._read: tuple[Rebuilt, Snapshot] | None = None     # the last rebuild, unpickled for a reader

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self._db, readonly=True)
        return self._store

    def _fresh_for(self) -> float:
        """How long a snapshot is served: the refresh interval, longer while rebuilds are costly."""
        cost = self._rebuilt.cost + self._loop_cost if self._rebuilt is not None else 0.0
        return rebuild_interval(self._refresh, cost)

    @property
    def interval(self) -> float:
        """Seconds between rebuilds now (what `keep_fresh` waits)."""
        return self._fresh_for()

    @property
    def teams(self) -> dict[str, TeamCredit] | None:
        """The credit gauges of the last rebuild (None before the first)."""
        return self._rebuilt.teams if self._rebuilt is not None else None

    async def _fresh(self) -> Rebuilt:
        """The last rebuild, or a new one when it is older than `_fresh_for`; the caller holds the lock."""
        rebuilt = self._rebuilt
        if rebuilt is not None and self._clock() - rebuilt.computed < self._fresh_for():
            return rebuilt
        started = time.thread_time()
        studies, workers, policies = self._read_engine()
        self._loop_cost = time.thread_time() - started
        now = self._clock()
        if self._pool is None:
            # spawn: a forked child of a process running gRPC's threads is not safe.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_exit_with, initargs=(os.getpid(),))
        self._rebuilt = await asyncio.get_running_loop().run_in_executor(
            self._pool, rebuild, str(self._db), studies, workers, policies, now)
        return self._rebuilt

    async def snapshot(self) -> Snapshot:
        """A snapshot no older than the refresh interval (longer for a store slow to read)."""
        async with self._lock:
            rebuilt = await self._fresh()
            if self._read is None or self._read[0] is not rebuilt:
                # On the loop: unpickling holds the GIL throughout wherever it runs (~12 us a
                # volunteer). Once per rebuild, and only while someone reads the pages.
                self._read = (rebuilt, pickle.loads(rebuilt.snapshot))
            return self._read[1]

    async def recent_results(self, study: str, limit: int = RECENT_RESULTS) -> list[ResultRecord]:
        """A study's newest results: one indexed query, on a thread."""
        async with self._results_lock:
            return await asyncio.to_thread(lambda: self._open().recent_results(study, limit))

    async def keep_fresh(self) -> None:
        """Rebuilds the standings as often as `rebuild_interval` allows, for the Prometheus gauges, forever."""
        while True:
            try:
                async with self._lock:
                    await self._fresh()
            except Exception:  # noqa: BLE001 - a failed rebuild is retried next round; pages report their own
                log.exception("credit standings: rebuild failed")
            # Until the snapshot is due (a scrape interval is seconds at least): not a wake-up every
            # refresh interval that finds the snapshot still fresh.
            rebuilt = self._rebuilt
            due = rebuilt.computed + self._fresh_for() - self._clock() if rebuilt is not None else 0.0
            await asyncio.sleep(max(self._refresh, 1.0, due))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._store is not None:
            self._store.close()
            self._store = None


class CreditCollector:
    """Prometheus gauges of the latest rebuild: credit and discoveries per team (bounded labels,
    `team_credit`). Gauges, not counters: credit is revoked when a worker is quarantined.
    """

    def __init__(self, book: StandingsBook) -> None:
        self.book = book

    def collect(self) -> Iterator[Metric]:
        teams = self.book.teams
        if teams is None:
            return
        granted = GaugeMetricFamily("autoswarm_credit_granted", "Credit granted, per team ('none': owners in no "
                                    f"team; past the {MAX_TEAM_LABELS} teams with most credit: 'other').",
                                    labels=["team"])
        recent = GaugeMetricFamily("autoswarm_credit_recent_average", "Recent average credit (credit per day, "
                                   "one-week half-life), per team.", labels=["team"])
        found = GaugeMetricFamily("autoswarm_discoveries", "Champion steps credited to a team's volunteers "
                                  "(a step shared by two teams counts for both).", labels=["team"])
        for label, team in teams.items():
            granted.add_metric([label], team.credit)
            recent.add_metric([label], team.recent_average)
            found.add_metric([label], team.discoveries)
        yield from (granted, recent, found)

    def describe(self) -> list[Metric]:
        return []      # collected lazily: nothing to register up front
