"""Global acceptance: which measured edit becomes the champion. Pure decision logic.

No I/O here: the engine feeds it measurements from the store and records what it decides,
the way BOINC keeps its validator apart from its transport. The rules (DESIGN.md §5):

- *Comparable scores.* Under a fixed time budget a score depends on the hardware, so with
  `compare = "paired"` a measurement is compared only with the champion's baseline *in the
  same hardware class*. `absolute` compares raw scores (hardware-independent metrics).
- *Noise.* Repeated baselines of the same version in a class give that class's noise σ.
  An improvement counts only above `max(min_delta, noise_sigmas · σ_diff)`, where σ_diff is
  the noise of "one run minus the baseline mean": σ·sqrt(1 + 1/n_baseline).
- *Verification.* A claim becomes champion after `quorum` confirmations by distinct workers
  (distinct owners where known).
- *Agreement of replicas.* Those measurements must agree with each other within noise, BOINC
  style: one that disagrees, worse or better, asks for an arbiter instead of deciding, and
  the recorded score is the median of the agreeing majority (`settle`).
- *Trust.* Slow to earn, quick to lose: whoever the agreeing majority outvoted loses trust;
  two strikes quarantine a worker.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoswarm.hardware_class import is_moved
from autoswarm.study import AcceptancePolicy
from autoswarm.coordinator.frozen import quick

MAX_VERIFY_FAILURES = 3      # a candidate that crashes this often elsewhere is not reproducible


@quick
@dataclass(frozen=True)
class Verdict:
    """The decision on one measurement and the numbers behind it."""

    accept: bool
    improvement: float   # positive means better, in the metric's own units, whatever the direction
    threshold: float
    reason: str


@quick
@dataclass(frozen=True)
class Baseline:
    """A version's score in one hardware class."""

    mean: float
    runs: int


def improvement(direction: str, reference: float, candidate: float) -> float:
    """How much better `candidate` is than `reference`: positive is better."""
    return reference - candidate if direction == "minimize" else candidate - reference


def baseline_of(values: Sequence[float]) -> Baseline | None:
    return Baseline(statistics.fmean(values), len(values)) if values else None


def robust_sigma(differences: Sequence[float]) -> float:
    """σ of one run from absolute differences between pairs of runs of the same thing.

    A difference of two runs has σ·√2; the median of its absolute value is 0.6745 of
    that (a half-normal's median). A median ignores a minority of outliers.
    """
    if not differences:
        return 0.0
    return statistics.median(differences) / (0.6744897501960817 * math.sqrt(2.0))


def threshold(policy: AcceptancePolicy, sigma: float, baseline_runs: int) -> float:
    """The smallest improvement that counts for one run against a baseline of `baseline_runs`."""
    if policy.compare == "absolute" or baseline_runs <= 0:
        return policy.min_delta
    sigma_diff = sigma * math.sqrt(1.0 + 1.0 / baseline_runs)
    return max(policy.min_delta, policy.noise_sigmas * sigma_diff)


def judge(policy: AcceptancePolicy, direction: str, reference: float, value: float,
          sigma: float = 0.0, baseline_runs: int = 0) -> Verdict:
    """Does one measurement beat the reference (the champion's score, or its class baseline)?

    With `compare = "absolute"` and `min_delta = 0` this is autoresearch's rule: kept if
    the metric strictly improved.
    """
    if not (math.isfinite(reference) and math.isfinite(value)):
        return Verdict(False, math.nan, policy.min_delta, "a metric is not finite")
    gain = improvement(direction, reference, value)
    bar = threshold(policy, sigma, baseline_runs)
    if gain > bar:
        return Verdict(True, gain, bar, f"improved by {gain:.6g} > {bar:.6g}")
    return Verdict(False, gain, bar, f"improvement {gain:.6g} not above {bar:.6g}")


@quick
@dataclass(frozen=True)
class Measurement:
    """One worker's evaluation of a claimed candidate, judged against its own class.

    `noise` is the σ of `improvement` (one run minus its class's baseline mean), what the
    class has shown; 0 where the study has no noise estimate (`compare = "absolute"`).
    `result_id` names the result row the measurement came from, so a verdict on it can be
    written back. `baseline`: the runs of the parent it was compared with, so that another
    measurement on the same class can be compared with other runs (independent confirmation).
    `reference_runs`: the tier reference's runs of the parent its judgement rested on (its class
    is the reference, or its baseline was predicted from them), so that a check judged on the
    reference too is compared with others (`References.independent_of`).
    """

    worker_id: str
    owner: str
    hardware_class: str
    value: float
    improvement: float
    threshold: float
    confirms: bool
    noise: float = 0.0
    result_id: str = ""
    baseline: frozenset[str] = frozenset()   # result ids of the direct baseline runs it was judged against
    reference_runs: frozenset[str] = frozenset()   # result ids of the tier reference's runs it rested on


