"""Exploring on a claim while it is checked (speculation). Pure, no I/O.

With quorum 2 a claim waits one evaluation for its check while the rest of the swarm goes on
editing the champion it is about to replace. At N = 8 on one class that wait was 1.1 s of a
champion's 2.4 s, and 44% of the explores were leased while the champion's successor was
already being checked (`benchmarks/README.md`, "Ninth session"). Here those explores are made
on the claim instead, and its class measures the claim's baseline while the check runs, so
that once it is accepted its edits are judged at once.

What changes and what does not:

- Acceptance does not: an edit of a claim still open waits, stored, for the claim's verdict
  (`transitions.ResultEvent.PARENT_CHECKED`); accepted, it is judged against the new champion's
  own baseline like any edit of it; refuted or overtaken, it is judged as a stale edit is (against
  the champion, else unjudged) when its class's next baseline of the champion arrives.
- Only where tiers are out of the question: a paired study, quorum 2 or more, not tiered and fewer than
  `MIN_TIER_CLASSES` verifying classes connected (a tier's prediction carries one class's error
  into every member, and a false acceptance came through one when branch `speed` explored on
  claims in a tiered swarm).
- Only on a claim worth it: the oldest open claim on the champion whose check is under way,
  a merge (the coordinator's, of edits that each beat their bar), or an explore claim whose every
  measurement so far beat its bar (`STRONG`: 1.25x and 2x were slower; a check that disagreed, so
  that an arbiter is wanted, stops it), by a claimant with no strike that was never moved out of
  its class, whose explore claims built on before were not lost more than once beyond those that
  became the champion (`TrackRecord`). A claim lost after it was built on costs its classes'
  runs measured ahead; a claimant with no strike may still lose claim after claim: a spoofer
  (another class's hardware under this class's name) has its claims left unconfirmed, never
  outvoted, and 8 workers / 2 classes with spoofers went from 7.8% of evaluations as baselines
  to 18.2% when its claims were built on (`benchmarks/README.md`, "spec2").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

STRONG = 1.0           # an explore claim is built on when each measurement so far beats its bar by this factor
MERGE_ORIGIN = "merge"
FORGIVEN = 1           # explore claims built on and lost, beyond those that became the champion, a claimant may have


def earned(accepted: int, lost: int) -> bool:
    """Whether a claimant's next claim may be built on, from its claims built on so far: those
    that became the champion (`accepted`) and those that did not (`lost`: refuted, unconfirmed,
    overtaken). One loss is forgiven as noise; each claim that became the champion forgives one more."""
    return lost <= accepted + FORGIVEN


@dataclass
class TrackRecord:
    """Per claimant, its explore claims that were built on (`PendingClaim.speculated`) and how
    they ended. Kept in memory only: a restarted coordinator starts every claimant afresh,
    which costs at most `FORGIVEN` + 1 lost claims' runs ahead each."""

    accepted: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)

    def note(self, claimant: str, accepted: bool) -> None:
        """A claim of `claimant` that was built on was decided (accepted or not)."""
        book = self.accepted if accepted else self.lost
        book[claimant] = book.get(claimant, 0) + 1

    def allows(self, claimant: str) -> bool:
        """Whether the claimant's claims may be built on now (`earned`)."""
        return earned(self.accepted.get(claimant, 0), self.lost.get(claimant, 0))


class BuiltOn(NamedTuple):
    """What an explore lease becomes on an open claim (`next_task`)."""

    kind: str           # "baseline": measure the claim ahead; "explore": an edit of it
    version: str        # the claim's version
    claim_id: str


class _Measurement(Protocol):
    @property
    def improvement(self) -> float: ...
    @property
    def threshold(self) -> float: ...


