"""How the coordinator's engine is configured: lease lifetimes, liveness and the caps on requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from autoswarm.study import Study
from autoswarm.coordinator.liveness import LivenessPolicy


@dataclass(frozen=True)
class Limits:
    """Caps on what a worker or operator may send."""

    max_target_bytes: int = 1 << 20
    max_bundle_bytes: int = 64 << 20
    max_log_tail_chars: int = 8000
    max_description_chars: int = 500
    max_extra_metrics: int = 64
    max_slots: int = 64               # in-flight leases one worker may hold


@dataclass(frozen=True)
class EngineConfig:
    lease_factor: float = 2.0         # a lease lives timeout × factor + grace past each heartbeat
    lease_grace: float = 30.0
    heartbeat_interval: float = 5.0   # the shortest interval workers are told (liveness.min_interval)
    limits: Limits = field(default_factory=Limits)
    liveness: LivenessPolicy = field(default_factory=LivenessPolicy)

    def lease_ttl(self, study: Study) -> float:
        return study.timeout * self.lease_factor + self.lease_grace
