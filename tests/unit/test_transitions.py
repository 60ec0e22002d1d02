"""The lease, result and claim lifecycles: every transition of each table, and what is refused."""

from __future__ import annotations

import pytest

from autoswarm.coordinator.transitions import (
    CLAIM_TABLE,
    LEASE_TABLE,
    RESULT_TABLE,
    Action,
    ClaimEvent,
    ClaimState,
    LeaseEvent,
    LeaseState,
    LifecycleError,
    ResultEvent,
    ResultState,
    claim_event,
    claim_step,
    lease_step,
    result_event,
    result_step,
)

A = Action


@pytest.mark.parametrize(("state", "event", "expected", "actions"), [
    (LeaseState.ACTIVE, LeaseEvent.HEARTBEAT, LeaseState.ACTIVE, (A.EXTEND,)),
    (LeaseState.ACTIVE, LeaseEvent.RESULT, LeaseState.DONE, (A.RECORD,)),
    (LeaseState.ACTIVE, LeaseEvent.EXPIRY, LeaseState.EXPIRED, (A.REISSUE,)),
    (LeaseState.ACTIVE, LeaseEvent.RELEASE, LeaseState.RELEASED, (A.REISSUE,)),
    (LeaseState.EXPIRED, LeaseEvent.HEARTBEAT, LeaseState.EXPIRED, (A.REFUSE,)),
    (LeaseState.RELEASED, LeaseEvent.HEARTBEAT, LeaseState.RELEASED, (A.REFUSE,)),
    (LeaseState.DONE, LeaseEvent.HEARTBEAT, LeaseState.DONE, (A.REFUSE,)),
    (LeaseState.DONE, LeaseEvent.EXPIRY, LeaseState.DONE, ()),
    (LeaseState.DONE, LeaseEvent.RELEASE, LeaseState.DONE, ()),
    (LeaseState.EXPIRED, LeaseEvent.RELEASE, LeaseState.EXPIRED, ()),
    (LeaseState.RELEASED, LeaseEvent.EXPIRY, LeaseState.RELEASED, ()),
])
def test_every_lease_transition(state, event, expected, actions):
    step = lease_step(state, event)
    assert (step.state, step.actions) == (expected, actions)


@pytest.mark.parametrize("state", [LeaseState.DONE, LeaseState.EXPIRED, LeaseState.RELEASED])
def test_a_result_for_a_closed_lease_is_refused(state):
    with pytest.raises(LifecycleError, match="cannot take 'result'"):
        lease_step(state, LeaseEvent.RESULT)


def test_a_result_whose_baseline_exists_is_judged_at_once():
    step = result_step(ResultState.ARRIVED, result_event(baseline_known=True, waiting=False))
    assert step.state is ResultState.JUDGED and step.actions == (A.RECORD, A.JUDGE)


def test_a_result_waits_for_its_baseline_and_is_judged_when_it_arrives():
    step = result_step(ResultState.ARRIVED, result_event(baseline_known=False, waiting=False))
    assert step.state is ResultState.WAITING
    assert step.actions == (A.RECORD, A.WAIT, A.SCHEDULE_BASELINE), "stored, and a baseline is scheduled"
    still = result_step(ResultState.WAITING, result_event(baseline_known=False, waiting=True))
    assert still.state is ResultState.WAITING and still.actions == (A.WAIT,)
    done = result_step(ResultState.WAITING, result_event(baseline_known=True, waiting=True))
    assert done.state is ResultState.JUDGED and done.actions == (A.JUDGE,)


def test_a_result_short_of_a_thin_bar_waits_once_for_the_next_baseline_run():
    step = result_step(ResultState.ARRIVED, ResultEvent.SHORT_OF_THIN_BAR)
    assert step.state is ResultState.WAITING
    assert step.actions == (A.RECORD, A.WAIT, A.SCHEDULE_BASELINE)
    with pytest.raises(LifecycleError):
        result_step(ResultState.WAITING, ResultEvent.SHORT_OF_THIN_BAR)   # judged for good the next time


