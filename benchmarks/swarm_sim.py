"""A swarm on a simulated clock: the coordinator's real engine, workers running in parallel.

Shared by `acceptance_sim.py` (what acceptance costs and whether it can be fooled) and
`search_sim.py` (how fast a swarm reaches a target). No processes and no network: each
simulated worker leases a task from the real `Engine` (SQLite store in a temporary
directory), edits with the real params mutator, and reports after its evaluation time has
passed on the simulated clock. Workers run concurrently: an event queue orders the moments
they finish, so a slow class really is slower and an idle worker really waits.

Hardware classes: class 0 measures the true score; class c measures
`offset_c + scale_c * true + noise` with its own noise σ_c and its own speed, all drawn
from a seeded generator (`class_profile`). Liars (a share of the workers, `liar_kind`):

- `always`: adds `lie_boost` to every explore and verify report (the classic liar);
- `verify-only`: honest when exploring, reports a far-too-good metric on every verify task;
- `inflating`: a verifier that adds `lie_boost` to candidates that truly improved;
- `baseline`: reports a far-too-good baseline of the champion;
- `spoofer`: claims class 0's hardware while measuring on its own (the offset of another class).

What is counted (`Outcome`): evaluations by task kind, worker time spent idle, false
acceptances (a new champion whose true score is not better than the one it replaced),
frozen studies (the run ends with `FROZEN_AFTER` honest true improvements of the champion
turned down in a row), simulated time until the champion's true score reaches the target.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoswarm.bundle import pack_files
from autoswarm.coordinator.engine import Engine, EngineConfig, ResultIn, TaskSpec
from autoswarm.coordinator.ids import seeded_ids
from autoswarm.coordinator.store import ChampionRecord, ResultRecord, Store

LIAR_KINDS = ("always", "verify-only", "inflating", "baseline", "spoofer")
FROZEN_AFTER = 10          # helpful honest edits turned down in a row at the end of a run
JITTER = 0.1               # evaluation time ± this share
IDLE_WAIT = 0.5            # a worker with nothing to do asks again after this long
HELPFUL_SIGMAS = 4.0       # an edit "truly helps" when it beats its parent by this many σ


def reproducible(hash_seed: str = "0") -> None:
    """Re-runs this program with a fixed `PYTHONHASHSEED` unless one is set.

    The engine iterates sets of ids in places, and Python salts string hashes per process, so
    the same seed gave a different run each time (and a false acceptance in one run of ten
    seeds, none in the next). With the hash fixed, a command prints the same table every time;
    set `PYTHONHASHSEED` yourself to see other draws. The engine's ids are the other half
    (`simulate` seeds them: `coordinator.ids.seeded_ids`): drawn from `secrets`, they made every
    run differ even with the hash fixed, whatever ran before it in the process.
    """
    if os.environ.get("PYTHONHASHSEED") is None:
        os.environ["PYTHONHASHSEED"] = hash_seed
        os.execv(sys.executable, [sys.executable, *sys.argv])


@dataclass(frozen=True)
class Swarm:
    """The swarm and the acceptance policy under test."""

    workers: int = 8
    classes: int = 1
    compare: str = "paired"
    quorum: int = 2
    sigma: float = 0.02              # noise of one run on class 0
    class_offset: float = 0.5        # class offsets are drawn from ±this
    class_scale: float = 0.3         # class scales from [1/(1+s), 1+s]
    class_noise: float = 2.0         # class noise factors from [1/n, n] (log-uniform)
    class_speed: float = 2.0         # class evaluation times from [1/v, v] × eval_seconds
    liars: float = 0.0               # share of workers that lie
    liar_kind: str = "always"
    lie_boost: float = 1.0
    colluding_owners: int = 0        # 0: all liars are one owner (one attacker); else one owner each
    eval_seconds: float = 1.0


@dataclass(frozen=True)
class ClassProfile:
    offset: float
    scale: float
    noise: float                      # σ of one run on this class
    speed: float                      # evaluation time factor


def class_profile(swarm: Swarm, cls: int) -> ClassProfile:
    """Class 0 is the reference; the others differ in offset, scale, noise and speed."""
    if cls == 0:
        return ClassProfile(0.0, 1.0, swarm.sigma, 1.0)
    rng = random.Random(7919 * cls + 17)
    offset = rng.uniform(-1.0, 1.0) * swarm.class_offset
    scale = math.exp(rng.uniform(-1.0, 1.0) * math.log1p(swarm.class_scale))
    noise = swarm.sigma * math.exp(rng.uniform(-1.0, 1.0) * math.log(max(swarm.class_noise, 1.0)))
    speed = math.exp(rng.uniform(-1.0, 1.0) * math.log(max(swarm.class_speed, 1.0)))
    return ClassProfile(offset, scale, noise, speed)


@dataclass(frozen=True)
class Problem:
    """What is being optimised: the study's files, the true score, one worker's edit."""

    name: str
    files: Callable[[str, int], dict[str, bytes]]                # (compare, quorum) -> study files
    score: Callable[[str], float]                                # true score of a target's text
    edit: Callable[[TaskSpec, random.Random, Path], tuple[str, str]]  # -> (new text, description)


@dataclass
class Outcome:
    """What one simulated run did."""

    evaluations: int = 0
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    busy_seconds: float = 0.0          # honest workers' time evaluating
    idle_seconds: float = 0.0          # honest workers' time without a task
    seconds: float = 0.0               # simulated time the run lasted
    time_to_target: float | None = None
    champions: int = 0
    false_acceptances: int = 0
    true_improvements: int = 0
    missed_true_improvements: int = 0
    frozen: bool = False
    liars: int = 0
    liars_quarantined: int = 0
    honest_quarantined: int = 0
    quarantined_evaluations: int = 0   # evaluations run by workers already quarantined
    start_score: float = 0.0
    final_score: float = 0.0
    decisions: collections.Counter[str] = field(default_factory=collections.Counter)
    trace: str = ""                    # digest of every result row (ids, workers, decisions) and champion

    def share(self, kind: str) -> float:
        return self.by_kind[kind] / max(self.evaluations, 1)

    @property
    def idle_share(self) -> float:
        return self.idle_seconds / max(self.idle_seconds + self.busy_seconds, 1e-9)


@dataclass
class _Worker:
    index: int
    id: str
    cls: int                           # the class it really measures on
    liar: bool
    profile: ClassProfile


def simulate(problem: Problem, swarm: Swarm, seed: int, *, target: float | None = None,
             max_evaluations: int = 0, limit: float = 3600.0, stop_at_target: bool = False) -> Outcome:
    """One seeded run through the real engine; deterministic in `seed` (and `PYTHONHASHSEED`):
    the engine's ids are drawn from `seeded_ids(seed)`, its clock is the simulated one."""
    rng = random.Random(seed)
    out = Outcome()
    tmp_root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        clock = [1_000_000.0]
        engine = Engine(Store(Path(tmp) / "sim.db", ids=seeded_ids(seed)), EngineConfig(), clock=lambda: clock[0])
        engine.add_study(pack_files(problem.files(swarm.compare, swarm.quorum)).data)
        liar_count = round(swarm.workers * swarm.liars)
        workers: list[_Worker] = []
        for i in range(swarm.workers):
            liar = i < liar_count
            cls = i % swarm.classes
            claimed = 0 if liar and swarm.liar_kind == "spoofer" else cls
            if liar and swarm.liar_kind == "spoofer" and swarm.classes == 1:
                cls = 1   # one class: the spoofer measures on hardware unlike anyone's
            owner = f"attacker{i if swarm.colluding_owners else 0}" if liar else f"volunteer{i}"
            wid, _ = engine.register("", f"w{i}", {"cpu_model": f"Class{claimed} CPU", "cpu_cores": 2, "gpus": []},
                                     1, ["params"], owner=owner)
            workers.append(_Worker(i, wid, cls, liar, class_profile(swarm, cls)))
        liar_ids = {w.id for w in workers if w.liar}
        out.liars = len(liar_ids)
        helpful: dict[str, float] = {}      # explore lease -> when, for honest edits that truly helped the champion
        start = clock[0]
        queue: list[tuple[float, int, TaskSpec | None, str, str, float]] = \
            [(start + 1e-3 * i, i, None, "", "", 0.0) for i in range(swarm.workers)]
        champion_seq = 0
        champion_text = ""
        while queue:
            clock[0], i, task, text, description, measured = heapq.heappop(queue)
            worker = workers[i]
            if clock[0] - start >= limit or (max_evaluations and out.evaluations >= max_evaluations):
                break
            if task is not None:
                candidate = text.encode() if task.kind == "explore" else b""
                reported = engine.report(worker.id, task.lease_id,
                                         ResultIn("ok", measured, {}, candidate, description, "", {}))
                out.evaluations += 1
                out.by_kind[task.kind] += 1
                if reported.new_champion or not champion_text:
                    champion = engine.study_summaries()[0].champion
                    if champion.seq != champion_seq or not champion_text:
                        champion_seq = champion.seq
                        champion_text = engine.store.version(problem.name, champion.version).content.decode()
                        if target is not None and out.time_to_target is None and problem.score(champion_text) >= target:
                            out.time_to_target = clock[0] - start
                            if stop_at_target:
                                break
            quarantined = engine.trust(worker.id).quarantined
            task = engine.lease(worker.id)
            if task is None:
                # Idle time of honest workers only: a quarantined liar left without work is the point.
                out.idle_seconds += 0.0 if worker.liar else IDLE_WAIT
                heapq.heappush(queue, (clock[0] + IDLE_WAIT, i, None, "", "", 0.0))
                continue
            out.quarantined_evaluations += quarantined
            if task.kind == "explore":
                assert task.parent is not None
                parent = task.parent.content.decode()
                text, description = problem.edit(task, rng, Path(tmp))
                engine.heartbeat(worker.id, [task.lease_id], "working", {task.lease_id: description})
                gain = problem.score(text) - problem.score(parent)
                if not worker.liar and gain >= HELPFUL_SIGMAS * max(swarm.sigma, 1e-12) \
                        and task.parent.hash == engine.study_summaries()[0].champion.version:
                    helpful[task.lease_id] = clock[0]
            else:
                assert task.candidate is not None
                text, description = task.candidate.content.decode(), ""
                lease = engine.store.lease(task.lease_id)
                base = engine.store.version(problem.name, lease.parent) if lease and lease.parent else None
                parent = base.content.decode() if base is not None else text
            measured = _measure(problem, swarm, worker, task, text, parent, rng)
            duration = swarm.eval_seconds * worker.profile.speed * (1 + rng.uniform(-JITTER, JITTER))
            out.busy_seconds += 0.0 if worker.liar else duration
            heapq.heappush(queue, (clock[0] + duration, i, task, text, description, measured))
        out.seconds = clock[0] - start
        _score_run(engine, problem, out, helpful, liar_ids, workers)
        engine.store.close()
    return out


