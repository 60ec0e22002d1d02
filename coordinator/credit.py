"""Granted credit, recent average credit, badges and discovery credit. Pure decision logic.

BOINC's rules, with what autoswarm knows on top:

- **Granted, never claimed.** A result earns credit only once the coordinator counts it as
  valid work: status ok, from a worker that is not quarantined, and — for a result that made
  or measured a claim — only once the claim is decided and the result agreed with the
  outcome (the claimant and its confirmers of an accepted claim; the refuters of a rejected
  one). A pending claim's results earn nothing yet.
- **Normalised across hardware.** The unit is evaluation seconds scaled by the class's speed
  relative to the study's *reference class* (the class with the most valid results), measured
  from the seconds both classes took for the same versions: an evaluation that takes 6 s on a
  slow class and 2 s on the reference earns 2 on both. Seconds are what workers report, so a
  result counts at most the study's timeout, and a class's speed comes from the median of
  its members, so one worker that inflates its seconds inflates its own class's time too.
- **Revoked for lies.** Credit is computed from the record each time, never stored: a worker
  that gets quarantined loses all of it, including what it earned before it was caught.
- **Recent average credit** decays exponentially with a one-week half-life, in credit per
  day (a steady 10 a day converges to 10), as BOINC's RAC.
- **Discovery credit**: each champion step's improvement over the previous champion goes to
  the contributors of the edit that made it, followed through merges: a merge replaying B's
  edit credits B; several edits folded into one merge share it; the old champion's edits
  replayed onto a champion that overtook it credit the old champion's contributors.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

HALF_LIFE_SECONDS = 7 * 86400.0
DAY_SECONDS = 86400.0
BADGES: tuple[tuple[str, float], ...] = (("top 1%", 0.01), ("top 5%", 0.05), ("top 25%", 0.25))
MIN_SPEED, MAX_SPEED = 1e-3, 1e3       # a class measured 1000× off the reference is an error, not a GPU
DECIDED_STATES = frozenset({"accepted", "rejected", "unconfirmed", "superseded"})
NO_CREDIT_DECISIONS = frozenset({"duplicate", "no-change", "ignored",   # nothing new was learned
                                 "outvoted"})   # an agreeing majority of replicas disagreed with it
AGREEING = frozenset({"claim", "confirm", "keep"})   # a measurement that reproduced its claim
FOLDED_REASON = "folded into the merge "             # the engine's reason for a claim folded into a merge
SUPERSEDED_REASON = "the champion moved to "         # ... for an open claim replayed onto a new champion


@dataclass(frozen=True)
class Work:
    """One stored result, as credit sees it."""

    id: str
    study: str
    kind: str
    worker_id: str
    hardware_class: str
    version: str
    status: str
    decision: str
    claim: str
    seconds: float
    created: float
    improvement: float | None = None
    metric: float | None = None


@dataclass(frozen=True)
class Claim:
    """One claim with its verdict."""

    id: str
    study: str
    version: str
    origin: str
    claimant_worker: str
    claimant_result: str
    state: str
    reason: str
    created: float
    decided: float | None


@dataclass(frozen=True)
class Step:
    """One champion of a study's chain (seq 0 is the initial version)."""

    study: str
    seq: int
    version: str
    metric: float | None
    created: float


@dataclass(frozen=True)
class Grant:
    """Credit granted to a worker for one result."""

    worker_id: str
    study: str
    result_id: str
    credit: float
    when: float


@dataclass(frozen=True)
class Discovery:
    """A worker's share of one champion step's improvement."""

    worker_id: str
    study: str
    seq: int
    improvement: float      # in the metric's units, positive is better
    share: float            # of the study's whole progress so far (0..1), summable across studies
    when: float


@dataclass(frozen=True)
class Member:
    """A worker with whom it belongs to, for the tables."""

    worker_id: str
    owner: str              # the public owner name (the join token's, a display name, or a pseudonym)
    team: str               # "" when the owner is in no team


