"""One slot of a worker: its agent prepares the next task while its evaluation runs.

Two threads per slot. The preparer leases a task and makes its edit (bundle, setup, mutator);
the evaluator runs prepared tasks one at a time, in lease order, and reports them. With a depth
of two the preparer leases the next task as soon as the current one reaches the evaluator, so
the slot's GPU does not sit idle behind a 60 s agent; the next edit is made on the champion of
that moment. A depth of one is the plain lease, mutate, evaluate loop. Evaluations of one slot
never overlap: one thread runs them.

When the champion changes, a task leased ahead may be stale (an explore or a baseline of the
replaced champion, `coordinator/staleness.py`), or an explore a check should replace (the only
worker that may check a claim, `Leasing.displaced_explore`). The coordinator says so in its
answers; a stale task that has not started evaluating is dropped: handed back unevaluated, and its place leased
anew on the new champion. Before starting a task leased ahead, the evaluator waits (briefly) for
the coordinator's answer to the result it just delivered, since that result may itself be the
one that replaced the champion. A task already evaluating finishes either way.

A check goes first. The scheduler puts a verification before anything else (DESIGN.md §4), and a
slot that evaluated in lease order would run the edit it leased ahead before a check leased
after it; with two workers that edit, once kept, supersedes the very claim the check was for
(the merge of the other worker's stale edit, which only this worker may check). So the
evaluator starts a prepared check before any other task it holds, and after a result whose
report carries the next lease (worker/carry.py) it waits for that lease, and for a check's
preparation, before it picks (at most `CHECK_WAIT_SECONDS`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.execute import (
    ExecutionContext,
    PreparedTask,
    discard_prepared,
    evaluate_prepared,
    prepare_task,
)
from autoswarm.slot_time import SlotClock

log = logging.getLogger("autoswarm.worker")
# Seconds the evaluator waits, after a result whose report leases the next task, for that lease
# to come back (a round trip) and for a check it brings to be prepared (the bundle is cached):
# a check is evaluated before a task leased ahead of it. Bounds only a slow coordinator or setup.
CHECK_WAIT_SECONDS = 10.0


class SlotHost(Protocol):
    """What a slot needs from its worker (worker/loop.py's Worker)."""

    @property
    def finishing(self) -> threading.Event: ...      # stop requested: take no new work

    def gate_open(self) -> bool: ...                 # the volunteer's hours / idle rules allow new work

    def wait_for_gate(self) -> None: ...

    def lease_task(self, nothing_yet: Callable[[], None] | None = None) -> worker_pb2.Task | None: ...
    # `nothing_yet`: called when the call's quick answer brought no task and it long-polls on.

    def release(self, lease_ids: list[str]) -> None: ...

    def track(self, slot: int, lease_id: str, cancel: threading.Event) -> None: ...

    def untrack(self, slot: int, lease_id: str) -> None: ...

    def deliver(self, lease_id: str, result: worker_pb2.Result) -> bool | None: ...
    # True: the result rides on this slot's next lease call (worker/carry.py), answered with it.

    def await_answer(self, lease_id: str) -> None: ...   # until the coordinator answered that result (bounded)


@dataclass(eq=False)
class _Held:
    task: worker_pb2.Task
    cancel: threading.Event
    outcome: worker_pb2.Result | PreparedTask | None = None
    started: bool = False      # the evaluator took it: it finishes whatever the champion does
    stale: bool = False        # dropped: handed back unevaluated once its preparation is over

    @property
    def check(self) -> bool:
        """A verification of someone's claim: evaluated before the other tasks held."""
        return self.task.kind == common_pb2.TASK_KIND_VERIFY


class PipelinedSlot:
    """Runs one slot until the worker stops; `depth` is how many tasks it may hold (1 or 2)."""

    def __init__(self, index: int, context: ExecutionContext, host: SlotHost,
                 fetch: Callable[[str], Iterable[bytes]], mutators: Callable[[], Iterable[str]],
                 depth: int = 2) -> None:
        """`mutators` says which kinds the worker runs at the moment of each edit."""
        self.index = index
        self.context = context
        self.host = host
        self.clock = SlotClock(index)
        self.depth = max(1, depth)
        self._fetch = fetch
        self._mutators = mutators
        self._tickets = threading.Semaphore(self.depth)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ready: collections.deque[_Held] = collections.deque()  # prepared, in lease order
        self._closed = False                    # the preparer is done: nothing more will be ready
        self._line: dict[str, _Held] = {}       # leases held, oldest (the current one) first
        self._hand_back: set[str] = set()       # leased ahead, to be released because the worker stops
        # A delivered result rides on the preparer's next lease call, whose task is not in the line yet.
        self._lease_coming = False

    def run(self) -> None:
        """The preparer, in the calling thread; returns when the worker stops and the evaluator is done."""
        evaluator = threading.Thread(target=self._evaluate_loop, name=f"slot-{self.index}-evaluate", daemon=True)
        evaluator.start()
        try:
            self._prepare_loop()
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            evaluator.join()

    def stop_ahead(self) -> list[str]:
        """The worker stops: every task leased ahead of the current one is cancelled and will be
        handed back unfinished (the current one finishes). Returns those lease ids."""
        with self._lock:
            # The current one: the one evaluating (a check may have gone before older tasks), or
            # else the oldest.
            current = next((lid for lid, held in self._line.items() if held.started), next(iter(self._line), None))
            ahead = [lid for lid in self._line if lid != current]
            self._hand_back.update(ahead)
            for lease_id in ahead:
                self._line[lease_id].cancel.set()  # an agent still editing stops now
        return ahead

    def drop_stale(self, lease_ids: Iterable[str]) -> list[str]:
        """The coordinator says these leases are not worth starting (made on a replaced champion,
        or an explore a check replaces): those this slot holds and has not started evaluating
        are dropped. One already prepared is handed back now, one being prepared once its preparation ends (a setup under way is not cut short:
        it serves every later task), unless that ends in a result without evaluation, which is
        reported. Returns the ids marked."""
        now: list[_Held] = []
        dropped: list[str] = []
        with self._lock:
            for lease_id in lease_ids:
                held = self._line.get(lease_id)
                if held is None or held.started or held.stale or lease_id in self._hand_back \
                        or isinstance(held.outcome, worker_pb2.Result):
                    continue   # unknown, under way, dropped already, or an outcome that costs no evaluation
                held.stale = True
                dropped.append(lease_id)
                if held in self._ready:
                    self._ready.remove(held)
                    now.append(held)
            if dropped:
                self._changed.notify_all()   # an evaluator waiting for a check dropped here goes on
        for held in now:
            self._drop(held)
        return dropped

    def _drop(self, held: _Held) -> None:
        """Hands a stale task back unevaluated and frees its place for a task on the new champion."""
        lease_id = held.task.lease_id
        if isinstance(held.outcome, PreparedTask):
            discard_prepared(self.context, held.outcome)
        log.info("task %s was leased on a replaced champion or is replaced by a check; "
                 "handing it back unevaluated", lease_id)
        self.host.release([lease_id])
        self._let_go(held)

    def _let_go(self, held: _Held, lease_coming: bool = False) -> None:
        """Frees a task's place; `lease_coming`: its result rides on the lease call that fills it."""
        with self._changed:
            self._line.pop(held.task.lease_id, None)
            self._hand_back.discard(held.task.lease_id)
            self._lease_coming = self._lease_coming or lease_coming
            self._changed.notify_all()   # an evaluator waiting for a check dropped meanwhile
        self.host.untrack(self.index, held.task.lease_id)
        self._tickets.release()

    def _no_task_yet(self) -> None:
        """The lease call a result rode on brought nothing (no check among it) and long-polls on:
        the evaluator does not wait for it (an idle long-poll lasts up to minutes)."""
        with self._changed:
            self._lease_coming = False
            self._changed.notify_all()

    def _leased(self, held: _Held | None) -> None:
        """The preparer's lease call is over (`held`: the task it brought, now in the line)."""
        with self._changed:
            if held is not None:
                self._line[held.task.lease_id] = held
            self._lease_coming = False
            self._changed.notify_all()

    # -- preparer -------------------------------------------------------------------------

    def _prepare_loop(self) -> None:
        host = self.host
        while not host.finishing.is_set():
            if not host.gate_open():
                self._leased(None)   # no lease call now: the evaluator does not wait for one
                host.wait_for_gate()
                continue
            if not self._tickets.acquire(timeout=0.2):  # the slot holds `depth` tasks already
                continue
            task = host.lease_task(nothing_yet=self._no_task_yet)
            if task is None:
                self._leased(None)
                self._tickets.release()
                continue
            if host.finishing.is_set() or not host.gate_open():
                # Stop requested, or the machine got busy, while the lease call waited: hand it back.
                self._leased(None)
                host.release([task.lease_id])
                self._tickets.release()
                continue
            held = _Held(task, threading.Event())
            self._leased(held)
            with self._lock:
                if host.finishing.is_set() and len(self._line) > 1:
                    self._hand_back.add(task.lease_id)
            host.track(self.index, task.lease_id, held.cancel)
            self.clock.preparing(True)
            try:
                held.outcome = prepare_task(self.context, task, self._fetch, held.cancel, tuple(self._mutators()))
            except Exception as exc:  # a bug in our own code must not kill the slot
                log.exception("task %s failed inside the worker", task.lease_id)
                held.outcome = _worker_error(exc)
            finally:
                self.clock.preparing(False)
            with self._changed:
                # An outcome reached without evaluating (a failed setup or edit, a duplicate) is
                # reported even when stale: it costs nothing and tells the coordinator something.
                stale = held.stale and not isinstance(held.outcome, worker_pb2.Result)
                if not stale:
                    self._ready.append(held)
                    self._changed.notify_all()
            if stale:
                self._drop(held)

    # -- evaluator ------------------------------------------------------------------------

    def _check_coming(self) -> bool:
        """Whether a check may be ready soon that is not yet: the lease call carrying the last
        result is under way (it may bring one), or a check leased is being prepared."""
        if any(held.check for held in self._ready):
            return False   # one is ready: it goes first anyway
        return self._lease_coming or any(held.check and held.outcome is None and not held.stale
                                         for held in self._line.values())

    def _next_ready(self, after_result: bool = False) -> _Held | None:
        """The next prepared task, now started: a check before any other, else the oldest; None
        once the preparer is done and none is left. `after_result`: a result was just delivered,
        so the lease it rides on may bring a check, which is waited for (see the module's docstring)."""
        deadline = time.monotonic() + CHECK_WAIT_SECONDS
        with self._changed:
            while not self._closed:
                waiting = after_result and self._check_coming() and time.monotonic() < deadline
                if self._ready and not waiting:
                    break
                self._changed.wait(max(0.0, deadline - time.monotonic()) if waiting else None)
            if not self._ready:
                return None
            held = next((h for h in self._ready if h.check), self._ready[0])
            self._ready.remove(held)
            held.started = True
            return held

    def _evaluate_loop(self) -> None:
        after_result = False
        while (held := self._next_ready(after_result)) is not None:
            delivered, carried = False, False
            try:
                delivered, carried = self._finish(held)
            finally:
                # Its place is leased again at once when its result rides on that call.
                self._let_go(held, lease_coming=carried and self.depth > 1)
            after_result = carried and self.depth > 1
            if delivered and self.depth > 1:
                # The task leased ahead may be on the champion this result just replaced: the
                # coordinator's answer says so before it starts.
                self.host.await_answer(held.task.lease_id)

    def _finish(self, held: _Held) -> tuple[bool, bool]:
        """Evaluates a prepared task and delivers its result: (delivered, the result rides on
        the next lease call as `SlotHost.deliver` says)."""
        lease_id, outcome = held.task.lease_id, held.outcome
        with self._lock:
            hand_back = lease_id in self._hand_back
        if hand_back:
            if isinstance(outcome, PreparedTask):
                discard_prepared(self.context, outcome)
            log.info("task %s was leased ahead; handing it back unfinished because the worker stops", lease_id)
            self.host.release([lease_id])
            return False, False
        if isinstance(outcome, PreparedTask) and not held.cancel.is_set():
            self.clock.evaluating(True)
            try:
                outcome = evaluate_prepared(self.context, outcome, held.cancel)
            except Exception as exc:
                log.exception("task %s failed inside the worker", lease_id)
                outcome = _worker_error(exc)
            finally:
                self.clock.evaluating(False)
        elif isinstance(outcome, PreparedTask):
            discard_prepared(self.context, outcome)
        if held.cancel.is_set():
            log.info("task %s was cancelled; its result is not reported", lease_id)
            return False, False
        assert isinstance(outcome, worker_pb2.Result)
        return True, bool(self.host.deliver(lease_id, outcome))


def _worker_error(exc: Exception) -> worker_pb2.Result:
    return worker_pb2.Result(status=common_pb2.RESULT_STATUS_CRASH,
                             log_tail=f"worker error: {type(exc).__name__}: {exc}")