def independent(measurements: Sequence[Measurement]) -> int:
    """How many measurements come from distinct workers and distinct (known) owners."""
    return len(_independent(measurements))


def _independent(measurements: Sequence[Measurement]) -> list[Measurement]:
    """The first measurement of each distinct worker and (known) owner, in order."""
    workers: set[str] = set()
    owners: set[str] = set()
    kept: list[Measurement] = []
    for m in measurements:
        if m.worker_id in workers or (m.owner and m.owner in owners):
            continue
        workers.add(m.worker_id)
        if m.owner:
            owners.add(m.owner)
        kept.append(m)
    return kept


def may_measure(measurements: Sequence[Measurement], claimant: str, claimant_owner: str,
                worker_id: str, owner: str) -> bool:
    """Whether this worker's measurement would count as an independent confirmation."""
    if worker_id == claimant or (owner and owner == claimant_owner):
        return False
    return all(m.worker_id != worker_id and not (owner and m.owner == owner) for m in measurements)


# -- replica agreement (BOINC's validator: replicas must agree before one is believed) -------

AGREE_SIGMAS = 4.0        # replicas agree when their gains differ by less than this many σ of the difference
HARDWARE_SLACK = 0.5      # gains measured on different hardware (or with no noise estimate) may differ by this share
MAX_ARBITERS = 2          # extra measurements a claim may take beyond its quorum to find an agreeing majority
MAX_GROUP_SEARCH = 12     # measurements searched for the agreeing majority (a claim has quorum + arbiters)


def tolerance(policy: AcceptancePolicy, a: Measurement, b: Measurement) -> float:
    """How far apart two measurements' improvements may be and still agree.

    Within one hardware class with a known noise, `AGREE_SIGMAS` σ of their difference (a
    lie of a few σ goes unnoticed, but then it moves the recorded score by no more than
    noise does). A fixed time budget lets faster hardware gain more from the same edit, so
    across classes — and wherever no noise is known — the larger gain may also exceed the
    smaller by `HARDWARE_SLACK` of itself. Never tighter than `min_delta`.
    """
    bound = AGREE_SIGMAS * math.hypot(a.noise, b.noise)
    if a.hardware_class != b.hardware_class or not (a.noise and b.noise):
        bound += HARDWARE_SLACK * max(abs(a.improvement), abs(b.improvement))
    return max(policy.min_delta, bound)


def agree(policy: AcceptancePolicy, a: Measurement, b: Measurement) -> bool:
    """Whether two measurements of the same candidate tell the same story, worse or better."""
    return abs(a.improvement - b.improvement) <= tolerance(policy, a, b)


def agreeing_groups(policy: AcceptancePolicy, measurements: Sequence[Measurement]) -> list[tuple[Measurement, ...]]:
    """The largest sets of measurements that all agree with each other (there may be ties)."""
    ms = list(measurements[:MAX_GROUP_SEARCH])
    ok = {(i, j): agree(policy, ms[i], ms[j]) for i in range(len(ms)) for j in range(i + 1, len(ms))}
    for size in range(len(ms), 0, -1):
        found = [tuple(ms[i] for i in combo) for combo in itertools.combinations(range(len(ms)), size)
                 if all(ok[pair] for pair in itertools.combinations(combo, 2))]
        if found:
            return found
    return []


@quick
@dataclass(frozen=True)
class Settlement:
    """Where a claim stands after its measurements so far.

    `outcome`: "pending" (wants `needed` more independent measurements), "accepted",
    "rejected" (the claimant's own number was outvoted: it loses trust) or "unconfirmed"
    (the replicas agree that it is not above the bar, or no majority agreed: nobody's fault).
    `outvoted`: the measurements that disagreed with the agreeing majority; their workers
    lose trust, claimant or verifier alike. `score`: the robust centre of the agreeing
    measurements' values, what a new champion records.
    """

    outcome: str
    agreeing: tuple[Measurement, ...] = ()
    outvoted: tuple[Measurement, ...] = ()
    needed: int = 0
    score: float | None = None


def recorded_score(group: Sequence[Measurement], direction: str = "maximize") -> float:
    """The robust centre of an agreeing group, as the score a champion records.

    Scores under a fixed time budget are in one hardware class's units: the class with most
    of the group's measurements (on a tie, not a moved worker's own, then the first's: the
    claimant's). Each measurement of
    another class is carried into those units by its gain over the parent's baseline there,
    and the median of all is taken, so no single number sets it (in one class: the median of
    the values themselves).
    """
    sign = -1.0 if direction == "minimize" else 1.0
    counts: dict[str, int] = {}
    for m in group:
        counts[m.hardware_class] = counts.get(m.hardware_class, 0) + 1
    # Ties: a class of several workers before one a single worker was moved to, then the first.
    scale = max(counts, key=lambda cls: (counts[cls], not is_moved(cls),
                                         -next(i for i, m in enumerate(group) if m.hardware_class == cls)))
    # The parent's baseline in that class, as its own measurements were judged against it.
    parent = statistics.fmean(m.value - sign * m.improvement for m in group if m.hardware_class == scale)
    return statistics.median(m.value if m.hardware_class == scale else parent + sign * m.improvement for m in group)


