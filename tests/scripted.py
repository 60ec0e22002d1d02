"""Scripted workers: real gRPC clients whose scores the test controls (honest, noisy, lying)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from autoswarm.v1 import common_pb2, worker_pb2, worker_pb2_grpc

# A score function maps target content to the true score on an ideal machine.
ScoreFn = Callable[[str], float]
# An editor proposes the next candidate content from the parent content.
EditFn = Callable[[str, random.Random], tuple[str, str]]


@dataclass
class ScriptedWorker:
    """One worker identity speaking the real WorkerService; `step()` runs one task."""

    stub: worker_pb2_grpc.WorkerServiceStub
    name: str
    cpu_model: str
    score: ScoreFn
    edit: EditFn
    sigma: float = 0.0
    offset: float = 0.0           # what this hardware class adds to every score
    lie: float = 0.0              # added to the reports of the task kinds in `lie_on`
    lie_on: tuple[str, ...] = ("explore", "verify")
    seconds: float = 0.0          # the evaluation time it reports (what credit counts)
    seed: int = 0
    worker_id: str = ""
    rng: random.Random = field(default_factory=random.Random)
    log: list[tuple[str, str, str]] = field(default_factory=list)   # (kind, decision, description)
    token: str = ""               # a join token: its owner is the worker's (else no auth)
    credential: str = ""          # the worker credential Register issued for it

    def _auth(self, secret: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {secret}"),) if secret else ()

    def register(self) -> ScriptedWorker:
        self.rng = random.Random(self.seed)
        registered = self.stub.Register(worker_pb2.RegisterRequest(
            name=self.name, slots=1, mutators=["params"],
            hardware=common_pb2.Hardware(cpu_model=self.cpu_model, cpu_cores=2)),
            metadata=self._auth(self.token), timeout=10)
        self.worker_id, self.credential = registered.worker_id, registered.credential
        return self

    def measure(self, content: str, kind: str) -> float:
        value = self.score(content) + self.offset + self.rng.gauss(0.0, self.sigma)
        return value + (self.lie if kind in self.lie_on else 0.0)

    def step(self) -> str | None:
        """Leases one task (no waiting), runs it, reports; returns the decision or None."""
        response = self.stub.Lease(worker_pb2.LeaseRequest(worker_id=self.worker_id, wait_seconds=0),
                                   metadata=self._auth(self.credential), timeout=10)
        if not response.has_task:
            return None
        task = response.task
        kind = {common_pb2.TASK_KIND_EXPLORE: "explore", common_pb2.TASK_KIND_VERIFY: "verify",
                common_pb2.TASK_KIND_BASELINE: "baseline"}[task.kind]
        if kind == "explore":
            content, description = self.edit(task.parent.content.decode(), self.rng)
            result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True,
                                       metric=self.measure(content, kind), candidate=content.encode(),
                                       description=description, evaluate_seconds=self.seconds)
        else:
            content, description = task.candidate.content.decode(), ""
            result = worker_pb2.Result(status=common_pb2.RESULT_STATUS_OK, has_metric=True,
                                       metric=self.measure(content, kind), evaluate_seconds=self.seconds)
        decision = self.stub.Report(worker_pb2.ReportRequest(worker_id=self.worker_id, lease_id=task.lease_id,
                                                             result=result),
                                    metadata=self._auth(self.credential), timeout=10).decision
        self.log.append((kind, decision, description))
        return decision


def connect(address: str) -> tuple[grpc.Channel, worker_pb2_grpc.WorkerServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, worker_pb2_grpc.WorkerServiceStub(channel)


def run_round_robin(workers: list[ScriptedWorker], steps: int, rng: random.Random) -> int:
    """Lets randomly chosen workers take `steps` tasks in total; returns tasks run."""
    done = idle = 0
    while done < steps and idle < 50 * len(workers):
        if workers[rng.randrange(len(workers))].step() is None:
            idle += 1
        else:
            done, idle = done + 1, 0
    return done


SLOT_RE = re.compile(r"^(SLOT_\d+) = (\d+)$", re.M)


def slots_target(n: int = 60) -> str:
    """A target of independent switches: each SLOT set to 1 is a real improvement."""
    return "".join(f"SLOT_{i} = 0\n" for i in range(n)) + "# note: 0\n"


def slots_score(step: float) -> ScoreFn:
    """True score: `step` per switched-on slot (a comment changes nothing)."""
    return lambda content: step * sum(int(v) for _, v in SLOT_RE.findall(content))


def switch_a_slot(content: str, rng: random.Random) -> tuple[str, str]:
    """A real improvement: turn on one random slot that is still off (a null edit once all are on)."""
    off = [name for name, value in SLOT_RE.findall(content) if value == "0"]
    if not off:
        return touch_the_note(content, rng)
    name = rng.choice(off)
    return content.replace(f"{name} = 0\n", f"{name} = 1\n"), f"switch {name} on"


def touch_the_note(content: str, rng: random.Random) -> tuple[str, str]:
    """A null edit: a different file with exactly the same true score."""
    token = rng.randrange(10**9)
    return re.sub(r"^# note: .*$", f"# note: {token}", content, flags=re.M), f"note {token}"
