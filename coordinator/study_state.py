"""The in-memory picture of one study that the engine keeps beside the store.

Everything here can be rebuilt from the store (see `StudyRegistry.load_study`); the engine changes
it only after the store has committed, so memory never runs ahead of disk.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

from autoswarm.hardware_class import is_moved, origin_class
from autoswarm.study import Study
from autoswarm.coordinator import acceptance, baselines, scheduler, speculation
from autoswarm.coordinator.acceptance import Baseline, Measurement
from autoswarm.coordinator.memory import DEFAULT_MEMORY_CHARS, Tried, build_memory, render, tried_sections
from autoswarm.coordinator.in_flight import EditsInMaking, InFlightCandidates
from autoswarm.coordinator.noise import MIN_DIFFERENCES, ClassFit, Noise, class_fits, pooled_noise
from autoswarm.coordinator.references import CHECK_RESERVE, References
from autoswarm.coordinator.tiers import Tiers
from autoswarm.coordinator.store import ChampionRecord, ClaimRecord, LeaseRecord, ResultRecord, StudyRecord, VersionRecord

CLASS_CHECK_WORKERS = 4       # workers of a class that measure the first champion three times each
REPEAT_EVERY = 4              # ... and one more run of the champion per this many edits evaluated on it
REFRESH_EVERY = 24            # any class: one more run of the champion per this many edits evaluated on it
MAX_REFRESHES = 6             # ... up to this many
SPOT_CHECK_RUNS = 1           # runs of a tier member's spot check of a champion
RESERVE_MEMBERS = 4           # classes of this many workers measure each champion for their claims' checks too
MAX_VERIFYING = 8             # claims on one champion verified at once (the others wait their turn)
CHECK_DIFFERENCES = 256      # newest differences per class in the study-wide σ of class checks
MEMORY_ENTRIES = 300          # explore outcomes kept for the swarm memory
MAX_IDEAS_SHOWN = 50          # ideas in flight listed in a task's memory
# (class, workers, owners) -> whether a connected worker of the class may check a claim those may not.
MayCheck = Callable[[str, AbstractSet[str], AbstractSet[str]], bool]

# Statuses of results whose evaluation really ran (a duplicate or a failed edit did not).
EVALUATED_STATUSES = frozenset({"ok", "crash", "timeout", "no-metric", "invalid-metric", "resource-limit"})


def _anyone_else(live: AbstractSet[str], excluded: AbstractSet[str], worker_id: str,
                 left_out: AbstractSet[str] = frozenset()) -> bool:
    """Whether a connected worker other than `worker_id` is in neither `excluded` nor `left_out`.

    Stops at the first one: a set difference would copy a class of 100,000 workers on every lease."""
    return any(w != worker_id and w not in excluded and w not in left_out for w in live)


@dataclass
class _Runs:
    """Repeated runs of one version on one hardware class, and who measured each."""

    n: int = 0
    mean: float = 0.0
    last: tuple[str, float] | None = None                           # (worker, value) of the latest run
    by_worker: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # worker -> [(value, result id)]

    def recompute(self) -> None:
        values = [value for runs in self.by_worker.values() for value, _ in runs]
        self.n = len(values)
        self.mean = sum(values) / self.n if values else 0.0


@dataclass(frozen=True)
class _Diff:
    """|a − b| between two successive runs of the same version on one class."""

    value: float
    first: str        # worker of the earlier run
    second: str       # worker of the later run


class Samples:
    """Repeated measurements per (version, hardware class), and each class's noise.

    Noise is estimated robustly: the median absolute difference between successive runs of
    the same version on the same class, scaled to σ. One worker that lies about a few runs
    shifts a median little, where it would blow up a pooled variance. Every run keeps its
    worker, so a worker found to measure unlike its class can be taken out again.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Runs] = {}
        self._diffs: dict[str, list[_Diff]] = {}
        self._sigma: dict[str | None, tuple[float, int]] = {}   # sigma() per class (None: all), until diffs change
        self._own: dict[str | None, tuple[float, int]] = {}   # own_sigma per class (None: all), until runs change
        self._own_diffs: dict[str, list[tuple[str, float]]] = {}   # class -> (worker, |a − b|) of its own repeats
        self._fits: dict[str, ClassFit] | None = None
        self._noise: dict[str, Noise] = {}
        self._left_out: dict[str, set[str]] = {}   # class -> workers whose runs were taken out of it
        # The latest run per (version, class, "baseline" or "verify"), for noise differences.
        self._latest: dict[tuple[str, str, str], tuple[str, float]] = {}
        # Bumped by every change of the runs or their differences: what is worked out from
        # them (a class's dispute, `StudyState.dispute`) is valid while it stays the same.
        self.generation = 0
        # The σ of one run the study states (`AcceptancePolicy.noise_prior`, 0: none), set by `StudyState`.
        self.stated = 0.0

    def state_noise(self, sigma: float) -> None:
        """The σ of one run the study states (`noise.pooled_noise`); a new one drops the noise worked out."""
        if sigma != self.stated:
            self.stated, self._noise = sigma, {}

    def _difference(self, version: str, hardware_class: str, kind: str, worker_id: str, value: float) -> None:
        latest = self._latest.get((version, hardware_class, kind))
        self.generation += 1
        if latest is not None:
            self._diffs.setdefault(hardware_class, []).append(_Diff(abs(value - latest[1]), latest[0], worker_id))
            self._sigma.pop(hardware_class, None)
            self._sigma.pop(None, None)
            self._fits = None
        self._latest[(version, hardware_class, kind)] = (worker_id, value)

    def note_run(self, version: str, hardware_class: str, worker_id: str, value: float) -> None:
        """A verification's run of a candidate: evidence of noise, no baseline.

        Only differences between two verifications of the same candidate count. A run picked
        for what it showed (a confirmation that got a claim accepted) is biased; a later
        baseline of that version is not, so their difference would overstate the noise. The
        difference of two runs does not depend on their mean, so two verifications give an
        honest one whatever was decided on them.
        """
        self._difference(version, hardware_class, "verify", worker_id, value)

    def add(self, version: str, hardware_class: str, worker_id: str, value: float, result_id: str = "",
            noise: bool = True) -> None:
        """A baseline run; `noise`: its difference from the class's previous run of the version
        counts as noise evidence (False when that difference was noted already)."""
        runs = self._runs.setdefault((version, hardware_class), _Runs())
        if noise:
            self._difference(version, hardware_class, "baseline", worker_id, value)
        else:
            self.generation += 1
        runs.n += 1
        runs.mean += (value - runs.mean) / runs.n
        runs.last = (worker_id, value)
        mine = runs.by_worker.setdefault(worker_id, [])
        if mine:
            self._own_diffs.setdefault(hardware_class, []).append((worker_id, abs(value - mine[-1][0])))
        mine.append((value, result_id))
        self._own.pop(hardware_class, None)
        self._own.pop(None, None)

    def baseline(self, version: str, hardware_class: str) -> Baseline | None:
        runs = self._runs.get((version, hardware_class))
        return Baseline(runs.mean, runs.n) if runs and runs.n else None

    def measured_by(self, version: str, hardware_class: str) -> frozenset[str]:
        runs = self._runs.get((version, hardware_class))
        return frozenset(runs.by_worker) if runs else frozenset()

    def run_ids(self, version: str, hardware_class: str) -> frozenset[str]:
        """The result ids of the class's runs of `version`."""
        runs = self._runs.get((version, hardware_class))
        return frozenset(rid for series in runs.by_worker.values() for _, rid in series) if runs else frozenset()

    def runs_by_worker(self, version: str, hardware_class: str) -> dict[str, list[tuple[float, str]]]:
        """Each worker's runs of `version` on the class: [(value, result id)]."""
        runs = self._runs.get((version, hardware_class))
        return {w: list(v) for w, v in runs.by_worker.items()} if runs else {}

    def sigma(self, hardware_class: str | None) -> tuple[float, int]:
        """(σ of one run, number of run-to-run differences it rests on) for a class, or (None)
        for every class together (each class's newest `CHECK_DIFFERENCES`): a median, so a
        minority of wild differences moves it little."""
        found = self._sigma.get(hardware_class)
        if found is None:
            # Read on every class check: the list of all classes' differences is made once per change.
            diffs = self._diffs.get(hardware_class, []) if hardware_class is not None else \
                [d for ds in self._diffs.values() for d in ds[-CHECK_DIFFERENCES:]]
            found = self._sigma[hardware_class] = (acceptance.robust_sigma([d.value for d in diffs]), len(diffs))
        return found

    def noise(self, hardware_class: str) -> Noise:
        """The class's noise for bars, learned with every other class's (`noise.pooled_noise`).

        Cached until the next difference: leasing asks for it on every call."""
        if self._fits is None:
            self._fits = class_fits({cls: [d.value for d in diffs] for cls, diffs in self._diffs.items()})
            self._noise = {}
        found = self._noise.get(hardware_class)
        if found is None:
            found = self._noise[hardware_class] = pooled_noise(self._fits, hardware_class, self.stated)
        return found

    def differences(self, hardware_class: str | None = None) -> int:
        """Run-to-run differences on one class, or on all classes together."""
        if hardware_class is not None:
            return len(self._diffs.get(hardware_class, ()))
        return sum(len(d) for d in self._diffs.values())

    def own_sigma(self, hardware_class: str | None) -> tuple[float, int]:
        """σ from differences between two runs of the *same* worker only: each machine's own
        noise, which no other worker's numbers can inflate (a liar's can only lower it). On one
        class, or (None) on every class together."""
        if hardware_class not in self._own:
            # Read on every lease and judgement of a paired study: worked out once per new run.
            own = [d for cls, diffs in self._own_diffs.items() if hardware_class in (None, cls) for _, d in diffs]
            self._own[hardware_class] = (acceptance.robust_sigma(own), len(own))
        return self._own[hardware_class]

    def runs_in(self, version: str, origin: str) -> dict[str, tuple[str, list[tuple[float, str]]]]:
        """Runs of `version` by every worker of a reported class, including those moved out of
        it: worker -> (its class now, [(value, result id)])."""
        found: dict[str, tuple[str, list[tuple[float, str]]]] = {}
        for (v, cls), runs in self._runs.items():
            if v == version and origin_class(cls) == origin:
                for worker, series in runs.by_worker.items():
                    found[worker] = (cls, list(series))
        return found

    def left_out(self, hardware_class: str) -> AbstractSet[str]:
        """Workers whose runs were taken out of this class (quarantined, or moved out of it): connected
        or not, none of them measures a baseline for it again, so none is anyone to leave a run to."""
        return self._left_out.get(hardware_class, frozenset())

    def classes_of(self, version: str) -> set[str]:
        """The classes with runs of `version`."""
        return {cls for (v, cls), runs in self._runs.items() if v == version and runs.n}

    def values_of(self, version: str) -> list[float]:
        """Every run of `version` on every class."""
        return [value for (v, _), runs in self._runs.items() if v == version
                for series in runs.by_worker.values() for value, _ in series]

    def remove_worker(self, hardware_class: str, worker_id: str) -> list[tuple[str, float, str]]:
        """Takes a worker's runs out of a class: its baselines and its share of the noise.
        Returns them, (version, value, result id), in the order they were added per version.
        The worker measures nothing more for the class (`left_out`)."""
        self.generation += 1
        self._left_out.setdefault(hardware_class, set()).add(worker_id)
        self._own.pop(hardware_class, None)
        self._own.pop(None, None)
        if hardware_class in self._own_diffs:
            self._own_diffs[hardware_class] = [(w, d) for w, d in self._own_diffs[hardware_class] if w != worker_id]
        removed: list[tuple[str, float, str]] = []
        for (version, cls), runs in self._runs.items():
            if cls == hardware_class and (series := runs.by_worker.pop(worker_id, None)) is not None:
                removed.extend((version, value, result_id) for value, result_id in series)
                runs.recompute()
                if runs.last is not None and runs.last[0] == worker_id:
                    runs.last = None
        diffs = self._diffs.get(hardware_class)
        if diffs:
            self._diffs[hardware_class] = [d for d in diffs if worker_id not in (d.first, d.second)]
            self._sigma.pop(hardware_class, None)
            self._sigma.pop(None, None)
            self._fits = None
        for key, (worker, _) in list(self._latest.items()):
            if key[1] == hardware_class and worker == worker_id:
                del self._latest[key]
        return removed


