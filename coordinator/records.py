"""The records the store reads and writes: one frozen dataclass per kind of row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoswarm.coordinator.frozen import quick


@quick
@dataclass(frozen=True)
class StudyRecord:
    name: str
    spec: dict[str, Any]
    bundle_hash: str
    max_evaluations: int
    error: str
    created: float
    paused: bool = False
    priority: int = 1                 # share of the swarm against other studies
    archived: bool = False            # removed by its operator: no work, not listed; rows kept


@quick
@dataclass(frozen=True)
class StudyEvent:
    study: str
    created: float
    kind: str                         # "update", "pause", "resume", "remove", "priority", "budget"
    detail: str


@quick
@dataclass(frozen=True)
class VersionRecord:
    study: str
    hash: str
    parent: str
    content: bytes
    description: str
    author: str
    created: float


@quick
@dataclass(frozen=True)
class ChampionRecord:
    study: str
    seq: int
    version: str
    metric: float | None
    result_id: str
    created: float


@quick
@dataclass(frozen=True)
class WorkerRecord:
    id: str
    name: str
    hardware: dict[str, Any]
    hardware_class: str
    slots: int
    mutators: tuple[str, ...]
    state: str
    registered: float
    last_seen: float
    owner: str = ""


@quick
@dataclass(frozen=True)
class LeaseRecord:
    id: str
    study: str
    worker_id: str
    kind: str
    parent: str
    candidate: str
    seed: int
    issued: float
    deadline: float
    state: str
    closed: float | None
    claim: str = ""


@quick
@dataclass(frozen=True)
class ResultRecord:
    id: str
    study: str
    kind: str
    worker_id: str
    worker_name: str
    hardware_class: str
    version: str
    parent: str
    status: str
    metric: float | None
    extra: dict[str, float]
    description: str
    log_tail: str
    decision: str
    timings: dict[str, float]
    created: float
    claim: str = ""
    improvement: float | None = None
    threshold: float | None = None


@quick
@dataclass(frozen=True)
class ClaimRecord:
    """A candidate that beat its reference and waits for (or got) its verdict."""

    id: str
    study: str
    version: str
    parent: str
    origin: str
    claimant_worker: str
    claimant_result: str
    state: str
    reason: str
    created: float
    decided: float | None = None


@quick
@dataclass(frozen=True)
class TokenRecord:
    hash: str
    kind: str
    name: str
    worker_id: str
    parent: str
    created: float
    revoked: bool
    team: str = ""
    display: str = ""
    anonymous: bool = False


@quick
@dataclass(frozen=True)
class StudyCounts:
    evaluations: int
    improvements: int
    in_flight: int
    failed_baselines: int
    failed_edits: int = 0                     # explore tasks whose agent made no edit
