"""Stale leases: work leased on a champion that has been replaced since. Pure, no I/O.

A pipelined worker leases its next task while it evaluates the current one, so when a
champion changes it may hold an explore of the old champion (its edit would be judged on a
parent nobody builds on any more, and at best merged and checked again later) or a baseline
of it (a measurement of a version no result is judged against any more). The coordinator
names such leases in its answers (`HeartbeatResponse.stale_lease_ids`,
`ReportResponse.stale_lease_ids`); the worker hands back those it has not started, and their
places are leased anew on the new champion. One already evaluating is left to finish: its
result keeps the stale-merge path (DESIGN.md §5, "Stale parents"). A verification is never
stale: a claim needs its checks whatever the champion is now.
"""

from __future__ import annotations

from autoswarm.coordinator.scheduler import BASELINE, EXPLORE


def is_stale(kind: str, parent: str, candidate: str, champion: str) -> bool:
    """Whether a lease of `kind` on (`parent`, `candidate`) was made on a champion other than
    `champion`: an explore of another parent, a baseline of another version."""
    if kind == EXPLORE:
        return parent != champion
    if kind == BASELINE:
        return candidate != champion
    return False