class ActiveLeases(dict[str, LeaseRecord]):
    """A study's active leases by id, also indexed by the version each baseline measures.

    The scheduler asks on every lease how many baselines of the champion are in flight; a
    scan of every active lease would make each lease cost O(work in flight).
    """

    def __init__(self) -> None:
        super().__init__()
        self._baselines: dict[str, dict[str, LeaseRecord]] = {}

    def baselines_of(self, version: str) -> list[LeaseRecord]:
        """The active baseline leases that measure `version`."""
        return list(self._baselines.get(version, {}).values())

    def _index(self, lease: LeaseRecord) -> None:
        if lease.kind == "baseline":
            self._baselines.setdefault(lease.candidate, {})[lease.id] = lease

    def _unindex(self, lease: LeaseRecord) -> None:
        if lease.kind == "baseline":
            same = self._baselines.get(lease.candidate)
            if same is not None:
                same.pop(lease.id, None)
                if not same:
                    del self._baselines[lease.candidate]

    def __setitem__(self, lease_id: str, lease: LeaseRecord) -> None:
        old = self.get(lease_id)
        if old is not None:
            self._unindex(old)
        super().__setitem__(lease_id, lease)
        self._index(lease)

    def __delitem__(self, lease_id: str) -> None:
        self._unindex(self[lease_id])
        super().__delitem__(lease_id)

    _MISSING = object()

    def pop(self, lease_id: str, default: object = _MISSING) -> object:  # type: ignore[override]
        if lease_id in self:
            lease = super().pop(lease_id)
            self._unindex(lease)
            return lease
        if default is ActiveLeases._MISSING:
            raise KeyError(lease_id)
        return default

    def popitem(self) -> tuple[str, LeaseRecord]:
        lease_id, lease = super().popitem()
        self._unindex(lease)
        return lease_id, lease

    def setdefault(self, lease_id: str, default: LeaseRecord) -> LeaseRecord:  # type: ignore[override]
        if lease_id not in self:
            self[lease_id] = default
        return self[lease_id]

    def update(self, *args: object, **kwargs: LeaseRecord) -> None:  # type: ignore[override]
        for lease_id, lease in dict(*args, **kwargs).items():  # type: ignore[call-overload]
            self[lease_id] = lease

    def clear(self) -> None:
        super().clear()
        self._baselines.clear()