def test_an_edit_of_a_claim_being_checked_waits_for_its_verdict():
    """Explored on while it is checked (`speculation`): stored, no baseline scheduled for it (its
    class measures the claim ahead), and it waits on while the claim is open."""
    step = result_step(ResultState.ARRIVED, ResultEvent.PARENT_CHECKED)
    assert step.state is ResultState.WAITING and step.actions == (A.RECORD, A.WAIT)
    still = result_step(ResultState.WAITING, ResultEvent.PARENT_CHECKED)
    assert still.state is ResultState.WAITING and still.actions == (A.WAIT,)
    # Accepted: the claim is the champion, and its baseline judges the edit.
    assert result_step(ResultState.WAITING, result_event(baseline_known=True, waiting=True)).state is ResultState.JUDGED


def test_a_waiting_result_whose_parent_retired_goes_stale_and_a_judged_one_takes_nothing():
    assert result_step(ResultState.WAITING, ResultEvent.PARENT_RETIRED).state is ResultState.STALE
    for event in ResultEvent:
        with pytest.raises(LifecycleError):
            result_step(ResultState.JUDGED, event)


@pytest.mark.parametrize(("event", "expected", "actions"), [
    (ClaimEvent.NEEDS_MORE, ClaimState.PENDING, (A.SCHEDULE_VERIFY,)),
    (ClaimEvent.DISAGREEMENT, ClaimState.PENDING, (A.SCHEDULE_ARBITER,)),
    (ClaimEvent.ACCEPTED, ClaimState.ACCEPTED, (A.PROMOTE, A.CREDIT_CLAIMANT, A.STRIKE_OUTVOTED)),
    (ClaimEvent.CLAIMANT_OUTVOTED, ClaimState.REJECTED, (A.STRIKE_CLAIMANT, A.STRIKE_OUTVOTED)),
    (ClaimEvent.UNCONFIRMED, ClaimState.UNCONFIRMED, (A.STRIKE_OUTVOTED,)),
    (ClaimEvent.CHAMPION_MOVED, ClaimState.SUPERSEDED, (A.MERGE_ONTO_CHAMPION,)),
    (ClaimEvent.CHAMPION_INCLUDED, ClaimState.PENDING, (A.SCHEDULE_VERIFY,)),
])
def test_every_claim_transition(event, expected, actions):
    step = claim_step(ClaimState.PENDING, event)
    assert (step.state, step.actions) == (expected, actions)


def test_the_arbiter_path_a_disagreement_then_an_agreeing_majority():
    """Claimant and a lying verifier disagree: an arbiter is scheduled, then the majority decides."""
    first = claim_step(ClaimState.PENDING, claim_event("pending", disagreement=True))
    assert first.actions == (A.SCHEDULE_ARBITER,)
    decided = claim_step(first.state, claim_event("accepted", disagreement=False))  # type: ignore[arg-type]
    assert decided.state is ClaimState.ACCEPTED and A.STRIKE_OUTVOTED in decided.actions
    # Or the arbiter sides with the verifier: the claimant was outvoted.
    outvoted = claim_step(first.state, claim_event("rejected", disagreement=False))  # type: ignore[arg-type]
    assert outvoted.state is ClaimState.REJECTED and A.STRIKE_CLAIMANT in outvoted.actions


@pytest.mark.parametrize("state", [s for s in ClaimState if s is not ClaimState.PENDING])
def test_a_decided_claim_takes_no_further_event(state):
    for event in ClaimEvent:
        with pytest.raises(LifecycleError, match="claim that is"):
            claim_step(state, event)


def test_an_unknown_settlement_is_an_error_and_the_tables_only_name_their_own_states():
    with pytest.raises(LifecycleError):
        claim_event("maybe", False)
    assert all(isinstance(s, LeaseState) and isinstance(n, LeaseState) for (s, _), (n, _) in LEASE_TABLE.items())
    assert all(isinstance(s, ResultState) and isinstance(n, ResultState) for (s, _), (n, _) in RESULT_TABLE.items())
    assert all(isinstance(s, ClaimState) and isinstance(n, ClaimState) for (s, _), (n, _) in CLAIM_TABLE.items())