@dataclass
class Tally:
    """Totals of a worker, an owner or a team."""

    name: str
    credit: float = 0.0
    recent_average: float = 0.0
    discoveries: int = 0
    discovery: float = 0.0          # sum of study-progress shares, × 100 (points)
    results: int = 0                # results stored
    granted: int = 0                # of them, results that earned credit
    badge: str = ""
    team: str = ""
    members: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Standings:
    workers: dict[str, Tally]
    owners: dict[str, Tally]
    teams: dict[str, Tally]


def improvement(direction: str, before: float, after: float) -> float:
    """How much better `after` is than `before` (positive is better), in the metric's units."""
    return before - after if direction == "minimize" else after - before


def class_speeds(work: Sequence[Work], quarantined: frozenset[str] = frozenset()) -> dict[tuple[str, str], float]:
    """Speed of each (study, hardware class) relative to the study's reference class.

    The reference class (speed 1) has the most valid results in the study. Another class's
    speed is the median, over versions both evaluated, of reference seconds / its seconds;
    with no version in common, the ratio of their median seconds over everything.
    """
    seconds: dict[str, dict[str, dict[str, list[float]]]] = {}   # study -> class -> version -> seconds
    for w in work:
        if w.status == "ok" and w.seconds > 0 and w.worker_id not in quarantined:
            seconds.setdefault(w.study, {}).setdefault(w.hardware_class, {}).setdefault(w.version, []).append(w.seconds)
    speeds: dict[tuple[str, str], float] = {}
    for study, classes in seconds.items():
        reference = max(classes, key=lambda c: (sum(map(len, classes[c].values())), c))
        ref = {v: statistics.median(s) for v, s in classes[reference].items()}
        ref_all = statistics.median([x for s in classes[reference].values() for x in s])
        for cls, versions in classes.items():
            mine = {v: statistics.median(s) for v, s in versions.items()}
            shared = [ref[v] / mine[v] for v in mine if v in ref]
            if shared:
                speed = statistics.median(shared)
            else:
                speed = ref_all / statistics.median([x for s in versions.values() for x in s])
            speeds[(study, cls)] = min(max(speed, MIN_SPEED), MAX_SPEED)
    return speeds


def _grant_time(w: Work, claims: Mapping[str, Claim]) -> float | None:
    """When the result's credit is granted, or None while (or if) it earns none."""
    if w.status != "ok" or w.decision in NO_CREDIT_DECISIONS:
        return None
    claim = claims.get(w.claim) if w.claim else None
    if claim is None:
        return w.created               # work no replica judged: a baseline, a discard, a late check
    if claim.state not in DECIDED_STATES:
        return None                    # waits for its replicas to agree
    when = claim.decided if claim.decided is not None else w.created
    if claim.state == "superseded":
        # Nobody disagreed; the champion moved first. Checks were real work, a claim was not kept.
        return when if claim.claimant_result != w.id else None
    agreed = w.decision in AGREEING
    if claim.state == "accepted":
        return when if agreed else None
    return None if agreed or claim.claimant_result == w.id else when   # refuted: its refuters agreed


def grants(work: Sequence[Work], claims: Iterable[Claim], quarantined: frozenset[str],
           timeouts: Mapping[str, float]) -> list[Grant]:
    """The credit each valid result earns: its seconds (at most the study's timeout) × its class's speed."""
    by_id = {c.id: c for c in claims}
    speeds = class_speeds(work, quarantined)
    out = []
    for w in work:
        if w.worker_id in quarantined:
            continue                   # revoked: everything it ever earned, not only what comes next
        when = _grant_time(w, by_id)
        if when is None:
            continue
        seconds = min(max(w.seconds, 0.0), timeouts.get(w.study, math.inf))
        credit = seconds * speeds.get((w.study, w.hardware_class), 1.0)
        out.append(Grant(w.worker_id, w.study, w.id, credit, when))
    return out


