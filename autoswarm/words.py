"""The words for statuses and task kinds, shared by the wire, the store and the CLI.

Results carry a worker-side *status* (what happened when it ran); the coordinator adds a
*decision* (keep, discard, ...). `results.tsv` shows autoresearch's words where they apply.
"""

from __future__ import annotations

from autoswarm.v1 import common_pb2 as pb

STATUS_WORDS: dict[int, str] = {
    pb.RESULT_STATUS_OK: "ok",
    pb.RESULT_STATUS_CRASH: "crash",
    pb.RESULT_STATUS_TIMEOUT: "timeout",
    pb.RESULT_STATUS_NO_METRIC: "no-metric",
    pb.RESULT_STATUS_INVALID_METRIC: "invalid-metric",
    pb.RESULT_STATUS_TAMPERED: "tampered",
    pb.RESULT_STATUS_MUTATOR_ERROR: "mutator-error",
    pb.RESULT_STATUS_RESOURCE_LIMIT: "resource-limit",
    pb.RESULT_STATUS_SETUP_FAILED: "setup-failed",
    pb.RESULT_STATUS_NO_CHANGE: "no-change",
    pb.RESULT_STATUS_DUPLICATE: "duplicate",
}
STATUS_CODES: dict[str, int] = {word: code for code, word in STATUS_WORDS.items()}

KIND_WORDS: dict[int, str] = {
    pb.TASK_KIND_EXPLORE: "explore",
    pb.TASK_KIND_VERIFY: "verify",
    pb.TASK_KIND_BASELINE: "baseline",
}
KIND_CODES: dict[str, int] = {word: code for code, word in KIND_WORDS.items()}

# Decisions the coordinator records beside a result.
KEEP = "keep"                      # became the champion
DISCARD = "discard"                # evaluated fine, not better
BASELINE = "baseline"              # measured the champion on this worker's hardware class
NO_CHANGE = "no-change"            # the candidate equals its parent
DUPLICATE = "duplicate"            # the same candidate was claimed before
CLAIM = "claim"                    # beat the champion; waits for independent verification
REJECTED = "rejected"              # a claim that verification refuted
CONFIRM = "confirm"                # a verification that reproduced the claimed improvement
REFUTE = "refute"                  # a verification that did not
VERIFY_LATE = "verify-late"        # a verification of a claim already decided
IGNORED = "ignored"                # a claim from a quarantined worker
OUTVOTED = "outvoted"              # a measurement the agreeing majority of its replicas (or class) disagreed with
CLAIM_LIMIT = "claim-limit"        # beat the champion while this worker's earlier claim is still being checked
STALE_MERGED = "stale-merged"      # beat its old parent; replayed onto the champion as a new claim
STALE_CONFLICT = "stale-conflict"  # beat its old parent, but its edit conflicts with the champion
STALE_INCLUDED = "stale-included"  # beat its old parent; the champion already holds the same edit
UNJUDGED = "unjudged"              # no reference score on this hardware class to judge against
WAITING = "waiting"                # stored unjudged until its class has a baseline of its parent

# Results that cost no evaluation (the candidate was evaluated before): they never count as
# evaluations, toward a study's budget, in progress lines or in plots.
FREE_STATUSES = frozenset({"duplicate"})

# The swarm memory's headings (coordinator/memory.py writes them, the params mutator reads the
# lines below them): ideas in flight, then outcomes on the current champion and on earlier ones.
MEMORY_IN_FLIGHT = "Being evaluated right now on other workers (do not repeat these):"
MEMORY_ON_CHAMPION = "Tried on the current best version (newest first):"
MEMORY_EARLIER = "Tried on earlier best versions:"


def count(n: int, word: str, plural: str | None = None) -> str:
    """`1 improvement`, `2 improvements`: a number with its noun in the right number."""
    return f"{n} {word if n == 1 else (plural or word + 's')}"