def settle(policy: AcceptancePolicy, measurements: Sequence[Measurement], failures: int = 0,
           claimant: str = "", direction: str = "maximize") -> Settlement:
    """The acceptance rule for one claim.

    A claim is decided by an agreeing majority: at least `quorum` independent measurements
    that agree with each other within noise and outnumber all the others. If all of them
    beat the bar the claim is accepted, and the champion's score is their median
    (`recorded_score`: no single number sets it, one more lie than truth is needed). Until
    then a measurement that disagrees (worse *or* better) does not count, and asks for an
    arbiter: one more measurement by another owner. `MAX_ARBITERS` bounds how many.
    """
    if failures >= MAX_VERIFY_FAILURES:
        return Settlement("unconfirmed")
    ms = _independent(measurements)
    groups = agreeing_groups(policy, ms)
    best = len(groups[0]) if groups else 0
    group = groups[0] if len(groups) == 1 else ()
    if group and len(group) >= policy.quorum and 2 * len(group) > len(ms):
        outvoted = tuple(m for m in ms if m not in group)
        score = recorded_score(group, direction)
        if all(m.confirms for m in group):
            return Settlement("accepted", group, outvoted, 0, score)
        lied = any(m.worker_id == claimant for m in outvoted)
        return Settlement("rejected" if lied else "unconfirmed", group, outvoted, 0, score)
    room = policy.quorum + MAX_ARBITERS - len(ms)
    if room <= 0:
        return Settlement("unconfirmed")
    # Enough agreeing measurements for the quorum, and for a strict majority over the rest.
    needed = max(policy.quorum - best, len(ms) - 2 * best + 1, 1)
    return Settlement("pending", needed=min(needed, room))


def claim_outcome(policy: AcceptancePolicy, measurements: Sequence[Measurement], failures: int) -> str:
    """"accepted", "rejected" or "pending" for a claim with these measurements so far."""
    outcome = settle(policy, measurements, failures).outcome
    return "rejected" if outcome == "unconfirmed" else outcome


def champion_score(policy: AcceptancePolicy, measurements: Sequence[Measurement], direction: str = "maximize") -> float:
    """The score recorded for a new champion: the median of its agreeing majority.

    The claimant's number counts like any other: what decides is agreement, not who
    measured. A measurement outvoted by the others never enters it.
    """
    groups = agreeing_groups(policy, _independent(measurements))
    return recorded_score(groups[0] if groups else tuple(measurements), direction)


def initial_baselines(policy: AcceptancePolicy) -> int:
    """Baselines whose median is the first champion's score: one with quorum 1, else a
    majority over `quorum - 1` possible liars (2·quorum − 1), so no single number sets it."""
    return 1 if policy.quorum <= 1 else 2 * policy.quorum - 1


def _close(policy: AcceptancePolicy, sigma: float, a: tuple[float, int], b: tuple[float, int]) -> bool:
    """Whether two workers' mean runs (mean, count) of one version agree within noise."""
    return abs(a[0] - b[0]) <= max(policy.min_delta, AGREE_SIGMAS * sigma * math.sqrt(1 / a[1] + 1 / b[1]))


def _worker_means(runs: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, int]]:
    return {w: (statistics.fmean(v), len(v)) for w, v in runs.items() if v}


@quick
@dataclass(frozen=True)
class ClassCheck:
    """What one hardware class's runs of one version say about its workers (`class_check`).

    `groups`: the workers split where their means part by more than noise, lowest mean first.
    `majority`: the one group that holds a strict majority of the class's owners (empty when
    none does; a chained group never does: see `class_check`). `disputed`: the workers do
    not all measure alike, so the class's baseline of the version judges nothing until the
    dispute is resolved: the outliers outside the majority are moved out, or, with no
    majority, every worker is moved to a class of its own (`split`).
    """

    groups: tuple[frozenset[str], ...] = ()
    majority: frozenset[str] = frozenset()
    chained: bool = False

    @property
    def disputed(self) -> bool:
        return len(self.groups) > 1 or self.chained

    @property
    def outliers(self) -> frozenset[str]:
        """Workers outside the agreeing majority (none while there is no majority)."""
        if not self.majority:
            return frozenset()
        return frozenset().union(*self.groups) - self.majority

    @property
    def split(self) -> frozenset[str]:
        """Every worker, when the class is disputed and no group holds a majority of owners."""
        return frozenset().union(*self.groups) if self.disputed and not self.majority else frozenset()


