"""results.tsv: the swarm's version of autoresearch's results log."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from autoswarm.v1 import control_pb2

SHORT_HASH = 12


def format_metric(value: float | None) -> str:
    """A metric as it deserves: integers as integers, six decimals otherwise ("" when unknown).

    Six decimals is how autoresearch prints val_bpb; very small values keep six significant
    digits instead of rounding to zero.
    """
    if value is None:
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.6g}"
    return f"{value:.6f}"


def tsv_cell(text: str) -> str:
    """A value that cannot break the TSV layout."""
    return " ".join(str(text).replace("\t", " ").split())


def results_tsv(metric: str, rows: Iterable[control_pb2.HistoryRow]) -> str:
    """One line per evaluated result, oldest first, with a header.

    `status` uses autoresearch's words where they apply (keep, discard, crash) and named
    statuses for the rest (baseline, timeout, no-metric, invalid-metric, tampered, ...).
    """
    header = ["version", metric, "status", "description", "kind", "parent", "worker", "hardware_class",
              "verifies_of", "improvement", "threshold", "evaluate_seconds", "mutate_seconds", "time", "reason",
              "result_id", "llm_tokens", "cost_usd"]
    lines = ["\t".join(header)]
    for r in rows:
        lines.append("\t".join(tsv_cell(c) for c in [
            r.version[:SHORT_HASH] or "-",
            format_metric(r.metric) if r.has_metric else "",
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
            f"{r.mutate_seconds:.1f}",
            _when(r.created_unix),
            r.reason,
            r.result_id,
            str(r.llm_tokens) if r.llm_tokens else "",
            f"{r.cost_usd:.6f}" if r.cost_usd else "",
        ]))
    return "\n".join(lines) + "\n"


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(unix))


def lineage_tsv(metric: str, rows: Iterable[control_pb2.LineageRow],
                events: Iterable[control_pb2.StudyEventRow] = ()) -> str:
    """The champion chain: one line per champion, with who claimed and verified it.

    `delta` lists the mean improvement over the previous champion per hardware class.
    Operators' events (a study update, a pause) are lines of their own, seq `-`, in time order.
    """
    lines = ["\t".join(["seq", "version", metric, "description", "claimed_by", "verified_by", "delta", "time"])]
    entries: list[tuple[float, list[str]]] = [
        (e.created_unix, ["-", "-", "", f"study {e.kind}: {e.detail}", "operator", "-", "-", _when(e.created_unix)])
        for e in events]
    for r in rows:
        entries.append((r.created_unix, [
            str(r.seq),
            r.version[:SHORT_HASH],
            format_metric(r.metric) if r.has_metric else "",
            r.description,
            r.claimed_by or "-",
            ", ".join(r.verified_by) or "-",
            "; ".join(f"{cls}: {delta:+.6g}" for cls, delta in sorted(r.deltas.items())) or "-",
            _when(r.created_unix),
        ]))
    for _, cells in sorted(entries, key=lambda e: e[0]):
        lines.append("\t".join(tsv_cell(c) for c in cells))
    return "\n".join(lines) + "\n"


FORMATS = ("tsv", "csv", "json")


def history_record(r: control_pb2.HistoryRow) -> dict[str, Any]:
    """One result as plain data: what `history --format json|csv` prints (metric as `metric`)."""
    return {
        "result_id": r.result_id, "version": r.version, "parent": r.parent, "kind": r.kind, "status": r.status,
        "metric": r.metric if r.has_metric else None, "description": r.description, "reason": r.reason,
        "worker": r.worker, "hardware_class": r.hardware_class, "verifies_of": r.verifies_of,
        "improvement": r.improvement if r.has_improvement else None,
        "threshold": r.threshold if r.has_improvement else None,
        "evaluate_seconds": r.evaluate_seconds, "mutate_seconds": r.mutate_seconds, "time": _when(r.created_unix),
    }


def lineage_record(r: control_pb2.LineageRow) -> dict[str, Any]:
    """One champion as plain data."""
    return {"seq": r.seq, "version": r.version, "parent": r.parent, "metric": r.metric if r.has_metric else None,
            "description": r.description, "claimed_by": r.claimed_by, "verified_by": list(r.verified_by),
            "deltas": dict(r.deltas), "time": _when(r.created_unix)}


def render_rows(metric: str, records: Sequence[dict[str, Any]], output_format: str) -> str:
    """Records as JSON (`{"metric": ..., "rows": [...]}`) or CSV with a header (the metric column named)."""
    if output_format == "json":
        return json.dumps({"metric": metric, "rows": list(records)}, indent=1) + "\n"
    out = io.StringIO()
    fields = [metric if k == "metric" else k for k in (records[0] if records else {"metric": None})]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for rec in records:
        writer.writerow(["; ".join(map(str, v)) if isinstance(v, list) else "" if v is None else v
                         for v in rec.values()])
    return out.getvalue()


def result_text(detail: control_pb2.ResultDetail, lines: int = 40) -> str:
    """One result for people: what was tried, the decision and why, timings, and its log tail."""
    r = detail.row
    log = detail.log_tail.rstrip("\n").splitlines()
    shown = log[-lines:] if lines else log
    parts = [
        f"result {r.result_id} · study {detail.study} · {r.kind}",
        f"  decision     {r.status} (the worker reported {detail.worker_status})",
        f"  {detail.metric or 'metric':<12} {format_metric(r.metric) if r.has_metric else '—'}",
    ]
    if r.has_improvement:
        parts.append(f"  improvement  {r.improvement:+.6g} (needed more than {r.threshold:.6g})")
    if r.reason:
        parts.append(f"  reason       {r.reason}")
    parts += [
        f"  description  {r.description or '—'}",
        f"  version      {r.version or '—'} (parent {r.parent or '—'})",
        f"  worker       {r.worker} · {r.hardware_class}",
        f"  time         {_when(r.created_unix)} · edit {r.mutate_seconds:.1f}s · evaluation {r.evaluate_seconds:.1f}s",
    ]
    if detail.extra_metrics:
        parts.append("  extra        " + ", ".join(f"{k}={format_metric(v)}" for k, v in sorted(detail.extra_metrics.items())))
    parts.append(f"log tail ({len(shown)} of {len(log)} lines kept):" if log else "log tail: empty")
    parts += [f"  {line}" for line in shown]
    return "\n".join(parts) + "\n"
