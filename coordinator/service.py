"""gRPC servicers: translate protobuf to engine calls and engine errors to status codes.

Thin on purpose: all decisions live in `engine`, `scheduler` and `acceptance`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import TypeVar

import grpc

from autoswarm import words
from autoswarm.slot_time import SlotTime
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc
from autoswarm.channel import RETRY_AFTER_KEY
from autoswarm.coordinator.admission import JoinAdmission
from autoswarm.coordinator.auth import Authenticator, caller_of
from autoswarm.coordinator.census import Census, WorkerCensus
from autoswarm.coordinator.engine import CoordinatorError, Engine, ResultIn, TaskSpec
from autoswarm.coordinator.group_commit import GroupCommit
from autoswarm.coordinator.ratelimit import RateLimiter
from autoswarm.coordinator.standings import StandingsBook, Volunteer
from autoswarm.coordinator.lineage import LineageEntry
from autoswarm.coordinator.reasons import failure_reason
from autoswarm.coordinator.store import ResultRecord, StudyEvent, StudyRecord, VersionRecord
from autoswarm.coordinator.summaries import WorkerSummary
from autoswarm.coordinator.time_left import DEADLINES

BUNDLE_CHUNK_BYTES = 1 << 20
STATUS_SLICE = 1_000             # worker rows a Status call builds between two turns of the event loop
MAX_STATUS_PAGE = 1_000          # worker rows one paged Status call lists at most (~15 ms of the loop)
MAX_LEASE_WAIT_SECONDS = DEADLINES.max_wait   # what a worker may ask; the coordinator suggests less (liveness.poll_seconds)
T = TypeVar("T")


class ChangeSignal:
    """Wakes long-polling Lease calls when something that may create work has happened.

    Not all of them at once: with thousands of idle volunteers waiting, waking every one on
    every change would cost thousands of fruitless scheduling passes. Waiters come in groups
    of workers the scheduler sees alike (`Engine`'s hardware class and mutator kinds: what
    decides which tasks a worker can take). While few wait, a change wakes them all; beyond
    `wake_all_below` it wakes the `fanout` longest waiters *of every group*, so work that only
    one kind of worker can do reaches one of them however many others wait. A woken call
    that finds work passes the wake-up on within its group (there may be more); one that
    finds none waits again at the back of its group's line.
    """

    def __init__(self, fanout: int = 2, wake_all_below: int = 32) -> None:
        self.fanout = fanout
        self.wake_all_below = wake_all_below
        # Per group, insertion order: longest waiting first.
        self._groups: dict[Hashable, dict[asyncio.Future[bool], None]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def notify(self, count: int | None = None, group: Hashable | None = None) -> None:
        """Wakes `count` waiters of `group` (default: of every group), longest waiting first;
        `count` defaults to all while few wait in all, else `fanout`."""
        if count is None:
            count = self._count if self._count < self.wake_all_below else self.fanout
        groups = list(self._groups) if group is None else [group]
        for key in groups:
            waiters = self._groups.get(key)
            woken = 0
            while waiters and woken < count:
                waiter = next(iter(waiters))
                self._drop(key, waiter)
                if not waiter.done():
                    waiter.set_result(True)
                    woken += 1

    def _drop(self, group: Hashable, waiter: asyncio.Future[bool]) -> None:
        waiters = self._groups.get(group)
        if waiters is not None and waiters.pop(waiter, True) is None:
            self._count -= 1
            if not waiters:
                del self._groups[group]

    async def wait(self, timeout: float, group: Hashable = "") -> bool:
        """Waits for a wake-up; False when `timeout` passed first.

        Callers look for work before waiting, with no await in between, so no change that
        happens after their look can be missed.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._groups.setdefault(group, {})[waiter] = None
        self._count += 1
        timer = loop.call_later(timeout, lambda: waiter.done() or waiter.set_result(False))
        try:
            return await waiter
        finally:
            timer.cancel()
            self._drop(group, waiter)


