"""Replaying edits onto the champion: 3-way merges of stale edits, folded while unchecked.

A mixin of `judging.Judging`: when a result's parent is no longer the champion but it improved on its
parent, its diff is merged onto the champion from their nearest common ancestor and the merge
becomes a claim to verify; further stale edits fold into a merge nobody checks yet. Nothing is
written here: versions and claims go into the `Judgement` the engine commits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from autoswarm import words
from autoswarm.bundle import sha256_hex
from autoswarm.coordinator.acceptance import Measurement, Settlement
from autoswarm.coordinator.merge import merge3, merge_base
from autoswarm.coordinator.store import ClaimRecord, Store, VersionRecord
from autoswarm.coordinator.study_state import PendingClaim, StudyState
from autoswarm.coordinator.transitions import ClaimEvent, ClaimState, claim_step

if TYPE_CHECKING:
    from autoswarm.coordinator.config import EngineConfig
    from autoswarm.coordinator.judging import Judgement

MERGE_PREFIX = "merge: "      # how a merged version's description starts
MERGE_ORIGIN = "merge"        # a claim the coordinator opened for a merge (`ClaimRecord.origin`)


def checks_as_baselines(origin: str, settled: Settlement) -> list[tuple[Measurement, bool]]:
    """The runs of an accepted claim that count as baseline runs of the new champion, each
    with whether its difference from the class's previous run counts as noise evidence. Pure.

    Only a merge's: the coordinator made its version, so its checks are the first runs anyone
    made of it, by distinct workers of distinct owners, and they agree with each other within
    their classes' noise (an outvoted run is not among them). They measure what a baseline task
    of the new champion would, on the same classes, so those classes need that many fewer runs
    of it before its edits are judged. An explore claim's runs are not taken: its claimant's run
    is the one edit in several that beat its bar, picked for being high, and a baseline too high
    would refute honest edits. A merge's checks passed a bar too, but nobody chose them from
    many tries; what is left of that (a run just over its bar on a marginal merge) errs on the
    side of a higher baseline: fewer edits accepted, never a false one.

    Noise: consecutive baseline runs of a version on a class count as differences of noise
    (`Samples.add`); so do two checks of one candidate on a class (`Samples.note_run`), already
    noted when they were checked. A class's first run from the merge counts (its difference
    from the class's next run is new evidence); the class's further runs from the merge do not,
    or the same difference would count twice.
    """
    if origin != MERGE_ORIGIN or settled.outcome != "accepted":
        return []
    classes: set[str] = set()
    taken: list[tuple[Measurement, bool]] = []
    for measurement in settled.agreeing:
        if measurement.result_id:
            taken.append((measurement, measurement.hardware_class not in classes))
            classes.add(measurement.hardware_class)
    return taken


class Merging:
    """How `Judging` merges stale edits onto the champion (see the module's docstring)."""

    store: Store
    config: EngineConfig

    def _version(self, state: StudyState, judgement: Judgement, version_hash: str) -> VersionRecord | None:
        """A stored version, or one this judgement is about to store."""
        return next((v for v in judgement.versions if v.hash == version_hash), None) \
            or self.store.version(state.spec.name, version_hash)

    def _merge_base(self, state: StudyState, judgement: Judgement, a: VersionRecord, b: VersionRecord) -> str:
        """The nearest common ancestor of two versions of a study (all descend from its first)."""
        def parent_of(version_hash: str) -> str:
            # Parent links only, cached: a long study's chain is walked without reading contents.
            if version_hash not in state.parents:
                fresh = next((v for v in judgement.versions if v.hash == version_hash), None)
                parent = fresh.parent if fresh is not None else self.store.version_parent(state.spec.name, version_hash)
                if parent is None:
                    return ""
                if fresh is not None:
                    return parent  # not committed yet: the judgement may still drop it
                state.parents[version_hash] = parent
            return state.parents[version_hash]
        base = merge_base(a.hash, b.hash, parent_of)
        assert base is not None, f"versions {a.hash[:12]} and {b.hash[:12]} share no ancestor"
        return base

    def _merged_content(self, state: StudyState, judgement: Judgement, onto: VersionRecord,
                        edited: VersionRecord) -> bytes | None:
        """`edited`'s changes replayed onto `onto` from their common ancestor; None on a conflict."""
        base = self._version(state, judgement, self._merge_base(state, judgement, onto, edited))
        assert base is not None
        return merge3(base.content, onto.content, edited.content).content

    def _merge_onto_champion(self, state: StudyState, judgement: Judgement, edited: VersionRecord,
                             claimant: str, now: float, champion: VersionRecord | None = None) -> str:
        """Replays an edit onto the champion; a clean merge becomes a claim to verify.

        While a merge onto this champion waits for its first check, a new edit is folded into
        it instead of opening another: one evaluation then checks both, and a burst of
        parallel improvements lands as one step. Returns the decision word for the result
        that triggered it.
        """
        champion = champion or self._version(state, judgement, state.champion.version)
        assert champion is not None
        merged = self._merged_content(state, judgement, champion, edited)
        if merged is None:
            return words.STALE_CONFLICT
        version = sha256_hex(merged)
        if version == champion.hash or version in state.claimed_versions \
                or any(c.version == version for c in judgement.claims):
            return words.STALE_INCLUDED
        parent, description = champion.hash, edited.description.removeprefix(MERGE_PREFIX)
        waiting = self._merge_waiting(state, judgement, champion.hash)
        if waiting is not None:
            into = self._version(state, judgement, waiting.record.version)
            assert into is not None
            folded = self._merged_content(state, judgement, into, edited)
            folded_version = sha256_hex(folded) if folded is not None else ""
            if folded is not None and folded_version != into.hash and folded_version not in state.claimed_versions:
                merged, version = folded, folded_version
                description = f"{into.description.removeprefix(MERGE_PREFIX)}; {description}"
                self._close_unchecked(judgement, waiting, f"folded into the merge {version[:12]}", now)
        description = (MERGE_PREFIX + description)[: self.config.limits.max_description_chars]
        judgement.versions.append(VersionRecord(state.spec.name, version, parent, merged, description,
                                                "coordinator/merge", now))
        claim = ClaimRecord(f"c-m{self.store.ids.token_hex(9)}", state.spec.name, version, parent, MERGE_ORIGIN,
                            claimant, "", "pending", "", now)
        judgement.claims.append(claim)
        judgement.opened.append(PendingClaim(claim))
        return words.STALE_MERGED

    @staticmethod
    def _merge_waiting(state: StudyState, judgement: Judgement, champion: str) -> PendingClaim | None:
        """An open merge onto `champion` that no worker is checking yet, if there is one."""
        closed = {c.id for c in judgement.claims if c.state != "pending"}
        for pending in [*judgement.opened, *state.claims.values()]:
            record = pending.record
            if record.origin == "merge" and record.parent == champion and record.state == "pending" \
                    and record.id not in closed and not pending.in_flight and not pending.measurements:
                return pending
        return None

    @staticmethod
    def _close_unchecked(judgement: Judgement, pending: PendingClaim, reason: str, now: float) -> None:
        """Retires a claim nobody has checked yet (one opened by this very judgement vanishes)."""
        if pending in judgement.opened:
            judgement.opened.remove(pending)
            judgement.claims = [c for c in judgement.claims if c.id != pending.record.id]
            return
        folded = claim_step(ClaimState(pending.record.state), ClaimEvent.FOLDED)
        pending.record = replace(pending.record, state=folded.state.value, decided=now, reason=reason)
        judgement.claims.append(pending.record)
        judgement.resolved.append((pending, pending.record.state))
