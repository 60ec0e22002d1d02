"""results.tsv: the swarm's version of autoresearch's results log."""

from __future__ import annotations

import time
from collections.abc import Iterable

from autoswarm.v1 import control_pb2

SHORT_HASH = 12


def tsv_cell(text: str) -> str:
    """A value that cannot break the TSV layout."""
    return " ".join(str(text).replace("\t", " ").split())


def results_tsv(metric: str, rows: Iterable[control_pb2.HistoryRow]) -> str:
    """One line per evaluated result, oldest first, with a header.

    `status` uses autoresearch's words where they apply (keep, discard, crash) and named
    statuses for the rest (baseline, timeout, no-metric, invalid-metric, tampered, ...).
    """
    header = ["version", metric, "status", "description", "kind", "parent", "worker", "hardware_class",
              "verifies_of", "improvement", "threshold", "evaluate_seconds", "time"]
    lines = ["\t".join(header)]
    for r in rows:
        lines.append("\t".join(tsv_cell(c) for c in [
            r.version[:SHORT_HASH] or "-",
            f"{r.metric:.6f}" if r.has_metric else "",
            r.status,
            r.description,
            r.kind,
            r.parent[:SHORT_HASH] or "-",
            r.worker,
            r.hardware_class,
            r.verifies_of or "-",
            f"{r.improvement:.6g}" if r.has_improvement else "",
            f"{r.threshold:.6g}" if r.has_improvement else "",
            f"{r.evaluate_seconds:.1f}",
            time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.created_unix)),
        ]))
    return "\n".join(lines) + "\n"


def lineage_tsv(metric: str, rows: Iterable[control_pb2.LineageRow]) -> str:
    """The champion chain: one line per champion, with who claimed and verified it.

    `delta` lists the mean improvement over the previous champion per hardware class.
    """
    lines = ["\t".join(["seq", "version", metric, "description", "claimed_by", "verified_by", "delta", "time"])]
    for r in rows:
        lines.append("\t".join(tsv_cell(c) for c in [
            str(r.seq),
            r.version[:SHORT_HASH],
            f"{r.metric:.6f}" if r.has_metric else "",
            r.description,
            r.claimed_by or "-",
            ", ".join(r.verified_by) or "-",
            "; ".join(f"{cls}: {delta:+.6g}" for cls, delta in sorted(r.deltas.items())) or "-",
            time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.created_unix)),
        ]))
    return "\n".join(lines) + "\n"
