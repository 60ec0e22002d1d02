"""The champion chain of a study with the evidence behind each step, read from the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autoswarm import words
from autoswarm.coordinator import acceptance
from autoswarm.coordinator.store import ChampionRecord, Store, VersionRecord


@dataclass(frozen=True)
class LineageEntry:
    """One champion of the chain, with the evidence that made it champion."""

    champion: ChampionRecord
    version: VersionRecord
    claimed_by: str
    verified_by: tuple[str, ...]
    deltas: Mapping[str, float]        # mean improvement over the previous champion, per hardware class


def lineage(store: Store, study: str) -> list[LineageEntry]:
    """Each champion with who claimed it, who verified it, and by how much per hardware class."""
    names = {w.id: w.name for w in store.workers()}
    results = store.results(study)
    accepted = {c.version: c for c in store.claims(study) if c.state == "accepted"}
    entries = []
    for champion in store.champions(study):
        version = store.version(study, champion.version)
        assert version is not None, f"champion {champion.version} of {study} has no stored version"
        claim = accepted.get(champion.version)
        # An outvoted measurement (a lie the agreeing majority disagreed with) is not the step's delta.
        measured = [r for r in results if claim is not None and r.claim == claim.id and r.improvement is not None
                    and r.decision != words.OUTVOTED]
        deltas = acceptance.class_deltas([
            acceptance.Measurement(r.worker_id, "", r.hardware_class, r.metric or 0.0, r.improvement or 0.0,
                                   r.threshold or 0.0, True) for r in measured])
        claimed_by = names.get(claim.claimant_worker, claim.claimant_worker) if claim else ""
        if claim is not None and claim.origin == "merge":
            claimed_by = f"merge of {claimed_by}'s edit" if claimed_by else "merge"
        verified_by = tuple(r.worker_name for r in measured
                            if r.kind == "verify" and r.decision in (words.CONFIRM, words.KEEP))
        entries.append(LineageEntry(champion, version, claimed_by, verified_by, deltas))
    return entries