def hold_seconds(asked: float, deadline_left: float | None) -> float:
    """How long a long-poll may be held: what the worker asked (at most
    `MAX_LEASE_WAIT_SECONDS`), and always ending before the call's own deadline, with a
    margin, so that an empty answer reaches the worker instead of its deadline passing
    (a CANCELLED call, retried, is two calls where one would do); `time_left.DeadlinePolicy`."""
    return DEADLINES.hold(asked, deadline_left)


async def _guard(context: grpc.aio.ServicerContext, call: Callable[[], T]) -> T:
    """Runs an engine call, turning its refusals into gRPC status codes."""
    try:
        return call()
    except CoordinatorError as exc:
        await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        raise  # unreachable: abort raises


def version_message(version: VersionRecord, metric: float | None = None,
                    into: common_pb2.Version | None = None) -> common_pb2.Version:
    """The wire form of a version; filled into `into` (a field of a bigger message) when given."""
    message = into if into is not None else common_pb2.Version()
    message.study = version.study
    message.hash = version.hash
    message.parent_hash = version.parent
    message.content = version.content
    message.description = version.description
    message.author = version.author
    message.has_metric = metric is not None
    message.metric = metric if metric is not None else 0.0
    message.created_unix = version.created
    return message


def history_row(r: ResultRecord) -> control_pb2.HistoryRow:
    """One stored result as a row of `autoswarm history` / results.tsv."""
    return control_pb2.HistoryRow(
        result_id=r.id, version=r.version, parent=r.parent, kind=r.kind, status=r.decision,
        has_metric=r.metric is not None, metric=r.metric or 0.0, description=r.description,
        worker=r.worker_name, hardware_class=r.hardware_class, created_unix=r.created,
        evaluate_seconds=r.timings.get("evaluate_seconds", 0.0), verifies_of=r.claim,
        has_improvement=r.improvement is not None, improvement=r.improvement or 0.0, threshold=r.threshold or 0.0,
        reason=failure_reason(r.status, r.log_tail), mutate_seconds=r.timings.get("mutate_seconds", 0.0),
        llm_tokens=int(r.timings.get("llm_tokens", 0)), cost_usd=float(r.timings.get("cost_usd", 0.0)),
    )


def study_lifecycle_fields(record: StudyRecord, into: control_pb2.StudyStatus) -> control_pb2.StudyStatus:
    """Fills what an operator set on a study (paused, priority, its bundle and spec) into `into`."""
    into.paused = record.paused
    into.priority = record.priority
    into.bundle_hash = record.bundle_hash
    into.spec_json = json.dumps(record.spec, sort_keys=True)
    return into


def result_detail(r: ResultRecord, metric: str) -> control_pb2.ResultDetail:
    """One result with everything stored about it, for `autoswarm show RESULT_ID`."""
    return control_pb2.ResultDetail(study=r.study, metric=metric, row=history_row(r), log_tail=r.log_tail,
                                    worker_status=r.status, extra_metrics=dict(r.extra), timings=dict(r.timings))


def study_event_row(e: StudyEvent) -> control_pb2.StudyEventRow:
    """An operator's change to a study, as the lineage lists it."""
    return control_pb2.StudyEventRow(created_unix=e.created, kind=e.kind, detail=e.detail)


def lineage_row(e: LineageEntry) -> control_pb2.LineageRow:
    """One champion of the chain as `autoswarm history --lineage` shows it."""
    return control_pb2.LineageRow(
        seq=e.champion.seq, version=e.version.hash, parent=e.version.parent, description=e.version.description,
        has_metric=e.champion.metric is not None, metric=e.champion.metric or 0.0, claimed_by=e.claimed_by,
        verified_by=list(e.verified_by), deltas=dict(e.deltas), created_unix=e.champion.created,
    )


def task_message(task: TaskSpec, into: worker_pb2.Task | None = None) -> worker_pb2.Task:
    """The wire form of a leased task; filled into `into` when given.

    Filling the response's own field in place spares a copy of the target's content and
    of the memory text for every lease.
    """
    message = into if into is not None else worker_pb2.Task()
    message.lease_id = task.lease_id
    message.study = task.study
    message.kind = words.KIND_CODES[task.kind]
    message.bundle_hash = task.bundle_hash
    message.bundle_size = task.bundle_size
    message.seed = task.seed
    message.deadline_unix = task.deadline
    message.memory = task.memory
    message.edits_ahead = task.edits_ahead
    message.order_seed = task.order_seed
    if task.parent is not None:
        version_message(task.parent, into=message.parent)
    if task.candidate is not None:
        version_message(task.candidate, into=message.candidate)
    return message


