"""Leases: handing tasks out, keeping them alive on heartbeats, and taking them back.

Part of the engine (see `engine.Engine`, which composes it). What to lease is the pure
`scheduler`'s choice; how a lease may change is `transitions.LEASE_TABLE`, which every
closing path here goes through. A lease is written to the store before memory learns of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from autoswarm.slot_time import SlotTime
from autoswarm.coordinator import scheduler, speculation
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.deadlines import DeadlineQueue, due_leases
from autoswarm.coordinator.in_flight import Peers
from autoswarm.coordinator.roster import Roster
from autoswarm.coordinator.staleness import is_stale
from autoswarm.coordinator.references import MIN_TIER_CLASSES
from autoswarm.coordinator.study_state import StudyState, sole_verifier
from autoswarm.coordinator.store import LeaseRecord, VersionRecord
from autoswarm.coordinator.transitions import Action, LeaseEvent, LeaseState, lease_step

STOPPED = "stopped"            # the state of a worker's last heartbeat (worker/presence.say_stopped)
SETUP_RETRY_SECONDS = 3600.0   # a worker whose setup failed gets that study again after this


@dataclass(frozen=True)
class TaskSpec:
    """A leased task as the servicer sends it."""

    lease_id: str
    study: str
    kind: str
    bundle_hash: str
    bundle_size: int
    parent: VersionRecord | None
    candidate: VersionRecord | None
    seed: int
    deadline: float
    claim: str = ""
    memory: str = ""
    # Explore: the explores of the same parent leased before it, edit not made yet (`EditsInMaking`).
    edits_ahead: int = 0
    order_seed: int = 0


@dataclass(frozen=True)
class HeartbeatOutcome:
    cancelled: list[str]      # leases this worker no longer holds: stop them
    duplicates: list[str]     # explore leases whose candidate was evaluated already: do not evaluate
    interval: float = 0.0     # seconds until this worker's next heartbeat
    # Its leases made on a champion replaced since: hand back those not started (`staleness`).
    stale: list[str] = field(default_factory=list)
    released: int = 0         # leases given back because the worker said it stopped without them


def _with_priority(view: scheduler.StudyView, priority: int) -> scheduler.StudyView:
    """The study's view with the operator's priority: the same object when it has that one
    already (a `replace` of every study's view on every lease was ~4% of a paired lease)."""
    return view if view.priority == priority else replace(view, priority=priority)


class Leasing:
    """The leases of every live study, and which worker runs which (see the module's docstring)."""

    def __init__(self, ctx: EngineContext, roster: Roster) -> None:
        self.ctx = ctx
        self._roster = roster
        self.running: dict[str, set[str]] = {}
        # Worker -> study -> when its setup of the study last failed (filed per worker: every
        # lease reads its own, not every worker's).
        self._setup_failed: dict[str, dict[str, float]] = {}
        # Every deadline an active lease was given, earliest first: the reaper looks only at
        # those that have passed, not at every lease in flight (80,000 at 100,000 workers).
        self._deadlines = DeadlineQueue()

    def track(self, state: StudyState, lease: LeaseRecord) -> None:
        """Takes note of an active lease read back from the store."""
        state.active[lease.id] = lease
        self._deadlines.push(lease.deadline, lease.id, lease.study)
        self.running.setdefault(lease.worker_id, set()).add(lease.id)

    def setup_failed(self, worker_id: str, study: str, when: float) -> None:
        """This worker's setup of the study failed: it is not offered the study for a while."""
        self._setup_failed.setdefault(worker_id, {})[study] = when

    def _not_offered(self, worker_id: str, now: float) -> set[str]:
        """The studies whose setup failed on this worker within `SETUP_RETRY_SECONDS`; older
        failures are forgotten."""
        failed = self._setup_failed.get(worker_id)
        if not failed:
            return set()
        for study in [study for study, when in failed.items() if now - when >= SETUP_RETRY_SECONDS]:
            del failed[study]
        if not failed:
            del self._setup_failed[worker_id]
        return set(failed)

    def champion_version(self, state: StudyState) -> VersionRecord:
        """The champion's version record, read from the store once per champion."""
        if state.champion_version is None or state.champion_version.hash != state.champion.version:
            state.champion_version = self.ctx.store.version(state.spec.name, state.champion.version)
        assert state.champion_version is not None
        return state.champion_version

    def next_contact(self, worker_id: str, polling: float = 0.0, state: str = "") -> float:
        """Seconds until this worker should heartbeat, from its leases' deadlines and the swarm's size.

        `polling` is the length of the idle long-poll it was just told, which is its next
        contact when it holds no lease. Its presence is trusted for as long as that allows.
        `state`, when given, is the state the worker sent with the call (an idle long-poll).
        """
        now = self.ctx.clock()
        deadlines = [lease.deadline for lease_id in self.running.get(worker_id, ())
                     if (lease := self.active_lease(lease_id)) is not None]
        liveness = self._roster.liveness
        interval = liveness.heartbeat_interval(now, deadlines, self._roster.connected())
        self._roster.told(worker_id, interval if deadlines or not polling else polling, state)
        return interval

    def lease(self, worker_id: str, pipelined: bool = False) -> TaskSpec | None:
        """Leases the next task for this worker, or None when there is none right now.

        `pipelined`: the worker prepares the next task while it evaluates, so it may hold up to
        twice its slots."""
        roster = self._roster
        worker = roster.known_worker(worker_id)
        roster.seen(worker_id)
        now = self.ctx.clock()
        running = self.running.setdefault(worker_id, set())
        cls = worker.hardware_class
        members, live, live_classes = roster.classes(cls, now)
        trust = roster.trust(worker_id)
        # A study whose setup failed on this worker is not offered to it again for a while.
        skip = self._not_offered(worker_id, now)
        choice = scheduler.choose_task(
            [_with_priority(s.view(worker_id, cls, members, live, live_classes, roster.may_check), s.record.priority)
             for s in self.ctx.studies.values() if s.spec.name not in skip and not s.record.paused],
            scheduler.WorkerView(worker_id, frozenset(worker.mutators), len(running), worker.slots,
                                 worker.owner, trust.quarantined, trust.may_verify, cls, pipelined),
        )
        if choice is None:
            return None
        state = self.ctx.studies[choice.study]
        champion = self.champion_version(state)
        parent, candidate, claim_id = champion, champion, ""
        kind = choice.kind
        if kind == scheduler.EXPLORE:
            # An open claim worth building on: edit it, or measure its baseline ahead (`speculation`).
            built_on = speculation.next_task(state, worker_id, cls, members, len(live_classes), self._trusted,
                                             MIN_TIER_CLASSES)
            version = self.ctx.store.version(choice.study, built_on.version) if built_on is not None else None
            if built_on is not None and version is not None:
                kind, parent, candidate = built_on.kind, version, version
                state.claims[built_on.claim_id].speculated = True   # its fate goes into its claimant's track record
        if kind == scheduler.VERIFY:
            pending = state.claims[choice.claim_id]
            candidate = self.ctx.store.version(choice.study, pending.record.version)
            parent = self.ctx.store.version(choice.study, pending.record.parent) or champion
            assert candidate is not None
            claim_id = pending.record.id
        lease = LeaseRecord(
            id=self.ctx.store.new_lease_id(now), study=choice.study, worker_id=worker_id, kind=kind,
            parent=parent.hash if kind != scheduler.BASELINE else candidate.parent,
            candidate="" if kind == scheduler.EXPLORE else candidate.hash,
            seed=self.ctx.store.ids.randbits(62), issued=now, deadline=now + self.ctx.config.lease_ttl(state.spec),
            state=LeaseState.ACTIVE.value, closed=None, claim=claim_id,
        )
        self.ctx.store.insert_lease(lease)
        state.active[lease.id] = lease
        self._deadlines.push(lease.deadline, lease.id, choice.study)
        if claim_id:
            pending = state.claims[claim_id]
            if state.spec.acceptance.quorum <= 1 and sole_verifier(
                    worker_id, cls, scheduler.VerifyNeed(claim_id, 1, pending.kept_from_checking(state.active)),
                    live, live_classes):
                pending.sole.add(lease.id)   # nobody else could check it: a keep waits for it (`keep_waits`)
            pending.in_flight.add(lease.id)
            state.note_check(pending, lease.id, cls, worker_id)
        peers = state.making.lease(lease.id, parent.hash, lease.seed) if kind == scheduler.EXPLORE \
            else Peers(0, lease.seed)
        running.add(lease.id)
        roster.presence[worker_id].state = "working"
        self.ctx.events.lease_granted(choice.study, kind)
        return TaskSpec(
            lease_id=lease.id, study=choice.study, kind=kind, bundle_hash=state.record.bundle_hash,
            bundle_size=state.bundle_size,
            parent=parent if kind == scheduler.EXPLORE else None,
            candidate=None if kind == scheduler.EXPLORE else candidate,
            seed=lease.seed, deadline=lease.deadline, claim=claim_id,
            memory=state.memory(lease.id, now) if kind == scheduler.EXPLORE else "",
            edits_ahead=peers.ahead, order_seed=peers.order_seed,
        )

    def _trusted(self, worker_id: str) -> bool:
        """Whether a claimant's claim may be built on: no strike, never moved out of its class."""
        trust = self._roster.trust(worker_id)
        return not trust.quarantined and trust.refuted == 0 and not trust.moved

    def heartbeat(self, worker_id: str, lease_ids: Sequence[str], state: str,
                  descriptions: Mapping[str, str] | None = None,
                  candidate_hashes: Mapping[str, str] | None = None,
                  slot_times: Sequence[SlotTime] = ()) -> HeartbeatOutcome:
        """Extends the worker's running leases and takes note of the ideas it is evaluating.

        Returns the leases it no longer holds, the explore leases whose candidate was
        evaluated (or is being evaluated) already for the same parent, and those made on a
        champion replaced since.
        """
        roster = self._roster
        roster.known_worker(worker_id)
        roster.seen(worker_id, state or None)
        if slot_times:
            roster.presence[worker_id].slot_times = tuple(slot_times[: self.ctx.config.limits.max_slots])
        now = self.ctx.clock()
        held: dict[str, float] = {}
        cancelled: list[str] = []
        duplicates: list[str] = []
        for lease_id in lease_ids[:1024]:
            lease = self.active_lease(lease_id)
            if lease is None or lease.worker_id != worker_id \
                    or Action.EXTEND not in lease_step(LeaseState(lease.state), LeaseEvent.HEARTBEAT).actions:
                cancelled.append(lease_id)   # closed, or another's: the worker is told to stop (REFUSE)
                continue
            study = self.ctx.studies[lease.study]
            held[lease_id] = now + self.ctx.config.lease_ttl(study.spec)
            if descriptions and lease_id in descriptions:
                study.making.made(lease_id)
                study.ideas[lease_id] = " ".join(descriptions[lease_id].split())[: self.ctx.config.limits.max_description_chars]
            candidate = (candidate_hashes or {}).get(lease_id, "")
            if candidate and lease.kind == scheduler.EXPLORE:
                if study.known_candidate(lease.parent, candidate, lease_id):
                    duplicates.append(lease_id)
                else:
                    study.candidates.add(lease_id, lease.parent, candidate)
        if held:
            self.ctx.store.extend_leases(worker_id, list(held), held)
            for lease_id, deadline in held.items():
                lease = self.active_lease(lease_id)
                if lease is not None and deadline > lease.deadline:
                    self.ctx.studies[lease.study].active[lease_id] = replace(lease, deadline=deadline)
                    self._deadlines.push(deadline, lease_id, lease.study)
        if state == STOPPED:
            # A worker's last word: it holds nothing but what it lists (results in its outbox).
            # A task whose answer it never saw (a long-poll it gave up as the answer came) goes
            # back now rather than at its deadline.
            released = self.release(worker_id, [lid for lid in self.running.get(worker_id, ()) if lid not in held])
        else:
            released = 0
        stale = [lease_id for lease_id in self.stale_leases(worker_id) if lease_id in held]
        return HeartbeatOutcome(cancelled, duplicates, self.next_contact(worker_id), stale, released)

    def stale_leases(self, worker_id: str) -> list[str]:
        """This worker's active leases to hand back if it has not started them: those made on a
        champion replaced since and checks of claims closed since (`staleness`), oldest first,
        then an explore displaced by a check only this worker may make (`displaced_explore`)."""
        stale: list[str] = []
        held: list[LeaseRecord] = []
        for lease_id in sorted(self.running.get(worker_id, ())):
            lease = self.active_lease(lease_id)
            if lease is None:
                continue
            state = self.ctx.studies[lease.study]
            if is_stale(lease.kind, lease.parent, lease.candidate, state.champion.version, lease.claim in state.claims) \
                    and not state.claim_open_on(lease.parent if lease.kind == scheduler.EXPLORE else lease.candidate):
                stale.append(lease_id)
            else:
                held.append(lease)
        displaced = self.displaced_explore(worker_id, held)
        return [*stale, displaced] if displaced else stale

    def displaced_explore(self, worker_id: str, held: Sequence[LeaseRecord]) -> str:
        """The explore a pipelined worker leased ahead, when a check of an open claim that no
        other connected worker may make would take its place ("" when there is none).

        With two workers, the claimant of a merge and one other, the other is the only possible
        verifier; it leases its next task ahead while it evaluates, usually before the merge is
        opened, and then explores until the next keep supersedes the merge unchecked. Handed
        back unstarted (as a stale lease is), its place is leased anew: the check, which the
        scheduler puts first. So also where the place is free but the study's evaluation budget
        is not (its last explores leased before the merge existed): an improvement found within
        the budget is checked within it. Only where nobody else could make the check soon:
        elsewhere a prepared edit is worth more than a check another worker takes anyway."""
        worker = self._roster.workers.get(worker_id)
        explores = [lease for lease in held if lease.kind == scheduler.EXPLORE]
        if worker is None or not explores:
            return ""   # nothing leased ahead
        ahead = explores[-1]   # the newest: the one leased ahead of the one evaluating
        state = self.ctx.studies[ahead.study]
        if len(held) < 2 * worker.slots and \
                scheduler.room_in_budget(state.evaluations, len(state.active), state.record.max_evaluations):
            return ""   # a place is free, and room in the budget: its next lease takes the check
        members, live, live_classes = self._roster.classes(worker.hardware_class, self.ctx.clock())
        if not state.claims or not state.paired or any(cls != worker.hardware_class for cls in live_classes) \
                or not state.may_be_sole_verifier(worker_id, live):
            return ""
        trust = self._roster.trust(worker_id)
        view = state.view(worker_id, worker.hardware_class, members, live, live_classes, self._roster.may_check)
        # Without the explore: a place for one task more, and room in the budget for it.
        choice = scheduler.choose_task(
            [replace(view, in_flight=view.in_flight - 1)],
            scheduler.WorkerView(worker_id, frozenset(worker.mutators), len(held) - 1, worker.slots,
                                 worker.owner, trust.quarantined, trust.may_verify, worker.hardware_class,
                                 pipelined=True))
        if choice is None or choice.kind != scheduler.VERIFY:
            return ""
        need = next(v for v in view.verify if v.claim_id == choice.claim_id)
        return ahead.id if sole_verifier(worker_id, worker.hardware_class, need, live, live_classes) else ""

    def active_lease(self, lease_id: str) -> LeaseRecord | None:
        for state in self.ctx.studies.values():
            lease = state.active.get(lease_id)
            if lease is not None:
                return lease
        return None

    def forget_lease(self, lease: LeaseRecord) -> None:
        """Memory lets go of a lease the store has just closed."""
        state = self.ctx.studies[lease.study]
        state.active.pop(lease.id, None)
        self._deadlines.discard(lease.id)
        state.ideas.pop(lease.id, None)
        state.making.made(lease.id)
        state.candidates.discard(lease.id)
        if lease.claim in state.claims:
            state.claims[lease.claim].in_flight.discard(lease.id)
            state.claims[lease.claim].early.discard(lease.id)
        self.running.get(lease.worker_id, set()).discard(lease.id)

    def close(self, leases: Sequence[LeaseRecord], event: LeaseEvent, now: float) -> int:
        """Closes active leases on an expiry or a release, as `LEASE_TABLE` says, store first.

        Returns how many rows the store closed."""
        if not leases:
            return 0
        closed = lease_step(LeaseState.ACTIVE, event).state
        count = self.ctx.store.close_leases([lease.id for lease in leases], closed.value, now)
        for lease in leases:
            self.forget_lease(lease)
            self.ctx.events.leases_closed(lease.study, lease.kind, closed.value)
        return count

    def release(self, worker_id: str, lease_ids: Sequence[str]) -> int:
        """Gives unfinished leases back so their work is scheduled again at once."""
        self._roster.known_worker(worker_id)
        mine = {lid: lease for lid in lease_ids
                if (lease := self.active_lease(lid)) is not None and lease.worker_id == worker_id}
        released = self.close(list(mine.values()), LeaseEvent.RELEASE, self.ctx.clock())
        if released:
            self.ctx.on_change()
        return released

    def expire_overdue(self) -> list[LeaseRecord]:
        """Expires leases past their deadline so their work is scheduled again.

        O(deadlines passed since the last call), not O(leases in flight): see `deadlines`."""
        now = self.ctx.clock()
        studies = self.ctx.studies

        def current(lease_id: str, study: str) -> float | None:
            state = studies.get(study)
            lease = state.active.get(lease_id) if state is not None else None
            return lease.deadline if lease is not None else None

        overdue = [studies[study].active[lease_id] for lease_id, study in due_leases(self._deadlines, now, current)]
        if overdue:
            self.close(overdue, LeaseEvent.EXPIRY, now)
            self.ctx.on_change()
        return overdue