def recent_average(grants_: Iterable[Grant], now: float, half_life: float = HALF_LIFE_SECONDS) -> float:
    """BOINC's recent average credit: credit per day, each grant decaying with `half_life`."""
    rate = math.log(2.0) / half_life
    return sum(g.credit * rate * math.exp(-rate * max(now - g.when, 0.0)) for g in grants_) * DAY_SECONDS


def _step_gain(direction: str, previous: Step, step: Step, measured: Sequence[Work]) -> float:
    """The step's improvement: the mean over classes of its confirming measurements' improvement
    over their class baselines; the champion metrics' difference when there are none."""
    by_class: dict[str, list[float]] = {}
    for w in measured:
        if w.improvement is not None and math.isfinite(w.improvement):
            by_class.setdefault(w.hardware_class, []).append(w.improvement)
    if by_class:
        gain = statistics.fmean(statistics.fmean(v) for v in by_class.values())
    elif previous.metric is not None and step.metric is not None:
        gain = improvement(direction, previous.metric, step.metric)
    else:
        gain = 0.0
    return max(gain, 0.0)


@dataclass
class _Sources:
    """Indexes of one study's claims and champions that say where a merge's edits came from."""

    folded: dict[str, list[Claim]]                    # version[:12] -> claims folded into that merge
    replayed: dict[tuple[float, str], list[Claim]]    # (decided, claimant) -> overtaken merges replayed then
    accepted: dict[str, Claim]                        # version -> its accepted claim
    chain_at: dict[float, int]                        # a champion's creation time -> its index in the chain
    chain: list[Step]

    @classmethod
    def of(cls, claims: Sequence[Claim], steps: Sequence[Step]) -> _Sources:
        folded: dict[str, list[Claim]] = {}
        replayed: dict[tuple[float, str], list[Claim]] = {}
        for c in claims:
            if c.state != "superseded":
                continue
            if c.reason.startswith(FOLDED_REASON):
                folded.setdefault(c.reason[len(FOLDED_REASON):], []).append(c)
            elif c.origin == "merge" and c.reason.startswith(SUPERSEDED_REASON) and c.decided is not None:
                replayed.setdefault((c.decided, c.claimant_worker), []).append(c)
        chain = sorted(steps, key=lambda s: s.seq)
        return cls(folded, replayed, {c.version: c for c in claims if c.state == "accepted"},
                   {s.created: i for i, s in enumerate(chain)}, chain)


def contributors(claim: Claim, claims: Sequence[Claim], steps: Sequence[Step],
                 finders: Mapping[str, str], _sources: _Sources | None = None, _depth: int = 0) -> list[str]:
    """The workers whose edits a claimed version holds that its parent did not (in order, distinct).

    One study's claims and champion steps. `finders` maps a version to the worker whose
    explore result produced it. A merge holds its claimant's edit, the edits of merges folded
    into it or overtaken and replayed as it, and — when it replays the old champion onto one
    that overtook it (no claimant, opened the moment that champion was accepted) — that old
    champion's contributors.
    """
    sources = _sources or _Sources.of(claims, steps)
    if _depth > 32:                    # a cycle would be a store inconsistency: stop, credit nobody more
        return []
    if claim.origin != "merge":
        return [claim.claimant_worker] if claim.claimant_worker else []
    found: list[str] = []
    if claim.claimant_worker:
        found.append(claim.claimant_worker)
    for other in [*sources.folded.get(claim.version[:12], []),
                  *sources.replayed.get((claim.created, claim.claimant_worker), [])]:
        if other.id != claim.id:
            found.extend(contributors(other, claims, steps, finders, sources, _depth + 1))
    if not found and claim.version in finders:
        found.append(finders[claim.version])        # a real candidate re-opened as a claim
    if not found:
        i = sources.chain_at.get(claim.created, -1)
        if i >= 2:
            replayed = sources.accepted.get(sources.chain[i - 1].version)
            if replayed is not None:
                found.extend(contributors(replayed, claims, steps, finders, sources, _depth + 1))
    return list(dict.fromkeys(found))