def result_in(message: worker_pb2.Result) -> ResultIn:
    status = words.STATUS_WORDS.get(message.status, f"unknown({message.status})")
    return ResultIn(
        status=status,
        metric=message.metric if message.has_metric else None,
        extra=dict(message.extra_metrics) if message.extra_metrics else {},   # an empty map's copy costs 2 µs
        candidate=bytes(message.candidate),
        description=message.description,
        log_tail=message.log_tail,
        timings={
            "mutate_seconds": message.mutate_seconds,
            "evaluate_seconds": message.evaluate_seconds,
            "setup_seconds": message.setup_seconds,
            # What the edit cost; kept with the timings (bounded: a liar's numbers only spend its study's budget).
            "llm_tokens": min(max(message.llm_tokens, 0), 10**9),
            "cost_usd": min(max(message.cost_usd, 0.0), 1e6) if math.isfinite(message.cost_usd) else 0.0,
        },
        cache_hit=message.bundle_cache_hit,
    )


def slot_times_in(messages) -> list[SlotTime]:
    """A worker's slot time report; numbers that are not finite and non-negative count as zero."""
    def seconds(value: float) -> float:
        return value if math.isfinite(value) and value >= 0 else 0.0

    return [SlotTime(m.slot, seconds(m.evaluating_seconds), seconds(m.mutating_seconds), seconds(m.waiting_seconds))
            for m in messages]


class _Durable:
    """Waits for the group commit when there is one; answers never precede the disk."""

    def __init__(self, commits: GroupCommit | None) -> None:
        self._commits = commits

    async def __call__(self) -> None:
        if self._commits is not None:
            await self._commits.durable()


async def _as_worker(context: grpc.aio.ServicerContext, auth: Authenticator | None, worker_id: str) -> None:
    """A worker credential speaks only for the worker it was issued to."""
    caller = caller_of(auth, context)
    if caller.kind == "worker" and caller.worker_id != worker_id:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this credential belongs to another worker")