def class_check(policy: AcceptancePolicy, runs: Mapping[str, Sequence[float]], sigma: float,
                owners: Mapping[str, str] | None = None) -> ClassCheck:
    """Groups a class's workers by how they measure one version, and finds its agreeing majority.

    `runs` maps each worker to its runs of the same version in one hardware class; `sigma`
    is the σ of one run there; `owners` maps workers to owners (a worker with none is its
    own owner). Sorted by mean, workers fall into groups wherever two neighbours disagree
    beyond `AGREE_SIGMAS` σ of their difference: on honest hardware one group however many
    workers measured (the widest gap among n normal runs grows only like √(log n)).

    The majority is counted in owners, not workers: a group is the class's majority when it
    holds strictly more than half of the distinct owners that measured, and no other group
    does. One attacker's many machines (or Sybils of one owner) naming an honest class are
    one voice, so they cannot outvote the class's honest owners however many they are. A
    group whose span exceeds twice the tolerance between its two ends was chained together
    by workers placed in its gaps: it is never the majority (it disputes the class).
    """
    means = _worker_means(runs)
    if len(means) < 2:
        return ClassCheck(tuple(frozenset([w]) for w in means))
    order = sorted(means, key=lambda w: (means[w][0], w))
    groups: list[list[str]] = [[order[0]]]
    for w in order[1:]:
        if _close(policy, sigma, means[groups[-1][-1]], means[w]):
            groups[-1].append(w)
        else:
            groups.append([w])
    def chained(g: list[str]) -> bool:
        bound = max(policy.min_delta, AGREE_SIGMAS * sigma * math.sqrt(1 / means[g[0]][1] + 1 / means[g[-1]][1]))
        return len(g) > 2 and means[g[-1]][0] - means[g[0]][0] > 2 * bound

    owner_of = {w: (owners or {}).get(w) or w for w in means}
    everyone = len(set(owner_of.values()))
    majorities = [g for g in groups if 2 * len({owner_of[w] for w in g}) > everyone]
    majority = frozenset(majorities[0]) if len(majorities) == 1 and not chained(majorities[0]) else frozenset()
    return ClassCheck(tuple(frozenset(g) for g in groups), majority, any(chained(g) for g in groups))


# -- trust ----------------------------------------------------------------------------------

TRUSTED_AFTER = 4         # confirmed claims before a worker may hold more than one open claim
MAX_OPEN_CLAIMS = 8       # open claims a trusted worker may hold at once


@quick
@dataclass(frozen=True)
class Trust:
    """A worker's record: claims confirmed, strikes — times an agreeing majority of replicas
    outvoted its number (as claimant or verifier) — and whether it was moved out of its
    reported hardware class for measuring unlike it."""

    confirmed: int = 0
    refuted: int = 0
    moved: bool = False
    refuted_moved: int = 0    # of `refuted`: strikes on runs it measured after it was moved out

    @property
    def quarantined(self) -> bool:
        """Slow to earn, quick to lose: one strike is forgiven as noise, a second is not
        unless many confirmed claims stand behind it (at least four per strike). A worker
        moved out of its class is under suspicion already: the first strike on a run it
        measured after the move counts as two.

        A strike from before the move counts once: it was judged in the class the move found
        mixed, against baseline runs that may not have been of its hardware at all. An honest
        worker alone among spoofers naming its class was struck so (its claim compared with
        two spoofers' baseline, outvoted by verifiers of other classes), then moved when the
        class split, and quarantined for it."""
        strikes = self.refuted + (1 if self.refuted_moved else 0)
        return strikes >= 2 and self.confirmed < 4 * strikes

    @property
    def may_verify(self) -> bool:
        """Whether it judges others' claims: until quarantined. A lie it tells as a verifier
        costs one arbiter and a strike, so a lying verifier is found out, not merely benched."""
        return not self.quarantined

    @property
    def open_claims_allowed(self) -> int:
        """How many of its claims may wait for verification at once.

        One, until it has `TRUSTED_AFTER` confirmed claims and no strike: a liar's claims
        are then checked one after the other, so its second strike (quarantine) comes at its
        second fake claim at the latest, however many slots it has.
        """
        return MAX_OPEN_CLAIMS if self.refuted == 0 and not self.moved and self.confirmed >= TRUSTED_AFTER else 1


def class_deltas(measurements: Sequence[Measurement]) -> Mapping[str, float]:
    """Mean improvement per hardware class, for the lineage view."""
    by_class: dict[str, list[float]] = {}
    for m in measurements:
        by_class.setdefault(m.hardware_class, []).append(m.improvement)
    return {cls: statistics.fmean(values) for cls, values in sorted(by_class.items())}