class _Record(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def parent(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def claimant_worker(self) -> str: ...
    @property
    def created(self) -> float: ...


class _Claim(Protocol):
    @property
    def record(self) -> _Record: ...
    @property
    def measurements(self) -> list[_Measurement]: ...  # type: ignore[misc]
    @property
    def in_flight(self) -> set[str]: ...
    @property
    def audit(self) -> bool: ...


def may_speculate(quorum: int, tiered: bool, verifying_classes: int, min_tier_classes: int) -> bool:
    """Whether a study may explore on a claim at all: checked claims (quorum 2+), no tiers now
    and none about to form (`verifying_classes` connected below `min_tier_classes`)."""
    return quorum >= 2 and not tiered and verifying_classes < min_tier_classes


def strong(measurements: Iterable[_Measurement]) -> bool:
    """Every measurement beat its bar by `STRONG` times (and there is one)."""
    listed = list(measurements)
    return bool(listed) and all(m.improvement >= STRONG * m.threshold for m in listed)


def worth_building_on(claim: _Claim, champion: str, trusted: Callable[[str], bool]) -> bool:
    """Whether explores may be made on this open claim (see the module's docstring)."""
    record = claim.record
    if record.state != "pending" or claim.audit or record.parent != champion or not claim.in_flight:
        return False
    if record.origin == MERGE_ORIGIN:
        return True
    return strong(claim.measurements) and trusted(record.claimant_worker)


def claim_to_build_on(claims: Iterable[_Claim], champion: str, trusted: Callable[[str], bool]) -> _Claim | None:
    """The claim the study's next explores build on: the oldest one worth it (its check was
    leased first, so it is the likeliest to be the next champion), None when there is none."""
    best: _Claim | None = None
    for claim in claims:
        if worth_building_on(claim, champion, trusted) and (best is None or claim.record.created < best.record.created):
            best = claim
    return best


def runs_ahead(origin: str, target: int) -> int:
    """Baseline runs a class measures of a claim while it is checked: the runs its next champion
    would want (`target`), less the checks that become baseline runs when it is accepted (a
    merge's two, `merging.checks_as_baselines`; none of an explore claim's)."""
    return max(0, target - (2 if origin == MERGE_ORIGIN else 0))


def measure_ahead(wanted: int, done: int, in_flight: int, measured_it: bool, claimant: bool) -> bool:
    """Whether this worker measures the claim's baseline now instead of exploring on it: its
    class has fewer than `wanted` runs done or under way, this worker has none of them, and it
    is not the claimant (whose runs never judge its own claim's checks)."""
    return done + in_flight < wanted and not measured_it and not claimant


class _State(Protocol):
    """What `next_task` reads of a study's state (`study_state.StudyState`)."""

    claims: dict[str, Any]
    champion: Any
    track: TrackRecord
    spec: Any
    samples: Any
    active: Any

    @property
    def tiered(self) -> bool: ...
    @property
    def paired(self) -> bool: ...
    def runs_for_class_of(self, members: int) -> int: ...


def next_task(state: _State, worker_id: str, hardware_class: str, members: AbstractSet[str],
              verifying_classes: int, trusted: Callable[[str], bool], min_tier_classes: int) -> BuiltOn | None:
    """What an explore lease becomes when the study may build on an open claim: a "baseline" of
    its version when this worker's class should measure the claim ahead, an "explore" of it for
    an edit of it, None to explore the champion as usual. A claimant is trusted here only while
    its track record allows it (`TrackRecord`). Reads the state, changes nothing."""
    if not state.claims or not state.paired \
            or not may_speculate(state.spec.acceptance.quorum, state.tiered, verifying_classes, min_tier_classes):
        return None   # every explore lease asks: most answers end here
    track = state.track
    claim = claim_to_build_on(state.claims.values(), state.champion.version,
                              lambda worker: trusted(worker) and track.allows(worker))
    if claim is None:
        return None
    version = claim.record.version
    runs = state.runs_for_class_of(len(members))   # what the class will want of it as champion
    done = state.samples.baseline(version, hardware_class)
    leases = [lease for lease in state.active.baselines_of(version) if lease.worker_id in members]
    measured_it = worker_id in state.samples.measured_by(version, hardware_class) \
        or any(lease.worker_id == worker_id for lease in leases)
    if measure_ahead(runs_ahead(claim.record.origin, runs), done.runs if done else 0, len(leases), measured_it,
                     worker_id == claim.record.claimant_worker):
        return BuiltOn("baseline", version, claim.record.id)
    return BuiltOn("explore", version, claim.record.id)