class WorkerService(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, engine: Engine, changes: ChangeSignal, commits: GroupCommit | None = None,
                 auth: Authenticator | None = None, limiter: RateLimiter | None = None,
                 admission: JoinAdmission | None = None, clock: Callable[[], float] | None = None) -> None:
        """`admission` paces joins: a Register, or the first Lease since this coordinator started of
        a worker not heard from since (a restart's reconnect), past its rate is told to come back."""
        self.engine = engine
        self.changes = changes
        self.durable = _Durable(commits)
        self.auth = auth
        self.limiter = limiter
        self.admission = admission if admission is not None and admission.enabled else None
        self._clock = clock or time.monotonic
        self._joined: set[str] = set()   # workers heard from since this coordinator started

    async def _admit(self, context: grpc.aio.ServicerContext, worker_id: str = "") -> None:
        """Lets a join through, or ends the call RESOURCE_EXHAUSTED with `retry-after` seconds in
        its trailing metadata. Older workers retry RESOURCE_EXHAUSTED with their own backoff."""
        if self.admission is None or (worker_id and worker_id in self._joined):
            return
        verdict = self.admission.ask(self._clock())
        if verdict.admitted:
            return
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"the coordinator is admitting {self.admission.config.rate:g} joins a second; "
                            f"come back in {verdict.retry_after:.0f} s",
                            trailing_metadata=((RETRY_AFTER_KEY, f"{verdict.retry_after:.2f}"),))

    async def _limit(self, context: grpc.aio.ServicerContext, worker_id: str, call: str) -> None:
        if self.limiter is not None and not self.limiter.allow(f"{worker_id}/{call}"):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many {call} calls from this worker; back off and retry")

    async def Register(self, request, context):
        hardware = {
            "cpu_model": request.hardware.cpu_model[:256],
            "cpu_cores": request.hardware.cpu_cores,
            "memory_bytes": request.hardware.memory_bytes,
            "gpus": [{"index": g.index, "name": g.name[:256], "memory_bytes": g.memory_bytes, "driver": g.driver[:64]}
                     for g in request.hardware.gpus[:64]],
            "platform": request.hardware.platform[:256],
            "python_version": request.hardware.python_version[:64],
        }
        caller = caller_of(self.auth, context)
        wanted = request.worker_id
        if caller.kind == "worker" and wanted and wanted != caller.worker_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this credential belongs to another worker")
        if caller.kind == "worker":
            wanted = caller.worker_id   # a worker credential re-registers its own worker, never a new one
        if caller.kind == "join" and wanted and self.engine.owner_of(wanted) != caller.owner:
            wanted = ""  # a join token cannot take over someone else's worker: register a new one
        await self._admit(context)
        worker_id, hw_class = await _guard(context, lambda: self.engine.register(
            wanted, request.name, hardware, request.slots, list(request.mutators), owner=caller.owner))
        credential = self.auth.issue_worker_credential(caller, worker_id) if caller.kind == "join" and self.auth else ""
        self._joined.add(worker_id)
        await self.durable()
        # An older worker keeps the interval it is told here for good: the shortest one is
        # safe for every lease. Newer ones hear a fitting interval with each lease and heartbeat.
        return worker_pb2.RegisterResponse(
            worker_id=worker_id, heartbeat_interval_seconds=self.engine.config.heartbeat_interval,
            hardware_class=hw_class, credential=credential, owner=caller.owner,
            lease_wait_seconds=self.engine.poll_seconds(),
        )

    async def Lease(self, request, context):
        await _as_worker(context, self.auth, request.worker_id)
        await self._limit(context, request.worker_id, "Lease")
        await self._admit(context, request.worker_id)
        self._joined.add(request.worker_id)
        wait = hold_seconds(request.wait_seconds, context.time_remaining())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        woken = False
        group = self._group(request.worker_id)
        while True:
            if not DEADLINES.may_hand_out(context.time_remaining()):
                # Its answer would reach nobody in time: no task (it would wait out its lease),
                # no hold; the work that woke it is for another caller of its kind (time_left.py).
                if woken:
                    self.changes.notify(1, group)
                return worker_pb2.LeaseResponse(
                    has_task=False, lease_wait_seconds=self.engine.poll_seconds(),
                    heartbeat_interval_seconds=self.engine.next_contact(request.worker_id, state=request.state))
            task = await _guard(context, lambda: self.engine.lease(request.worker_id, request.pipelined))
            if task is not None:
                if woken:
                    self.changes.notify(1, group)  # there may be more work than this: wake the next in line
                await self.durable()
                return await self._leased(context, request.worker_id, task)
            remaining = deadline - loop.time()
            # While it waits here, this call is the worker's presence: no heartbeat needed.
            interval = self.engine.next_contact(request.worker_id, polling=max(remaining, 0.0), state=request.state)
            if remaining <= 0 or context.done() or not await self.changes.wait(remaining, group):
                return worker_pb2.LeaseResponse(has_task=False, heartbeat_interval_seconds=interval,
                                                lease_wait_seconds=self.engine.poll_seconds())
            woken = True

    async def Heartbeat(self, request, context):
        await _as_worker(context, self.auth, request.worker_id)
        outcome = await _guard(context, lambda: self.engine.heartbeat(
            request.worker_id, list(request.lease_ids), request.state, dict(request.descriptions),
            dict(request.candidate_hashes), slot_times_in(request.slot_times)))
        self._joined.add(request.worker_id)   # working through a restart: its next Lease is no join
        # No wait for the commit: a heartbeat acknowledges no result, and the lease extensions
        # it wrote go out with the next commit (a restart gives running leases room anyway).
        # Leases a stopping worker gave back are on disk before it hears so.
        if outcome.released:
            await self.durable()
        return worker_pb2.HeartbeatResponse(cancelled_lease_ids=outcome.cancelled,
                                            duplicate_lease_ids=outcome.duplicates,
                                            heartbeat_interval_seconds=outcome.interval,
                                            stale_lease_ids=outcome.stale)

    async def Report(self, request, context):
        await _as_worker(context, self.auth, request.worker_id)
        await self._limit(context, request.worker_id, "Report")
        outcome = await _guard(context, lambda: self.engine.report(
            request.worker_id, request.lease_id, result_in(request.result)))
        self._joined.add(request.worker_id)
        task = (self._next_task(request)
                if request.HasField("next") and DEADLINES.may_hand_out(context.time_remaining()) else None)
        await self.durable()  # the result (and the next lease) are on disk before the worker hears of them
        response = worker_pb2.ReportResponse(
            result_id=outcome.result_id, duplicate=outcome.duplicate, decision=outcome.decision,
            new_champion=outcome.new_champion, stale_lease_ids=outcome.stale,
        )
        if request.HasField("next"):
            if task is not None:
                await self._leased(context, request.worker_id, task, into=response.next)
            else:
                # Nothing right now: the worker long-polls Lease next (a report is never held).
                response.next.has_task = False
                response.next.heartbeat_interval_seconds = self.engine.next_contact(request.worker_id)
                response.next.lease_wait_seconds = self.engine.poll_seconds()
        return response

    def _group(self, worker_id: str) -> Hashable:
        """Which waiters this worker's long-poll waits with: workers the scheduler sees alike."""
        worker = self.engine.roster.workers.get(worker_id)
        return "" if worker is None else (worker.hardware_class, tuple(sorted(worker.mutators)))

    def _next_task(self, request: worker_pb2.ReportRequest) -> TaskSpec | None:
        """The task a report's `next` asks for, leased for the reporting worker, or None.

        The result is recorded already, so a refusal here (rate limit, no slot, a study gone)
        must not fail the call: the worker hears "no task" and long-polls Lease as usual.
        """
        if self.limiter is not None and not self.limiter.allow(f"{request.worker_id}/Lease"):
            return None
        try:
            return self.engine.lease(request.worker_id, request.next.pipelined)
        except CoordinatorError:
            return None

    async def _leased(self, context: grpc.aio.ServicerContext, worker_id: str, task: TaskSpec,
                      into: worker_pb2.LeaseResponse | None = None) -> worker_pb2.LeaseResponse:
        """The answer for a task leased (and committed) for this worker, from Lease or Report;
        filled into `into` (a report's `next`) when given, sparing a copy of the task."""
        response = into if into is not None else worker_pb2.LeaseResponse()
        if context.cancelled():
            # The worker gave up on this call (stopping, machine busy): nobody will run it.
            self.engine.release(worker_id, [task.lease_id])
            await self.durable()
            response.has_task = False
            return response
        response.has_task = True
        response.lease_wait_seconds = self.engine.poll_seconds()
        task_message(task, into=response.task)
        response.heartbeat_interval_seconds = self.engine.next_contact(worker_id)
        return response

    async def Release(self, request, context):
        await _as_worker(context, self.auth, request.worker_id)
        released = await _guard(context, lambda: self.engine.release(request.worker_id, list(request.lease_ids)))
        await self.durable()
        return worker_pb2.ReleaseResponse(released=released)

    async def FetchBundle(self, request, context) -> AsyncIterator[worker_pb2.BundleChunk]:
        data = await _guard(context, lambda: self.engine.bundle(request.bundle_hash))
        for offset in range(0, max(len(data), 1), BUNDLE_CHUNK_BYTES):
            yield worker_pb2.BundleChunk(data=data[offset:offset + BUNDLE_CHUNK_BYTES], offset=offset,
                                         total_size=len(data))


