"""Transitions of a lease, a result and a claim, each lifecycle as one explicit table. Pure.

In the manner of h11's `_state.py`: every transition is a row of a table, keyed by
(state, event), and says where it goes and what the coordinator must do about it
(`Action`s: record, open a claim, promote, schedule...). Nothing here touches the store
or the network; the engine feeds events in and applies the actions. An event a table has
no row for is a `LifecycleError`, so an impossible sequence (a result for an expired lease,
a second verdict on a decided claim) is refused in one place instead of half-handled.

Lease: granted → active; a heartbeat keeps it active; a result, an expiry or a release
closes it (done, expired, released). A result for a closed lease is refused: its task has
been handed out again.

Result (of explore tasks in paired studies): it is judged against its class's
baseline of the parent. When that baseline does not exist yet, the result *waits*, stored
but unjudged, and a baseline of the parent is scheduled on the first free worker of the
class; when the baseline arrives the waiting result is judged (or, if its parent stopped
mattering — superseded, nobody will judge it — it is dropped as stale).

Claim: opened pending with its first measurement. Each further measurement settles it
(`acceptance.settle`): still pending (schedule a verification), disagreeing replicas
(schedule an arbiter: one more measurement by another owner), accepted (promote: the new
champion; outvoted workers lose trust), rejected (the claimant was outvoted and loses
trust), unconfirmed (nobody's fault). When the champion moves first the claim is
superseded (its edit is replayed onto the new champion) or, when it already holds the new
champion's edits, rebased and kept open. A merge nobody checks yet is superseded when a newer
stale edit is folded into it (the new merge checks both). An untrusted worker's superseded
claim may still be checked to the end, for trust only (`Judging._close_audit`): that audit
earns strikes and credit but is no transition of the claim, whose lifecycle ended.

`judging.Judging` and `merging.Merging` decide claims through `claim_step`, `leasing.Leasing`
and `reporting.Reporting` close leases through `lease_step`; `RESULT_TABLE` is the path of a
result that waits for its class's baseline (`Reporting._judge_waiting`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from autoswarm.coordinator.frozen import quick


class LifecycleError(Exception):
    """An event that the state it arrived in has no transition for."""


class Action(enum.Enum):
    RECORD = "record"                        # store the result row
    JUDGE = "judge"                          # compare with the class baseline now
    WAIT = "wait"                            # keep unjudged until the baseline exists
    SCHEDULE_BASELINE = "schedule-baseline"  # the first free worker of the class measures it
    OPEN_CLAIM = "open-claim"
    SCHEDULE_VERIFY = "schedule-verify"
    SCHEDULE_ARBITER = "schedule-arbiter"
    PROMOTE = "promote"                      # the claim's version becomes the champion
    STRIKE_OUTVOTED = "strike-outvoted"      # whoever the agreeing majority outvoted loses trust
    STRIKE_CLAIMANT = "strike-claimant"
    CREDIT_CLAIMANT = "credit-claimant"
    MERGE_ONTO_CHAMPION = "merge-onto-champion"
    REISSUE = "reissue"                      # the task goes back to the scheduler
    REFUSE = "refuse"                        # tell the worker its lease is no longer valid
    EXTEND = "extend"


# -- leases ---------------------------------------------------------------------------------

class LeaseState(enum.Enum):
    """A lease's state; the values are the store's (`leases.state`)."""

    ACTIVE = "active"
    DONE = "reported"            # its result was recorded
    EXPIRED = "expired"
    RELEASED = "released"


class LeaseEvent(enum.Enum):
    HEARTBEAT = "heartbeat"
    RESULT = "result"
    EXPIRY = "expiry"
    RELEASE = "release"


LEASE_TABLE: dict[tuple[LeaseState, LeaseEvent], tuple[LeaseState, tuple[Action, ...]]] = {
    (LeaseState.ACTIVE, LeaseEvent.HEARTBEAT): (LeaseState.ACTIVE, (Action.EXTEND,)),
    (LeaseState.ACTIVE, LeaseEvent.RESULT): (LeaseState.DONE, (Action.RECORD,)),
    (LeaseState.ACTIVE, LeaseEvent.EXPIRY): (LeaseState.EXPIRED, (Action.REISSUE,)),
    (LeaseState.ACTIVE, LeaseEvent.RELEASE): (LeaseState.RELEASED, (Action.REISSUE,)),
    # A closed lease's worker is told to stop; its result is not recorded.
    (LeaseState.EXPIRED, LeaseEvent.HEARTBEAT): (LeaseState.EXPIRED, (Action.REFUSE,)),
    (LeaseState.RELEASED, LeaseEvent.HEARTBEAT): (LeaseState.RELEASED, (Action.REFUSE,)),
    (LeaseState.DONE, LeaseEvent.HEARTBEAT): (LeaseState.DONE, (Action.REFUSE,)),
    # Expiry and release race with the result that closed the lease: nothing to do.
    (LeaseState.DONE, LeaseEvent.EXPIRY): (LeaseState.DONE, ()),
    (LeaseState.DONE, LeaseEvent.RELEASE): (LeaseState.DONE, ()),
    (LeaseState.EXPIRED, LeaseEvent.RELEASE): (LeaseState.EXPIRED, ()),
    (LeaseState.RELEASED, LeaseEvent.EXPIRY): (LeaseState.RELEASED, ()),
}


# -- results waiting for their baseline ----------------------------------------------------

class ResultState(enum.Enum):
    ARRIVED = "arrived"
    WAITING = "waiting"          # stored, unjudged: its class has no baseline of its parent yet
    JUDGED = "judged"
    STALE = "stale"              # its parent stopped mattering before a baseline came


class ResultEvent(enum.Enum):
    BASELINE_KNOWN = "baseline-known"        # the class has (or its tier predicts) a baseline of the parent
    BASELINE_MISSING = "baseline-missing"
    BASELINE_ARRIVED = "baseline-arrived"
    PARENT_RETIRED = "parent-retired"        # the parent is neither champion nor an open claim's parent
    SHORT_OF_THIN_BAR = "short-of-thin-bar"  # it beats its parent beyond the class's noise estimate, not
                                             # beyond the bar thin evidence widened (`Judging.explore_verdict`)
    PARENT_CHECKED = "parent-checked"        # its parent is an open claim being checked (`speculation`)


RESULT_TABLE: dict[tuple[ResultState, ResultEvent], tuple[ResultState, tuple[Action, ...]]] = {
    (ResultState.ARRIVED, ResultEvent.BASELINE_KNOWN): (ResultState.JUDGED, (Action.RECORD, Action.JUDGE)),
    (ResultState.ARRIVED, ResultEvent.BASELINE_MISSING):
        (ResultState.WAITING, (Action.RECORD, Action.WAIT, Action.SCHEDULE_BASELINE)),
    # Judged once more at the class's next baseline run (a thin class measures one after its
    # first edit: `StudyState.baseline_target`), and then for good: it waits once.
    (ResultState.ARRIVED, ResultEvent.SHORT_OF_THIN_BAR):
        (ResultState.WAITING, (Action.RECORD, Action.WAIT, Action.SCHEDULE_BASELINE)),
    (ResultState.WAITING, ResultEvent.BASELINE_ARRIVED): (ResultState.JUDGED, (Action.JUDGE,)),
    (ResultState.WAITING, ResultEvent.BASELINE_MISSING): (ResultState.WAITING, (Action.WAIT,)),
    (ResultState.WAITING, ResultEvent.PARENT_RETIRED): (ResultState.STALE, ()),
    # An edit of a claim explored on while it is checked waits for the claim's verdict: judged
    # against it once it is the champion, as a stale edit otherwise (`speculation`).
    (ResultState.ARRIVED, ResultEvent.PARENT_CHECKED): (ResultState.WAITING, (Action.RECORD, Action.WAIT)),
    (ResultState.WAITING, ResultEvent.PARENT_CHECKED): (ResultState.WAITING, (Action.WAIT,)),
}


# -- claims ---------------------------------------------------------------------------------

class ClaimState(enum.Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNCONFIRMED = "unconfirmed"
    SUPERSEDED = "superseded"


class ClaimEvent(enum.Enum):
    """What a new measurement (or the champion) did to a pending claim, from `acceptance.settle`."""

    NEEDS_MORE = "needs-more"              # agreeing so far, quorum not reached
    DISAGREEMENT = "disagreement"          # replicas disagree: no majority yet
    ACCEPTED = "accepted"                  # an agreeing majority beat the bar
    CLAIMANT_OUTVOTED = "claimant-outvoted"
    UNCONFIRMED = "unconfirmed"            # agreeing majority below the bar, or no majority in the room left
    CHAMPION_MOVED = "champion-moved"      # another claim won first; this one's edit is replayed
    CHAMPION_INCLUDED = "champion-included"  # it already holds the new champion's edits: rebase
    FOLDED = "folded"                      # an unchecked merge folded into a newer one, which checks both


CLAIM_TABLE: dict[tuple[ClaimState, ClaimEvent], tuple[ClaimState, tuple[Action, ...]]] = {
    (ClaimState.PENDING, ClaimEvent.NEEDS_MORE): (ClaimState.PENDING, (Action.SCHEDULE_VERIFY,)),
    (ClaimState.PENDING, ClaimEvent.DISAGREEMENT): (ClaimState.PENDING, (Action.SCHEDULE_ARBITER,)),
    (ClaimState.PENDING, ClaimEvent.ACCEPTED):
        (ClaimState.ACCEPTED, (Action.PROMOTE, Action.CREDIT_CLAIMANT, Action.STRIKE_OUTVOTED)),
    (ClaimState.PENDING, ClaimEvent.CLAIMANT_OUTVOTED):
        (ClaimState.REJECTED, (Action.STRIKE_CLAIMANT, Action.STRIKE_OUTVOTED)),
    (ClaimState.PENDING, ClaimEvent.UNCONFIRMED): (ClaimState.UNCONFIRMED, (Action.STRIKE_OUTVOTED,)),
    (ClaimState.PENDING, ClaimEvent.CHAMPION_MOVED): (ClaimState.SUPERSEDED, (Action.MERGE_ONTO_CHAMPION,)),
    (ClaimState.PENDING, ClaimEvent.CHAMPION_INCLUDED): (ClaimState.PENDING, (Action.SCHEDULE_VERIFY,)),
    (ClaimState.PENDING, ClaimEvent.FOLDED): (ClaimState.SUPERSEDED, ()),
}


@quick
@dataclass(frozen=True)
class Step:
    """Where a transition goes and what must be done."""

    state: enum.Enum
    actions: tuple[Action, ...]


def _step(table: dict, state: enum.Enum, event: enum.Enum, what: str) -> Step:  # type: ignore[type-arg]
    try:
        next_state, actions = table[(state, event)]
    except KeyError:
        raise LifecycleError(f"a {what} that is {state.value} cannot take {event.value!r}") from None
    return Step(next_state, actions)


def lease_step(state: LeaseState, event: LeaseEvent) -> Step:
    """The transition of a lease; a result for a closed lease is a `LifecycleError`."""
    return _step(LEASE_TABLE, state, event, "lease")


def result_step(state: ResultState, event: ResultEvent) -> Step:
    """The transition of a result on its way to a verdict."""
    return _step(RESULT_TABLE, state, event, "result")


def claim_step(state: ClaimState, event: ClaimEvent) -> Step:
    """The transition of a claim; a decided claim takes no further events."""
    return _step(CLAIM_TABLE, state, event, "claim")


def claim_event(outcome: str, disagreement: bool) -> ClaimEvent:
    """The claim event for an `acceptance.settle` outcome ("pending", "accepted", ...).

    `disagreement`: whether the measurements so far include one that disagrees with the
    others (a pending claim then wants an arbiter, not just its next verification).
    """
    if outcome == "pending":
        return ClaimEvent.DISAGREEMENT if disagreement else ClaimEvent.NEEDS_MORE
    if outcome == "accepted":
        return ClaimEvent.ACCEPTED
    if outcome == "rejected":
        return ClaimEvent.CLAIMANT_OUTVOTED
    if outcome == "unconfirmed":
        return ClaimEvent.UNCONFIRMED
    raise LifecycleError(f"unknown settlement outcome {outcome!r}")


def result_event(baseline_known: bool, waiting: bool) -> ResultEvent:
    """The event for a result whose class baseline is (or is not) known, first time or while waiting."""
    if baseline_known:
        return ResultEvent.BASELINE_ARRIVED if waiting else ResultEvent.BASELINE_KNOWN
    return ResultEvent.BASELINE_MISSING
