"""Edits being evaluated right now, by lease, indexed by what a report or heartbeat asks.

Workers name the candidate they are evaluating (its hash) in heartbeats, so that an edit two
agents wrote alike is evaluated once. Asking "is this candidate being evaluated elsewhere?"
must not walk every explore in flight: a big swarm has one per connected worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InFlightCandidates:
    """lease id -> (parent, candidate), with the lease ids of each candidate and of each pair."""

    by_lease: dict[str, tuple[str, str]] = field(default_factory=dict)
    _by_pair: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _by_candidate: dict[str, set[str]] = field(default_factory=dict)

    def add(self, lease_id: str, parent: str, candidate: str) -> None:
        """The lease is evaluating `candidate` (an edit of `parent`); replaces what it named before."""
        if self.by_lease.get(lease_id) == (parent, candidate):
            return
        self.discard(lease_id)
        self.by_lease[lease_id] = (parent, candidate)
        self._by_pair.setdefault((parent, candidate), set()).add(lease_id)
        self._by_candidate.setdefault(candidate, set()).add(lease_id)

    def discard(self, lease_id: str) -> None:
        """The lease ended (or names no candidate any more)."""
        named = self.by_lease.pop(lease_id, None)
        if named is None:
            return
        _drop(self._by_pair, named, lease_id)
        _drop(self._by_candidate, named[1], lease_id)

    def elsewhere(self, candidate: str, lease_id: str, parent: str | None = None) -> bool:
        """Whether a lease other than `lease_id` is evaluating `candidate` (of `parent`, if given)."""
        leases = self._by_candidate.get(candidate) if parent is None else self._by_pair.get((parent, candidate))
        return bool(leases) and len(leases) > (lease_id in leases)

    def __len__(self) -> int:
        return len(self.by_lease)


def _drop(index: dict, key: object, lease_id: str) -> None:
    leases = index.get(key)
    if leases is not None:
        leases.discard(lease_id)
        if not leases:
            del index[key]


@dataclass(frozen=True)
class Peers:
    """What an explore lease is told of the explores of its parent leased before it whose edit
    is not made yet: how many, and the seed they order their choices with (its own when none)."""

    ahead: int
    order_seed: int


@dataclass
class EditsInMaking:
    """Explore leases whose edit is not made yet (not announced), by parent, in lease order.

    Two workers leasing explores of the same champion at the same moment get the same memory,
    and neither edit is in it yet: a mutator that ranks its moves would make the same one
    twice (the second ends `stale-conflict`). Each new explore is told how many such leases
    came before it and the order seed of the first of them, so that it orders its moves as they
    did and leaves them the first ones (`compass.after_peers`). O(1) a lease, a note and a close.
    """

    _by_parent: dict[str, dict[str, int]] = field(default_factory=dict)   # parent -> lease -> order seed
    _parent_of: dict[str, str] = field(default_factory=dict)

    def lease(self, lease_id: str, parent: str, seed: int) -> Peers:
        """A new explore of `parent` with its own `seed`: what it is told (and it joins them)."""
        making = self._by_parent.setdefault(parent, {})
        peers = Peers(len(making), next(iter(making.values())) if making else seed)
        making[lease_id] = peers.order_seed
        self._parent_of[lease_id] = parent
        return peers

    def made(self, lease_id: str) -> None:
        """The lease announced its edit (it is in the memory's ideas in flight now) or ended."""
        parent = self._parent_of.pop(lease_id, None)
        if parent is None:
            return
        making = self._by_parent[parent]
        del making[lease_id]
        if not making:
            del self._by_parent[parent]

    def __len__(self) -> int:
        return len(self._parent_of)