def worker_status(w: WorkerSummary) -> control_pb2.WorkerStatus:
    """One worker's row of `Status`."""
    return control_pb2.WorkerStatus(
        worker_id=w.record.id, name=w.record.name, state=w.state,
        hardware_class=w.record.hardware_class, last_seen_unix=w.last_seen, results=w.results,
        slots=w.record.slots, running=w.running, mutators=list(w.record.mutators),
        claims_confirmed=w.trust.confirmed, claims_refuted=w.trust.refuted, owner=w.record.owner,
        slot_times=[common_pb2.SlotTime(slot=t.slot, evaluating_seconds=t.evaluating,
                                        mutating_seconds=t.mutating, waiting_seconds=t.waiting)
                    for t in w.slot_times])


def worker_counts(census: Census, into: control_pb2.StatusResponse) -> None:
    """The census's counts of every worker, by state and hardware class, and of mutator kinds."""
    tally = census.tally
    for (state, hw), n in sorted(tally.workers.items()):
        slots, running = tally.loads.get((state, hw), (0, 0))
        into.worker_counts.add(state=state, hardware_class=hw, workers=n, slots=slots, running=running)
    for kind, n in sorted(tally.mutators.items()):
        into.mutator_counts.add(mutator=kind, workers=n)
    into.counted_unix = census.taken_unix