@dataclass
class PendingClaim:
    """A claim waiting for its quorum."""

    record: ClaimRecord
    measurements: list[Measurement] = field(default_factory=list)
    failures: int = 0
    in_flight: set[str] = field(default_factory=set)   # verify lease ids
    audit: bool = False      # superseded, still checked for trust only (see Judging._close_audit)
    # Checks measured and stored unjudged until a baseline run the claim was not compared with
    # arrives (`Judging.judge_verify`): result id -> (worker, hardware class).
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Checks leased before their class had a baseline of the parent to judge them with (a
    # check only its worker may make, `StudyState.view`): they may wait for it (`Judging._check_verdict`).
    early: set[str] = field(default_factory=set)
    # Checks leased to the only worker that could make them (`sole_verifier` at lease time): while
    # one is under way (in flight or waiting), a keep of the claim's parent waits for it (`keep_waits`).
    sole: set[str] = field(default_factory=set)
    # Built on while it was checked (`speculation`): how it ends goes into its claimant's track record.
    speculated: bool = False
    # The last settlement and what it was worked out from (`settlement`).
    _settled: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def checks_out(self) -> int:
        """Checks under way: leased, or measured and waiting for a fresh baseline run."""
        return len(self.in_flight) + len(self.waiting)

    def kept_from_checking(self, active: Mapping[str, LeaseRecord]) -> frozenset[str]:
        """Workers that may not check this claim (again): its claimant, those that measured it,
        and those whose check waits or is in flight (`active`: the study's leases)."""
        return frozenset({self.record.claimant_worker, *(m.worker_id for m in self.measurements),
                          *(w for w, _ in self.waiting.values()),
                          *(active[lid].worker_id for lid in self.in_flight if lid in active)})

    def settlement(self, policy: acceptance.AcceptancePolicy, direction: str = "maximize") -> acceptance.Settlement:
        """Where the claim stands (see `acceptance.settle`, pure). Asked for every open claim on
        every lease of a paired study: kept until its measurements (appended to, or replaced),
        failures, claimant, the policy or the direction change."""
        memo = self._settled
        if memo is None or memo[0] is not self.measurements or memo[1] is not policy or \
                memo[2] != (len(self.measurements), self.failures, self.record.claimant_worker, direction):
            memo = self._settled = (self.measurements, policy,
                                    (len(self.measurements), self.failures, self.record.claimant_worker, direction),
                                    acceptance.settle(policy, self.measurements, self.failures,
                                                      self.record.claimant_worker, direction))
        return memo[3]


@dataclass
class StudyState(References):
    """One study in memory: its champion, samples, claims, leases and swarm memory, and the
    scheduler's view of it. What runs are compared with is `References`'; whether a class's
    workers agree, `ClassChecks`'."""

    record: StudyRecord
    spec: Study
    bundle_size: int
    champion: ChampionRecord
    evaluations: int
    improvements: int
    failed_baselines: int
    initial_metric: float | None
    active: ActiveLeases = field(default_factory=ActiveLeases)
    samples: Samples = field(default_factory=Samples)
    claims: dict[str, PendingClaim] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)        # champion version -> its score
    parents: dict[str, str] = field(default_factory=dict)         # version -> parent, read once (immutable)
    claimed_versions: set[str] = field(default_factory=set)       # every version ever claimed
    champion_version: VersionRecord | None = None                  # cache of the champion's content
    tried: OrderedDict[str, Tried] = field(default_factory=OrderedDict)  # result id -> outcome, oldest first
    tried_parents: dict[str, str] = field(default_factory=dict)     # result id -> the parent it was tried on
    evaluated: set[tuple[str, str]] = field(default_factory=set)   # (parent, candidate) pairs evaluated
    explored: dict[tuple[str, str], int] = field(default_factory=dict)  # (parent, class) -> edits of it evaluated there
    ideas: dict[str, str] = field(default_factory=dict)            # lease id -> idea being evaluated
    _memory_cache: tuple[str, int, float, str] | None = None      # (champion, generation, built at, text)
    _memory_generation: int = 0
    candidates: InFlightCandidates = field(default_factory=InFlightCandidates)  # edits being evaluated, by lease
    making: EditsInMaking = field(default_factory=EditsInMaking)  # explores whose edit is not made yet
    llm_tokens: int = 0                        # what the study's agents spent (results' usage)
    failed_edits: int = 0                      # explore tasks whose agent made no edit (in the budget)
    cost_usd: float = 0.0
    # The champion's accepted claim's agreeing runs: (class, worker, value). Not baselines (a
    # claim is accepted because its runs were high), but evidence of what the class measures.
    evidence: list[tuple[str, str, float]] = field(default_factory=list)
    waiting: baselines.Waiting = field(default_factory=baselines.Waiting)  # results waiting for a class baseline
    tiers: Tiers = field(default_factory=Tiers)                    # which classes' baselines stand for others'
    # `dispute` per (version, class), valid for the (samples, generation, acceptance policy) it was worked out on.
    _disputes: dict[tuple[str, str], bool | None] = field(default_factory=dict, repr=False, compare=False)
    # `direct_baseline`, `direct_run_ids` per (version, class, worker or "", runs left out, reserve): as `_disputes`.
    _direct_baselines: dict[tuple[str, str, str, frozenset[str], bool], tuple[Baseline | None, frozenset[str]]] = field(
        default_factory=dict, repr=False, compare=False)
    _disputes_of: tuple[object, int, object] | None = field(default=None, repr=False, compare=False)
    # Keeps held back while a claim on their parent is checked by its only possible checker
    # (`keep_waits`): result id -> when first held. Also in `waiting` (a restart judges them there).
    held: dict[str, float] = field(default_factory=dict)
    # Results waiting for the verdict of the open claim they were edits of (`speculation`): the
    # claim's version -> result id -> class. Judged when it becomes the champion.
    built_on: dict[str, dict[str, str]] = field(default_factory=dict)
    # How the explore claims built on ended, per claimant (`speculation.TrackRecord`).
    track: speculation.TrackRecord = field(default_factory=speculation.TrackRecord)

    def __post_init__(self) -> None:
        self.samples.state_noise(self.spec.acceptance.noise_prior)

    def remember(self, result: ResultRecord) -> None:
        """Adds an explore outcome to the swarm memory (bounded: the oldest are forgotten)."""
        if result.version and result.status in EVALUATED_STATUSES:
            self.evaluated.add((result.parent, result.version))
            key = (result.parent, result.hardware_class)
            self.explored[key] = self.explored.get(key, 0) + 1
        if result.decision == "no-change":
            return
        if result.decision == "duplicate" and any(t.description == result.description for t in self.tried.values()):
            return  # listed once, so agents see what was tried without the list filling up with it
        failed = result.status not in ("ok",)
        tail = result.log_tail.strip().splitlines()[-1] if failed and result.log_tail.strip() else ""
        self.tried[result.id] = Tried(result.description, result.decision, result.improvement, False, tail)
        self.tried_parents[result.id] = result.parent
        self._memory_generation += 1
        while len(self.tried) > MEMORY_ENTRIES:
            old, _ = self.tried.popitem(last=False)
            self.tried_parents.pop(old, None)

    def redecide(self, result_id: str, decision: str) -> None:
        """A claim's verdict arrived: its memory entry says keep or rejected from now on."""
        entry = self.tried.get(result_id)
        if entry is not None:
            self.tried[result_id] = replace(entry, decision=decision)
            self._memory_generation += 1

    def seen_candidate(self, parent: str, candidate: str, lease_id: str) -> bool:
        """Whether this candidate was evaluated for this parent, or is being evaluated elsewhere."""
        if (parent, candidate) in self.evaluated:
            return True
        return self.candidates.elsewhere(candidate, lease_id, parent)

    def known_candidate(self, parent: str, candidate: str, lease_id: str) -> bool:
        """Whether an edit about to be evaluated would teach nothing: evaluated for this parent,
        claimed before (an old champion drawn again), or being evaluated elsewhere from any
        parent (its score will be known soon). The worker then reports a free duplicate."""
        if (parent, candidate) in self.evaluated or candidate in self.claimed_versions:
            return True
        return self.candidates.elsewhere(candidate, lease_id)

    def memory(self, lease_id: str, now: float) -> str:
        """The swarm memory for a new explore task.

        The outcome part is rebuilt when the champion changes, and otherwise at most once a
        second: under load a report arrives with nearly every lease, and a memory a second old
        serves an agent just as well.
        """
        champion = self.champion.version
        cached = self._memory_cache
        if cached is None or cached[0] != champion or (cached[1] != self._memory_generation and now - cached[2] >= 1.0):
            tried = [replace(t, on_champion=self.tried_parents.get(rid) == champion)
                     for rid, t in reversed(self.tried.items())]
            self._memory_cache = cached = (champion, self._memory_generation, now,
                                           render(tried_sections(tried), DEFAULT_MEMORY_CHARS))
        # The newest ideas in flight; the memory's size cap would drop the rest anyway. Read from
        # the end: a copy of every idea in flight (one per explore lease) on every lease was O(swarm).
        newest = list(itertools.islice(reversed(self.ideas.items()), MAX_IDEAS_SHOWN))
        in_flight = [idea for lid, idea in reversed(newest) if lid != lease_id]
        return build_memory((), in_flight, rendered_tried=cached[3])

    def add_baseline(self, version: str, hardware_class: str, worker_id: str, value: float,
                     result_id: str = "", noise: bool = True) -> None:
        """A direct baseline run: the class's runs, the noise model (`noise`: see `Samples.add`),
        and its tier's evidence."""
        self.samples.add(version, hardware_class, worker_id, value, result_id, noise)
        runs = self.samples.baseline(version, hardware_class)
        if runs is not None and not self.disputed(version, hardware_class):
            # A disputed class's mean is no baseline (nor a tier's reference point) until settled.
            # A worker moved out of its class may follow the reference as a member, never be
            # it, nor count towards tiering a swarm of few classes (`Tiers.reference`, `classes`).
            self.tiers.observe(version, hardware_class, runs.mean, self.sigma_of, runs.runs,
                               len(self.samples.measured_by(version, hardware_class)))

    def runs_for_class_of(self, members: int) -> int:
        """Baseline runs of a version a class of `members` workers wants once calibrated:
        `baseline_runs`, and for a class of `RESERVE_MEMBERS` or more (which checks its own
        claims) the runs those checks are compared with (`References.reserved`)."""
        runs = self.spec.acceptance.baseline_runs
        if members >= RESERVE_MEMBERS:
            runs += self.reserved(runs + CHECK_RESERVE)
        return runs

    def baseline_target(self, hardware_class: str, members: int = 0, reference_live: bool = True) -> int:
        """Direct baseline runs of the champion wanted on this class (of `members` workers).

        The study's first classes measure extra repeats until the shared noise model has
        `MIN_DIFFERENCES`, and a class whose σ's standard error is still over `REPEAT_LOG_ERROR`
        (its bar wider than its noise for want of evidence) measures each champion once more (up to `MAX_REPEATS`
        differences: with many classes the pool makes that rare); after that a class in the reference's tier
        measures none (a one-run spot check now and then, `tiers.wants_direct`), any other
        `baseline_runs`, and a class of `RESERVE_MEMBERS` workers or more (which checks its own
        claims where no other class does) `CHECK_RESERVE` more for those checks
        (`References.direct_runs`). The first
        champion is measured three times by each of up to `CLASS_CHECK_WORKERS` workers of a class
        that has three or more, so that a worker measuring unlike its class is found
        (`class_outliers`) before its numbers judge anything.

        `reference_live`: whether the tier's reference has a connected worker to measure the
        champion. While it has none, a member measures the champion itself: a prediction needs
        the reference's baseline, and the whole tier's results would wait for machines that
        are gone (64/32 `always`, seed 14: both workers of the reference class moved out of it,
        2,666 edits waiting at the end of the run).
        """
        runs = self.runs_for_class_of(members)
        if self.champion.seq == 0 and members >= 3:
            runs = max(runs, 3 * min(members, CLASS_CHECK_WORKERS))
        done = self.samples.baseline(self.champion.version, hardware_class)
        missing = MIN_DIFFERENCES - self.samples.differences()
        if missing > 0:
            return max(runs, (done.runs if done else 0) + missing)
        tried = self.explored.get((self.champion.version, hardware_class), 0)
        if self.thin(hardware_class) and tried:
            # Its bar is still much wider than its noise for want of evidence: one run more of
            # each champion (evidence accumulates over champions; no run of repeats up front),
            # once the class has evaluated an edit of it (its first candidate does not wait),
            # and one more every `REPEAT_EVERY` edits it evaluates while the champion stays:
            # a bar too wide to pass anything must not hold the study where it is.
            return runs + 1 + tried // REPEAT_EVERY
        if self.tiered and reference_live and self.tiers.member(hardware_class, self.sigma_of):
            # The tier's prediction judges it; a spot check now and then (`tiers.wants_direct`) is
            # one run: it tests the relation, which allows for one run's noise, and judges nothing
            # (a direct baseline judges from `baseline_runs` runs on), so the prediction goes on.
            return SPOT_CHECK_RUNS if self.tiers.wants_direct(hardware_class, self.champion.seq, self.sigma_of) else 0
        # A class that keeps evaluating edits of one champion measures it again now and then: one
        # unlucky baseline must not judge (and refute) every edit for as long as the champion stays.
        return runs + min(tried // REFRESH_EVERY, MAX_REFRESHES)

    def initial_score(self, version: str, value: float, hardware_class: str = "", worker_id: str = "") -> float | None:
        """The first champion's score once enough baselines measured it: their median (one
        baseline with quorum 1, 2·quorum − 1 otherwise, so that no single number sets it).

        Paired, scores are in one class's units: the runs of one class whose workers agree (not
        disputed), from more than one worker where the quorum is, a reported class before one a
        worker was moved to, then the class with most runs. A spoofer's runs in a class it
        named never set it, nor a class of one machine."""
        wanted = acceptance.initial_baselines(self.spec.acceptance)
        if not self.paired:
            values = [*self.samples.values_of(version), value]
            return statistics.median(values) if len(values) >= wanted else None
        best: tuple[tuple[bool, int], float] | None = None
        for cls in {*self.samples.classes_of(version), hardware_class}:
            runs = self.samples.runs_by_worker(version, cls)
            if cls == hardware_class:
                runs[worker_id] = [*runs.get(worker_id, []), (value, "")]
            values = [v for series in runs.values() for v, _ in series]
            if len(values) < wanted or len(runs) < min(self.spec.acceptance.quorum, 2) \
                    or (len(runs) > 1 and self._disputed_runs(cls, runs)):
                continue
            key = (not is_moved(cls), len(values))
            if best is None or key > best[0]:
                best = (key, statistics.median(values))
        return best[1] if best else None

    def claim_open_on(self, version: str) -> bool:
        """Whether `version` is the version of an open claim (explores may be made on it: `speculation`)."""
        return version in self.claimed_versions and any(
            c.record.version == version and c.record.state == "pending" for c in self.claims.values())

    def claims_to_verify(self) -> list[PendingClaim]:
        """Open claims in the order they should be verified (`verification_order`)."""
        return verification_order(self.claims.values())

    def view(self, worker_id: str, hardware_class: str, class_members: frozenset[str],
             live_peers: frozenset[str], live_classes: frozenset[str] = frozenset(),
             may_check: MayCheck = lambda cls, workers, owners: True) -> scheduler.StudyView:
        """The study as the scheduler sees it from one worker.

        `class_members`: every worker of the asking worker's hardware class; `live_peers`: those
        of them currently connected; `live_classes`: classes with a connected worker;
        `may_check(class, workers, owners)`: whether a connected worker of that class may check
        a claim that those workers and owners may not (`Roster.may_check`).
        """
        champion = self.champion.version
        needs: list[scheduler.VerifyNeed] = []
        fresh_wanted = False   # a claim only this class can check waits for a baseline run it was not compared with
        sole_check = False     # a check nobody connected but this worker may make (`sole_verifier`)
        apart: dict[str, list[str]] = {}   # parent -> live classes whose checks are not judged on the tier's reference
        for c in self.claims_to_verify():
            measured_classes = frozenset(m.hardware_class for m in c.measurements)
            other_classes_live = bool(live_classes - measured_classes)
            excluded_workers = c.kept_from_checking(self.active)
            excluded_owners = frozenset(m.owner for m in c.measurements if m.owner)
            if self.on_reference(c, hardware_class):
                # Judged on the reference's runs of the parent, as the claim was: not an
                # independent check while a class judged on its own runs is connected and
                # may check it. Only then: such a class that measured it, or whose connected
                # workers may not check it (a liar's class of one, the claimant's owner), would
                # have the check wait for nobody, and its claimant's one open claim with it
                # (64/32 `always`, seeds 7-16: 127 of 160 liars quarantined, each escaped with
                # one strike and `claim-limit` ever after; a study's every claim stalled so).
                parent = c.record.parent
                if parent not in apart:
                    apart[parent] = [cls for cls in live_classes - {hardware_class}
                                     if not self.judged_on_reference(parent, cls)]
                if any((cls not in measured_classes or not other_classes_live)
                       and may_check(cls, excluded_workers, excluded_owners) for cls in apart[parent]):
                    measured_classes, other_classes_live = measured_classes | {hardware_class}, True
            # The quorum, or an arbiter where the measurements so far disagree.
            needed = c.settlement(self.spec.acceptance).needed - c.checks_out
            used = self.independent_of(c, hardware_class) if self.paired else frozenset()
            if used and self.reference(c.record.parent, hardware_class, worker_id, used) is None:
                # Not judgeable here yet: a check on this class is measured now and waits for the
                # class's next baseline run of the champion, measured side by side with it (while
                # the check is wanted, in flight or waiting) by anyone but the claimant, whose runs
                # never judge its claim. No old parent gets one.
                waits_here = any(cls == hardware_class for _, cls in c.waiting.values())
                if c.record.parent != champion:
                    needed = 0
                elif (waits_here or ((needed > 0 or c.in_flight) and not other_classes_live)) and \
                        worker_id not in {c.record.claimant_worker, c.measurements[0].worker_id}:
                    fresh_wanted = True
            if c.waiting and c.measurements and c.record.parent == champion and \
                    hardware_class == self.tiers.reference() and \
                    worker_id not in {c.record.claimant_worker, c.measurements[0].worker_id} and \
                    self.waits_for_reference(c):
                fresh_wanted = True   # a member's check waits for a reference run its claim did not rest on
            need = scheduler.VerifyNeed(
                claim_id=c.record.id,
                needed=needed,
                excluded_workers=excluded_workers,
                excluded_owners=excluded_owners,
                measured_classes=measured_classes,
                other_classes_live=other_classes_live,
            )
            needs.append(need)
            sole_check = sole_check or (not used and needed > 0 and c.record.parent == champion and
                                        sole_verifier(worker_id, hardware_class, need, live_peers, live_classes))
        verify = tuple(needs)
        unmeasured = champion not in self.scores
        # Only a paired study, or one whose champion has no score yet, cares about baselines in flight.
        baselines_in_flight = self.active.baselines_of(champion) if self.paired or unmeasured else []
        class_baseline = scheduler.ClassBaseline(0, 0, 0)
        if self.paired:
            measured = self.samples.baseline(champion, hardware_class)
            in_class = [lease for lease in baselines_in_flight if lease.worker_id in class_members]
            measured_by = self.samples.measured_by(champion, hardware_class) | {lease.worker_id for lease in in_class}
            done = measured.runs if measured else 0
            # A quarantined peer is connected but gets no task: leaving the repeat to it would
            # leave it to nobody (the class's baseline, and every check waiting on it, stalls).
            others_available = _anyone_else(live_peers, measured_by, worker_id, self.samples.left_out(hardware_class))
            dispute = self.dispute(champion, hardware_class) if done else False
            if dispute or (dispute is None and (champion, hardware_class) in self.explored):
                # More runs settle it: another worker of the class may show who is right, a repeat
                # tells noise from a spoofer (a big class rarely repeats otherwise), and past
                # `dispute_runs` the next run splits the class (`class_outliers`). So whoever of
                # the class asks first measures it: the dispute never waits for one that won't.
                # Undecided for want of any machine's own noise, each worker's runs are judged
                # against its own meanwhile, and the class's first candidate goes before the repeats.
                measured_by, others_available = frozenset(), False
                done = 0
            # Unknown (no live classes given) counts as connected.
            reference_live = not live_classes or self.tiers.reference() in live_classes
            target = self.baseline_target(hardware_class, len(class_members), reference_live)
            if fresh_wanted:
                target = max(target, done + 1)   # one more run, that the claim was not compared with
            class_baseline = scheduler.ClassBaseline(
                done=done, in_flight=len(in_class),
                target=target, measured_by=frozenset(measured_by),
                others_available=others_available,
                # A check only this worker may make is not held back while its class's baseline of
                # the champion is being measured: it is measured side by side and waits for it
                # (`Judging._check_verdict`), instead of the worker exploring until a keep
                # supersedes the claim (two workers, a merge whose claimant is the other one).
                judgeable=self.reference(champion, hardware_class, worker_id) is not None or
                (sole_check and dispute is False and
                 baseline_on_its_way(done, len(in_class), self.spec.acceptance.baseline_runs)),
            )
        reported_in_flight = len(baselines_in_flight)
        if unmeasured and not self.paired:
            # The first score is the median of several baselines (`initial_score`), from distinct
            # workers while others of the class are connected: the scheduler hands out a baseline
            # while none is in flight, so one is reported in flight when this worker measured it
            # already, or when enough are.
            wanted = acceptance.initial_baselines(self.spec.acceptance) - len(self.samples.values_of(champion))
            measured = self.samples.measured_by(champion, hardware_class) | {l.worker_id for l in baselines_in_flight}
            busy = len(baselines_in_flight) >= wanted or \
                (worker_id in measured and _anyone_else(live_peers, measured, worker_id))
            reported_in_flight = max(reported_in_flight, 1) if busy else 0
        spent = (self.spec.max_cost_usd > 0 and self.cost_usd >= self.spec.max_cost_usd) or \
            (self.spec.max_tokens > 0 and self.llm_tokens >= self.spec.max_tokens)
        needs_verify = any(v.needed > 0 for v in verify)
        in_flight, checks_owed = len(self.active), self.checks_owed()
        # Once no explore fits, what is left is checking open claims and measuring the champion.
        # (Worked out before the view is made: a `replace` of it was ~4% of a lease.)
        explore_fits = scheduler.explore_fits(spent, self.evaluations, in_flight, checks_owed,
                                              self.record.max_evaluations)
        return scheduler.StudyView(
            name=self.spec.name,
            mutator_kind=self.spec.mutator.kind,
            paired=self.paired,
            champion_measured=not unmeasured,
            baseline_in_flight=reported_in_flight,
            in_flight=in_flight,
            evaluations=self.evaluations,
            max_evaluations=self.record.max_evaluations,
            spent=spent,
            class_baseline=class_baseline,
            verify=verify,
            blocked=bool(self.record.error) or not (explore_fits or needs_verify or unmeasured),
            checks_owed=checks_owed,
        )

    def note_check(self, pending: PendingClaim, lease_id: str, hardware_class: str, worker_id: str) -> None:
        """A check of `pending` was leased: noted `early` when its class cannot judge it yet."""
        if self.paired and self.reference(pending.record.parent, hardware_class, worker_id) is None:
            pending.early.add(lease_id)

    def may_be_sole_verifier(self, worker_id: str, live_peers: AbstractSet[str]) -> bool:
        """Whether some open claim may have no connected checker but this worker: every other
        connected worker of its class is kept from checking some claim (`sole_verifier` says
        which). A quick test before the scheduler's view is built; stops at the first other one."""
        kept: set[str] = set()
        for c in self.claims.values():
            kept.update(c.kept_from_checking(self.active))
        return not _anyone_else(live_peers, kept, worker_id)

    def keep_waits(self, parent: str) -> bool:
        """Whether a keep of `parent` would supersede an open claim on it whose check by the only
        worker that could make it is under way (in flight, or measured and waiting): the keep
        then waits for that check. With two workers the claim is the merge of one's stale edit,
        which only the other may check, and either's next kept edit would otherwise supersede
        it unchecked. Empty `sole` sets (any swarm with another possible checker) cost nothing."""
        return any(c.sole and c.record.parent == parent and not c.audit and
                   any(lid in c.in_flight or lid in c.waiting for lid in c.sole)
                   for c in self.claims.values())

    def checks_owed(self) -> int:
        """Checks the open claims still need beyond those in flight: the budget keeps room for them."""
        return sum(max(0, c.settlement(self.spec.acceptance).needed - c.checks_out) for c in self.claims.values())


def sole_verifier(worker_id: str, hardware_class: str, need: scheduler.VerifyNeed, live_peers: AbstractSet[str],
                  live_classes: AbstractSet[str]) -> bool:
    """Whether this worker is the only connected one that may make a check of this claim: no
    other class has a connected worker, and every other connected worker of its own class is
    kept from checking it (the claimant, or one that measured it or is measuring it). Pure.

    Stops at the first other worker that may check it: a big class answers at once."""
    if worker_id in need.excluded_workers or any(cls != hardware_class for cls in live_classes):
        return False
    return not _anyone_else(live_peers, need.excluded_workers, worker_id)


def baseline_on_its_way(done: int, in_flight: int, baseline_runs: int) -> bool:
    """Whether a class's baseline of the champion is complete once the runs in flight land
    (`done` made, `in_flight` leased): a check measured meanwhile is judged then. Pure."""
    return done < baseline_runs <= done + in_flight


def verification_order(claims: Iterable[PendingClaim]) -> list[PendingClaim]:
    """Open claims in the order they should be verified, at most `MAX_VERIFYING` per parent
    and one merge per parent at a time. Pure.

    Claims on the same champion compete: once one is accepted the others are superseded
    and checks of them in flight are mostly wasted. So the strongest go first (merges,
    which carry edits that were checked already, then the largest claimed gain over its
    bar) and the rest wait their turn; if one wins they are merged onto it instead. Merges
    onto one champion are checked one at a time: the next waits unchecked, so stale edits
    arriving meanwhile fold into it (`Merging`) instead of each opening a merge whose
    check the first merge's acceptance would waste.
    """
    def strength(c: PendingClaim) -> float:
        gains = [m.improvement / m.threshold for m in c.measurements if m.threshold > 0]
        return max(gains) if gains else math.inf

    taken: dict[str, int] = {}
    merging: set[str] = set()
    chosen = []
    for c in sorted(claims, key=lambda c: (not c.in_flight, -strength(c))):
        if c.record.origin == "merge" and not c.audit:
            if c.record.parent in merging:
                continue
            merging.add(c.record.parent)
        if taken.get(c.record.parent, 0) < MAX_VERIFYING:
            taken[c.record.parent] = taken.get(c.record.parent, 0) + 1
            chosen.append(c)
    return chosen
