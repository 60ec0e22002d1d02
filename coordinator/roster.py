"""The workers the coordinator knows: who they are, when each was last heard, how far each is
trusted, and which hardware class each measures in.

Part of the engine (see `engine.Engine`, which composes it): presence lives in memory and is
written to the store in bounded rounds (`flush_presence`); class membership and liveness are
kept up to date on every contact by a `LiveIndex`, so that neither leasing nor counting the
connected workers passes over the swarm.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

from autoswarm.hardware_class import HardwareError, checked_hardware, hardware_class, is_moved, moved_class, origin_class
from autoswarm.slot_time import SlotTime
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.context import EngineContext
from autoswarm.coordinator.errors import InvalidRequest, NotFound
from autoswarm.coordinator.live_index import LiveIndex
from autoswarm.coordinator.store import WorkerRecord

SCANS_PER_SECOND = 25_000      # workers a periodic pass over the swarm may visit per second of the loop
NO_TRUST = acceptance.Trust()  # a worker with no record yet (frozen, so shared: no new one per call)


@dataclass
class _Presence:
    state: str
    last_seen: float
    dirty: bool = True
    slot_times: tuple[SlotTime, ...] = ()     # as the worker last reported them (memory only)
    silence: float = 20.0     # seconds it may stay silent and still count as connected


class Roster:
    """Workers, their presence, trust and classes (see the module's docstring).

    Moving a worker out of its class takes its runs out of every live study's baselines."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.workers: dict[str, WorkerRecord] = {w.id: w for w in ctx.store.workers()}
        self.presence: dict[str, _Presence] = {}
        self.results_by_worker: dict[str, int] = ctx.store.count_results_by_worker()
        self.liveness = replace(ctx.config.liveness, min_interval=ctx.config.heartbeat_interval)
        self._trust: dict[str, acceptance.Trust] = {}
        self._index = LiveIndex()
        for worker in self.workers.values():
            self._index.place(worker.id, worker.hardware_class)
        # (valid until, classes with a connected worker that may verify): refreshed every scan_period
        self._verifying_classes: tuple[float, frozenset[str]] = (-math.inf, frozenset())
        self._dirty: set[str] = set()      # workers whose presence the store has not seen yet

    # -- who they are ---------------------------------------------------------------------

    def register(self, worker_id: str, name: str, hardware: dict[str, Any], slots: int,
                 mutators: Sequence[str], owner: str = "") -> tuple[str, str]:
        """Registers a worker (or refreshes a known one); returns (worker id, hardware class)."""
        if not name or len(name) > 128 or not name.isprintable():
            raise InvalidRequest("worker name must be 1-128 printable characters (no control characters)")
        try:
            hardware = checked_hardware(hardware)
        except HardwareError as exc:
            raise InvalidRequest(str(exc)) from exc
        if not 1 <= slots <= self.ctx.config.limits.max_slots:
            raise InvalidRequest(f"slots must be between 1 and {self.ctx.config.limits.max_slots}, got {slots}")
        if len(mutators) > 16 or any(not m or len(m) > 32 for m in mutators):
            raise InvalidRequest("mutators must be at most 16 names of 1-32 characters")
        now = self.ctx.clock()
        hw_class = hardware_class(
            str(hardware.get("cpu_model", "")), int(hardware.get("cpu_cores", 1) or 1),
            [(g.get("name", "?"), int(g.get("memory_bytes", 0))) for g in hardware.get("gpus", [])],
        )
        known = self.workers.get(worker_id) if worker_id else None
        if known is not None and is_moved(known.hardware_class) and origin_class(known.hardware_class) == hw_class:
            hw_class = known.hardware_class  # moved out of its class for measuring unlike it: it stays out
        record = WorkerRecord(
            id=known.id if known else "w-" + self.ctx.store.ids.token_hex(8),
            name=name, hardware=hardware, hardware_class=hw_class, slots=slots,
            mutators=tuple(dict.fromkeys(mutators)), state="idle",
            registered=known.registered if known else now, last_seen=now, owner=owner,
        )
        self.ctx.store.upsert_worker(record)
        self.workers[record.id] = record
        self._index.place(record.id, hw_class)
        if known is None or known.hardware_class != hw_class:
            self._verifying_classes = (-math.inf, frozenset())  # a class may have gained its first verifier
        presence = self.presence[record.id] = _Presence(
            "idle", now, dirty=False, silence=self.liveness.allowed_silence(self.liveness.min_interval))
        self._index.heard(record.id, now + presence.silence)
        return record.id, hw_class

    def owner_of(self, worker_id: str) -> str | None:
        """The owner a worker registered with, or None for an unknown worker."""
        worker = self.workers.get(worker_id)
        return worker.owner if worker is not None else None

    def known_worker(self, worker_id: str) -> WorkerRecord:
        worker = self.workers.get(worker_id)
        if worker is None:
            raise NotFound(f"unknown worker {worker_id!r}; register again")
        return worker

    def count_result(self, worker_id: str) -> None:
        """One more result of this worker recorded."""
        self.results_by_worker[worker_id] = self.results_by_worker.get(worker_id, 0) + 1

    # -- trust and class ------------------------------------------------------------------

    def trust(self, worker_id: str) -> acceptance.Trust:
        trust = self._trust.get(worker_id, NO_TRUST)
        worker = self.workers.get(worker_id)
        return replace(trust, moved=True) if worker is not None and is_moved(worker.hardware_class) else trust

    def trust_change(self, worker_id: str, confirmed: int = 0, strikes: int = 0, moved_strikes: int = 0) -> None:
        """Counts confirmed claims and strikes; `moved_strikes` of the strikes were on runs the
        worker measured after it was moved out of its class (`acceptance.Trust.quarantined`)."""
        if worker_id:
            was = self.trust(worker_id).quarantined
            trust = self._trust.get(worker_id, NO_TRUST)
            self._trust[worker_id] = replace(trust, confirmed=trust.confirmed + confirmed,
                                             refuted=trust.refuted + strikes,
                                             refuted_moved=trust.refuted_moved + moved_strikes)
            if strikes:
                self._verifying_classes = (-math.inf, frozenset())  # whether its class can verify may have changed
            worker = self.workers.get(worker_id)
            if not was and worker is not None and self.trust(worker_id).quarantined:
                # A quarantined worker's baselines judge nothing more (as when the store is read
                # again): a dispute it caused is settled without it.
                for state in self.ctx.studies.values():
                    state.samples.remove_worker(worker.hardware_class, worker_id)

    def moved_out(self, worker_id: str, hardware_class_key: str) -> bool:
        """Whether this worker has been moved out of the class a result of it was measured in."""
        worker = self.workers.get(worker_id)
        return worker is not None and is_moved(worker.hardware_class) and worker.hardware_class != hardware_class_key

    def move_out_of_class(self, worker_id: str) -> None:
        """Moves a worker that measures unlike its reported class to a class of its own.

        Its runs leave the class's baselines and noise in every study and go with it: they are
        its own machine's, so its class starts with its baselines, its repeats (its own noise)
        and its tier points instead of measuring the champion it has just measured again (as
        `StudyRegistry.load_study` reads them back). It keeps the new class when it registers
        again (see `register`), and `status` shows it.
        """
        worker = self.workers.get(worker_id)
        if worker is None or is_moved(worker.hardware_class):
            return
        moved = replace(worker, hardware_class=moved_class(worker.hardware_class, worker.id))
        self.ctx.store.upsert_worker(moved)
        self.workers[worker_id] = moved
        self._index.place(worker_id, moved.hardware_class)
        self._verifying_classes = (-math.inf, frozenset())
        for state in self.ctx.studies.values():
            for version, value, result_id in state.samples.remove_worker(worker.hardware_class, worker_id):
                state.add_baseline(version, moved.hardware_class, worker_id, value, result_id)

    # -- presence -------------------------------------------------------------------------

    def seen(self, worker_id: str, state: str | None = None) -> None:
        state = reported_state(state or "") or None
        presence = self.presence.get(worker_id)
        now = self.ctx.clock()
        if presence is None:
            presence = self.presence[worker_id] = _Presence(
                state or "idle", now, silence=self.liveness.allowed_silence(self.liveness.min_interval))
        else:
            presence.last_seen = now
            presence.state = state or presence.state
            presence.dirty = True
        self._index.heard(worker_id, now + presence.silence)
        self._dirty.add(worker_id)

    def told(self, worker_id: str, interval: float, state: str = "") -> None:
        """The worker was told to call again within `interval` seconds; `state` is what it sent."""
        presence = self.presence.get(worker_id)
        if presence is not None:
            presence.silence = self.liveness.allowed_silence(interval)
            self._index.heard(worker_id, presence.last_seen + presence.silence)
            state = reported_state(state)
            if state and state != presence.state:
                presence.state = state
                presence.dirty = True
                self._dirty.add(worker_id)

    def flush_presence(self, max_rows: int | None = None) -> int:
        """Writes worker liveness to the store in one commit (called periodically).

        `max_rows` bounds what one call writes, so that thousands of workers seen since the
        last call are written over several calls instead of stalling every request at once.
        Returns how many workers are still waiting to be written.
        """
        # A set of the workers seen since, not a scan of every presence: with 100,000 workers
        # connected, a scan per tick would cost more than the rows written.
        batch = list(self._dirty) if max_rows is None else list(itertools.islice(self._dirty, max_rows))
        rows = [(wid, p.state, p.last_seen) for wid in batch if (p := self.presence.get(wid)) is not None]
        self.ctx.store.touch_workers(rows)
        self._dirty.difference_update(batch)
        for wid, _, _ in rows:
            self.presence[wid].dirty = False
        return len(self._dirty)

    def scan_period(self) -> float:
        """How long the set of classes that can verify stays valid: a second, longer for a big
        swarm (liveness changes on the scale of heartbeat intervals, which grow with it too)."""
        return max(1.0, len(self.presence) / SCANS_PER_SECOND)

    def classes(self, hardware_class: str, now: float) -> tuple[AbstractSet[str], AbstractSet[str], frozenset[str]]:
        """(workers of the class, those connected, classes with a connected worker that may verify).

        The first two are kept up to date on every contact (`LiveIndex`): read them, do not keep
        them. The third is refreshed at most every `scan_period`.
        """
        index = self._index
        index.sweep(now)
        until, verifying = self._verifying_classes
        if now >= until:
            # Classes that could verify: a worker outvoted once (or quarantined) does not, and
            # preferring its class would leave claims waiting for nobody. Stops at the first
            # such worker of each class.
            verifying = frozenset(cls for cls, live in index.live_classes().items()
                                  if any(self.trust(w).may_verify for w in live))
            self._verifying_classes = (now + self.scan_period(), verifying)
        return index.members(hardware_class), index.live(hardware_class), verifying

    def may_check(self, hardware_class: str, excluded_workers: AbstractSet[str], excluded_owners: AbstractSet[str]) -> bool:
        """Whether a connected worker of this class may check a claim that these workers and
        owners may not (one that may verify, as of the last `sweep`). Stops at the first one."""
        return any(w not in excluded_workers and self.trust(w).may_verify
                   and not ((owner := self.owner_of(w)) and owner in excluded_owners)
                   for w in self._index.live(hardware_class))

    def live(self, worker_id: str, now: float) -> bool:
        presence = self.presence.get(worker_id)
        return presence is not None and now - presence.last_seen <= presence.silence

    def connected(self) -> int:
        """Workers heard from within the silence they were allowed."""
        self._index.sweep(self.ctx.clock())
        return self._index.connected

    def poll_seconds(self) -> float:
        """How long an idle worker's next long-poll should last."""
        return self.liveness.poll_seconds(self.connected())


MAX_STATE_CHARS = 32


def reported_state(state: str) -> str:
    """A worker's state word as it reported it, safe to store and show: printable characters
    only (no NUL, newline, tab or escape sequence), at most 32 of them."""
    if state.isprintable():   # every call brings one, nearly always clean ("" too): no copy
        return state[:MAX_STATE_CHARS]
    return "".join(ch for ch in state if ch.isprintable())[:MAX_STATE_CHARS]