class ControlService(control_pb2_grpc.ControlServiceServicer):
    def __init__(self, engine: Engine, commits: GroupCommit | None = None, auth: Authenticator | None = None,
                 standings: StandingsBook | None = None, census: WorkerCensus | None = None) -> None:
        self.engine = engine
        self.durable = _Durable(commits)
        self.auth = auth
        self.standings = standings
        # What Status counts (every worker by state and class) comes from the census the scrape
        # and the credit rebuild read: one count per census interval however often operators ask.
        self.census = census if census is not None else WorkerCensus(engine.summaries)
        self._credit: tuple[float, control_pb2.CreditResponse] | None = None    # (snapshot's time, its answer)

    async def _tokens(self, context) -> Authenticator:
        if self.auth is None or not self.auth.enabled:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this coordinator runs without authentication (--auth none): there are no tokens")
        assert self.auth is not None
        return self.auth

    async def CreateToken(self, request, context):
        auth = await self._tokens(context)
        try:
            token = auth.create_join_token(request.name, team=request.team, display=request.display_name,
                                           anonymous=request.anonymous, kind="reader" if request.reader else "join")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self.durable()
        return control_pb2.CreateTokenResponse(name=request.name, token=token)

    async def ListTokens(self, request, context):
        auth = await self._tokens(context)
        return control_pb2.ListTokensResponse(tokens=[
            control_pb2.TokenInfo(name=t.name, created_unix=t.created, revoked=t.revoked, workers=n, kind=t.kind,
                                  team=t.team)
            for t, n in auth.join_tokens()])

    async def Credit(self, request, context):
        if self.standings is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this coordinator keeps no credit standings")
        assert self.standings is not None
        snap = await self.standings.snapshot()
        if self._credit is not None and self._credit[0] == snap.computed:
            return self._credit[1]      # once per snapshot: a row of every volunteer (100,000 in a big swarm)

        def row(v: Volunteer) -> control_pb2.CreditRow:
            return control_pb2.CreditRow(name=v.name, team=v.team, credit=v.credit, recent_average=v.recent_average,
                                         discoveries=v.discoveries, discovery=v.discovery, badge=v.badge,
                                         members=len(v.machines), granted_results=v.granted)
        volunteers = sorted(snap.volunteers.values(), key=lambda v: (-v.recent_average, -v.credit, v.name))
        teams = sorted(snap.teams.values(), key=lambda t: (-t.recent_average, -t.credit, t.name))
        response = control_pb2.CreditResponse(volunteers=[row(v) for v in volunteers], computed_unix=snap.computed, teams=[
            control_pb2.CreditRow(name=t.name, credit=t.credit, recent_average=t.recent_average,
                                  discoveries=t.discoveries, discovery=t.discovery, badge=t.badge, members=t.members)
            for t in teams])
        self._credit = (snap.computed, response)
        return response

    async def RevokeToken(self, request, context):
        auth = await self._tokens(context)
        revoked = auth.revoke(request.name)
        if not revoked:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no active join token named {request.name!r}")
        await self.durable()
        return control_pb2.RevokeTokenResponse(revoked=revoked)

    async def AddStudy(self, request, context):
        name, bundle_hash, champion, present = await _guard(
            context, lambda: self.engine.add_study(bytes(request.bundle), request.max_evaluations))
        if request.priority:
            await _guard(context, lambda: self.engine.change_study(name, priority=request.priority))
        await self.durable()
        record = self.engine.study_record(name)
        return control_pb2.AddStudyResponse(study=name, bundle_hash=bundle_hash, champion_hash=champion,
                                            already_present=present, max_evaluations=record.max_evaluations,
                                            priority=record.priority)

    async def Status(self, request, context):
        response = control_pb2.StatusResponse()
        for s in self.engine.study_summaries():
            response.studies.append(control_pb2.StudyStatus(
                name=s.name, metric=s.metric, direction=s.direction, champion_hash=s.champion.version,
                has_champion_metric=s.champion.metric is not None, champion_metric=s.champion.metric or 0.0,
                evaluations=s.evaluations, improvements=s.improvements, in_flight=s.in_flight,
                max_evaluations=s.max_evaluations, done=s.done,
                has_initial_metric=s.initial_metric is not None, initial_metric=s.initial_metric or 0.0,
                error=s.error, pending_claims=s.pending_claims,
                compare=self.engine.study(s.name).acceptance.compare, quorum=self.engine.study(s.name).acceptance.quorum,
                llm_tokens=s.llm_tokens, cost_usd=s.cost_usd, max_tokens=s.max_tokens, max_cost_usd=s.max_cost_usd,
                failed_edits=s.failed_edits,
            ))
            study_lifecycle_fields(self.engine.study_record(s.name), response.studies[-1])
        response.workers_total = self.engine.summaries.worker_count()
        worker_counts(await self.census.current(), response)
        if request is not None and request.HasField("workers"):
            # One page, in the order workers registered: what a screen shows, whatever the swarm's size.
            page = request.workers
            response.workers.extend(worker_status(w) for w in self.engine.summaries.worker_summaries_page(
                page.offset, min(max(page.limit, 0), MAX_STATUS_PAGE)))
            return response
        # No page asked (an older client): every worker's row, all as of the call, built
        # STATUS_SLICE at a time between turns of the loop: 100,000 rows are ~1.5 s of its CPU,
        # which in one piece stalled every call in flight.
        for part in self.engine.worker_summaries_in_slices(STATUS_SLICE):
            response.workers.extend(worker_status(w) for w in part)
            await asyncio.sleep(0)
        return response

    async def History(self, request, context):
        rows = await _guard(context, lambda: self.engine.history(request.study))
        spec = self.engine.study(request.study)
        response = control_pb2.HistoryResponse(study=spec.name, metric=spec.metric, direction=spec.direction)
        response.rows.extend(history_row(r) for r in rows)
        return response

    async def Lineage(self, request, context):
        entries = await _guard(context, lambda: self.engine.lineage(request.study))
        spec = self.engine.study(request.study)
        response = control_pb2.LineageResponse(study=spec.name, metric=spec.metric, direction=spec.direction)
        response.rows.extend(lineage_row(e) for e in entries)
        response.events.extend(study_event_row(e) for e in self.engine.study_events(request.study))
        return response

    async def GetVersion(self, request, context):
        version, metric = await _guard(context, lambda: self.engine.version(request.study, request.hash))
        return version_message(version, metric)

    async def ChangeStudy(self, request, context):
        record, released = await _guard(context, lambda: self.engine.change_study(
            request.study, request.action, request.priority,
            request.max_evaluations if request.set_max_evaluations else None))
        await self.durable()
        return control_pb2.ChangeStudyResponse(
            study=study_lifecycle_fields(record, control_pb2.StudyStatus(
                name=record.name, max_evaluations=record.max_evaluations)), leases_released=released)

    async def UpdateStudy(self, request, context):
        name, bundle_hash, champion, plan = await _guard(context, lambda: self.engine.update_study(bytes(request.bundle)))
        await self.durable()
        record = self.engine.study_record(name)
        return control_pb2.AddStudyResponse(study=name, bundle_hash=bundle_hash, champion_hash=champion,
                                            already_present=not plan.changed, max_evaluations=record.max_evaluations,
                                            priority=record.priority, changed=list(plan.changed))

    async def GetResult(self, request, context):
        result = await _guard(context, lambda: self.engine.result(request.result_id))
        record = self.engine.store.study(result.study)
        return result_detail(result, record.spec["metric"] if record else "")