def _measure(problem: Problem, swarm: Swarm, worker: _Worker, task: TaskSpec, text: str, parent: str,
             rng: random.Random) -> float:
    """What this worker reports for this task: its class's measurement, or its lie."""
    p = worker.profile
    true = problem.score(text)
    value = p.offset + p.scale * true + rng.gauss(0.0, p.noise)
    if not worker.liar:
        return value
    kind = swarm.liar_kind
    if kind == "always" and task.kind in ("explore", "verify"):
        return value + swarm.lie_boost
    if kind == "verify-only" and task.kind == "verify":
        return value + 10 * swarm.lie_boost
    if kind == "inflating" and task.kind == "verify":
        return value + swarm.lie_boost if true > problem.score(parent) else value
    if kind == "baseline" and task.kind == "baseline":
        return value + 10 * swarm.lie_boost
    return value


def _score_run(engine: Engine, problem: Problem, out: Outcome, helpful: dict[str, float],
               liar_ids: set[str], workers: list[_Worker]) -> None:
    chain = engine.store.champions(problem.name)
    contents = [engine.store.version(problem.name, c.version).content.decode() for c in chain]
    scores = [problem.score(c) for c in contents]
    out.champions = len(chain) - 1
    out.false_acceptances = sum(b <= a for a, b in zip(scores, scores[1:]))
    out.start_score, out.final_score = scores[0], scores[-1]
    # Missed: a real improvement of the champion that acceptance turned down (one that merely
    # conflicted with a parallel edit, or that the champion already held, is not a miss).
    turned_down = {"discard", "rejected", "unjudged"}
    results = {r.id: r for r in engine.store.results(problem.name)}
    out.decisions = collections.Counter(f"{r.kind}:{r.decision}" for r in results.values())
    out.trace = _trace(list(results.values()), chain)
    ordered = sorted(helpful, key=helpful.__getitem__)
    outcomes = [results[lease].decision if lease in results else "" for lease in ordered]
    out.true_improvements = len(ordered)
    out.missed_true_improvements = sum(d in turned_down for d in outcomes)
    last_champion = chain[-1].created
    tail = [d for lease, d in zip(ordered, outcomes) if d and results[lease].created > last_champion]
    out.frozen = len(tail) >= FROZEN_AFTER and all(d in turned_down for d in tail[-FROZEN_AFTER:])
    summaries = {w.record.id: w for w in engine.worker_summaries()}
    out.liars_quarantined = sum(summaries[w].trust.quarantined for w in liar_ids)
    out.honest_quarantined = sum(summaries[w.id].trust.quarantined for w in workers if not w.liar)


def _trace(results: list[ResultRecord], chain: list[ChampionRecord]) -> str:
    """A digest of the run's event trace: every result (id, worker, kind, decision, metric,
    versions, time) and every champion. Equal digests, equal runs."""
    digest = hashlib.sha256()
    for r in sorted(results, key=lambda r: (r.created, r.id)):
        digest.update(repr((r.id, r.worker_id, r.kind, r.decision, r.metric, r.version, r.parent, r.created,
                            r.claim)).encode())
    for c in chain:
        digest.update(repr((c.seq, c.version, c.metric, c.created)).encode())
    return digest.hexdigest()