def discoveries(direction: str, steps: Sequence[Step], claims: Sequence[Claim], work: Sequence[Work],
                quarantined: frozenset[str] = frozenset()) -> list[Discovery]:
    """Each champion step's improvement, shared among its contributors; one study's steps."""
    chain = sorted(steps, key=lambda s: s.seq)
    accepted = {c.version: c for c in claims if c.state == "accepted"}
    finders: dict[str, str] = {}
    for w in sorted(work, key=lambda w: w.created):
        if w.kind == "explore" and w.status == "ok" and w.version:
            finders.setdefault(w.version, w.worker_id)
    measured: dict[str, list[Work]] = {}
    for w in work:
        if w.claim and w.decision in AGREEING:
            measured.setdefault(w.claim, []).append(w)
    gains: list[tuple[Step, float, list[str]]] = []
    sources = _Sources.of(claims, chain)
    for previous, step in zip(chain, chain[1:]):
        claim = accepted.get(step.version)
        if claim is None:
            continue
        who = [w for w in contributors(claim, claims, chain, finders, sources) if w not in quarantined]
        gains.append((step, _step_gain(direction, previous, step, measured.get(claim.id, [])), who))
    total = sum(g for _, g, _ in gains)
    out = []
    for step, gain, who in gains:
        for worker in who:
            out.append(Discovery(worker, step.study, step.seq, gain / len(who),
                                 (gain / total / len(who)) if total > 0 else 0.0, step.created))
    return out


def _badges(tallies: Mapping[str, Tally]) -> None:
    """Top 1/5/25% by recent average credit: rank ≤ fraction × count (ties share the rank).

    A rank is 1 + how many have more, found by bisecting the sorted averages: counted against
    every other owner it was quadratic, ~400 s of a core for 80,000 owners with credit."""
    ranked = [t for t in tallies.values() if t.recent_average > 0]
    ascending = sorted(t.recent_average for t in ranked)
    for t in ranked:
        rank = 1 + len(ascending) - bisect.bisect_right(ascending, t.recent_average)
        t.badge = next((name for name, fraction in BADGES if rank <= fraction * len(ranked)), "")


def standings(members: Iterable[Member], grants_: Iterable[Grant], found: Iterable[Discovery],
              now: float, results: Mapping[str, int] | None = None) -> Standings:
    """Credit, recent average, discoveries and badges per worker, per owner and per team."""
    member = {m.worker_id: m for m in members}
    workers: dict[str, Tally] = {wid: Tally(wid, team=m.team) for wid, m in member.items()}
    by_worker: dict[str, list[Grant]] = {}
    for g in grants_:
        by_worker.setdefault(g.worker_id, []).append(g)
    for wid, gs in by_worker.items():
        t = workers.setdefault(wid, Tally(wid))
        t.credit = sum(g.credit for g in gs)
        t.recent_average = recent_average(gs, now)
        t.granted = len(gs)
    for d in found:
        t = workers.setdefault(d.worker_id, Tally(d.worker_id))
        t.discoveries += 1
        t.discovery += 100.0 * d.share
    for wid, n in (results or {}).items():
        if wid in workers:
            workers[wid].results = n
    owners: dict[str, Tally] = {}
    teams: dict[str, Tally] = {}
    for wid, t in workers.items():
        m = member.get(wid)
        if m is None:
            continue
        groups = [(owners, m.owner)] + ([(teams, m.team)] if m.team else [])
        for table, name in groups:
            total = table.setdefault(name, Tally(name, team=m.team if table is owners else ""))
            total.credit += t.credit
            total.recent_average += t.recent_average
            total.discoveries += t.discoveries
            total.discovery += t.discovery
            total.results += t.results
            total.granted += t.granted
            total.members.add(m.owner if table is teams else wid)
    _badges(owners)
    _badges(teams)
    return Standings(workers, owners, teams)
