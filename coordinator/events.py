"""What the engine tells observers (metrics, logs) as it changes state.

The engine calls these after the store has committed. The default does nothing; the
Prometheus exporter in `coordinator.metrics` implements them. Kept as a Protocol so the
engine does not import prometheus_client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class EngineEvents(Protocol):
    def lease_granted(self, study: str, kind: str) -> None: ...

    def leases_closed(self, study: str, kind: str, reason: str) -> None:
        """`reason` is "expired" or "released"."""

    def result_recorded(self, study: str, kind: str, status: str, decision: str, hardware_class: str,
                        timings: Mapping[str, float], cache_hit: bool) -> None: ...

    def champion_changed(self, study: str, metric: float, improvement: bool) -> None:
        """A champion was measured for the first time (`improvement` False) or replaced (True)."""

    def claim(self, study: str, outcome: str) -> None:
        """Acceptance funnel: "claimed", "verified", "refuted", "accepted"."""


class NoEvents:
    """The engine's default observer: ignores everything."""

    def lease_granted(self, study: str, kind: str) -> None:
        pass

    def leases_closed(self, study: str, kind: str, reason: str) -> None:
        pass

    def result_recorded(self, study: str, kind: str, status: str, decision: str, hardware_class: str,
                        timings: Mapping[str, float], cache_hit: bool) -> None:
        pass

    def champion_changed(self, study: str, metric: float, improvement: bool) -> None:
        pass

    def claim(self, study: str, outcome: str) -> None:
        pass
