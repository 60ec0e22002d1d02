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
}
STATUS_CODES: dict[str, int] = {word: code for code, word in STATUS_WORDS.items()}

KIND_WORDS: dict[int, str] = {
    pb.TASK_KIND_EXPLORE: "explore",
    pb.TASK_KIND_VERIFY: "verify",
    pb.TASK_KIND_BASELINE: "baseline",
}
KIND_CODES: dict[str, int] = {word: code for code, word in KIND_WORDS.items()}

# Decisions the coordinator records beside a result.
KEEP = "keep"            # became the champion
DISCARD = "discard"      # evaluated fine, not better
BASELINE = "baseline"    # measured the champion
NO_CHANGE = "no-change"  # the candidate equals its parent
