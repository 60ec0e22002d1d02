"""Stale leases: work leased on a champion that has been replaced since. Pure, no I/O.

A pipelined worker leases its next task while it evaluates the current one, so when a
champion changes it may hold an explore of the old champion (its edit would be judged on a
parent nobody builds on any more, and at best merged and checked again later) or a baseline
of it (a measurement of a version no result is judged against any more). The coordinator
names such leases in its answers (`HeartbeatResponse.stale_lease_ids`,
`ReportResponse.stale_lease_ids`); the worker hands back those it has not started, and their
places are leased anew on the new champion. One already evaluating is left to finish: its
result keeps the stale-merge path (DESIGN.md §5, "Stale parents"). A verification is stale
only once its claim is closed (decided, or superseded and not checked on for trust): while
the claim is open it needs its checks whatever the champion is now, and once it is closed a
check would come back `verify-late`, where its place can check the claim's replay instead.
"""

from __future__ import annotations

from autoswarm.coordinator.scheduler import BASELINE, EXPLORE, VERIFY


def is_stale(kind: str, parent: str, candidate: str, champion: str, claim_open: bool = True) -> bool:
    """Whether a lease of `kind` on (`parent`, `candidate`) is not worth starting: an explore
    of a parent other than `champion`, a baseline of another version, a check of a claim no
    longer open (`claim_open`)."""
    if kind == EXPLORE:
        return parent != champion
    if kind == BASELINE:
        return candidate != champion
    return kind == VERIFY and not claim_open

